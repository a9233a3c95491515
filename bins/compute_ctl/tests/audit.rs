//! Audit logging end to end: compute_ctl with the real PostgreSQL 15 and Debian's pgaudit
//! and pgauditlogtofile. Levels `Log` and `Hipaa` are configured as upstream (settings,
//! extensions, the system database's `pgaudit.log`), users are audited and compute_ctl's own
//! statements are not; a compliance level without its collector, and an installation
//! without pgaudit, fail before the data directory is touched. rsyslog's config goes to the
//! test's temp dir and its restart is a command of the test: no system file is touched.

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::path::Path;
use std::time::Duration;

use harness::{Args, Ctl, eventually, processes_mentioning};
use serde_json::json;

const MD5: &str = "md5e0ad8bd7ebc4e6b5d4ccf2e2b1ea1d52";

fn spec(level: &str, extra: serde_json::Value) -> String {
    let mut spec = json!({
        "format_version": 1.0,
        "audit_log_level": level,
        "endpoint_id": "ep-audit",
        "project_id": "project-audit",
        "cluster": {
            "roles": [{"name": "alice", "encrypted_password": MD5, "options": null}],
            "databases": [{"name": "app", "owner": "alice"}],
            "settings": [
                {"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"},
                {"name": "fsync", "value": "off", "vartype": "bool"},
                {"name": "shared_preload_libraries", "value": "pg_stat_statements", "vartype": "string"}
            ]
        }
    });
    if let serde_json::Value::Object(extra) = extra {
        spec.as_object_mut().unwrap().extend(extra);
    }
    spec.to_string()
}

fn start(spec: String, extra: Vec<String>, env: Vec<(String, String)>) -> Ctl {
    let mut args = vec!["-S".to_owned(), "{dir}/spec.json".to_owned()];
    args.extend(extra);
    Ctl::start(Args {
        extra: args,
        files: vec![("spec.json".into(), spec)],
        env,
        ..Args::default()
    })
}

