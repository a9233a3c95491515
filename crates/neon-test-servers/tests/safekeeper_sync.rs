//! `neon_clients`' safekeeper sync against the stand-in safekeepers and the
//! `test-sync-safekeepers` executable: the fast path is taken exactly when a quorum agrees,
//! the full sync otherwise; the child's failures, timeout and cancellation.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use compute_spec::{Lsn, TenantId, TimelineId};
use neon_clients::{
    FastPathConfig, RetryConfig, SyncError, SyncMethod, SyncSafekeepersConfig, sync_safekeepers,
    sync_safekeepers_fast_then_full, sync_safekeepers_fast_then_full_with_retries,
    sync_safekeepers_with_retries,
};
use neon_test_servers::{SafekeeperConfig, TestSafekeeper};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE: &str = "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d";
const TOKEN: &str = "sk-token";
/// What the stand-in prints: different from the safekeepers' LSNs, to tell the paths apart.
const FULL_SYNC_LSN: &str = "0/2000028";

fn tenant() -> TenantId {
    TENANT.parse().unwrap()
}

fn timeline() -> TimelineId {
    TIMELINE.parse().unwrap()
}

fn lsn(s: &str) -> Lsn {
    s.parse().unwrap()
}

/// A temp dir holding `pgdata/` and the stand-in's config and record files.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(config: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pgdata")).unwrap();
        let record = dir.path().join("record");
        std::fs::write(
            dir.path().join("standin.conf"),
            format!("{config}\nrecord={}\n", record.display()),
        )
        .unwrap();
        // The stand-in may run as the unprivileged user: let it write its record.
        test_postgres::chown_to_pg_user(dir.path()).unwrap();
        Setup { dir }
    }

    /// A wrapper script that points the stand-in at its config (the client passes only
    /// PGDATA and NEON_AUTH_TOKEN to the child, as compute_ctl does).
    fn pgbin(&self) -> PathBuf {
        let script = self.dir.path().join("postgres");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nTEST_SYNC_SK_CONFIG={} exec {} \"$@\"\n",
                self.dir.path().join("standin.conf").display(),
                env!("CARGO_BIN_EXE_test-sync-safekeepers")
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        script
    }

    fn full(&self, timeout: Duration) -> SyncSafekeepersConfig {
        SyncSafekeepersConfig {
            pgbin: self.pgbin(),
            pgdata: self.dir.path().join("pgdata"),
            auth_token: Some(TOKEN.to_owned()),
            run_as: test_postgres::unprivileged_user()
                .unwrap()
                .map(|(u, g)| (u.as_raw(), g.as_raw())),
            timeout,
        }
    }

    /// Lines the stand-in recorded (one per `--sync-safekeepers` run).
    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("record"))
            .map(|t| t.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    fn pgdata(&self) -> PathBuf {
        self.dir.path().join("pgdata")
    }
}

async fn safekeepers(configs: Vec<SafekeeperConfig>) -> Vec<TestSafekeeper> {
    let mut v = Vec::new();
    for c in configs {
        v.push(TestSafekeeper::start(c).await.unwrap());
    }
    v
}

fn sk(flush: &str, commit: &str) -> SafekeeperConfig {
    let mut c = SafekeeperConfig::new(tenant(), timeline(), lsn(flush));
    c.commit_lsn = lsn(commit);
    c.token = Some(TOKEN.to_owned());
    c
}

