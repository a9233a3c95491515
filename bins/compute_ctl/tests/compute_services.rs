//! The services beside the compute, end to end with the real `compute_ctl` binary and real
//! PostgreSQL 15: Debian's pgbouncer 1.18 (`/usr/sbin/pgbouncer`, run as the Postgres user),
//! its settings written from the spec and made live by `RELOAD` on its admin console; and
//! local_proxy's config file and SIGHUP, with a stand-in process of ours holding the pid
//! file's lock (local_proxy is a Neon binary).

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use harness::{Args, Ctl, eventually, processes_left, processes_mentioning};
use serde_json::json;

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A value pgbouncer must read back exactly: quotes, comment characters, `;`, `=`, `$`, `%`,
/// a tab and non-ASCII text (pgbouncer's ini format has no quoting).
const HOSTILE: &str = "#'; DROP TABLE x; -- \"name\"\t$$ %I a=b [pgbouncer] 🐘";

/// A pgbouncer.ini whose `[pgbouncer]` section the spec's settings go into: listening on
/// `port`, the compute's postgres as database `postgres`, trust auth, no pid or log file.
fn pgbouncer_ini(port: u16) -> String {
    format!(
        "\
;; written by the test
[databases]
postgres = host=127.0.0.1 port={{pg_port}} dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {{dir}}/userlist.txt
admin_users = postgres
default_pool_size = 1
; a comment kept
logfile =
pidfile =
"
    )
}

const USERLIST: &str = "\"postgres\" \"\"\n\"cloud_admin\" \"\"\n";

fn spec(pgbouncer: serde_json::Value, local_proxy: Option<serde_json::Value>) -> serde_json::Value {
    json!({
        "format_version": 1.0,
        "cluster": {
            "roles": [], "databases": [],
            "settings": [
                {"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"},
                {"name": "fsync", "value": "off", "vartype": "bool"}
            ]
        },
        "pgbouncer_settings": pgbouncer,
        "local_proxy_config": local_proxy,
    })
}

