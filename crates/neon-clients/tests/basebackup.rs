//! The pageserver client against the stand-in pageserver: a real data directory round-trips
//! and starts under PostgreSQL 15; every fault gives a clear error and writes nothing outside
//! PGDATA; transient faults are retried; permanent ones are not.

use std::path::{Path, PathBuf};
use std::time::Duration;

use compute_spec::{ComputeMode, Lsn, TenantId, TimelineId};
use neon_clients::{
    BasebackupConfig, BasebackupError, BasebackupRequest, Compression, RetryConfig,
    fetch_basebackup,
};
use neon_test_servers::fixture::{FIXTURE_ROWS, PostgresOnDir, filled_pgdata};
use neon_test_servers::{CompressionMode, Fault, PageserverConfig, TestPageserver};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE: &str = "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d";
const TOKEN: &str = "test-token";
const CALLERS_CONF: &str = "# written by compute_ctl before sync-safekeepers\n";

fn tenant() -> TenantId {
    TENANT.parse().unwrap()
}

fn timeline() -> TimelineId {
    TIMELINE.parse().unwrap()
}

fn server_config() -> PageserverConfig {
    let mut config =
        PageserverConfig::new(filled_pgdata("neon-clients").unwrap(), tenant(), timeline());
    config.token = Some(TOKEN.to_owned());
    config
}

fn request(gzip: bool) -> BasebackupRequest {
    BasebackupRequest {
        tenant_id: tenant(),
        timeline_id: timeline(),
        lsn: Lsn::INVALID,
        mode: ComputeMode::Primary,
        gzip,
    }
}

fn client_config(attempts: u32) -> BasebackupConfig {
    BasebackupConfig {
        connect_timeout: Duration::from_secs(5),
        retry: RetryConfig {
            attempts,
            initial_delay: Duration::from_millis(20),
            multiplier: 2.0,
            max_delay: Duration::from_millis(100),
        },
        progress_interval: Duration::from_millis(50),
        owner: test_postgres::unprivileged_user()
            .unwrap()
            .map(|(u, g)| (u.as_raw(), g.as_raw())),
        ..BasebackupConfig::default()
    }
}

