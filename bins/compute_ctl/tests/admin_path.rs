//! End-to-end tests of the admin path and of `failed`: a spec that would lock compute_ctl out
//! of its own connection (its `-C` user and database) is refused at start and at `/configure`
//! with located diagnostics and changes nothing; a compute that failed is never a dead end
//! (`/terminate` works from `failed`, and the linger ends in exit 1 with postgres stopped).

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::time::Duration;

use harness::{Args, Ctl, processes_left};
use serde_json::{Value, json};

/// A spec with `roles` and `databases` (JSON values) and `deltas`.
fn spec(roles: Value, databases: Value, deltas: Value) -> Value {
    json!({
        "format_version": 1.0,
        "cluster": {
            "roles": roles,
            "databases": databases,
            "settings": [
                {"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"},
                {"name": "fsync", "value": "off", "vartype": "bool"}
            ]
        },
        "delta_operations": deltas
    })
}

fn option(name: &str, value: Option<&str>) -> Value {
    json!({"name": name, "value": value, "vartype": "string"})
}

/// The spec the compute starts with: alice owns app.
fn alice_and_app() -> Value {
    spec(
        json!([{"name": "alice"}]),
        json!([{"name": "app", "owner": "alice"}]),
        json!([]),
    )
}

fn configure_body(spec: Value) -> String {
    json!({"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}}).to_string()
}

/// What the catalog says about the admin path: cloud_admin's login, validity, connection
/// limit and password; the databases; alice and app's owner; and which of the good roles
/// of the refused specs (`good_before`, `good_after`) exist.
async fn admin_path(ctl: &Ctl) -> String {
    let client = ctl.pg("postgres").await;
    let row = client
        .query_one(
            "SELECT rolcanlogin, rolvaliduntil IS NULL, rolconnlimit, rolpassword IS NULL,
                    (SELECT string_agg(datname::text, ',' ORDER BY datname) FROM pg_database),
                    (SELECT string_agg(rolname::text, ',' ORDER BY rolname) FROM pg_roles
                      WHERE rolname IN ('alice', 'cloud_admin', 'good_before', 'good_after')),
                    (SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'app')
               FROM pg_authid WHERE rolname = 'cloud_admin'",
            &[],
        )
        .await
        .unwrap();
    format!(
        "login={} no_valid_until={} connlimit={} no_password={} dbs={} roles={} app_owner={}",
        row.get::<_, bool>(0),
        row.get::<_, bool>(1),
        row.get::<_, i32>(2),
        row.get::<_, bool>(3),
        row.get::<_, String>(4),
        row.get::<_, String>(5),
        row.get::<_, String>(6),
    )
}

/// Every way a spec could lock compute_ctl out of its connection, with the finding it gets;
/// and a spec whose refused role (`public`) sits between two good ones, which must not be
/// created either (validation refuses the whole spec, not the statements after the bad one).
fn locking_specs() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let admin = |options: Value| {
        spec(
            json!([{"name": "alice"}, {"name": "cloud_admin", "options": options}]),
            json!([{"name": "app", "owner": "alice"}]),
            json!([]),
        )
    };
    let delta = |op: Value| {
        spec(
            json!([{"name": "alice"}]),
            json!([{"name": "app", "owner": "alice"}]),
            json!([op]),
        )
    };
    vec![
        (
            "NOLOGIN",
            admin(json!([{"name": "NOLOGIN", "vartype": "bool"}])),
            "admin-role-changed",
            "/spec/cluster/roles/1/options/0",
        ),
        (
            "VALID UNTIL",
            admin(json!([option("VALID UNTIL", Some("2000-01-01"))])),
            "admin-role-changed",
            "/spec/cluster/roles/1/options/0",
        ),
        (
            "CONNECTION LIMIT",
            admin(json!([option("CONNECTION LIMIT", Some("0"))])),
            "admin-role-changed",
            "/spec/cluster/roles/1/options/0",
        ),
        (
            "rename onto the admin",
            spec(
                json!([{"name": "cloud_admin"}]),
                json!([{"name": "app", "owner": "cloud_admin"}]),
                json!([{"action": "rename_role", "name": "alice", "new_name": "cloud_admin"}]),
            ),
            "delta-provided-role",
            "/spec/delta_operations/0/new_name",
        ),
        (
            "rename the admin away",
            delta(json!({"action": "rename_role", "name": "cloud_admin", "new_name": "x"})),
            "delta-provided-role",
            "/spec/delta_operations/0/name",
        ),
        (
            "delete_db postgres",
            delta(json!({"action": "delete_db", "name": "postgres"})),
            "system-database",
            "/spec/delta_operations/0/name",
        ),
        (
            "rename_db postgres",
            delta(json!({"action": "rename_db", "name": "postgres", "new_name": "gone"})),
            "system-database",
            "/spec/delta_operations/0/name",
        ),
        (
            "delete_db template1",
            delta(json!({"action": "delete_db", "name": "template1"})),
            "system-database",
            "/spec/delta_operations/0/name",
        ),
        (
            "rename_db template0",
            delta(json!({"action": "rename_db", "name": "template0", "new_name": "gone"})),
            "system-database",
            "/spec/delta_operations/0/name",
        ),
        (
            "a role named public between two good roles",
            spec(
                json!([{"name": "alice"}, {"name": "good_before"}, {"name": "public"},
                       {"name": "good_after"}]),
                json!([{"name": "app", "owner": "alice"}]),
                json!([]),
            ),
            "reserved-role-name",
            "/spec/cluster/roles/2/name",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn specs_that_would_lock_compute_ctl_out_are_refused_and_change_nothing() {
    // At start: the compute fails with the located finding, PGDATA is never created; a
    // `/terminate` cuts its (long) linger short, and it exits 1.
    let mut refused = Ctl::start(Args {
        extra: vec![
            "-S".into(),
            "{dir}/spec.json".into(),
            "--linger".into(),
            "120s".into(),
        ],
        files: vec![("spec.json".into(), locking_specs()[0].1.to_string())],
        ..Args::default()
    });
    let status = refused.wait_status("failed").await;
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("admin-role-changed") && error.contains("/cluster/roles/1/options/0"),
        "{status}"
    );
    assert!(!refused.pgdata.exists(), "{}", refused.log());
    let (code, body) = refused.request("POST", "/terminate", "", None).await;
    assert_eq!((code, body.as_str()), (200, r#"{"lsn":null}"#));
    assert_eq!(
        refused.wait_exit(Duration::from_secs(20)).await.code(),
        Some(1)
    );

    // At /configure: 400 with the located diagnostic, the compute stays running, and the
    // catalog is what it was.
    let mut ctl = Ctl::start(Args {
        extra: vec!["-S".into(), "{dir}/spec.json".into()],
        files: vec![("spec.json".into(), alice_and_app().to_string())],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    let before = admin_path(&ctl).await;
    assert_eq!(
        before,
        "login=true no_valid_until=true connlimit=-1 no_password=true \
         dbs=app,postgres,template0,template1 roles=alice,cloud_admin app_owner=alice"
    );
    for (case, spec, code, pointer) in locking_specs() {
        let (status, body) = ctl
            .request("POST", "/configure", &configure_body(spec), None)
            .await;
        assert_eq!(status, 400, "{case}: {body}");
        let report: Value = serde_json::from_str(&body).unwrap();
        let found = report["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["code"] == code && d["severity"] == "error");
        let found = found.unwrap_or_else(|| panic!("{case}: no {code} in {body}"));
        assert_eq!(found["pointer"], pointer, "{case}: {body}");
        assert!(found["line"].as_u64().is_some(), "{case}: {body}");
        assert_eq!(ctl.get_json("/status").await["status"], "running", "{case}");
    }
    assert_eq!(admin_path(&ctl).await, before);
}

/// A spec that validates but fails in SQL: a database copied from a template that does not
/// exist (validation cannot know the catalog).
fn fails_at_apply() -> String {
    let mut failing = alice_and_app();
    failing["cluster"]["databases"] = json!([
        {"name": "app", "owner": "alice"},
        {"name": "copy", "owner": "alice",
         "options": [option("TEMPLATE", Some("no_such_template"))]}
    ]);
    configure_body(failing)
}

/// Starts a compute with `--linger linger`, waits for `running`, and fails it by a
/// `/configure` (500, `failed`); returns it with its postmaster's pid.
async fn failed_compute(linger: &str) -> (Ctl, i32) {
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-S".into(),
            "{dir}/spec.json".into(),
            "--linger".into(),
            linger.into(),
        ],
        files: vec![("spec.json".into(), alice_and_app().to_string())],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    let postmaster = ctl.postmaster_pid();
    let (code, body) = ctl
        .request("POST", "/configure", &fails_at_apply(), None)
        .await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("no_such_template"), "{body}");
    let status = ctl.get_json("/status").await;
    assert_eq!(status["status"], "failed", "{status}");
    (ctl, postmaster)
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_is_not_a_dead_end() {
    // `/terminate` from `failed` (long linger): 200, postgres stopped, exit 1 at once.
    let terminated = async {
        let (mut ctl, postmaster) = failed_compute("120s").await;
        // Alive, and not ready.
        for (probe, expect) in [("/healthz", 200), ("/readyz", 503)] {
            let (code, body) = ctl.request("GET", probe, "", None).await;
            assert_eq!(code, expect, "{probe}: {body}");
            assert!(body.contains(r#""status":"failed""#), "{probe}: {body}");
        }
        // A new spec is refused in `failed`, as upstream: the failed apply may have left the
        // catalog half-changed; the way on is a fresh start.
        let (code, body) = ctl
            .request("POST", "/configure", &configure_body(alice_and_app()), None)
            .await;
        assert_eq!(code, 412, "{body}");
        let started = std::time::Instant::now();
        let (code, body) = ctl
            .request("POST", "/terminate?mode=immediate", "", None)
            .await;
        assert_eq!((code, body.as_str()), (200, r#"{"lsn":null}"#));
        let exit = ctl.wait_exit(Duration::from_secs(20)).await;
        assert_eq!(exit.code(), Some(1), "{}", ctl.log());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the linger was not cut short"
        );
        assert!(!alive(postmaster), "postgres outlived compute_ctl");
        let left = processes_left(&ctl.pgdata.display().to_string()).await;
        assert!(left.is_empty(), "{left:?}");
    };
    // Left in `failed` (short linger): it says so for the linger time, then postgres is
    // stopped and compute_ctl exits 1 on its own.
    let lingered = async {
        let (mut ctl, postmaster) = failed_compute("3s").await;
        let exit = ctl.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(exit.code(), Some(1), "{}", ctl.log());
        assert!(!alive(postmaster), "postgres outlived compute_ctl");
        let left = processes_left(&ctl.pgdata.display().to_string()).await;
        assert!(left.is_empty(), "{left:?}");
        assert!(
            ctl.log()
                .contains("compute failed: postgres is stopped after the linger time"),
            "{}",
            ctl.log()
        );
    };
    tokio::join!(terminated, lingered);
}
