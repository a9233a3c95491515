//! End-to-end tests of `compute_ctl_config.tls` through the real compute_ctl binary, the real
//! PostgreSQL 15 and the real `openssl` CLI: the start waits for the key and certificate
//! (bounded, cancellable), postgres serves them (`openssl s_client -starttls postgres`,
//! `pg_stat_ssl`), the key in PGDATA is 0600 and the Postgres user's, a renewal is served
//! without a restart while an old connection stays up, and a broken renewal leaves the old
//! certificate in service.

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Args, Ctl, eventually, processes_left};
use serde_json::json;

/// A key and certificate in a directory of their own (compute_ctl reads them as root).
struct TlsFiles {
    dir: tempfile::TempDir,
    key: PathBuf,
    cert: PathBuf,
}

impl TlsFiles {
    fn new() -> TlsFiles {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("tls.key");
        let cert = dir.path().join("tls.crt");
        TlsFiles { dir, key, cert }
    }

    /// Writes a new ECDSA P-256 key and self-signed certificate over the two paths (in place,
    /// as a certificate manager does) and returns the certificate's SHA-256 fingerprint.
    fn renew(&self) -> String {
        let staging = tempfile::tempdir_in(self.dir.path()).unwrap();
        let (key, cert) = (staging.path().join("k"), staging.path().join("c"));
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "1", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        std::fs::write(&self.key, std::fs::read(&key).unwrap()).unwrap();
        std::fs::write(&self.cert, std::fs::read(&cert).unwrap()).unwrap();
        fingerprint(&std::fs::read(&self.cert).unwrap()).unwrap()
    }