fn fast(sks: &[TestSafekeeper], token: &str) -> FastPathConfig {
    FastPathConfig {
        safekeepers: sks.iter().map(TestSafekeeper::addr).collect(),
        tenant_id: tenant(),
        timeline_id: timeline(),
        auth_token: Some(token.to_owned()),
        timeout: Duration::from_millis(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_and_full_sync_are_each_chosen_when_they_should_be() {
    let agreeing = || sk("0/16B3748", "0/16B3748");
    let mut other_timeline = agreeing();
    other_timeline.timeline = "00000000000000000000000000000001".parse().unwrap();
    let mut silent = agreeing();
    silent.silent = true;
    // (name, safekeepers, token, expected method)
    let cases: Vec<(&str, Vec<SafekeeperConfig>, &str, SyncMethod)> = vec![
        (
            "all agree",
            vec![agreeing(), agreeing(), agreeing()],
            TOKEN,
            SyncMethod::FastPath,
        ),
        (
            "quorum of 2 of 3 agrees, 1 silent",
            vec![agreeing(), agreeing(), silent.clone()],
            TOKEN,
            SyncMethod::FastPath,
        ),
        (
            "one safekeeper",
            vec![agreeing()],
            TOKEN,
            SyncMethod::FastPath,
        ),
        (
            "flush LSNs differ",
            vec![sk("0/16B3748", "0/16B3748"), sk("0/16B3750", "0/16B3748")],
            TOKEN,
            SyncMethod::FullSync,
        ),
        (
            "commit behind flush",
            vec![sk("0/16B3750", "0/16B3748"), sk("0/16B3750", "0/16B3748")],
            TOKEN,
            SyncMethod::FullSync,
        ),
        (
            "timeline missing on one",
            vec![agreeing(), other_timeline.clone()],
            TOKEN,
            SyncMethod::FullSync,
        ),
        (
            "no quorum: 2 of 3 silent",
            vec![agreeing(), silent.clone(), silent.clone()],
            TOKEN,
            SyncMethod::FullSync,
        ),
        (
            "wrong token",
            vec![agreeing(), agreeing(), agreeing()],
            "wrong",
            SyncMethod::FullSync,
        ),
        ("no safekeepers", vec![], TOKEN, SyncMethod::FullSync),
    ];
    for (name, configs, token, expect) in cases {
        let setup = Setup::new(&format!("lsn={FULL_SYNC_LSN}\nexpect_token={TOKEN}"));
        let sks = safekeepers(configs).await;
        let started = Instant::now();
        let result = sync_safekeepers_fast_then_full(
            &fast(&sks, token),
            &setup.full(Duration::from_secs(30)),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(result.method, expect, "{name}");
        match expect {
            SyncMethod::FastPath => {
                assert_eq!(result.lsn, lsn("0/16B3748"), "{name}");
                assert_eq!(result.sync_duration, None, "{name}");
                assert!(setup.runs().is_empty(), "{name}: the full sync ran");
            }
            SyncMethod::FullSync => {
                assert_eq!(result.lsn, lsn(FULL_SYNC_LSN), "{name}");
                assert!(result.sync_duration.is_some(), "{name}");
                assert_eq!(setup.runs().len(), 1, "{name}");
            }
        }
        // Silent safekeepers cost at most the fast path's timeout.
        assert!(
            result.check_duration < Duration::from_secs(2),
            "{name}: {result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_passes_pgdata_token_and_user_and_reads_the_lsn() {
    let setup = Setup::new(&format!("lsn= {FULL_SYNC_LSN}  \nexpect_token={TOKEN}"));
    let got = sync_safekeepers(
        &setup.full(Duration::from_secs(30)),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(got, lsn(FULL_SYNC_LSN));
    let expected_uid = match test_postgres::unprivileged_user().unwrap() {
        Some((uid, _)) => uid.as_raw(),
        None => nix::unistd::Uid::effective().as_raw(),
    };
    assert_eq!(
        setup.runs(),
        [format!(
            "PGDATA={} token=set uid={expected_uid}",
            setup.pgdata().display()
        )]
    );

    // Without the token the stand-in refuses, like a safekeeper would.
    let mut no_token = setup.full(Duration::from_secs(30));
    no_token.auth_token = None;
    let err = sync_safekeepers(&no_token, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Failed { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("NEON_AUTH_TOKEN is not the expected token"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_failures_carry_stderr_and_are_classified() {
    let setup = Setup::new("fail=FATAL:  could not reach a quorum of safekeepers");
    let err = sync_safekeepers(
        &setup.full(Duration::from_secs(30)),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SyncError::Failed { .. }), "{text}");
    assert!(text.contains("could not reach a quorum"), "{text}");
    assert!(
        text.contains("syncing (stand-in)"),
        "earlier stderr lines are kept: {text}"
    );
    assert!(err.is_retryable());

    let setup = Setup::new("lsn=not-an-lsn");
    let err = sync_safekeepers(
        &setup.full(Duration::from_secs(30)),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SyncError::BadOutput { .. }), "{err}");
    assert!(!err.is_retryable());

    let mut missing = setup.full(Duration::from_secs(30));
    missing.pgbin = Path::new("/nonexistent/postgres").to_owned();
    let err = sync_safekeepers(&missing, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Spawn { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_times_out_or_is_cancelled_and_the_child_is_killed() {
    let setup = Setup::new(&format!("lsn={FULL_SYNC_LSN}\ndelay_ms=20000"));
    let started = Instant::now();
    let err = sync_safekeepers(
        &setup.full(Duration::from_millis(300)),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SyncError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("syncing (stand-in)"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let err = sync_safekeepers(&setup.full(Duration::from_secs(60)), &cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Cancelled), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Both children were started and killed before printing anything.
    assert_eq!(setup.runs().len(), 2);

    // A run that hangs for the whole timeout is not run again: the retries would multiply
    // the wait (issue 14: 6 × 300 s).
    let retry = RetryConfig {
        attempts: 6,
        initial_delay: Duration::from_millis(10),
        multiplier: 1.0,
        max_delay: Duration::from_millis(10),
    };
    let started = Instant::now();
    let err = sync_safekeepers_with_retries(
        &setup.full(Duration::from_millis(500)),
        &retry,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SyncError::Timeout { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("timed out after 500ms"), "{err}");
    assert_eq!(setup.runs().len(), 3, "one more run, not six");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_full_syncs_are_retried() {
    let retry = RetryConfig {
        attempts: 3,
        initial_delay: Duration::from_millis(10),
        multiplier: 1.1,
        max_delay: Duration::from_millis(50),
    };
    // Two failures, then success: the third attempt gives the LSN.
    let setup = Setup::new(&format!("lsn={FULL_SYNC_LSN}\nfail_first=2"));
    let got = sync_safekeepers_with_retries(
        &setup.full(Duration::from_secs(30)),
        &retry,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(got, lsn(FULL_SYNC_LSN));
    assert_eq!(setup.runs().len(), 3);

    // Three failures exhaust three attempts; the last error is reported.
    let setup = Setup::new(&format!("lsn={FULL_SYNC_LSN}\nfail_first=3"));
    let sks = safekeepers(vec![]).await;
    let err = sync_safekeepers_fast_then_full_with_retries(
        &fast(&sks, TOKEN),
        &setup.full(Duration::from_secs(30)),
        &retry,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("injected failure 3 of 3"), "{err}");
    assert_eq!(setup.runs().len(), 3);

    // A garbled output is not retried.
    let setup = Setup::new("lsn=garbage");
    let err = sync_safekeepers_with_retries(
        &setup.full(Duration::from_secs(30)),
        &retry,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SyncError::BadOutput { .. }), "{err}");
    assert_eq!(setup.runs().len(), 1);
}
