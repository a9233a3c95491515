//! Subscriptions against a real publisher/subscriber pair of PostgreSQL 15 servers: dropped
//! before their database is (`delete_db`), and once per timeline with
//! `drop_subscriptions_before_start`; hostile database and subscription names throughout.

mod convergence;
use convergence::{assert_converged, converge};

use std::time::{Duration, Instant};

use compute_spec::ValidatedSpec;
use pg_quote::{quote_ident, quote_literal};
use pg_reconcile::{Catalog, Counters, PhaseKind, PlanOptions, Session, reconcile};
use serde_json::{Value, json};
use test_postgres::{TestPostgres, TestPostgresConfig, hostile_names};
use tokio_postgres::Config;

const TIMELINE_1: &str = "11111111111111111111111111111111";
const TIMELINE_2: &str = "22222222222222222222222222222222";

fn spec(mut value: Value) -> ValidatedSpec {
    value["format_version"] = json!(1.0);
    ValidatedSpec::from_json(&value.to_string()).unwrap()
}

fn config(pg: &TestPostgres, db: &str) -> Config {
    let mut c: Config = pg.connstr("postgres").parse().unwrap();
    c.dbname(db);
    c
}

/// Runs `query` in database `db` (any name: set on the config, never quoted into a string)
/// and returns the first column of every row.
async fn sql(pg: &TestPostgres, db: &str, query: &str) -> Vec<String> {
    let (client, connection) = config(pg, db)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {db:?}: {e}"));
    tokio::spawn(connection);
    let rows = client
        .simple_query(query)
        .await
        .unwrap_or_else(|e| panic!("{db:?}: {query}: {e:?}"));
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .collect()
}

async fn observe(pg: &TestPostgres) -> Catalog {
    let session = Session::connect(&config(pg, "postgres"), "postgres", &Counters::default())
        .await
        .unwrap();
    session.observe().await.unwrap()
}

/// A publisher (`wal_level = logical`) with database `pub`: table `t` with one row, publication
/// `mypub` for all tables.
async fn publisher() -> TestPostgres {
    let pg = TestPostgres::start_with(TestPostgresConfig {
        extra_conf: vec!["wal_level = logical".to_owned()],
        ..TestPostgresConfig::default()
    })
    .unwrap();
    sql(&pg, "postgres", "CREATE DATABASE pub").await;
    sql(
        &pg,
        "pub",
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1); CREATE PUBLICATION mypub FOR ALL TABLES",
    )
    .await;
    pg
}

/// The libpq conninfo of the publisher's `pub` database.
fn conninfo(publisher: &TestPostgres) -> String {
    publisher.connstr("pub")
}

/// Creates subscription `name` in database `db` of `subscriber`: with a `slot`, an active one
/// to `mypub`, its slot made on the publisher (and the table `t` created for it); without,
/// one with `connect = false`, to a publication that does not exist and a slot (named after
/// the subscription) that was never made.
async fn subscribe(
    subscriber: &TestPostgres,
    publisher: &TestPostgres,
    db: &str,
    name: &str,
    slot: Option<&str>,
) {
    let conn = quote_literal(&conninfo(publisher));
    let name = quote_ident(name);
    // One statement per message: CREATE SUBSCRIPTION with a slot cannot run in a transaction.
    if let Some(slot) = slot {
        sql(subscriber, db, "CREATE TABLE IF NOT EXISTS t (a int)").await;
        let slot = quote_literal(slot);
        let create = format!(
            "CREATE SUBSCRIPTION {name} CONNECTION {conn} PUBLICATION mypub \
             WITH (slot_name = {slot})"
        );
        sql(subscriber, db, &create).await;
    } else {
        let create = format!(
            "CREATE SUBSCRIPTION {name} CONNECTION {conn} PUBLICATION nopub WITH (connect = false)"
        );
        sql(subscriber, db, &create).await;
    }
}