/// `SHOW setting` in database `app` (the system database has `pgaudit.log = 'none'`).
async fn show(ctl: &Ctl, setting: &str) -> String {
    ctl.pg("app")
        .await
        .query_one(&format!("SHOW {setting}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn single(ctl: &Ctl, db: &str, query: &str) -> String {
    ctl.pg(db).await.query_one(query, &[]).await.unwrap().get(0)
}

/// The system database's own settings, as `name=value` lines.
async fn postgres_db_settings(ctl: &Ctl) -> String {
    single(
        ctl,
        "postgres",
        "SELECT coalesce(string_agg(c, ' '), '') FROM pg_db_role_setting s, unnest(s.setconfig) c \
         WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = 'postgres')",
    )
    .await
}

async fn extensions(ctl: &Ctl) -> String {
    single(
        ctl,
        "postgres",
        "SELECT string_agg(extname || '@' || extnamespace::regnamespace::text, ',' ORDER BY extname) FROM pg_extension",
    )
    .await
}

/// The audit entries of `text` that mention `needle`: `AUDIT: SESSION,…` lines in the
/// server log, CSV lines with a `SESSION` (or `OBJECT`) class in pgauditlogtofile's files.
fn audited<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    let is_audit = |l: &str| {
        ["AUDIT:", ",SESSION,", ",OBJECT,"]
            .iter()
            .any(|m| l.contains(m))
    };
    text.lines()
        .filter(|l| is_audit(l) && l.contains(needle))
        .collect()
}

/// No statement of compute_ctl (roles with their password, databases, extensions, its
/// catalog reads) in `text`'s audit lines.
fn assert_compute_ctl_not_audited(text: &str) {
    for statement in [
        "CREATE ROLE",
        "ALTER ROLE",
        "CREATE DATABASE",
        "ALTER DATABASE",
        "CREATE EXTENSION",
        "CREATE SCHEMA",
        "health_check",
        "pg_authid",
        MD5,
    ] {
        let lines = audited(text, statement);
        assert!(lines.is_empty(), "{statement} audited: {lines:#?}");
    }
    assert!(!text.contains(MD5), "the password hash is in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn level_log_audits_users_and_not_compute_ctl() {
    let mut ctl = start(spec("Log", json!({})), vec![], vec![]);
    let status = ctl.wait_status("running").await;
    let applied = status["last_apply"]["operations"].to_string();
    assert!(
        applied.contains("extension \\\"pgaudit\\\": create: audit level set, not installed"),
        "{status}"
    );
    // Upstream's values for Log/Base.
    assert_eq!(show(&ctl, "pgaudit.log").await, "ddl,role");
    assert_eq!(show(&ctl, "pgaudit.log_catalog").await, "off");
    assert_eq!(
        show(&ctl, "shared_preload_libraries").await,
        "pg_stat_statements,pgaudit"
    );
    assert_eq!(
        extensions(&ctl).await,
        "pg_stat_statements@public,pgaudit@public,plpgsql@pg_catalog"
    );
    assert_eq!(postgres_db_settings(&ctl).await, "pgaudit.log=none");
    // A user's DDL in a spec database is audited, in the server log (postgres' stderr).
    let app = ctl.pg("app").await;
    app.batch_execute("CREATE TABLE audited_table (x int)")
        .await
        .unwrap();
    let logged = eventually(Duration::from_secs(10), || async {
        let log = ctl.log();
        (!audited(&log, "CREATE TABLE audited_table").is_empty()).then_some(log)
    })
    .await
    .unwrap_or_else(|| panic!("no audit line for the user's DDL:\n{}", ctl.log()));
    assert!(
        audited(&logged, "CREATE TABLE audited_table")[0].contains("AUDIT: SESSION,"),
        "{logged}"
    );
    // A reconfigure (same spec) is audited as little as the start.
    let (code, body) = ctl
        .request(
            "POST",
            "/configure",
            &format!(
                r#"{{"spec": {}, "compute_ctl_config": {{"jwks": {{"keys": []}}}}}}"#,
                spec("Log", json!({}))
            ),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_compute_ctl_not_audited(&ctl.log());
}

/// A directory with the real rsyslogd's verdict on `conf` (`rsyslogd -N1`).
fn rsyslogd_accepts(conf: &Path) -> Result<(), String> {
    let out = std::process::Command::new("/usr/sbin/rsyslogd")
        .arg("-N1")
        .arg("-f")
        .arg(conf)
        .output()
        .unwrap();
    out.status
        .success()
        .then_some(())
        .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn level_hipaa_writes_audit_files_and_the_rsyslog_configs() {
    let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = collector.local_addr().unwrap().port();
    let mut ctl = start(
        spec("Hipaa", json!({"logs_export_host": "logs.example:10514"})),
        vec![
            "--rsyslog-config-dir".into(),
            "{dir}".into(),
            "--rsyslog-work-dir".into(),
            "{dir}".into(),
            "--rsyslog-restart-command".into(),
            "/usr/bin/touch {dir}/rsyslog-restarted".into(),
        ],
        vec![("AUDIT_LOGGING_ENDPOINT".into(), format!("127.0.0.1:{port}"))],
    );
    ctl.wait_status("running").await;
    // Upstream's values for the compliance levels.
    assert_eq!(show(&ctl, "pgaudit.log").await, "all, -misc");
    assert_eq!(show(&ctl, "pgaudit.log_parameter").await, "off");
    assert_eq!(show(&ctl, "pgaudit.log_catalog").await, "off");
    assert_eq!(show(&ctl, "pgaudit.log_rotation_age").await, "5min");
    assert_eq!(show(&ctl, "log_destination").await, "stderr,syslog");
    assert_eq!(
        show(&ctl, "shared_preload_libraries").await,
        "pg_stat_statements,pgaudit,pgauditlogtofile"
    );
    assert_eq!(
        extensions(&ctl).await,
        "pg_stat_statements@public,pgaudit@public,pgauditlogtofile@public,plpgsql@pg_catalog"
    );
    assert_eq!(postgres_db_settings(&ctl).await, "pgaudit.log=none");

    // The rsyslog configs, in the configured directory, accepted by rsyslogd; rsyslog
    // restarted through the configured command.
    let dir = ctl.dir.path().to_owned();
    let audit_conf = std::fs::read_to_string(dir.join("compute_audit_rsyslog.conf")).unwrap();
    assert!(
        audit_conf.contains(&format!("target=\"127.0.0.1\" port=\"{port}\""))
            && audit_conf.contains(&format!("File=\"{}/log/*.log\"", ctl.pgdata.display()))
            && audit_conf.contains("set $.json_log!endpoint_id = \"ep-audit\";")
            && audit_conf.contains("set $.remote_syslog_tls = \"false\";"),
        "{audit_conf}"
    );
    let export_conf = std::fs::read_to_string(dir.join("postgres_logs.conf")).unwrap();
    assert!(
        export_conf.contains("target=\"logs.example\" port=\"10514\""),
        "{export_conf}"
    );
    for conf in ["compute_audit_rsyslog.conf", "postgres_logs.conf"] {
        rsyslogd_accepts(&dir.join(conf)).unwrap_or_else(|e| panic!("{conf}: {e}"));
    }
    assert!(dir.join("rsyslog-restarted").exists(), "{}", ctl.log());

    // A user's statements go to pgauditlogtofile's files in PGDATA/log; compute_ctl's do not.
    let app = ctl.pg("app").await;
    app.batch_execute("CREATE TABLE audited_table (x int); SELECT * FROM audited_table")
        .await
        .unwrap();
    let log_dir = ctl.pgdata.join("log");
    let files = eventually(Duration::from_secs(10), || async {
        let text = audit_files(&log_dir);
        (!audited(&text, "SELECT * FROM audited_table").is_empty()).then_some(text)
    })
    .await
    .unwrap_or_else(|| panic!("no audit file entry:\n{}", audit_files(&log_dir)));
    assert!(
        !audited(&files, "CREATE TABLE audited_table").is_empty(),
        "{files}"
    );
    assert_compute_ctl_not_audited(&files);
    assert_compute_ctl_not_audited(&ctl.log());
    let (code, metrics) = ctl.request("GET", "/metrics", "", None).await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("# TYPE compute_audit_log_dir_size gauge"),
        "{metrics}"
    );

    // /configure with another logs_export_host rewrites its config and restarts rsyslog; the
    // same host again changes nothing.
    let configure = |host: &str| {
        format!(
            r#"{{"spec": {}, "compute_ctl_config": {{"jwks": {{"keys": []}}}}}}"#,
            spec("Hipaa", json!({"logs_export_host": host}))
        )
    };
    for (host, restarted) in [("[::1]:6514", true), ("[::1]:6514", false)] {
        std::fs::remove_file(dir.join("rsyslog-restarted")).ok();
        let (code, body) = ctl
            .request("POST", "/configure", &configure(host), None)
            .await;
        assert_eq!(code, 200, "{body}");
        let export_conf = std::fs::read_to_string(dir.join("postgres_logs.conf")).unwrap();
        assert!(
            export_conf.contains("target=\"::1\" port=\"6514\""),
            "{export_conf}"
        );
        assert_eq!(dir.join("rsyslog-restarted").exists(), restarted, "{host}");
    }
    // A bad one is refused, located, and changes nothing.
    let (code, body) = ctl
        .request("POST", "/configure", &configure("::1:6514"), None)
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains(
            r#""code":"invalid-logs-export-host","severity":"error","pointer":"/spec/logs_export_host""#
        ),
        "{body}"
    );
    ctl.wait_status("running").await;
    assert!(
        std::fs::read_to_string(dir.join("postgres_logs.conf"))
            .unwrap()
            .contains("target=\"::1\""),
    );
}

/// The text of every `audit*.log` file in `dir`.
fn audit_files(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("audit") {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text
}

/// Waits for the start to fail; asserts the data directory was never created and no
/// postgres ran for it.
async fn assert_failed_before_pgdata(ctl: &mut Ctl, reason: &str) {
    let status = ctl.wait_status("failed").await;
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains(reason), "{status}\n{}", ctl.log());
    assert!(!ctl.pgdata.exists(), "the data directory was created");
    let pgdata = ctl.pgdata.display().to_string();
    let postgres: Vec<String> = processes_mentioning(&pgdata)
        .into_iter()
        .filter(|p| !p.contains("compute_ctl"))
        .collect();
    assert!(postgres.is_empty(), "{postgres:?}");
    assert!(!ctl.log().contains("postgres is ready"), "{}", ctl.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn compliance_levels_without_a_collector_fail_before_anything_starts() {
    for level in ["Hipaa", "Extended", "Full"] {
        let mut ctl = start(spec(level, json!({})), vec![], vec![]);
        assert_failed_before_pgdata(
            &mut ctl,
            &format!(
                "audit_log_level {level} needs the audit collector: AUDIT_LOGGING_ENDPOINT and \
                 AUDIT_LOGGING_TLS_ENDPOINT are both empty"
            ),
        )
        .await;
    }
    // A collector that is not host:port is named.
    let mut ctl = start(
        spec("Full", json!({})),
        vec![],
        vec![(
            "AUDIT_LOGGING_TLS_ENDPOINT".into(),
            "collector-without-port".into(),
        )],
    );
    assert_failed_before_pgdata(
        &mut ctl,
        "audit_log_level Full: the audit collector: \"collector-without-port\": expected host:port",
    )
    .await;
    // So is a logs_export_host that is not: the spec is invalid, located.
    let mut ctl = start(
        spec("Disabled", json!({"logs_export_host": "logs\"x:514"})),
        vec![],
        vec![],
    );
    assert_failed_before_pgdata(&mut ctl, "/logs_export_host").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_installation_without_pgaudit_fails_naming_the_library() {
    let install = harness::relocated_installation(&["pgaudit"]);
    assert!(Path::new("/usr/lib/postgresql/15/lib/pgaudit.so").exists());
    let postgres = install.bindir.join("postgres");
    let mut ctl = start(
        spec("Log", json!({})),
        vec!["-b".into(), postgres.display().to_string()],
        vec![],
    );
    let libdir = &install.pkglibdir;
    assert_failed_before_pgdata(
        &mut ctl,
        &format!(
            "audit_log_level Log needs the pgaudit library, which is not installed in {} \
             (the library directory of {})",
            libdir.display(),
            postgres.display()
        ),
    )
    .await;
}
