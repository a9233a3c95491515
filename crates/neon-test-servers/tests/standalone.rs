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
    let out = Command::new(standin).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("postgres (PostgreSQL) 15"));
}
