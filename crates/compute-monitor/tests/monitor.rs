//! The monitor against a real PostgreSQL 15: what counts as activity, what does not, and
//! surviving a restart. Waits poll with generous deadlines; nothing asserts on durations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use compute_monitor::{ActivityReason, ActivitySnapshot, ActivityTracker, MonitorConfig};
use test_postgres::TestPostgres;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

async fn wait_for(
    tracker: &ActivityTracker,
    what: &str,
    condition: impl Fn(&ActivitySnapshot) -> bool,
) -> ActivitySnapshot {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let snapshot = tracker.snapshot();
        if condition(&snapshot) {
            return snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {snapshot:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the monitor has completed `n` more checks than now.
async fn more_checks(tracker: &ActivityTracker, n: u64) -> ActivitySnapshot {
    let start = tracker.snapshot().checks;
    wait_for(tracker, "more checks", |s| s.checks >= start + n).await
}

async fn connect(connstr: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(connstr, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn start_monitor(
    pg: &TestPostgres,
    database_counters: bool,
) -> (
    Arc<ActivityTracker>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let mut config = MonitorConfig::new(pg.connstr("postgres").parse().unwrap());
    config.interval = Duration::from_millis(50);
    config.max_backoff = Duration::from_millis(200);
    config.database_counters = database_counters;
    let tracker = Arc::new(ActivityTracker::new());
    let cancel = CancellationToken::new();
    let task = compute_monitor::spawn(config, tracker.clone(), cancel.clone());
    (tracker, cancel, task)
}

async fn state_change(admin: &Client, pid: i32) -> DateTime<Utc> {
    admin
        .query_one(
            "select state_change from pg_stat_activity where pid = $1 and state = 'idle'",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_kinds_and_exclusions() {
    let pg = TestPostgres::start().unwrap();
    pg.psql("postgres", "create role alice login replication")
        .unwrap();
    pg.psql("postgres", "create database appdb").unwrap();
    let (tracker, cancel, task) = start_monitor(&pg, true);

    // The monitor's own queries and compute_ctl's role (the connection user) do not count,
    // busy or idle.
    let admin = connect(&pg.connstr("postgres")).await;
    admin.execute("select pg_sleep(0.3)", &[]).await.unwrap();
    let quiet = more_checks(&tracker, 5).await;
    assert_eq!((quiet.last_active, quiet.reason), (None, None), "{quiet:?}");

    // A client running a query: active now. (Simple-protocol queries only: a prepared
    // statement is closed after use by another message, which moves state_change again.)
    let alice_connstr = format!("{} user=alice", pg.connstr("postgres"));
    let alice = connect(&alice_connstr).await;
    let pid: i32 = admin
        .query_one(
            "select pid from pg_stat_activity where usename = 'alice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let before = Utc::now();
    let sleeper = tokio::spawn(async move {
        alice.simple_query("select pg_sleep(1.5)").await.unwrap();
        alice
    });
    let busy = wait_for(&tracker, "active backend", |s| {
        s.reason == Some(ActivityReason::ActiveBackend)
    })
    .await;
    assert!(busy.last_active.unwrap() >= before - chrono::Duration::seconds(1));

    // Then idle: last_active is exactly the session's state change, and stays there.
    let alice = sleeper.await.unwrap();
    let idle = wait_for(&tracker, "idle backend", |s| {
        s.reason == Some(ActivityReason::IdleBackend)
    })
    .await;
    let idle_at = state_change(&admin, pid).await;
    assert_eq!(idle.last_active, Some(idle_at), "{idle:?}");
    assert!(idle_at > busy.last_active.unwrap(), "monotonic");
    let later = more_checks(&tracker, 5).await;
    assert_eq!(
        (later.last_active, later.reason),
        (Some(idle_at), Some(ActivityReason::IdleBackend))
    );
    drop(alice);

    // A WAL sender that is not the walproposer: active now.
    let wal_dir = tempfile::tempdir().unwrap();
    let mut receiver =
        std::process::Command::new(test_postgres::pg_bin_dir().join("pg_receivewal"))
            .arg("-D")
            .arg(wal_dir.path())
            .arg("-d")
            .arg(format!("host=127.0.0.1 port={} user=alice", pg.port))
            .arg("--no-loop")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let streaming = wait_for(&tracker, "wal sender", |s| {
        s.reason == Some(ActivityReason::WalSender)
    })
    .await;
    assert!(streaming.last_active.unwrap() > idle_at);
    receiver.kill().unwrap();
    receiver.wait().unwrap();

    // A connection shorter than the interval is caught by the database counters (the feature
    // is on in this monitor).
    let short = connect(&format!(
        "{} user=alice dbname=appdb",
        pg.connstr("postgres")
    ))
    .await;
    short.execute("select 1", &[]).await.unwrap();
    drop(short);
    wait_for(&tracker, "database counters", |s| {
        s.reason == Some(ActivityReason::DatabaseCounters)
    })
    .await;

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("monitor stops on cancellation")
        .unwrap();
    let stopped = tracker.snapshot();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        tracker.snapshot().checks,
        stopped.checks,
        "no check after cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_postgres_restart() {
    let mut pg = TestPostgres::start().unwrap();
    pg.psql("postgres", "create role alice login").unwrap();
    let (tracker, cancel, task) = start_monitor(&pg, false);
    let alice_connstr = format!("{} user=alice", pg.connstr("postgres"));

    let alice = connect(&alice_connstr).await;
    alice.simple_query("select 1").await.unwrap();
    wait_for(&tracker, "idle backend", |s| s.last_active.is_some()).await;
    drop(alice);
    let before = more_checks(&tracker, 3).await;
    assert!(before.last_active.is_some());
    assert_eq!(before.total_downtime_ms, 0);

    tokio::task::block_in_place(|| pg.stop_in_place()).unwrap();
    let down = wait_for(&tracker, "downtime", |s| s.current_downtime_ms > 0).await;
    assert_eq!(down.last_active, before.last_active, "kept while down");

    tokio::task::block_in_place(|| pg.start_in_place()).unwrap();
    let back = wait_for(&tracker, "reconnect", |s| {
        s.checks > down.checks && s.current_downtime_ms == 0
    })
    .await;
    assert!(back.total_downtime_ms > 0, "{back:?}");
    assert_eq!(back.last_active, before.last_active, "kept after restart");

    // New activity after the restart is seen on the new connection.
    let alice = connect(&alice_connstr).await;
    alice.simple_query("select 1").await.unwrap();
    let after = wait_for(&tracker, "activity after restart", |s| {
        s.last_active > before.last_active
    })
    .await;
    assert!(after.total_downtime_ms >= back.total_downtime_ms);

    cancel.cancel();
    task.await.unwrap();
}

/// A running subscription worker on the monitored server counts (its WAL sender is on the
/// publisher, a second server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_worker_counts() {
    let logical = test_postgres::TestPostgresConfig {
        extra_conf: vec!["wal_level = logical".to_owned()],
        ..Default::default()
    };
    let publisher = TestPostgres::start_with(logical).unwrap();
    publisher
        .psql(
            "postgres",
            "create table t (id int primary key); create publication p for table t",
        )
        .unwrap();
    let subscriber = TestPostgres::start().unwrap();
    subscriber
        .psql("postgres", "create table t (id int primary key)")
        .unwrap();
    let (tracker, cancel, task) = start_monitor(&subscriber, false);
    let quiet = more_checks(&tracker, 3).await;
    assert_eq!(quiet.last_active, None, "{quiet:?}");

    let connection = format!(
        "host=127.0.0.1 port={} user={} dbname=postgres",
        publisher.port, publisher.superuser
    );
    subscriber
        .psql(
            "postgres",
            &format!(
                "create subscription s connection {} publication p",
                pg_quote::quote_literal(&connection)
            ),
        )
        .unwrap();
    let subscribed = wait_for(&tracker, "subscription", |s| {
        s.reason == Some(ActivityReason::Subscription)
    })
    .await;
    assert!(subscribed.last_active.is_some());
    cancel.cancel();
    task.await.unwrap();
}
