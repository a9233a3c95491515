//! The LSN lease client against the stand-in pageserver: the command and token each shard
//! receives, the earliest expiry of the shards, a NULL answer, errors, a pageserver that never
//! answers (bounded, cancellable), and the renewal loop (renewals, a new target, the end).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use compute_spec::{
    Lsn, PageserverConnectionInfo, PageserverProtocol, PageserverShardConnectionInfo,
    PageserverShardInfo,
};
use neon_clients::{
    LeaseConfig, LeaseEnd, LeaseError, LeaseGrant, LeaseRequest, LeaseTarget, RetryConfig,
    acquire_lease, keep_lease,
};
use neon_test_servers::{LeaseAnswer, LeaseFault, LeaseSettings, PageserverConfig, TestPageserver};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE: &str = "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d";
const TOKEN: &str = "lease-token";
const LSN: &str = "0/16B3748";

async fn pageserver(lease_length: Duration) -> TestPageserver {
    // No basebackup is asked for: the data directory is never read.
    let mut config = PageserverConfig::new(
        "/nonexistent".into(),
        TENANT.parse().unwrap(),
        TIMELINE.parse().unwrap(),
    );
    config.token = Some(TOKEN.into());
    config.lease_length = lease_length;
    TestPageserver::start(config).await.unwrap()
}

/// A target with one shard per server (unsharded when there is one).
fn target(servers: &[&TestPageserver]) -> LeaseTarget {
    let count = if servers.len() == 1 {
        0
    } else {
        servers.len() as u8
    };
    let shards: BTreeMap<String, PageserverShardInfo> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let info = PageserverShardInfo {
                pageservers: vec![PageserverShardConnectionInfo {
                    id: Some(i as u64),
                    libpq_url: Some(s.connstr()),
                    grpc_url: None,
                }],
            };
            (format!("{i:02x}{count:02x}"), info)
        })
        .collect();
    LeaseTarget {
        pageserver: PageserverConnectionInfo {
            shard_count: count,
            stripe_size: Some(2048),
            shards,
            prefer_protocol: PageserverProtocol::Libpq,
        },
        auth_token: Some(TOKEN.into()),
    }
}

fn request() -> LeaseRequest {
    LeaseRequest {
        tenant_id: TENANT.parse().unwrap(),
        timeline_id: TIMELINE.parse().unwrap(),
        lsn: LSN.parse().unwrap(),
    }
}

fn config() -> LeaseConfig {
    LeaseConfig {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_millis(500),
        retry: RetryConfig {
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(50),
            ..RetryConfig::LSN_LEASE
        },
        ..LeaseConfig::default()
    }
}