/// A scratch area: `<tmp>/pgdata` (0700, holding the caller's postgresql.conf) beside a
/// canary directory `<tmp>/sibling` that nothing may touch.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        test_postgres::chown_to_pg_user(dir.path()).unwrap();
        let pgdata = dir.path().join("pgdata");
        std::fs::create_dir(&pgdata).unwrap();
        std::fs::set_permissions(&pgdata, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        std::fs::write(pgdata.join("postgresql.conf"), CALLERS_CONF).unwrap();
        std::fs::create_dir(dir.path().join("sibling")).unwrap();
        std::fs::write(dir.path().join("sibling/canary"), "canary").unwrap();
        Scratch { dir }
    }

    fn pgdata(&self) -> PathBuf {
        self.dir.path().join("pgdata")
    }

    fn absolute_target(&self) -> PathBuf {
        self.dir.path().join("absolute-escape")
    }

    /// Names in the scratch root and in the sibling directory.
    fn outside(&self) -> (Vec<String>, Vec<String>) {
        (
            names(self.dir.path()),
            names(&self.dir.path().join("sibling")),
        )
    }

    fn assert_nothing_outside(&self) {
        assert_eq!(
            self.outside(),
            (
                vec!["pgdata".into(), "sibling".into()],
                vec!["canary".into()]
            )
        );
        assert_eq!(
            std::fs::read_to_string(self.dir.path().join("sibling/canary")).unwrap(),
            "canary"
        );
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

async fn fetch(
    server: &TestPageserver,
    connstr: Option<String>,
    token: Option<&str>,
    request: &BasebackupRequest,
    scratch: &Scratch,
    attempts: u32,
) -> Result<neon_clients::BasebackupStats, BasebackupError> {
    fetch_basebackup(
        &connstr.unwrap_or_else(|| server.connstr()),
        token,
        request,
        &scratch.pgdata(),
        &client_config(attempts),
        &CancellationToken::new(),
    )
    .await
}

fn assert_starts_and_answers(pgdata: &Path) {
    let pg = PostgresOnDir::start(pgdata).unwrap();
    let out = pg.psql("select count(*), max(i) from fixture").unwrap();
    assert_eq!(out.trim(), format!("{FIXTURE_ROWS}|{FIXTURE_ROWS}"));
    pg.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpacked_data_directory_starts_under_postgres_in_every_compression() {
    for (compression, gzip, expect) in [
        (CompressionMode::Auto, false, Compression::None),
        (CompressionMode::Auto, true, Compression::Gzip),
        (CompressionMode::Zstd, false, Compression::Zstd),
    ] {
        let mut config = server_config();
        config.compression = compression;
        let server = TestPageserver::start(config).await.unwrap();
        let scratch = Scratch::new();
        // The token overrides the password of the connection string.
        let connstr = format!("postgresql://no_user:wrong@{}", server.addr());
        let stats = fetch(
            &server,
            Some(connstr),
            Some(TOKEN),
            &request(gzip),
            &scratch,
            1,
        )
        .await
        .unwrap();
        assert_eq!(stats.compression, expect);
        assert_eq!(stats.attempts, 1);
        assert!(stats.bytes > 0 && stats.entries > 100, "{stats:?}");
        assert!(stats.connect_micros > 0);
        // The caller's postgresql.conf is kept, the basebackup ships none.
        assert_eq!(
            std::fs::read_to_string(scratch.pgdata().join("postgresql.conf")).unwrap(),
            CALLERS_CONF
        );
        let records = server.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].password_ok, Some(true));
        assert_eq!(
            records[0]
                .params
                .get("application_name")
                .map(String::as_str),
            Some("compute_ctl")
        );
        assert_eq!(
            records[0].params.get("options").map(String::as_str),
            Some("-c neon.compute_mode=primary")
        );
        assert_eq!(records[0].queries, [request(gzip).command()]);
        // Modes are kept.
        let mode = std::fs::metadata(scratch.pgdata().join("global/pg_control")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        assert_starts_and_answers(&scratch.pgdata());
        scratch.assert_nothing_outside();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_and_static_modes_are_sent() {
    let server = TestPageserver::start(server_config()).await.unwrap();
    let scratch = Scratch::new();
    let lsn: Lsn = "0/16B3748".parse().unwrap();
    let req = BasebackupRequest {
        lsn,
        mode: ComputeMode::Static(lsn),
        ..request(true)
    };
    fetch(&server, None, Some(TOKEN), &req, &scratch, 1)
        .await
        .unwrap();
    let records = server.records();
    assert_eq!(
        records[0].queries,
        [format!(
            "basebackup {TENANT} {TIMELINE} 0/16B3748 --gzip --replica"
        )]
    );
    assert_eq!(
        records[0].params.get("options").map(String::as_str),
        Some("-c neon.compute_mode=static")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_gives_a_clear_error_and_writes_nothing_outside_pgdata() {
    let probe = Scratch::new();
    let absolute = probe.absolute_target();
    // (fault, compression, expected error text, retryable)
    let cases: Vec<(Fault, CompressionMode, &str, bool)> = vec![
        (
            Fault::CloseAfter(200_000),
            CompressionMode::Auto,
            "basebackup stream from",
            true,
        ),
        (
            Fault::Corrupt,
            CompressionMode::Gzip,
            "corrupt Gzip basebackup stream",
            false,
        ),
        (
            Fault::Corrupt,
            CompressionMode::Zstd,
            "corrupt Zstd basebackup stream",
            false,
        ),
        (
            Fault::Corrupt,
            CompressionMode::None,
            "corrupt None basebackup stream",
            false,
        ),
        (
            Fault::DotDot,
            CompressionMode::Gzip,
            "refused archive entry \"../escape\"",
            false,
        ),
        (
            Fault::Absolute(absolute.clone()),
            CompressionMode::Auto,
            "absolute paths are not allowed",
            false,
        ),
        (
            Fault::SymlinkEscape,
            CompressionMode::Zstd,
            "refused archive entry \"escape_link\": symbolic link points outside",
            false,
        ),
        (
            Fault::ErrorBefore,
            CompressionMode::Auto,
            "injected error before the data",
            true,
        ),
        (
            Fault::ErrorAfter,
            CompressionMode::Gzip,
            "injected error after the data",
            false,
        ),
    ];
    for (fault, compression, expect, retryable) in cases {
        let mut config = server_config();
        config.compression = compression;
        config.fault = Some(fault.clone());
        let server = TestPageserver::start(config).await.unwrap();
        let scratch = Scratch::new();
        let err = fetch(&server, None, Some(TOKEN), &request(true), &scratch, 2)
            .await
            .unwrap_err();
        let text = neon_clients::Chain(&err).to_string();
        assert!(text.contains(expect), "{fault:?}: {text}");
        assert_no_repeated_segment(&text);
        assert_eq!(err.is_retryable(), retryable, "{fault:?}: {text}");
        // Retryable faults were tried twice, the others once.
        let attempts = server.records().len();
        assert_eq!(attempts, if retryable { 2 } else { 1 }, "{fault:?}");
        // Nothing outside PGDATA, and PGDATA holds only the caller's file again.
        scratch.assert_nothing_outside();
        assert!(!absolute.exists());
        assert_eq!(names(&scratch.pgdata()), ["postgresql.conf"], "{fault:?}");
    }
}

/// An error chain printed once: no `: `-separated segment comes twice (the variant that
/// wraps an error shows it or exposes it as its source, not both).
fn assert_no_repeated_segment(text: &str) {
    let segments: Vec<&str> = text.split(": ").collect();
    for (i, segment) in segments.iter().enumerate() {
        assert!(
            !segments[i + 1..].contains(segment),
            "{segment:?} repeated in {text:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_and_succeed() {
    for (fault, failures) in [(Fault::CloseAfter(300_000), 1), (Fault::ErrorBefore, 2)] {
        let mut config = server_config();
        config.compression = CompressionMode::Gzip;
        config.fault = Some(fault.clone());
        config.fault_count = failures;
        let server = TestPageserver::start(config).await.unwrap();
        let scratch = Scratch::new();
        let stats = fetch(&server, None, Some(TOKEN), &request(true), &scratch, 5)
            .await
            .unwrap();
        assert_eq!(stats.attempts, failures + 1, "{fault:?}");
        scratch.assert_nothing_outside();
        if fault == Fault::CloseAfter(300_000) {
            // The data directory unpacked after a cut stream is whole.
            assert_starts_and_answers(&scratch.pgdata());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failure_and_unknown_timeline_are_not_retried() {
    let server = TestPageserver::start(server_config()).await.unwrap();
    let scratch = Scratch::new();
    let err = fetch(
        &server,
        None,
        Some("wrong-token"),
        &request(true),
        &scratch,
        5,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BasebackupError::Auth { .. }), "{err}");
    assert!(
        !err.to_string().contains("wrong-token"),
        "the token is not echoed: {err}"
    );
    assert_eq!(server.records().len(), 1);
    assert_eq!(server.records()[0].password_ok, Some(false));

    // No token while the pageserver wants one: refused at once, not retried.
    let err = fetch(&server, None, None, &request(true), &scratch, 5)
        .await
        .unwrap_err();
    assert!(matches!(err, BasebackupError::Auth { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("no storage_auth_token"), "{err}");

    let server = TestPageserver::start(server_config()).await.unwrap();
    let other = BasebackupRequest {
        timeline_id: "00000000000000000000000000000001".parse().unwrap(),
        ..request(true)
    };
    let err = fetch(&server, None, Some(TOKEN), &other, &scratch, 5)
        .await
        .unwrap_err();
    assert!(matches!(err, BasebackupError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("Not found: Timeline"), "{err}");
    assert_eq!(server.records().len(), 1);
    scratch.assert_nothing_outside();
    assert_eq!(names(&scratch.pgdata()), ["postgresql.conf"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_retried_then_reported() {
    let port = test_postgres::free_port();
    let scratch = Scratch::new();
    let started = std::time::Instant::now();
    let err = fetch_basebackup(
        &format!("postgresql://no_user@127.0.0.1:{port}"),
        None,
        &request(true),
        &scratch.pgdata(),
        &client_config(3),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BasebackupError::Connect { .. }), "{err}");
    assert!(err.is_retryable());
    // Two waits: 20 ms then 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_transfer_can_be_cancelled_and_leaves_no_partial_data() {
    let mut config = server_config();
    config.fault = Some(Fault::Slow(Duration::from_millis(20)));
    config.chunk_size = 16 * 1024;
    let server = TestPageserver::start(config).await.unwrap();
    let scratch = Scratch::new();
    let cancel = CancellationToken::new();
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel();
        })
    };
    let err = fetch_basebackup(
        &server.connstr(),
        Some(TOKEN),
        &request(false),
        &scratch.pgdata(),
        &client_config(3),
        &cancel,
    )
    .await
    .unwrap_err();
    canceller.await.unwrap();
    assert!(matches!(err, BasebackupError::Cancelled), "{err}");
    assert_eq!(names(&scratch.pgdata()), ["postgresql.conf"]);
    scratch.assert_nothing_outside();
}

/// Fetches from a stand-in started with `config` (a stalling fault) with two attempts of a
/// 300 ms stall timeout; returns the server, the scratch PGDATA, the error and the start.
async fn stalled_fetch(
    config: PageserverConfig,
    gzip: bool,
) -> (TestPageserver, Scratch, BasebackupError, std::time::Instant) {
    let server = TestPageserver::start(config).await.unwrap();
    let scratch = Scratch::new();
    let started = std::time::Instant::now();
    let err = fetch_basebackup(
        &server.connstr(),
        Some(TOKEN),
        &request(gzip),
        &scratch.pgdata(),
        &BasebackupConfig {
            stall_timeout: Duration::from_millis(300),
            ..client_config(2)
        },
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    (server, scratch, err, started)
}

/// A pageserver that stops sending fails each attempt at the stall timeout (retried, then
/// reported with the bytes received), and leaves nothing of the partial archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_fails_at_the_stall_timeout_and_leaves_no_partial_data() {
    let mut config = server_config();
    config.fault = Some(Fault::Slow(Duration::from_secs(30)));
    config.chunk_size = 16 * 1024;
    let (_server, scratch, err, started) = stalled_fetch(config, false).await;
    assert!(
        matches!(err, BasebackupError::Stalled { bytes, .. } if bytes > 0),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(err.to_string().contains("sent nothing for 300ms"), "{err}");
    // Two attempts of about 300 ms each, not the 30 s the server would take.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(names(&scratch.pgdata()), ["postgresql.conf"]);
    scratch.assert_nothing_outside();
}

/// A pageserver that answers nothing at all (no CopyOutResponse, no archive byte, as while
/// it waits for the LSN) fails each attempt at the stall timeout too: retried, then reported
/// with 0 bytes received, and PGDATA is left as it was. Prints the time to fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_before_the_first_byte_fails_at_the_stall_timeout() {
    let mut config = server_config();
    config.fault = Some(Fault::StallBefore(Duration::from_secs(30)));
    let (server, scratch, err, started) = stalled_fetch(config, true).await;
    let took = started.elapsed();
    println!("time to fail, a stall before the first byte (2 attempts of 300ms): {took:?}");
    assert!(
        matches!(err, BasebackupError::Stalled { bytes: 0, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(
        err.to_string()
            .contains("sent nothing for 300ms after 0 bytes"),
        "{err}"
    );
    assert_eq!(server.records().len(), 2, "the stall was retried once");
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(names(&scratch.pgdata()), ["postgresql.conf"]);
    scratch.assert_nothing_outside();
}

/// The retry deadline ends the retries whatever the attempts left: with none, a retryable
/// error is reported after the first attempt; with room, every attempt is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_deadline_ends_the_retries() {
    for (deadline, attempts) in [(Duration::ZERO, 1), (Duration::from_secs(60), 3)] {
        let mut config = server_config();
        config.fault = Some(Fault::ErrorBefore);
        config.fault_count = 100;
        let server = TestPageserver::start(config).await.unwrap();
        let scratch = Scratch::new();
        let err = fetch_basebackup(
            &server.connstr(),
            Some(TOKEN),
            &request(true),
            &scratch.pgdata(),
            &BasebackupConfig {
                retry_deadline: deadline,
                ..client_config(3)
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, BasebackupError::Server { bytes: 0, .. }),
            "{err}"
        );
        assert!(err.is_retryable());
        assert_eq!(server.records().len(), attempts, "deadline {deadline:?}");
        assert_eq!(names(&scratch.pgdata()), ["postgresql.conf"]);
    }
}
