//! End-to-end tests of the `compute_ctl` binary against the real PostgreSQL 15 and the test
//! pageserver: standalone start, pre-launch and `/configure`, invalid specs, JWT, signals,
//! exit codes, failed starts and storage mode.

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::time::Duration;

use harness::{
    Args, Ctl, eventually, fixture, processes_left, processes_mentioning, read_pid_file, repo_file,
};
use serde_json::json;

fn spec(roles: &[&str], dbs: &[(&str, &str)], work_mem: &str) -> serde_json::Value {
    json!({
        "format_version": 1.0,
        "cluster": {
            "roles": roles.iter().map(|r| json!({"name": r, "encrypted_password": null, "options": null})).collect::<Vec<_>>(),
            "databases": dbs.iter().map(|(n, o)| json!({"name": n, "owner": o})).collect::<Vec<_>>(),
            "settings": [
                {"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"},
                {"name": "fsync", "value": "off", "vartype": "bool"},
                {"name": "work_mem", "value": work_mem, "vartype": "string"}
            ]
        }
    })
}

async fn role_names(ctl: &Ctl) -> Vec<String> {
    let client = ctl.pg("postgres").await;
    client
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn show(ctl: &Ctl, setting: &str) -> String {
    let client = ctl.pg("postgres").await;
    client
        .query_one(&format!("SHOW {setting}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_spec_file_runs_and_sigterm_exits_cleanly() {
    let example = repo_file("specs/examples/standalone.json");
    let mut ctl = Ctl::start(Args {
        extra: vec!["-S".into(), example.display().to_string()],
        ..Args::default()
    });
    let status = ctl.wait_status("running").await;
    assert!(status["error"].is_null(), "{status}");
    let ops = status["last_apply"]["operations"].as_array().unwrap();
    assert!(
        !ops.is_empty() && ops.iter().all(|o| o["result"] == "ok"),
        "{status}"
    );

    let roles = role_names(&ctl).await;
    for role in ["alice", "cloud_admin"] {
        assert!(roles.contains(&role.to_owned()), "{roles:?}");
    }
    let listing = ctl.get_json("/dbs_and_roles").await;
    assert!(
        listing["databases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "app" && d["owner"] == "alice"),
        "{listing}"
    );
    assert!(
        listing["roles"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["encrypted_password"].is_null()),
        "{listing}"
    );
    assert!(!listing.to_string().contains("SCRAM-SHA-256"), "{listing}");

    let metrics = ctl.get_json("/metrics.json").await;
    assert!(
        metrics["total_startup_ms"].as_u64().unwrap() > 0,
        "{metrics}"
    );
    assert_phases(
        &metrics,
        &[
            "launch",
            "spec",
            "http",
            "prepare",
            "initdb",
            "config",
            "start_postgres",
            "catalog",
            "running",
        ],
    );
    assert!(
        metrics["start_postgres_ms"].as_u64().is_some() && metrics["basebackup_ms"] == 0,
        "{metrics}"
    );
    let (code, text) = ctl.request("GET", "/metrics", "", None).await;
    assert_eq!(code, 200);
    assert!(
        text.contains(r#"compute_ctl_up{build_tag="latest",status="running"} 1"#),
        "{text}"
    );
    let (code, body) = ctl.request("POST", "/check_writability", "", None).await;
    assert_eq!((code, body.as_str()), (200, "true"));
    // Vanilla PostgreSQL has no `neon` library: schema `neon` is made, the extension is not.
    let applied: Vec<String> = ctl.get_json("/status").await["last_apply"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operation"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        applied
            .iter()
            .any(|o| o.starts_with("schema \"neon\": create"))
            && !applied.iter().any(|o| o.starts_with("extension \"neon\"")),
        "{applied:?}"
    );
    // The reconciler made the table as upstream (an identity `id`); a basebackup may carry
    // the older shape (plain `id`, `updated_at` NOT NULL): the check writes to either.
    let admin = ctl.pg("postgres").await;
    let identity: String = admin
        .query_one(
            "SELECT attidentity::text FROM pg_catalog.pg_attribute \
             WHERE attrelid = 'public.health_check'::regclass AND attname = 'id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(identity, "d");
    admin
        .batch_execute(
            "DROP TABLE public.health_check;
             CREATE TABLE public.health_check (id integer PRIMARY KEY,
                 updated_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    let (code, body) = ctl.request("POST", "/check_writability", "", None).await;
    assert_eq!((code, body.as_str()), (200, "true"));
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM public.health_check WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    drop(admin);
    assert_eq!(ctl.request("GET", "/nope", "", None).await.0, 404);
    assert_eq!(ctl.request("POST", "/status", "", None).await.0, 405);
    assert!(ctl.get_json("/info").await["num_cpus"].as_u64().unwrap() >= 1);

    // The compute monitor: compute_ctl's own sessions do not count, a user's query does.
    assert!(ctl.get_json("/status").await["last_active"].is_null());
    ctl.pg("postgres")
        .await
        .batch_execute("CREATE ROLE watcher LOGIN")
        .await
        .unwrap();
    let (user, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=watcher dbname=postgres",
            ctl.pg_port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    user.batch_execute("SELECT pg_sleep(0.7)").await.unwrap();
    let status = ctl
        .wait_status_where("last_active set", |s| !s["last_active"].is_null())
        .await;
    assert!(
        status["last_active"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{status}"
    );
    assert!(
        status["activity_reason"]
            .as_str()
            .is_some_and(|r| r.ends_with("_backend")),
        "{status}"
    );
    drop(user);

    let pgdata = ctl.pgdata.display().to_string();
    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "{}", ctl.log());
    let left = processes_mentioning(&pgdata);
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(
        ctl.log().contains("postgres: ") || ctl.log().contains("database system is ready"),
        "postgres log lines are forwarded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prelaunch_configure_reconfigure_and_reject_invalid_spec() {
    let mut ctl = Ctl::start(Args::default());
    let status = ctl.wait_status("empty").await;
    assert!(status["tenant"].is_null());
    assert_eq!(
        ctl.request("POST", "/check_writability", "", None).await.0,
        412
    );

    let first = json!({"spec": spec(&["bob"], &[("bobdb", "bob")], "3MB"), "compute_ctl_config": {"jwks": {"keys": []}}});
    let (code, body) = ctl
        .request("POST", "/configure", &first.to_string(), None)
        .await;
    assert_eq!(code, 200, "{body}\n{}", ctl.log());
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"],
        "running"
    );
    let metrics = ctl.get_json("/metrics.json").await;
    assert!(
        metrics["wait_for_spec_ms"].as_u64().unwrap() > 0,
        "{metrics}"
    );
    assert!(role_names(&ctl).await.contains(&"bob".to_owned()));
    assert_eq!(show(&ctl, "work_mem").await, "3MB");

    // Changed roles and a changed setting; a field compute_ctl does not act on is named in a
    // warning, never silently ignored.
    let mut second_spec = spec(&["bob", "carol"], &[("bobdb", "bob")], "5MB");
    second_spec["autoprewarm"] = json!(true);
    let second = json!({"spec": second_spec.clone(), "compute_ctl_config": {"jwks": {"keys": []}}});
    let (code, body) = ctl
        .request("POST", "/configure", &second.to_string(), None)
        .await;
    assert_eq!(code, 200, "{body}");
    let log = ctl.log();
    let warning = log
        .lines()
        .find(|l| l.contains("`autoprewarm` is not acted on"))
        .unwrap_or_else(|| panic!("no warning about autoprewarm in\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("/spec/autoprewarm"),
        "{warning}"
    );
    assert!(role_names(&ctl).await.contains(&"carol".to_owned()));
    let reloaded = eventually(Duration::from_secs(2), || async {
        (show(&ctl, "work_mem").await == "5MB").then_some(())
    })
    .await;
    assert!(
        reloaded.is_some(),
        "work_mem is {}",
        show(&ctl, "work_mem").await
    );

    // A spec larger than axum's default body limit (2 MB) is taken, as `-S` takes it.
    let mut large_spec = second_spec.clone();
    large_spec["x_padding"] = json!("p".repeat(3 << 20));
    let large = json!({"spec": large_spec, "compute_ctl_config": {"jwks": {"keys": []}}});
    let (code, body) = ctl
        .request("POST", "/configure", &large.to_string(), None)
        .await;
    assert_eq!(code, 200, "{}", &body[..body.len().min(500)]);

    // Over validation's 64 MiB limit: 413 with the JSON error body.
    let (code, body) = ctl
        .request("POST", "/configure", &"x".repeat((64 << 20) + 1), None)
        .await;
    assert_eq!(code, 413);
    let refusal: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        refusal["error"].as_str().unwrap().contains("length limit"),
        "{body}"
    );

    // An invalid spec: located diagnostics, nothing changed. A document of the wrong shape
    // (a JSON type error) is 422 as upstream's JSON extractor answers; a spec that breaks a
    // rule (a database owned by an unknown role) is 400.
    let conf_before = std::fs::read(ctl.pgdata.join("postgresql.conf")).unwrap();
    let wrong_shape = r#"{"spec": {"format_version": 1.0, "cluster": {"roles": [{"name": 5}], "databases": []}},
                      "compute_ctl_config": {"jwks": {"keys": []}}}"#;
    let breaks_a_rule = r#"{"spec": {"format_version": 1.0, "cluster": {"roles": [], "databases": [{"name": "d", "owner": "nobody"}]}},
                      "compute_ctl_config": {"jwks": {"keys": []}}}"#;
    for (invalid, status) in [(wrong_shape, 422), (breaks_a_rule, 400)] {
        let (code, body) = ctl.request("POST", "/configure", invalid, None).await;
        assert_eq!(code, status, "{body}");
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            !report["diagnostics"].as_array().unwrap().is_empty(),
            "{body}"
        );
    }
    assert_eq!(ctl.get_json("/status").await["status"], "running");
    assert_eq!(
        std::fs::read(ctl.pgdata.join("postgresql.conf")).unwrap(),
        conf_before
    );
    assert_eq!(show(&ctl, "work_mem").await, "5MB");
    let (code, _) = ctl.request("POST", "/configure", "not json", None).await;
    assert_eq!(code, 400);

    // Two concurrent calls (a retry, say): the second, made while the first stops the
    // compute, waits and gets the same answer (201 if the stop was already over), never 412.
    let second_call = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        ctl.request("POST", "/terminate", "", None).await
    };
    let (first, second) = tokio::join!(ctl.request("POST", "/terminate", "", None), second_call);
    assert_eq!((first.0, first.1.as_str()), (200, r#"{"lsn":null}"#));
    assert!(matches!(second.0, 200 | 201), "{second:?}");
    assert_eq!(second.1, first.1);
    let exit = ctl.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "{}", ctl.log());
}

/// Two `/terminate` calls from `running` while the stop takes a while (the postmaster
/// SIGSTOPped until 1 s after the second call went out): the second, sent once `/status` says `termination_pending_fast`,
/// waits with the first and gets the identical answer, code and body. Prints both times.
#[tokio::test(flavor = "multi_thread")]
async fn a_terminate_during_a_pending_stop_gets_the_same_answer() {
    let mut ctl = Ctl::start_running(&spec(&[], &[], "4MB"), &[]).await;
    let postmaster = nix::unistd::Pid::from_raw(ctl.postmaster_pid());
    nix::sys::signal::kill(postmaster, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let started = std::time::Instant::now();
    let (second_is_sent, sent) = tokio::sync::oneshot::channel();
    let first = async {
        let answer = ctl.request("POST", "/terminate", "", None).await;
        (answer, started.elapsed())
    };
    let second = async {
        let pending = eventually(Duration::from_secs(10), || async {
            let status = ctl.get_json("/status").await;
            (status["status"] == "termination_pending_fast").then_some(())
        })
        .await;
        assert!(pending.is_some(), "the first call did not start the stop");
        let sent = started.elapsed();
        let answer = async {
            let answer = ctl.request("POST", "/terminate", "", None).await;
            (answer, started.elapsed())
        };
        let announce = async {
            // The request is on its way once its future has been polled for a moment.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = second_is_sent.send(());
        };
        let ((answer, took), ()) = tokio::join!(answer, announce);
        (answer, sent, took)
    };
    // The postmaster resumes 1 s after the second call went out, whatever the load.
    let resume = async {
        let _ = sent.await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        nix::sys::signal::kill(postmaster, nix::sys::signal::Signal::SIGCONT).unwrap();
    };
    let ((first, first_took), (second, second_sent, second_took), ()) =
        tokio::join!(first, second, resume);
    println!(
        "concurrent /terminate: first answered at {first_took:?}, second sent at \
         {second_sent:?} and answered at {second_took:?}"
    );
    assert_eq!((first.0, first.1.as_str()), (200, r#"{"lsn":null}"#));
    assert_eq!(second, first);
    assert!(
        second_took >= second_sent + Duration::from_secs(1),
        "the second call did not wait for the stop: sent at {second_sent:?}, answered at \
         {second_took:?}"
    );
    let exit = ctl.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "{}", ctl.log());
}

/// `/configure` with a body that is not UTF-8 (a spec whose role name has a 0xff byte):
/// 400 with the JSON `{"error"}` body naming the offset, and the compute stays `empty`.
#[tokio::test(flavor = "multi_thread")]
async fn a_configure_body_that_is_not_utf8_is_a_json_400() {
    let mut ctl = Ctl::start(Args::default());
    ctl.wait_status("empty").await;
    let body =
        b"{\"spec\": {\"format_version\": 1.0, \"cluster\": {\"roles\": [{\"name\": \"\xff\"}]}}}";
    let (code, headers, answer) = harness::http_request_bytes(
        &format!("127.0.0.1:{}", ctl.http_port),
        "POST",
        "/configure",
        Some("application/json"),
        body.to_vec().into(),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(code, 400, "{answer}");
    assert_eq!(headers["content-type"], "application/json");
    let offset = body.iter().position(|b| *b == 0xff).unwrap();
    let expected = format!("request body is not UTF-8 (invalid byte at offset {offset})");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&answer).unwrap(),
        json!({ "error": expected })
    );
    assert_eq!(ctl.get_json("/status").await["status"], "empty");
}

#[tokio::test(flavor = "multi_thread")]
async fn terminate_works_from_empty() {
    let mut ctl = Ctl::start(Args::default());
    ctl.wait_status("empty").await;
    assert_eq!(
        ctl.request("POST", "/terminate?mode=bogus", "", None)
            .await
            .0,
        400
    );
    let (code, body) = ctl
        .request("POST", "/terminate?mode=immediate", "", None)
        .await;
    assert_eq!((code, body.as_str()), (200, r#"{"lsn":null}"#));
    assert_eq!(ctl.wait_exit(Duration::from_secs(10)).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_postmaster_gives_its_exit_code() {
    let spec = spec(&[], &[], "4MB").to_string();
    let mut ctl = Ctl::start(Args {
        extra: vec!["-s".into(), spec],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    let pid = ctl.postmaster_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(128 + 9), "{}", ctl.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_start_reports_lingers_and_exits_1() {
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-S".into(),
            repo_file("specs/examples/standalone.json")
                .display()
                .to_string(),
            "--linger".into(),
            "2s".into(),
        ],
        pgdata_setup: Some(Box::new(|pgdata| {
            std::fs::create_dir_all(pgdata).unwrap();
            std::fs::write(pgdata.join("precious.txt"), "keep").unwrap();
        })),
        ..Args::default()
    });
    let status = ctl.wait_status("failed").await;
    assert_eq!(status["status"], "failed", "{}", ctl.log());
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("holds files PostgreSQL and compute_ctl do not make (precious.txt)"),
        "{status}"
    );
    assert_eq!(
        std::fs::read_to_string(ctl.pgdata.join("precious.txt")).unwrap(),
        "keep"
    );
    assert_eq!(ctl.wait_exit(Duration::from_secs(20)).await.code(), Some(1));
}

use harness::fixture_token as token;

#[tokio::test(flavor = "multi_thread")]
async fn jwt_accepted_rejected_and_wrong_compute() {
    let jwks: serde_json::Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let config = json!({"spec": spec(&[], &[], "4MB"), "compute_ctl_config": {"jwks": jwks}});
    let ctl = Ctl::start(Args {
        extra: vec![
            "-c".into(),
            "{dir}/config.json".into(),
            "-i".into(),
            "compute-1".into(),
        ],
        files: vec![("config.json".into(), config.to_string())],
        ..Args::default()
    });
    // /metrics is never authenticated: wait through it.
    ctl.wait_metrics_status("running").await;
    let good = token("ed25519.pem", json!({"compute_id": "compute-1"}));
    let (code, body) = ctl.request("GET", "/status", "", Some(&good)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"],
        "running"
    );
    assert_eq!(ctl.request("GET", "/status", "", None).await.0, 400);
    assert_eq!(
        ctl.request("GET", "/status", "", Some("garbage")).await.0,
        400
    );
    let forged = token("ed25519-other.pem", json!({"compute_id": "compute-1"}));
    assert_eq!(
        ctl.request("GET", "/status", "", Some(&forged)).await.0,
        401
    );
    let other = token("ed25519.pem", json!({"compute_id": "compute-2"}));
    assert_eq!(ctl.request("GET", "/status", "", Some(&other)).await.0, 403);
    let admin = token(
        "ed25519.pem",
        json!({"scope": "compute_ctl:admin", "aud": ["compute"]}),
    );
    assert_eq!(
        ctl.request("GET", "/metrics.json", "", Some(&admin))
            .await
            .0,
        200
    );
    assert_eq!(
        ctl.request("POST", "/terminate", "", Some(&other)).await.0,
        403
    );
    let (code, body) = ctl.request("GET", "/status", "", Some(&good)).await;
    assert_eq!(code, 200);
    assert!(
        body.contains(r#""status":"running""#),
        "refused requests change nothing: {body}"
    );
}

fn storage_spec(pageserver: &str, safekeeper: &str, token: &str) -> String {
    json!({
        "safekeeper_connstrings": [safekeeper],
        "format_version": 1.0,
        "tenant_id": "b0554b632bd4d547a63b86c3630317e8",
        "timeline_id": "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d",
        "pageserver_connstring": pageserver,
        "storage_auth_token": token,
        "cluster": {
            "roles": [{"name": "dora", "encrypted_password": null, "options": null}],
            "databases": [],
            "settings": [{"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"}]
        }
    })
    .to_string()
}

/// A safekeeper whose commit and flush LSNs agree: the fast path gives the LSN.
async fn safekeeper(token: Option<&str>) -> neon_test_servers::TestSafekeeper {
    let mut config = neon_test_servers::SafekeeperConfig::new(
        "b0554b632bd4d547a63b86c3630317e8".parse().unwrap(),
        "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d".parse().unwrap(),
        "0/16B3748".parse().unwrap(),
    );
    config.token = token.map(str::to_owned);
    neon_test_servers::TestSafekeeper::start(config)
        .await
        .unwrap()
}

async fn pageserver(fault: Option<neon_test_servers::Fault>) -> neon_test_servers::TestPageserver {
    let mut config = harness::pageserver_config("compute-ctl-tests", "storage-token").await;
    config.fault = fault;
    neon_test_servers::TestPageserver::start(config)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_mode_starts_from_the_pageserver_basebackup() {
    let ps = pageserver(None).await;
    let sk = safekeeper(Some("storage-token")).await;
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-s".into(),
            storage_spec(&ps.connstr(), &sk.addr(), "storage-token"),
        ],
        ..Args::default()
    });
    let status = ctl.wait_status("running").await;
    assert_eq!(status["tenant"], "b0554b632bd4d547a63b86c3630317e8");
    // A token on the command line is readable by every local user: said at start.
    assert!(
        ctl.log()
            .contains("which every local user can read in /proc/<pid>/cmdline"),
        "{}",
        ctl.log()
    );
    assert_eq!(status["timeline"], "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d");
    let metrics = ctl.get_json("/metrics.json").await;
    assert_phases(
        &metrics,
        &[
            "launch",
            "spec",
            "http",
            "prepare",
            "sync_safekeepers",
            "basebackup",
            "config",
            "start_postgres",
            "catalog",
            "running",
        ],
    );
    assert!(
        ctl.log().contains("startup phases from launch"),
        "{}",
        ctl.log()
    );
    assert!(
        metrics["basebackup_bytes"].as_u64().unwrap() > 0,
        "{metrics}"
    );
    assert!(
        metrics["pageserver_connect_micros"].as_u64().unwrap() > 0,
        "{metrics}"
    );
    let client = ctl.pg("postgres").await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM fixture", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1000);
    assert!(role_names(&ctl).await.contains(&"dora".to_owned()));
    let conf = std::fs::read_to_string(ctl.pgdata.join("postgresql.conf")).unwrap();
    assert!(conf.contains("neon.tenant_id"), "{conf}");
    let hba = std::fs::read_to_string(ctl.pgdata.join("pg_hba.conf")).unwrap();
    assert!(hba.contains(pg_config::HBA_ACCESS_LINE), "{hba}");
    // The token reaches postgres in its environment, not through compute_ctl's.
    let environ = std::fs::read(format!("/proc/{}/environ", ctl.postmaster_pid())).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"NEON_AUTH_TOKEN=storage-token")
    );
    assert!(
        !ctl.log().contains("storage-token"),
        "the token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pageserver_fault_fails_the_compute_with_the_error() {
    let ps = pageserver(Some(neon_test_servers::Fault::DotDot)).await;
    let sk = safekeeper(Some("storage-token")).await;
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-s".into(),
            storage_spec(&ps.connstr(), &sk.addr(), "storage-token"),
            "--linger".into(),
            "1s".into(),
        ],
        ..Args::default()
    });
    let status = ctl.wait_status("failed").await;
    assert_eq!(status["status"], "failed", "{}", ctl.log());
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("fetch basebackup"), "{error}");
    assert_eq!(ctl.wait_exit(Duration::from_secs(20)).await.code(), Some(1));

    // A wrong token is refused by the pageserver: failed too, with the reason.
    let ps = pageserver(None).await;
    let sk = safekeeper(None).await;
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-s".into(),
            storage_spec(&ps.connstr(), &sk.addr(), "wrong"),
        ],
        ..Args::default()
    });
    let status = ctl.wait_status("failed").await;
    assert_eq!(status["status"], "failed", "{}", ctl.log());
    assert!(
        status["error"].as_str().unwrap().contains("authentication"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_sync_safekeepers_kills_the_child() {
    let ps = pageserver(None).await;
    // commit != flush: the fast path does not apply, the full sync runs (and hangs).
    let mut config = neon_test_servers::SafekeeperConfig::new(
        "b0554b632bd4d547a63b86c3630317e8".parse().unwrap(),
        "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d".parse().unwrap(),
        "0/16B3748".parse().unwrap(),
    );
    config.commit_lsn = "0/16B0000".parse().unwrap();
    let sk = neon_test_servers::TestSafekeeper::start(config)
        .await
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let pgbin = harness::hanging_sync_bindir(scratch.path());
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-s".into(),
            storage_spec(&ps.connstr(), &sk.addr(), "storage-token"),
            "-b".into(),
            pgbin.display().to_string(),
        ],
        ..Args::default()
    });
    let pidfile = scratch.path().join("sync.pid");
    let sync_pid = read_pid_file(&pidfile).await;
    assert!(std::path::Path::new(&format!("/proc/{sync_pid}")).exists());
    assert_eq!(ctl.get_json("/status").await["status"], "init");

    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(exit.code(), Some(0), "{}", ctl.log());
    // The child is gone (reaped, not a zombie left to init).
    let alive = std::fs::read_to_string(format!("/proc/{sync_pid}/stat")).ok();
    assert!(
        alive.is_none(),
        "sync-safekeepers child survived: {alive:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn second_signal_escalates_to_immediate_shutdown() {
    let spec = spec(&[], &[], "4MB").to_string();
    let mut ctl = Ctl::start(Args {
        extra: vec!["-s".into(), spec],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    // A stopped postmaster cannot finish the fast shutdown before the second signal.
    let postmaster = nix::unistd::Pid::from_raw(ctl.postmaster_pid());
    nix::sys::signal::kill(postmaster, nix::sys::signal::Signal::SIGSTOP).unwrap();
    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    ctl.wait_log("signal=SIGINT").await;
    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    ctl.wait_log("signal=SIGQUIT").await;
    nix::sys::signal::kill(postmaster, nix::sys::signal::Signal::SIGCONT).unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(20)).await;
    let log = ctl.log();
    assert!(log.contains("mode=Immediate signals=2"), "{log}");
    assert!(log.contains("signal=SIGQUIT"), "{log}");
    assert!(exit.code().is_some(), "{log}");
    assert!(processes_mentioning(&ctl.pgdata.display().to_string()).is_empty());
}

/// A running compute whose postmaster is SIGSTOPped for good, then one SIGTERM to
/// compute_ctl; returns it and when the SIGTERM was sent.
async fn sigterm_with_the_postmaster_stopped() -> (Ctl, std::time::Instant) {
    let spec = spec(&[], &[], "4MB").to_string();
    let mut ctl = Ctl::start(Args {
        extra: vec!["-s".into(), spec],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    let postmaster = nix::unistd::Pid::from_raw(ctl.postmaster_pid());
    nix::sys::signal::kill(postmaster, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let started = std::time::Instant::now();
    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    (ctl, started)
}

/// A postmaster that never stops (SIGSTOPped for good): two SIGTERMs still end compute_ctl
/// within a bound (fast, immediate, then SIGKILL), and nothing of the compute is left.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_postmaster_is_killed_and_compute_ctl_exits_within_a_bound() {
    let (mut ctl, started) = sigterm_with_the_postmaster_stopped().await;
    ctl.wait_log("signal=SIGINT").await;
    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(15)).await;
    let log = ctl.log();
    assert!(log.contains("signal=SIGQUIT"), "{log}");
    assert!(exit.code().is_some(), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}\n{log}",
        started.elapsed()
    );
    assert!(
        processes_left(&ctl.pgdata.display().to_string())
            .await
            .is_empty()
    );
}

/// A postmaster that never stops (SIGSTOPped for good) and a single SIGTERM: the fast stop
/// escalates on its own (SIGQUIT after 5 s, SIGKILL 2 s later), compute_ctl exits within a
/// bound and nothing of the compute is left. Prints the time.
#[tokio::test(flavor = "multi_thread")]
async fn a_single_sigterm_ends_a_hung_postmaster_within_a_bound() {
    let (mut ctl, started) = sigterm_with_the_postmaster_stopped().await;
    let exit = ctl.wait_exit(Duration::from_secs(20)).await;
    let took = started.elapsed();
    println!("a single SIGTERM with the postmaster stopped: compute_ctl exited in {took:?}");
    let log = ctl.log();
    assert!(log.contains("signal=SIGQUIT"), "{log}");
    assert!(log.contains("signal=SIGKILL"), "{log}");
    assert!(exit.code().is_some(), "{log}");
    assert!(took >= Duration::from_secs(7), "{took:?}\n{log}");
    assert!(took < Duration::from_secs(12), "{took:?}\n{log}");
    assert!(
        processes_left(&ctl.pgdata.display().to_string())
            .await
            .is_empty()
    );
}

/// A control plane answering the spec request with `answer`, recording the Authorization
/// header it got.
async fn control_plane(
    answer: serde_json::Value,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let router = axum::Router::new().route(
        "/compute/api/v2/computes/{id}/spec",
        axum::routing::get(
            move |axum::extract::Path(id): axum::extract::Path<String>,
                  headers: axum::http::HeaderMap| {
                let recorded = recorded.clone();
                let answer = answer.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    recorded.lock().unwrap().push(format!("{id} {auth}"));
                    axum::Json(answer)
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn spec_from_the_control_plane_empty_then_attached() {
    // The token is given to the child only (Args::env), never set in this process.
    let (port, seen) = control_plane(
        json!({"status": "empty", "spec": null, "compute_ctl_config": {"jwks": {"keys": []}}}),
    )
    .await;
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-p".into(),
            format!("http://127.0.0.1:{port}"),
            "-i".into(),
            "compute-7".into(),
        ],
        env: vec![("NEON_CONTROL_PLANE_TOKEN".into(), "cp-token".into())],
        ..Args::default()
    });
    ctl.wait_status("empty").await;
    // `empty` is also the status before the request goes out: wait for the request itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["compute-7 Bearer cp-token"]
    );
    // Still waiting for a spec after the control plane said `empty`.
    assert_eq!(ctl.get_json("/status").await["status"], "empty");

    let (port, _) = control_plane(json!({"status": "attached", "spec": spec(&["erin"], &[], "4MB"), "compute_ctl_config": {"jwks": {"keys": []}}})).await;
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-p".into(),
            format!("http://127.0.0.1:{port}"),
            "-i".into(),
            "compute-8".into(),
        ],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    assert!(role_names(&ctl).await.contains(&"erin".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_refusing_to_start_fails_with_its_message() {
    let mut bad = spec(&[], &[], "4MB");
    bad["cluster"]["settings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "shared_buffers", "value": "lots", "vartype": "string"}));
    let mut ctl = Ctl::start(Args {
        extra: vec!["-s".into(), bad.to_string()],
        ..Args::default()
    });
    let status = ctl.wait_status("failed").await;
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("start postgres") && error.contains("shared_buffers"),
        "{status}\n{}",
        ctl.log()
    );
    assert_eq!(ctl.wait_exit(Duration::from_secs(20)).await.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn vm_informant_is_started_and_stopped_at_shutdown() {
    let scratch = tempfile::tempdir().unwrap();
    let informant = scratch.path().join("vm-informant");
    let pidfile = scratch.path().join("informant.pid");
    std::fs::write(
        &informant,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 600\n",
            pidfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &informant,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut ctl = Ctl::start(Args {
        extra: vec!["--vm-informant".into(), informant.display().to_string()],
        ..Args::default()
    });
    ctl.wait_status("empty").await;
    let pid = read_pid_file(&pidfile).await;
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let (code, _) = ctl.request("POST", "/terminate", "", None).await;
    assert_eq!(code, 200);
    assert_eq!(ctl.wait_exit(Duration::from_secs(20)).await.code(), Some(0));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/stat")).exists(),
        "vm-informant survived"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_startup_stops_everything_started() {
    let spec = spec(&["frank"], &[], "4MB").to_string();
    let mut ctl = Ctl::start(Args {
        extra: vec!["-s".into(), spec],
        ..Args::default()
    });
    ctl.wait_log("to=\"init\"").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(exit.code(), Some(0), "{}", ctl.log());
    let left = processes_left(&ctl.pgdata.display().to_string()).await;
    assert!(left.is_empty(), "processes left: {left:?}\n{}", ctl.log());
    assert!(ctl.log().contains("startup interrupted"), "{}", ctl.log());
}

/// The spec feature `activity_monitor_experimental` (upstream's) makes the monitor count the
/// `pg_stat_database` session counters: a session shorter than a check interval, by
/// compute_ctl's own user (whose backends never count), is activity with the feature and
/// nothing without it.
#[tokio::test(flavor = "multi_thread")]
async fn activity_monitor_experimental_counts_short_sessions() {
    for feature in [true, false] {
        let mut spec = spec(&["gina"], &[("gina_db", "gina")], "4MB");
        if feature {
            spec["features"] = json!(["activity_monitor_experimental"]);
        }
        let mut ctl = Ctl::start(Args {
            extra: vec!["-s".into(), spec.to_string()],
            ..Args::default()
        });
        ctl.wait_status("running").await;
        // Let the monitor take its first look before the short session.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let client = ctl.pg("gina_db").await;
        client.simple_query("SELECT 1").await.unwrap();
        drop(client);
        let seen = eventually(Duration::from_secs(3), || async {
            let status = ctl.get_json("/status").await;
            (!status["last_active"].is_null()).then_some(status)
        })
        .await;
        match (feature, seen) {
            (true, Some(status)) => assert_eq!(status["activity_reason"], "database_counters"),
            (false, None) => {}
            (feature, seen) => panic!("feature {feature}: {seen:?}\n{}", ctl.log()),
        }
    }
}

/// `startup_phases` of `/metrics.json` names `expected` in order, each phase beginning where
/// the previous one ended, from launch (0) to `running`, covering at least
/// `total_startup_ms` (which starts later, once the spec is read).
fn assert_phases(metrics: &serde_json::Value, expected: &[&str]) {
    let phases = metrics["startup_phases"]
        .as_array()
        .expect("startup_phases");
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(names, expected, "{metrics}");
    let mut end = 0;
    for phase in phases {
        assert_eq!(phase["start_us"].as_u64().unwrap(), end, "{metrics}");
        end += phase["duration_us"].as_u64().unwrap();
    }
    let total_ms = metrics["total_startup_ms"].as_u64().unwrap();
    assert!(
        end / 1000 >= total_ms,
        "{end} us < {total_ms} ms: {metrics}"
    );
    let initdb_or_basebackup = phases
        .iter()
        .find(|p| p["phase"] == "initdb" || p["phase"] == "basebackup")
        .unwrap();
    assert!(
        initdb_or_basebackup["duration_us"].as_u64().unwrap() > 0,
        "{metrics}"
    );
}
