//! After reconciling, `compute-monitor` reports no activity until a spec role's session runs
//! a query, then an activity with its reason; compute_ctl's own user never counts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use compute_monitor::{ActivityReason, ActivitySnapshot, ActivityTracker, MonitorConfig};
use compute_spec::ValidatedSpec;
use test_postgres::{TestPostgres, TestPostgresConfig};
use tokio_util::sync::CancellationToken;

const SPEC: &str = r#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice", "encrypted_password": "md5e2b8b3ea2f4ea7c8ef9d4f0d2e2b5c1a"}],
  "databases": [{"name": "appdb", "owner": "alice"}]}}"#;

/// Waits until the monitor has completed `more` checks after the current one.
async fn wait_checks(tracker: &ActivityTracker, more: u64) -> ActivitySnapshot {
    let target = tracker.snapshot().checks + more;
    for _ in 0..200 {
        let snapshot = tracker.snapshot();
        if snapshot.checks >= target {
            return snapshot;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the monitor made no progress: {:?}", tracker.snapshot());
}

async fn connect_as(pg: &TestPostgres, user: &str, dbname: &str) -> tokio_postgres::Client {
    let mut config = common::connection(pg);
    config.user(user).dbname(dbname);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_counts_spec_roles_only() {
    // Autovacuum workers count as activity; a worker started by chance would make the
    // "no activity yet" assertions flaky.
    let pg = TestPostgres::start_with(TestPostgresConfig {
        extra_conf: vec!["autovacuum = off".to_owned()],
        ..TestPostgresConfig::default()
    })
    .expect("start PostgreSQL 15");
    let spec = ValidatedSpec::from_json(SPEC).expect("valid spec");
    let reconciled = pg_reconcile::reconcile(
        &spec,
        &common::plan_options(),
        &common::connection(&pg),
        &pg_reconcile::Counters::default(),
    )
    .await
    .expect("reconcile");
    assert!(reconciled.report.is_success());

    let tracker = Arc::new(ActivityTracker::new());
    let cancel = CancellationToken::new();
    let mut config = MonitorConfig::new(common::connection(&pg));
    config.interval = Duration::from_millis(50);
    assert_eq!(config.excluded_users, [common::SUPERUSER]);
    let task = compute_monitor::spawn(config, tracker.clone(), cancel.clone());

    // compute_ctl's own user: busy for several checks, then idle but connected.
    let own = connect_as(&pg, common::SUPERUSER, "postgres").await;
    let busy = tokio::spawn(async move {
        own.simple_query("SELECT pg_sleep(0.4)")
            .await
            .expect("own query");
        own
    });
    let during = wait_checks(&tracker, 4).await;
    let own = busy.await.expect("own query task");
    let after = wait_checks(&tracker, 3).await;
    assert_eq!(during.last_active, None, "compute_ctl's own query counted");
    assert_eq!(after.last_active, None, "compute_ctl's own session counted");
    assert_eq!(after.reason, None);

    // A role the spec created connects to the database the spec created and runs a query.
    let before_query = chrono::Utc::now() - chrono::Duration::seconds(1);
    let alice = connect_as(&pg, "alice", "appdb").await;
    alice
        .simple_query("SELECT pg_sleep(0.2)")
        .await
        .expect("alice's query");
    let mut seen = wait_checks(&tracker, 2).await;
    for _ in 0..40 {
        if seen.last_active.is_some() {
            break;
        }
        seen = wait_checks(&tracker, 1).await;
    }
    let Some(at) = seen.last_active else {
        panic!("alice's session not seen: {seen:?}");
    };
    assert!(at >= before_query, "last_active {at} before alice's query");
    assert!(
        matches!(
            seen.reason,
            Some(ActivityReason::ActiveBackend | ActivityReason::IdleBackend)
        ),
        "reason {:?}",
        seen.reason
    );

    // Alice leaves; compute_ctl keeps working: the last activity stays at the end of her
    // query (her idle session's state change), neither moved back nor forward by our own.
    drop(alice);
    own.simple_query("SELECT pg_sleep(0.3)")
        .await
        .expect("own query");
    let later = wait_checks(&tracker, 3).await;
    assert_eq!(later.last_active, Some(at), "{later:?}");
    assert_eq!(later.reason, Some(ActivityReason::IdleBackend));

    cancel.cancel();
    task.await.expect("monitor task stops on cancel");
}
