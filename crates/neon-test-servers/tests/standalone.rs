//! The test servers as standalone processes, as a compute_ctl started by hand would use them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use compute_spec::ComputeMode;
use neon_clients::{
    BasebackupConfig, BasebackupRequest, Compression, check_safekeepers_synced, fetch_basebackup,
};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE: &str = "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d";

/// A child process killed and reaped on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &str, args: &[String]) -> (Process, u16) {
    let port = test_postgres::free_port();
    let child = Command::new(program)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let process = Process(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{program} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (process, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_pageserver_and_safekeeper_serve_the_clients() {
    let source = neon_test_servers::fixture::filled_pgdata("standalone").unwrap();
    let ids = [
        "--tenant".to_owned(),
        TENANT.to_owned(),
        "--timeline".to_owned(),
        TIMELINE.to_owned(),
    ];
    let mut args = ids.to_vec();
    args.extend([
        "--pgdata-source".into(),
        source.display().to_string(),
        "--token".into(),
        "tok".into(),
        "--lease-length-ms".into(),
        "5000".into(),
        "--gc-cutoff".into(),
        "0/2000000".into(),
    ]);
    let (_pageserver, ps_port) = spawn(env!("CARGO_BIN_EXE_test-pageserver"), &args);
    let mut args = ids.to_vec();
    args.extend([
        "--flush-lsn".into(),
        "0/3000000".into(),
        "--commit-lsn".into(),
        "0/3000000".into(),
    ]);
    let (_safekeeper, sk_port) = spawn(env!("CARGO_BIN_EXE_test-safekeeper"), &args);

    let lsn = check_safekeepers_synced(&neon_clients::FastPathConfig {
        safekeepers: vec![format!("127.0.0.1:{sk_port}")],
        tenant_id: TENANT.parse().unwrap(),
        timeline_id: TIMELINE.parse().unwrap(),
        auth_token: None,
        timeout: Duration::from_secs(2),
    })
    .await;
    assert_eq!(lsn, Some("0/3000000".parse().unwrap()));

    let dir = tempfile::tempdir().unwrap();
    let stats = fetch_basebackup(
        &format!("host=127.0.0.1 port={ps_port} user=no_user"),
        Some("tok"),
        &BasebackupRequest {
            tenant_id: TENANT.parse().unwrap(),
            timeline_id: TIMELINE.parse().unwrap(),
            lsn: "0/3000000".parse().unwrap(),
            mode: ComputeMode::Primary,
            gzip: true,
        },
        dir.path(),
        &BasebackupConfig::default(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(stats.compression, Compression::Gzip);
    assert!(dir.path().join("global/pg_control").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("PG_VERSION"))
            .unwrap()
            .trim(),
        "15"
    );

    // LSN leases: granted for the configured length above the GC cutoff, NULL below it.
    let target = neon_clients::LeaseTarget {
        pageserver: compute_spec::PageserverConnectionInfo {
            shard_count: 0,
            stripe_size: None,
            shards: [(
                "0000".to_owned(),
                compute_spec::PageserverShardInfo {
                    pageservers: vec![compute_spec::PageserverShardConnectionInfo {
                        id: None,
                        libpq_url: Some(format!("postgresql://no_user@127.0.0.1:{ps_port}")),
                        grpc_url: None,
                    }],
                },
            )]
            .into(),
            prefer_protocol: compute_spec::PageserverProtocol::Libpq,
        },
        auth_token: Some("tok".into()),
    };
    let lease = |lsn: &str| neon_clients::LeaseRequest {
        tenant_id: TENANT.parse().unwrap(),
        timeline_id: TIMELINE.parse().unwrap(),
        lsn: lsn.parse().unwrap(),
    };
    let config = neon_clients::LeaseConfig::default();
    let cancel = CancellationToken::new();
    let before = std::time::SystemTime::now();
    let granted = neon_clients::acquire_lease(&target, &lease("0/3000000"), &config, &cancel)
        .await
        .unwrap();
    let neon_clients::LeaseGrant::Until(until) = granted else {
        panic!("{granted:?}")
    };
    let length = until.duration_since(before).unwrap();
    assert!(
        length > Duration::from_secs(4) && length < Duration::from_secs(7),
        "{length:?}"
    );
    let refused = neon_clients::acquire_lease(&target, &lease("0/1000000"), &config, &cancel)
        .await
        .unwrap();
    assert_eq!(refused, neon_clients::LeaseGrant::Refused);

    // libpq's own client sees one column `valid_until`.
    let psql = Command::new(test_postgres::pg_bin_dir().join("psql"))
        .args(["-X", "-A", "-d"])
        .arg(format!("postgresql://no_user@127.0.0.1:{ps_port}/"))
        .arg("-c")
        .arg(format!("lease lsn {TENANT} {TIMELINE} 0/1000000 "))
        .env("PGPASSWORD", "tok")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&psql.stdout);
    assert!(
        psql.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    assert_eq!(out, "valid_until\n\n(1 row)\n");
}

#[test]
fn standin_prints_the_lsn_or_execs_postgres() {
    let standin = env!("CARGO_BIN_EXE_test-sync-safekeepers");
    let out = Command::new(standin)
        .arg("--sync-safekeepers")
        .env("TEST_SYNC_SK_LSN", "0/16B3748")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0/16B3748\n");

    let out = Command::new(standin)
        .arg("--sync-safekeepers")
        .env("TEST_SYNC_SK_FAIL", "FATAL: boom")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FATAL: boom"));

    // Anything else runs the real postgres.
    let out = Command::new(standin)
        .arg("--describe-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("shared_buffers\t"));
}

/// `--help` and `--version` are the stand-in's own; every test server has `--version`; the
/// pageserver's `--help` lists the faults, and an unknown fault is refused with the list.
#[test]
fn help_and_version_of_every_test_server() {
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let version = env!("CARGO_PKG_VERSION");
    for (program, name) in [
        (env!("CARGO_BIN_EXE_test-pageserver"), "test-pageserver"),
        (env!("CARGO_BIN_EXE_test-safekeeper"), "test-safekeeper"),
        (env!("CARGO_BIN_EXE_test-ext-server"), "test-ext-server"),
        (
            env!("CARGO_BIN_EXE_test-sync-safekeepers"),
            "test-sync-safekeepers",
        ),
    ] {
        let (code, out, err) = run(program, &["--version"]);
        assert_eq!(
            (code, out),
            (Some(0), format!("{name} {version}\n")),
            "{err}"
        );
        let (code, out, err) = run(program, &["--help"]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("Usage: test-"), "{name}: {out}");
        assert!(!out.contains("PostgreSQL server"), "{name}: {out}");
    }
    let standin = env!("CARGO_BIN_EXE_test-sync-safekeepers");
    let (_, help, _) = run(standin, &["--help"]);
    assert!(help.contains("TEST_SYNC_SK_FAIL_FIRST"), "{help}");

    let pageserver = env!("CARGO_BIN_EXE_test-pageserver");
    let (_, help, _) = run(pageserver, &["--help"]);
    for value in [
        "close-after=N",
        "corrupt",
        "dotdot",
        "absolute=/PATH",
        "error-after",
        "slow=MS",
        "stall-before=MS",
    ] {
        assert!(help.contains(&format!("- {value}:")), "{value}: {help}");
    }
    assert!(!help.contains("see `Fault`"), "{help}");
    let zero = "00000000000000000000000000000000";
    let (code, _, err) = run(
        pageserver,
        &[
            "--tenant",
            zero,
            "--timeline",
            zero,
            "--archive",
            "/nonexistent",
            "--fault",
            "bogus",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("unknown fault \"bogus\" (one of: close-after=N, corrupt,"),
        "{err}"
    );
}

/// `TEST_SYNC_SK_FAIL_FIRST` (the environment, as documented) fails the first N runs counted
/// in the record file, then the LSN is printed.
#[test]
fn standin_fails_the_first_runs_from_the_environment() {
    let standin = env!("CARGO_BIN_EXE_test-sync-safekeepers");
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("runs");
    let run = || {
        Command::new(standin)
            .arg("--sync-safekeepers")
            .env("TEST_SYNC_SK_LSN", "0/16B3748")
            .env("TEST_SYNC_SK_FAIL_FIRST", "2")
            .env("TEST_SYNC_SK_RECORD", &record)
            .env_remove("TEST_SYNC_SK_CONFIG")
            .output()
            .unwrap()
    };
    for attempt in 1..=2 {
        let out = run();
        assert!(!out.status.success(), "attempt {attempt}");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains(&format!("injected failure {attempt} of 2")),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0/16B3748\n");
    assert_eq!(std::fs::read_to_string(&record).unwrap().lines().count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_extension_server_serves_a_directory() {
    use std::io::{Read, Write};

    use neon_clients::remote_ext::{FetchConfig, FetchError, fetch_archive};
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    let archive_dir = served.join("latest/amd64/v15/extensions");
    std::fs::create_dir_all(&archive_dir).unwrap();
    std::fs::write(archive_dir.join("x.tar.zst"), b"archive bytes").unwrap();
    std::fs::write(dir.path().join("secret"), b"outside").unwrap();
    let program = env!("CARGO_BIN_EXE_test-ext-server");
    let (_server, port) = spawn(program, &["--dir".into(), served.display().to_string()]);
    let get = |path: &str| {
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/{path}")).unwrap();
        async move { fetch_archive(&url, &FetchConfig::default(), &CancellationToken::new()).await }
    };
    let body = get("latest/amd64/v15/extensions/x.tar.zst").await.unwrap();
    assert_eq!(&body[..], b"archive bytes");
    let err = get("latest/amd64/v15/extensions/y.tar.zst")
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 404, .. }),
        "{err}"
    );
    // A raw request whose path leaves the directory (an HTTP client would normalise it).
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /../secret HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");

    let (_failing, port) = spawn(program, &["--status".into(), "503".into()]);
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/x.tar.zst")).unwrap();
    let err = fetch_archive(&url, &FetchConfig::default(), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 503, .. }),
        "{err}"
    );
}
