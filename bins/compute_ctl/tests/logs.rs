//! End-to-end tests of compute_ctl's log: `--log-format json` (every line a JSON object),
//! postgres's severity read after its line prefix, a clean stop without ERROR or WARN, the
//! startup metrics as fields, the connection string once running; and the environment
//! aliases of the command line.

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::process::Command;
use std::time::Duration;

use harness::{Args, Ctl, repo_file};
use nix::sys::signal::{Signal, kill};
use serde_json::Value;

/// Every line of the log as JSON (panics, naming the line, on one that is not).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect()
}

/// The compute runs with a user session open and a statement whose text holds a severity
/// word; SIGTERM stops it: exit 0, and no ERROR or WARN record anywhere in its JSON log.
#[tokio::test(flavor = "multi_thread")]
async fn json_log_of_a_clean_start_and_stop() {
    let example = repo_file("specs/examples/standalone.json");
    let mut ctl = Ctl::start(Args {
        // Without --allow-unauthenticated (and its warning); /metrics says when it runs.
        extra: vec![
            "-S".into(),
            example.display().to_string(),
            "--no-allow-unauthenticated".into(),
        ],
        env: vec![("COMPUTE_CTL_LOG_FORMAT".into(), "json".into())],
        ..Args::default()
    });
    ctl.wait_metrics_status("running").await;
    let connstr = format!(
        "postgresql://cloud_admin@127.0.0.1:{}/postgres",
        ctl.pg_port
    );
    ctl.wait_log(&format!("\"connstr\":\"{connstr}\"")).await;

    // A session that is open when the compute stops, and a logged statement whose text reads
    // like a FATAL message.
    let session = ctl.pg("postgres").await;
    session
        .batch_execute("SET log_statement = 'all'")
        .await
        .unwrap();
    session
        .batch_execute("SELECT 'FATAL:  just a string'")
        .await
        .unwrap();
    ctl.wait_log("just a string").await;
    kill(ctl.pid(), Signal::SIGTERM).unwrap();
    let status = ctl.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", ctl.log());
    drop(session);

    let log = ctl.log();
    let records = json_lines(&log);
    for record in &records {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(record.get(field).is_some(), "no {field}: {record}");
        }
        assert!(
            !matches!(record["level"].as_str(), Some("ERROR" | "WARN")),
            "a clean start and stop logged {record}"
        );
    }
    let find = |what: &str, pred: &dyn Fn(&Value) -> bool| {
        records
            .iter()
            .find(|r| pred(r))
            .unwrap_or_else(|| panic!("no {what} in:\n{log}"))
            .clone()
    };
    let statement = find("logged statement", &|r| {
        r["target"] == "postgres"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("statement: SELECT 'FATAL:  just a string'"))
    });
    assert_eq!(
        (
            &statement["level"],
            &statement["severity"],
            &statement["program"]
        ),
        (
            &Value::from("INFO"),
            &Value::from("LOG"),
            &Value::from("postgres")
        ),
        "{statement}"
    );
    let terminated = find("the open session's termination", &|r| {
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("terminating connection due to administrator command"))
    });
    assert_eq!(terminated["severity"], "FATAL", "{terminated}");
    let metrics = find("startup metrics", &|r| {
        r["message"] == "compute start finished"
    });
    assert!(metrics["total_startup_ms"].as_u64().is_some(), "{metrics}");
    assert!(metrics["initdb_ms"].as_u64().is_some(), "{metrics}");
    let running = find("connection string", &|r| r.get("connstr").is_some());
    assert_eq!(running["connstr"], connstr.as_str(), "{running}");
    assert_eq!(running["level"], "INFO");
    // One start: no include skipped, initdb's progress below INFO, the shutdown's records.
    assert!(
        !log.contains("skipping missing configuration file"),
        "{log}"
    );
    assert!(
        !records
            .iter()
            .any(|r| r["program"] == "initdb" && r["level"] == "INFO"),
        "{log}"
    );
    find("the stop", &|r| r["to"] == "terminated");
}

/// SIGINT (Ctrl-C) to a running compute in the text format: exit 0, no ERROR or WARN line.
#[tokio::test(flavor = "multi_thread")]
async fn text_log_of_a_ctrl_c_has_no_error_or_warning() {
    let example = repo_file("specs/examples/standalone.json");
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-S".into(),
            example.display().to_string(),
            "--no-allow-unauthenticated".into(),
        ],
        ..Args::default()
    });
    ctl.wait_metrics_status("running").await;
    ctl.wait_log("compute is running: connect with psql").await;
    kill(ctl.pid(), Signal::SIGINT).unwrap();
    let status = ctl.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", ctl.log());
    let log = ctl.log();
    let noisy: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}\n{log}");
    assert!(log.contains("database system is shut down"), "{log}");
}

/// The binary reads `POSTGRES_PATH` (upstream's name) when `COMPUTE_CTL_PGBIN` is unset, and
/// the canonical name wins over it: a program not in `PATH` is refused by name, exit 2.
#[test]
fn env_alias_and_canonical_name_reach_the_binary() {
    let run = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_compute_ctl"))
            .args([
                "-D",
                "/nonexistent/pgdata",
                "-C",
                "postgresql://u@127.0.0.1/db",
            ])
            .env_remove("COMPUTE_CTL_PGBIN")
            .env_remove("POSTGRES_PATH")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&[("POSTGRES_PATH", "alias-postgres-nowhere")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("find alias-postgres-nowhere in PATH"),
        "{stderr}"
    );
    let (code, stderr) = run(&[
        ("POSTGRES_PATH", "alias-postgres-nowhere"),
        ("COMPUTE_CTL_PGBIN", "canonical-postgres-nowhere"),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("find canonical-postgres-nowhere in PATH"),
        "{stderr}"
    );
}