/// Waits (at most 60 s) until table `t` of `db` has the publisher's row.
async fn wait_for_copy(subscriber: &TestPostgres, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sql(subscriber, db, "SELECT count(*) FROM t").await != ["1"] {
        assert!(
            Instant::now() < deadline,
            "the subscription in {db:?} did not copy t:\n{}",
            subscriber.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The slots on the publisher.
async fn slots(publisher: &TestPostgres) -> Vec<String> {
    let mut s = sql(
        publisher,
        "postgres",
        "SELECT slot_name FROM pg_replication_slots WHERE NOT temporary ORDER BY 1",
    )
    .await;
    s.retain(|n| !n.starts_with("pg_"));
    s
}

fn subscriptions_of(catalog: &Catalog) -> Vec<(String, String)> {
    catalog
        .databases
        .iter()
        .flat_map(|(db, d)| d.subscriptions.keys().map(move |s| (db.clone(), s.clone())))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_db_drops_the_subscriptions_first_with_hostile_names() {
    let publisher = publisher().await;
    let subscriber = TestPostgres::start().unwrap();
    let names = hostile_names();
    let mut databases: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "owner": "cloud_admin"}))
        .collect();
    databases.push(json!({"name": "keep", "owner": "cloud_admin"}));
    converge(
        &subscriber,
        &spec(json!({"cluster": {"roles": [], "databases": databases}})),
    )
    .await;

    // Every hostile database gets a subscription named after the next hostile name; two are
    // active (a slot on the publisher, rows copied), the others were never connected. `keep`
    // has an active one that must survive.
    let active = [0, 9];
    for (i, db) in names.iter().enumerate() {
        let sub = &names[(i + 1) % names.len()];
        let slot = format!("slot_{i}");
        let slot = active.contains(&i).then_some(slot.as_str());
        subscribe(&subscriber, &publisher, db, sub, slot).await;
    }
    subscribe(&subscriber, &publisher, "keep", "kept", Some("slot_kept")).await;
    for i in active {
        wait_for_copy(&subscriber, &names[i]).await;
    }
    wait_for_copy(&subscriber, "keep").await;
    let before = observe(&subscriber).await;
    assert_eq!(subscriptions_of(&before).len(), names.len() + 1);
    let first = &before.databases[&names[0]].subscriptions[&names[1]];
    assert!(first.enabled && first.slot_name.as_deref() == Some("slot_0"));
    let never_connected = &before.databases[&names[1]].subscriptions[&names[2]];
    assert!(!never_connected.enabled && never_connected.slot_name.as_deref() == Some(&*names[2]));
    let slots_before = slots(&publisher).await;
    assert_eq!(slots_before, ["slot_0", "slot_9", "slot_kept"]);

    let mut deltas: Vec<Value> = names
        .iter()
        .map(|n| json!({"action": "delete_db", "name": n}))
        .collect();
    // A retried deletion: the database is already gone.
    deltas.push(json!({"action": "delete_db", "name": "nonexistent_db"}));
    let delete = spec(json!({
        "cluster": {"roles": [], "databases": [{"name": "keep", "owner": "cloud_admin"}]},
        "delta_operations": deltas,
    }));
    let plan = converge(&subscriber, &delete).await;
    assert!(
        plan.contains("drop-subscriptions-of-dropped-databases"),
        "{plan}"
    );

    let after = observe(&subscriber).await;
    for n in &names {
        assert!(!after.databases.contains_key(n), "{n:?} still exists");
    }
    assert_eq!(
        subscriptions_of(&after),
        [("keep".to_owned(), "kept".to_owned())]
    );
    assert!(after.databases["keep"].subscriptions["kept"].enabled);
    // The publisher is untouched: its database and data are there, and the detached slots
    // are left on it (upstream's behaviour; they may serve another branch).
    assert_eq!(
        sql(&publisher, "pub", "SELECT count(*) FROM t").await,
        ["1"]
    );
    assert_eq!(slots(&publisher).await, slots_before);
    assert_converged(&subscriber, &delete).await;
}

/// A spec with database `db` and, when `timeline` is given, `drop_subscriptions_before_start`.
fn before_start(db: &str, timeline: Option<&str>) -> ValidatedSpec {
    let mut s = json!({
        "cluster": {"roles": [], "databases": [{"name": db, "owner": "cloud_admin"}]},
        "drop_subscriptions_before_start": true,
    });
    if let Some(timeline) = timeline {
        s["timeline_id"] = json!(timeline);
    }
    spec(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_subscriptions_before_start_runs_once_per_timeline() {
    let publisher = publisher().await;
    let subscriber = TestPostgres::start().unwrap();
    let db = &hostile_names()[9]; // `";$$ $x$ %I`
    converge(&subscriber, &before_start(db, None)).await;
    subscribe(&subscriber, &publisher, db, "inherited", Some("inherited")).await;
    subscribe(&subscriber, &publisher, "postgres", "in system db", None).await;
    wait_for_copy(&subscriber, db).await;

    // Without a timeline there is nothing to record it for: nothing dropped, a warning.
    let counters = Counters::default();
    let no_timeline = before_start(db, None);
    let done = reconcile(
        &no_timeline,
        &PlanOptions::default(),
        &config(&subscriber, "postgres"),
        &counters,
    )
    .await
    .unwrap();
    assert!(done.plan.is_empty(), "{}", done.plan);
    assert_eq!(
        done.plan.warnings,
        ["/drop_subscriptions_before_start: ignored: no timeline_id to record it for"]
    );
    assert_eq!(subscriptions_of(&observe(&subscriber).await).len(), 2);
    assert!(
        observe(&subscriber)
            .await
            .subscriptions_dropped_for
            .is_empty()
    );

    // First start on timeline 1: both dropped, timeline recorded.
    let timeline_1 = before_start(db, Some(TIMELINE_1));
    let plan = converge(&subscriber, &timeline_1).await;
    assert!(plan.contains("record-subscriptions-dropped"), "{plan}");
    let catalog = observe(&subscriber).await;
    assert!(subscriptions_of(&catalog).is_empty());
    assert_eq!(
        catalog.subscriptions_dropped_for,
        [TIMELINE_1.to_owned()].into()
    );
    assert_converged(&subscriber, &timeline_1).await;

    // A subscription made after the start survives a restart on the same timeline.
    subscribe(&subscriber, &publisher, db, "made later", None).await;
    assert_converged(&subscriber, &timeline_1).await;
    assert_eq!(subscriptions_of(&observe(&subscriber).await).len(), 1);

    // A new timeline (a branch of this one): dropped again, the one row now names it.
    let timeline_2 = before_start(db, Some(TIMELINE_2));
    let done = reconcile(
        &timeline_2,
        &PlanOptions::default(),
        &config(&subscriber, "postgres"),
        &Counters::default(),
    )
    .await
    .unwrap();
    assert!(done.report.is_success(), "{}", done.plan);
    let kinds: Vec<PhaseKind> = done.plan.phases.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            PhaseKind::DropSubscriptionsBeforeStart,
            PhaseKind::RecordSubscriptionsDropped
        ]
    );
    let catalog = observe(&subscriber).await;
    assert!(subscriptions_of(&catalog).is_empty());
    assert_eq!(
        catalog.subscriptions_dropped_for,
        [TIMELINE_2.to_owned()].into()
    );
    assert_eq!(
        sql(
            &subscriber,
            "postgres",
            "SELECT id || ' ' || timeline_id FROM neon.drop_subscriptions_done"
        )
        .await,
        [format!("1 {TIMELINE_2}")]
    );
    assert_converged(&subscriber, &timeline_2).await;
}