#[tokio::test]
async fn every_shard_gets_its_command_with_the_token_and_the_earliest_expiry_wins() {
    let short = pageserver(Duration::from_secs(120)).await;
    let long = pageserver(Duration::from_secs(600)).await;
    let before = SystemTime::now();
    let grant = acquire_lease(
        &target(&[&long, &short]),
        &request(),
        &config(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let LeaseGrant::Until(until) = grant else {
        panic!("{grant:?}")
    };
    let remaining = until.duration_since(before).unwrap();
    assert!(
        remaining > Duration::from_secs(119) && remaining < Duration::from_secs(130),
        "the shorter lease wins: {remaining:?}"
    );
    for (server, shard) in [(&long, "0002"), (&short, "0102")] {
        let leases = server.leases();
        assert_eq!(leases.len(), 1, "{leases:?}");
        let lease = &leases[0];
        assert_eq!(
            lease.query,
            format!("lease lsn {TENANT}-{shard} {TIMELINE} {LSN} ")
        );
        assert_eq!(lease.password_ok, Some(true));
        assert!(matches!(lease.answer, LeaseAnswer::Granted(_)), "{lease:?}");
    }
}

#[tokio::test]
async fn unsharded_lease_names_the_bare_tenant() {
    let server = pageserver(Duration::from_secs(600)).await;
    let grant = acquire_lease(
        &target(&[&server]),
        &request(),
        &config(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(matches!(grant, LeaseGrant::Until(_)), "{grant:?}");
    assert_eq!(server.leases()[0].tenant_shard_id, TENANT);
}

#[tokio::test]
async fn null_from_one_shard_refuses_errors_and_bad_tokens_fail() {
    let a = pageserver(Duration::from_secs(600)).await;
    let b = pageserver(Duration::from_secs(600)).await;
    b.set_lease_settings(|s| s.gc_cutoff = Some(Lsn(u64::MAX)));
    let cancel = CancellationToken::new();
    let grant = acquire_lease(&target(&[&a, &b]), &request(), &config(), &cancel).await;
    assert_eq!(grant.unwrap(), LeaseGrant::Refused);
    assert_eq!(b.leases()[0].answer, LeaseAnswer::Null);

    a.set_lease_settings(|s| s.fault = Some(LeaseFault::Error));
    let err = acquire_lease(&target(&[&a]), &request(), &config(), &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LeaseError::Server { code, message, .. } if code == "XX000" && message.contains("injected")),
        "{err}"
    );

    let mut wrong = target(&[&a]);
    wrong.auth_token = Some("wrong".into());
    let err = acquire_lease(&wrong, &request(), &config(), &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LeaseError::Server { message, .. } if message.starts_with("Unauthorized")),
        "{err}"
    );
    assert!(!err.to_string().contains("wrong"), "no token in: {err}");
}

#[tokio::test]
async fn a_stalled_pageserver_times_out_and_cancellation_is_prompt() {
    let server = pageserver(Duration::from_secs(600)).await;
    server.set_lease_settings(|s| s.fault = Some(LeaseFault::Stall));
    let started = Instant::now();
    let err = acquire_lease(
        &target(&[&server]),
        &request(),
        &config(),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LeaseError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let cancel = CancellationToken::new();
    let slow = LeaseConfig {
        request_timeout: Duration::from_secs(60),
        ..config()
    };
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    let err = acquire_lease(&target(&[&server]), &request(), &slow, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, LeaseError::Cancelled), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Polls `probe` every 20 ms for at most 10 s.
async fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn renewals_follow_the_target_retry_failures_and_end_on_null_or_cancel() {
    let first = pageserver(Duration::from_millis(400)).await;
    let second = pageserver(Duration::from_secs(600)).await;
    let (tx, rx) = watch::channel(target(&[&first]));
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move { keep_lease(request(), rx, &config(), &cancel).await }
    });

    // A 400 ms lease is renewed every 200 ms.
    eventually("three leases", || first.leases().len() >= 3).await;
    let times: Vec<SystemTime> = first.leases().iter().map(|l| l.at).collect();
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap();
        assert!(gap >= Duration::from_millis(150), "{gap:?}");
    }

    // Failures are retried.
    first.set_lease_settings(|s| s.fault = Some(LeaseFault::Error));
    let errors = || {
        first
            .leases()
            .iter()
            .filter(|l| matches!(l.answer, LeaseAnswer::Error(_)))
            .count()
    };
    eventually("two failed attempts", || errors() >= 2).await;

    // A new target is used at once, not after the 10-minute lease's wait.
    tx.send_replace(target(&[&second]));
    eventually("a lease on the new pageserver", || {
        !second.leases().is_empty()
    })
    .await;
    let on_first = first.leases().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(second.leases().len(), 1, "renewed after 9 minutes only");
    assert_eq!(first.leases().len(), on_first, "the old pageserver is left");

    // NULL ends the renewals.
    second.set_lease_settings(|s| {
        *s = LeaseSettings {
            gc_cutoff: Some(Lsn(u64::MAX)),
            ..LeaseSettings::default()
        }
    });
    tx.send_replace(target(&[&second]));
    let end = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, LeaseEnd::Refused);

    // Cancellation ends them too, during a wait.
    let (_tx, rx) = watch::channel(target(&[&first]));
    first.set_lease_settings(|s| s.fault = None);
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move { keep_lease(request(), rx, &config(), &cancel).await }
    });
    let before = first.leases().len();
    eventually("a lease", || first.leases().len() > before).await;
    cancel.cancel();
    let end = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, LeaseEnd::Cancelled);
    let after = first.leases().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(first.leases().len(), after, "no lease after cancellation");
}