    /// The wrapper document naming the files.
    fn config(&self) -> String {
        json!({
            "spec": {
                "format_version": 1.0,
                "cluster": {
                    "roles": [], "databases": [],
                    "settings": [
                        {"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"},
                        {"name": "fsync", "value": "off", "vartype": "bool"}
                    ]
                }
            },
            "compute_ctl_config": {
                "jwks": {"keys": []},
                "tls": {"key_path": self.key, "cert_path": self.cert}
            }
        })
        .to_string()
    }
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The SHA-256 fingerprint of the first PEM certificate in `text` (`openssl x509`).
fn fingerprint(text: &[u8]) -> Option<String> {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text).unwrap();
    let out = child.wait_with_output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The fingerprint of the certificate postgres presents on a new connection
/// (`openssl s_client -starttls postgres`), `None` when the handshake fails.
async fn served_fingerprint(port: u16) -> Option<String> {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("openssl")
            .args(["s_client", "-starttls", "postgres", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        fingerprint(&out.stdout)
    })
    .await
    .unwrap()
}

fn conninfo(port: u16, extra: &str) -> String {
    format!("host=127.0.0.1 port={port} user=cloud_admin dbname=postgres {extra}")
}

fn psql() -> Command {
    let mut cmd = Command::new(test_postgres::pg_bin_dir().join("psql"));
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
    cmd
}

/// One query through `psql` over TLS (`sslmode=require`).
fn psql_over_tls(port: u16, sql: &str) -> String {
    let out = run(psql()
        .arg("-d")
        .arg(conninfo(port, "sslmode=require"))
        .args(["-c", sql]));
    String::from_utf8_lossy(&out).trim().to_owned()
}

fn start(files: &TlsFiles, wait: &str) -> Ctl {
    Ctl::start(Args {
        extra: [
            "-S",
            "{dir}/config.json",
            "--tls-watch-interval",
            "200ms",
            "--tls-wait-timeout",
            wait,
        ]
        .map(String::from)
        .to_vec(),
        files: vec![("config.json".into(), files.config())],
        ..Args::default()
    })
}

/// The served certificate becomes `want` within 10 s.
async fn wait_served(ctl: &Ctl, want: &str) {
    let served = eventually(Duration::from_secs(10), || async {
        (served_fingerprint(ctl.pg_port).await.as_deref() == Some(want)).then_some(())
    })
    .await;
    assert!(
        served.is_some(),
        "{want} not served; served {:?}\n{}",
        served_fingerprint(ctl.pg_port).await,
        ctl.log()
    );
}

fn assert_key_is_private_and_postgres_owned(pgdata: &Path) {
    let meta = std::fs::metadata(pgdata.join("server.key")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    if let Some((uid, gid)) = test_postgres::unprivileged_user().unwrap() {
        assert_eq!((meta.uid(), meta.gid()), (uid.as_raw(), gid.as_raw()));
        let cert = std::fs::metadata(pgdata.join("server.crt")).unwrap();
        assert_eq!((cert.uid(), cert.gid()), (uid.as_raw(), gid.as_raw()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_the_configured_certificate_and_a_renewal_without_a_restart() {
    let files = TlsFiles::new();
    let first = files.renew();
    let mut ctl = start(&files, "10s");
    ctl.wait_status("running").await;

    assert_eq!(
        served_fingerprint(ctl.pg_port).await.as_deref(),
        Some(first.as_str())
    );
    let port = ctl.pg_port;
    let ssl = tokio::task::spawn_blocking(move || {
        psql_over_tls(
            port,
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
    })
    .await
    .unwrap();
    assert!(ssl.starts_with("t|TLSv1."), "{ssl}");
    assert_key_is_private_and_postgres_owned(&ctl.pgdata);
    let row = ctl
        .pg("postgres")
        .await
        .query_one("SHOW ssl", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "on");

    // A client connected over TLS before the renewal.
    let mut old = psql()
        .arg("-d")
        .arg(conninfo(
            port,
            "sslmode=require application_name=before_renewal",
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let admin = ctl.pg("postgres").await;
    let old_backend = eventually(Duration::from_secs(10), || async {
        admin
            .query_opt(
                "SELECT a.pid FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                  WHERE a.application_name = 'before_renewal' AND s.ssl",
                &[],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, i32>(0))
    })
    .await
    .expect("the old client never connected over TLS");
    let postmaster = ctl.postmaster_pid();

    let second = files.renew();
    assert_ne!(first, second);
    wait_served(&ctl, &second).await;
    assert_eq!(ctl.postmaster_pid(), postmaster, "postgres was restarted");
    assert_key_is_private_and_postgres_owned(&ctl.pgdata);
    assert_eq!(
        std::fs::read(ctl.pgdata.join("server.key")).unwrap(),
        std::fs::read(&files.key).unwrap()
    );
    ctl.wait_log("renewed TLS key and certificate installed")
        .await;

    // The old connection still works, on the same backend, still over TLS.
    old.stdin
        .take()
        .unwrap()
        .write_all(
            b"SELECT 'old:' || pg_backend_pid() || ':' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();\n\\q\n",
        )
        .unwrap();
    let out = tokio::task::spawn_blocking(move || old.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("old:{old_backend}:true")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn late_files_are_waited_for_and_a_broken_renewal_keeps_the_old_certificate() {
    let files = TlsFiles::new();
    let mut ctl = start(&files, "30s");
    ctl.wait_log("waiting for the TLS key and certificate")
        .await;
    assert_eq!(ctl.get_json("/status").await["status"], "init");
    assert!(
        !ctl.pgdata.join("PG_VERSION").exists(),
        "nothing is done before the files come"
    );

    let good = files.renew();
    ctl.wait_status("running").await;
    wait_served(&ctl, &good).await;
    let postmaster = ctl.postmaster_pid();
    let installed_key = std::fs::read(ctl.pgdata.join("server.key")).unwrap();

    // A renewal whose key is garbage: not installed, said once, the old certificate served.
    std::fs::write(
        &files.key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    ctl.wait_log("TLS renewal not applied").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        ctl.log().matches("TLS renewal not applied").count(),
        1,
        "{}",
        ctl.log()
    );
    assert_eq!(
        served_fingerprint(ctl.pg_port).await.as_deref(),
        Some(good.as_str())
    );
    assert_eq!(
        std::fs::read(ctl.pgdata.join("server.key")).unwrap(),
        installed_key
    );
    assert_eq!(ctl.get_json("/status").await["status"], "running");

    // What compute_ctl relies on should bad files ever reach PGDATA: postgres keeps its SSL
    // context when a reload cannot load the new files.
    std::fs::write(ctl.pgdata.join("server.key"), "not a key\n").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(postmaster),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    ctl.wait_log("SSL configuration was not reloaded").await;
    assert_eq!(
        served_fingerprint(ctl.pg_port).await.as_deref(),
        Some(good.as_str())
    );
    let port = ctl.pg_port;
    let ssl = tokio::task::spawn_blocking(move || {
        psql_over_tls(
            port,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
    })
    .await
    .unwrap();
    assert_eq!(ssl, "t");

    // A good pair afterwards is installed and served.
    let repaired = files.renew();
    wait_served(&ctl, &repaired).await;
    assert_key_is_private_and_postgres_owned(&ctl.pgdata);
    assert_eq!(ctl.postmaster_pid(), postmaster, "postgres was restarted");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_that_never_come_fail_the_start_within_the_bound() {
    let files = TlsFiles::new();
    let started = Instant::now();
    let mut ctl = start(&files, "1s");
    let status = ctl.wait_status("failed").await;
    let waited = started.elapsed();
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains(&files.key.display().to_string()) && error.contains("within 1s"),
        "{error}"
    );
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    assert_eq!(ctl.wait_exit(Duration::from_secs(10)).await.code(), Some(1));
    assert!(!ctl.pgdata.exists(), "the data directory was touched");
    let pgdata = ctl.pgdata.display().to_string();
    assert_eq!(processes_left(&pgdata).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_the_wait_for_the_files() {
    let files = TlsFiles::new();
    let mut ctl = start(&files, "60s");
    ctl.wait_log("waiting for the TLS key and certificate")
        .await;
    let signalled = Instant::now();
    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(ctl.wait_exit(Duration::from_secs(10)).await.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    assert!(!ctl.pgdata.exists(), "the data directory was touched");
}