fn configure_body(spec: serde_json::Value) -> String {
    json!({"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}}).to_string()
}

async fn connect(connstr: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(connstr, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// `SHOW CONFIG` on the admin console: key → value.
async fn show_config(port: u16) -> Option<BTreeMap<String, String>> {
    let admin = connect(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=pgbouncer"
    ))
    .await
    .ok()?;
    let rows = admin.simple_query("SHOW CONFIG").await.ok()?;
    Some(
        rows.iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some((
                    row.get(0)?.to_owned(),
                    row.get(1).unwrap_or_default().to_owned(),
                )),
                _ => None,
            })
            .collect(),
    )
}

/// Waits (up to 20 s) until pgbouncer's live config has every `want`ed value.
async fn wait_config(ctl: &Ctl, port: u16, want: &[(&str, &str)]) -> BTreeMap<String, String> {
    let live = eventually(Duration::from_secs(20), || async {
        let config = show_config(port).await?;
        want.iter()
            .all(|(k, v)| config.get(*k).map(String::as_str) == Some(*v))
            .then_some(config)
    })
    .await;
    match live {
        Some(config) => config,
        None => panic!(
            "pgbouncer config never had {want:?}: {:?}\n{}",
            show_config(port).await,
            ctl.log()
        ),
    }
}

/// The pids of processes running pgbouncer on `ini`.
fn pgbouncer_pids(ini: &Path) -> Vec<String> {
    processes_mentioning(&format!("{PGBOUNCER} {}", ini.display()))
        .into_iter()
        .map(|p| p.split(':').next().unwrap().to_owned())
        .collect()
}

/// local_proxy's stand-in: `flock` holds `dir/pid` while a shell writes its pid there and
/// appends a line to `dir/hups` on each SIGHUP (the trap set before the pid is written: a
/// SIGHUP in between would end the shell).
struct ProxyStandIn {
    flock: Child,
    dir: std::path::PathBuf,
}

impl ProxyStandIn {
    async fn start(dir: &Path) -> ProxyStandIn {
        std::fs::create_dir_all(dir).unwrap();
        let script = format!(
            "trap 'echo hup >> {dir}/hups' HUP; echo $$ > {dir}/pid; \
             while :; do sleep 0.05; done",
            dir = dir.display()
        );
        let flock = Command::new("flock")
            .arg("--exclusive")
            .arg(dir.join("pid"))
            .args(["sh", "-c", &script])
            .spawn()
            .unwrap();
        harness::read_pid_file(&dir.join("pid")).await;
        ProxyStandIn {
            flock,
            dir: dir.to_owned(),
        }
    }

    fn hups(&self) -> usize {
        std::fs::read_to_string(self.dir.join("hups"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    async fn wait_hups(&self, n: usize) {
        let seen = eventually(Duration::from_secs(5), || async {
            (self.hups() >= n).then_some(())
        })
        .await;
        assert!(seen.is_some(), "{} SIGHUPs, want {n}", self.hups());
    }
}

impl Drop for ProxyStandIn {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let pid = nix::unistd::Pid::from_raw(pid.trim().parse().unwrap_or(0));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.flock.kill();
        let _ = self.flock.wait();
    }
}

/// The JSON local_proxy finds: the spec's config, pretty-printed.
fn assert_local_proxy_config(dir: &Path, want: &serde_json::Value) {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(text.starts_with("{\n  \"jwks\": ["), "{text}");
    let got: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(&got, want);
}

/// compute_ctl starts pgbouncer with the spec's settings in its ini (a hostile value read back
/// exactly), a client reaches postgres through it, `/configure` makes a changed value live by
/// `RELOAD` in the same process, a value pgbouncer could not read back is refused and changes
/// nothing, local_proxy's stand-in gets its config and a SIGHUP each time, and compute_ctl's
/// shutdown leaves no pgbouncer behind.
#[tokio::test(flavor = "multi_thread")]
async fn supervised_pgbouncer_and_local_proxy_follow_the_spec() {
    let port = test_postgres::free_port();
    let proxy_dir = tempfile::tempdir().unwrap();
    let proxy = ProxyStandIn::start(proxy_dir.path()).await;
    let jwks = |url: &str| json!({"jwks": [{"id": "1", "role_names": ["app"], "jwks_url": url, "provider_name": "p"}]});
    let first = spec(
        json!({"default_pool_size": "7", "server_reset_query": HOSTILE}),
        Some(jwks("https://a.example/jwks")),
    );
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-S".into(),
            "{dir}/spec.json".into(),
            "--pgbouncer".into(),
            PGBOUNCER.into(),
            "--pgbouncer-ini".into(),
            "{dir}/pgbouncer.ini".into(),
            "--pgbouncer-connstr".into(),
            format!("host=127.0.0.1 port={port} user=postgres"),
            "--local-proxy-dir".into(),
            proxy_dir.path().display().to_string(),
        ],
        files: vec![
            ("spec.json".into(), first.to_string()),
            ("pgbouncer.ini".into(), pgbouncer_ini(port)),
            ("userlist.txt".into(), USERLIST.into()),
        ],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    let ini = ctl.dir.path().join("pgbouncer.ini");
    wait_config(
        &ctl,
        port,
        &[("default_pool_size", "7"), ("server_reset_query", HOSTILE)],
    )
    .await;
    let pids = pgbouncer_pids(&ini);
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert_local_proxy_config(proxy_dir.path(), &jwks("https://a.example/jwks"));
    proxy.wait_hups(1).await;

    // A client reaches the compute's postgres through pgbouncer.
    let client = connect(&format!(
        "host=127.0.0.1 port={port} user=cloud_admin dbname=postgres"
    ))
    .await
    .unwrap_or_else(|e| panic!("connect through pgbouncer: {e}\n{}", ctl.log()));
    let rows = client.simple_query("SHOW port").await.unwrap();
    let port_seen = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(port_seen, Some(ctl.pg_port.to_string()));
    drop(client);

    // A changed value is live after RELOAD, in the same pgbouncer.
    let second = spec(
        json!({"default_pool_size": "9", "server_reset_query": "DISCARD ALL"}),
        Some(jwks("https://b.example/jwks")),
    );
    let (code, body) = ctl
        .request("POST", "/configure", &configure_body(second), None)
        .await;
    assert_eq!(code, 200, "{body}");
    wait_config(
        &ctl,
        port,
        &[
            ("default_pool_size", "9"),
            ("server_reset_query", "DISCARD ALL"),
        ],
    )
    .await;
    assert_eq!(pgbouncer_pids(&ini), pids);
    let text = std::fs::read_to_string(&ini).unwrap();
    assert!(text.contains("\ndefault_pool_size = 9\n"), "{text}");
    assert!(text.contains("; a comment kept\n") && text.starts_with(";; written"));
    assert_eq!(text.matches("default_pool_size").count(), 1, "{text}");
    assert_local_proxy_config(proxy_dir.path(), &jwks("https://b.example/jwks"));
    proxy.wait_hups(2).await;

    // What pgbouncer cannot read back is refused before anything is written.
    for hostile in [
        json!({"max_client_conn": "100\nauth_type = any"}),
        json!({"default_pool_size": " 5"}),
        json!({"%include /etc/passwd": "x"}),
    ] {
        let (code, body) = ctl
            .request(
                "POST",
                "/configure",
                &configure_body(spec(hostile.clone(), None)),
                None,
            )
            .await;
        assert_eq!(code, 400, "{hostile}: {body}");
    }
    assert_eq!(std::fs::read_to_string(&ini).unwrap(), text);
    assert_eq!(
        show_config(port).await.unwrap()["default_pool_size"],
        "9",
        "{}",
        ctl.log()
    );

    // compute_ctl's shutdown stops the pgbouncer it started.
    let pid = ctl.pid();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit}\n{}", ctl.log());
    let left = processes_left(&format!("{PGBOUNCER} {}", ini.display())).await;
    assert!(left.is_empty(), "{left:?}\n{}", ctl.log());
    assert_eq!(proxy.hups(), 2);
}

/// A pgbouncer compute_ctl does not run: the settings are written and `RELOAD`ed on the
/// admin console given. An ini without a `[pgbouncer]` section is an error that is logged and
/// counted, not a failed compute (upstream's task panics).
#[tokio::test(flavor = "multi_thread")]
async fn external_pgbouncer_is_reloaded_and_a_broken_ini_is_not_fatal() {
    let port = test_postgres::free_port();
    let settings = json!({"max_client_conn": "77"});
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "--pgbouncer-ini".into(),
            "{dir}/pgbouncer.ini".into(),
            "--pgbouncer-connstr".into(),
            format!("host=127.0.0.1 port={port} user=postgres connect_timeout=1"),
        ],
        files: vec![
            ("pgbouncer.ini".into(), pgbouncer_ini(port)),
            ("userlist.txt".into(), USERLIST.into()),
        ],
        ..Args::default()
    });
    ctl.wait_status("empty").await;
    let ini = ctl.dir.path().join("pgbouncer.ini");
    test_postgres::chown_to_pg_user(ctl.dir.path()).unwrap();
    let mut pgbouncer = test_postgres::command_as_pg_user(PGBOUNCER)
        .unwrap()
        .arg(&ini)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = eventually(Duration::from_secs(10), || show_config(port)).await;
    assert_eq!(up.unwrap()["max_client_conn"], "100");

    let (code, body) = ctl
        .request(
            "POST",
            "/configure",
            &configure_body(spec(settings, None)),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    wait_config(&ctl, port, &[("max_client_conn", "77")]).await;
    let _ = pgbouncer.kill();
    let _ = pgbouncer.wait();
    drop(ctl);

    // No [pgbouncer] section: logged and counted; the compute runs.
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-S".into(),
            "{dir}/spec.json".into(),
            "--pgbouncer-ini".into(),
            "{dir}/broken.ini".into(),
        ],
        files: vec![
            (
                "spec.json".into(),
                spec(json!({"max_client_conn": "77"}), None).to_string(),
            ),
            ("broken.ini".into(), "[databases]\n".into()),
        ],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    ctl.wait_log("no [pgbouncer] section").await;
    let (_, metrics) = ctl.request("GET", "/metrics", "", None).await;
    assert!(
        metrics.contains(
            r#"compute_ctl_service_config_failed_total{service="pgbouncer",step="write"} 1"#
        ),
        "{metrics}"
    );
    assert_eq!(
        std::fs::read_to_string(ctl.dir.path().join("broken.ini")).unwrap(),
        "[databases]\n"
    );
}
