//! The rsyslog configs against the real rsyslogd (Debian's `rsyslog`): every rendered config
//! passes `rsyslogd -N1` with hostile ids, and a running rsyslogd forwards an audit file's
//! entries to a TCP collector with the ids byte for byte. Nothing outside temp dirs is touched
//! (the configs load no module that binds `/dev/log`; state goes to a temp work directory).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use compute_spec::{SyslogTarget, parse_syslog_target};
use expect_test::expect;
use pg_config::{
    AuditRsyslogConfig, RSYSLOG_WORK_DIRECTORY, render_audit_rsyslog_conf,
    render_postgres_logs_conf,
};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// `rsyslogd -N1` (validation only) on `conf`: its output when it refuses it.
fn validate(dir: &Path, conf: &str) -> Result<(), String> {
    let path = dir.join("check.conf");
    std::fs::write(&path, conf).unwrap();
    let out = Command::new(RSYSLOGD)
        .arg("-N1")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn target(text: &str) -> SyslogTarget {
    parse_syslog_target(text).unwrap()
}

/// Hostile names rsyslog can carry (control characters are refused before rendering).
fn writable_hostile_names() -> Vec<String> {
    test_postgres::hostile_names()
        .into_iter()
        .chain(["\\".to_owned(), "$x".to_owned(), "%msg%".to_owned()])
        .filter(|n| !n.chars().any(char::is_control))
        .collect()
}

#[test]
fn rendered_configs_pass_rsyslogd_validation() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().display().to_string();
    let collector = target("collector.example:5555");
    for name in writable_hostile_names() {
        for tls in [false, true] {
            let log_directory = format!("/pgdata {name}/log");
            let config = AuditRsyslogConfig {
                log_directory: &log_directory,
                endpoint_id: &name,
                project_id: &name,
                target: &collector,
                tls,
                work_directory: &work,
            };
            let conf = render_audit_rsyslog_conf(&config).unwrap();
            validate(dir.path(), &conf).unwrap_or_else(|e| panic!("{name:?} tls={tls}: {e}"));
        }
    }
    for host in ["collector.example:514", "10.0.0.1:1", "[::1]:65535"] {
        let conf = render_postgres_logs_conf(&target(host)).unwrap();
        validate(dir.path(), &conf).unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    // The check can fail: a config rsyslog refuses.
    assert!(validate(dir.path(), "set $.x = \"$\";\n").is_err());
}

#[test]
fn rendered_configs() {
    let collector = target("collector.example:5555");
    let config = AuditRsyslogConfig {
        log_directory: "/var/db/postgres/compute/log",
        endpoint_id: "ep-1",
        project_id: "p\"$1",
        target: &collector,
        tls: true,
        work_directory: RSYSLOG_WORK_DIRECTORY,
    };
    expect![[r#"
        # Written by compute_ctl: pgaudit files forwarded to the collector.
        module(load="imfile")
        # An entry starts with its timestamp (log_line_prefix of the files).
        input(type="imfile" File="/var/db/postgres/compute/log/*.log" Tag="pgaudit_log" Severity="info" Facility="local5"
          startmsg.regex="^[[:digit:]]{4}-[[:digit:]]{2}-[[:digit:]]{2} [[:digit:]]{2}:[[:digit:]]{2}:[[:digit:]]{2}.[[:digit:]]{3} GMT,")
        global(workDirectory="/var/log/rsyslog" DefaultNetstreamDriverCAFile="/etc/ssl/certs/ca-certificates.crt")
        set $.remote_syslog_tls = "true";
        set $.json_log!endpoint_id = "ep-1";
        set $.json_log!project_id = "p\"\$1";
        set $.json_log!msg = $msg;
        template(name="PgAuditLog" type="string"
          string="<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% - - - - %$.json_log%")
        if ( $syslogtag == 'pgaudit_log' ) then {
          if ( $.remote_syslog_tls == 'true' ) then {
            action(type="omfwd" target="collector.example" port="5555" protocol="tcp" template="PgAuditLog"
              queue.type="linkedList" queue.size="1000" action.ResumeRetryCount="10"
              StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
              StreamDriverPermittedPeers="collector.example" StreamDriver.CheckExtendedKeyPurpose="on"
              StreamDriver.PermitExpiredCerts="off")
            stop
          } else {
            action(type="omfwd" target="collector.example" port="5555" protocol="tcp" template="PgAuditLog"
              queue.type="linkedList" queue.size="1000" action.ResumeRetryCount="10")
            stop
          }
        }
    "#]]
    .assert_eq(&render_audit_rsyslog_conf(&config).unwrap());
    expect![[r#"
        # Written by compute_ctl: the server's syslog output (logs_export_host).
        if $programname == 'postgres' then {
            action(type="omfwd" target="10.0.0.1" port="514" protocol="tcp"
                   template="RSYSLOG_SyslogProtocol23Format" action.resumeRetryCount="3"
                   queue.type="linkedList" queue.size="1000")
            stop
        }
    "#]]
    .assert_eq(&render_postgres_logs_conf(&target("10.0.0.1:514")).unwrap());
}

/// A running rsyslogd, killed and reaped on drop.
struct Rsyslogd(Child);

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn audit_entries_reach_the_collector_with_the_ids() {
    let dir = tempfile::tempdir().unwrap();
    let log_directory = dir.path().join("log");
    std::fs::create_dir(&log_directory).unwrap();
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = collector.local_addr().unwrap().port();
    let hostile = "ep \"quoted\" $x \\ %msg% 'q' 🐘";
    let target = target(&format!("127.0.0.1:{port}"));
    let work = dir.path().display().to_string();
    let config = AuditRsyslogConfig {
        log_directory: &log_directory.display().to_string(),
        endpoint_id: hostile,
        project_id: "project-1",
        target: &target,
        tls: false,
        work_directory: &work,
    };
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(&conf, render_audit_rsyslog_conf(&config).unwrap()).unwrap();
    // Two entries, the first on two lines; an entry is complete once the next one starts.
    std::fs::write(
        log_directory.join("audit-1.log"),
        "2026-01-01 00:00:00.000 GMT,\"AUDIT: SESSION,1,1,DDL,CREATE TABLE\n  continued\"\n\
         2026-01-01 00:00:01.000 GMT,\"AUDIT: SESSION,2,1,READ,SELECT\"\n\
         2026-01-01 00:00:02.000 GMT,\"AUDIT: SESSION,3,1,READ,SELECT\"\n",
    )
    .unwrap();
    let _rsyslogd = Rsyslogd(
        Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stream = accept_within(&collector, Duration::from_secs(20));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let first = lines.next().unwrap().unwrap();
    let json = first.split_once(" - - - - ").unwrap().1;
    let entry: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(entry["endpoint_id"], hostile, "{first}");
    assert_eq!(entry["project_id"], "project-1", "{first}");
    let msg = entry["msg"].as_str().unwrap();
    assert!(
        msg.contains("DDL,CREATE TABLE") && msg.contains("continued"),
        "{first}"
    );
    assert!(first.starts_with("<174>1 "), "local5.info: {first}");
}

fn accept_within(listener: &TcpListener, limit: Duration) -> std::net::TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("no connection from rsyslogd: {e}"),
        }
    }
}
