//! The converged-catalog digest against a real PostgreSQL 15: a cluster a full apply converged
//! is recognised on one connection; a spec change or cluster-wide drift takes the full path
//! again (and repairs); drift inside a database's schema `public` waits for the next full
//! apply, as documented.

use compute_spec::ValidatedSpec;
use pg_reconcile::{Counters, PlanOptions, reconcile};
use test_postgres::TestPostgres;
use tokio_postgres::Config;

fn config(pg: &TestPostgres) -> Config {
    pg.connstr("postgres").parse().unwrap()
}

fn spec(roles: &[&str]) -> ValidatedSpec {
    let roles: Vec<String> = roles
        .iter()
        .map(|r| format!(r#"{{"name": "{r}"}}"#))
        .collect();
    ValidatedSpec::from_json(&format!(
        r#"{{"format_version": 1.0, "storage_auth_token": "changes-every-start",
            "cluster": {{"roles": [{}],
            "databases": [{{"name": "app_a", "owner": "alice"}}, {{"name": "app_b", "owner": "alice"}},
                          {{"name": "app_c", "owner": "alice"}}]}}}}"#,
        roles.join(", ")
    ))
    .unwrap()
}

/// Reconciles; returns (operations planned, connections opened).
async fn run(pg: &TestPostgres, spec: &ValidatedSpec) -> (usize, u64) {
    let counters = Counters::default();
    let done = reconcile(spec, &PlanOptions::default(), &config(pg), &counters)
        .await
        .unwrap();
    assert!(done.report.is_success(), "{:?}", done.report);
    (done.plan.operation_count(), counters.connections())
}

async fn psql(pg: &TestPostgres, db: &str, sql: &str) {
    pg.psql(db, sql).unwrap();
}

async fn public_owner(pg: &TestPostgres, db: &str) -> String {
    pg.psql(
        db,
        "SELECT nspowner::pg_catalog.regrole FROM pg_catalog.pg_namespace \
         WHERE nspname = 'public'",
    )
    .unwrap()
    .trim()
    .to_owned()
}

#[tokio::test]
async fn converged_cluster_is_checked_on_one_connection() {
    let pg = TestPostgres::start().unwrap();
    let first = spec(&["alice"]);
    let (ops, connections) = run(&pg, &first).await;
    assert!(ops > 0);
    assert!(connections >= 4, "system database and three spec databases");

    // Converged, recorded: one connection, nothing planned.
    assert_eq!(run(&pg, &first).await, (0, 1));

    // Cluster-wide drift: the full path (every database observed) repairs it.
    psql(&pg, "postgres", "ALTER ROLE alice NOLOGIN").await;
    let (ops, connections) = run(&pg, &first).await;
    assert!(ops > 0);
    assert!(connections >= 4, "{connections}");
    assert_eq!(run(&pg, &first).await, (0, 1));

    // A new spec: the full path again, then one connection.
    let second = spec(&["alice", "bob"]);
    let (ops, connections) = run(&pg, &second).await;
    assert!(ops > 0);
    assert!(connections >= 4, "{connections}");
    assert_eq!(run(&pg, &second).await, (0, 1));

    // Drift inside one database's schema public waits for the next full apply.
    assert_eq!(public_owner(&pg, "app_b").await, "pg_database_owner");
    psql(&pg, "app_b", "ALTER SCHEMA public OWNER TO cloud_admin").await;
    assert_eq!(run(&pg, &second).await, (0, 1));
    assert_eq!(public_owner(&pg, "app_b").await, "cloud_admin");
    let third = spec(&["alice", "bob", "carol"]);
    run(&pg, &third).await;
    assert_eq!(public_owner(&pg, "app_b").await, "alice");

    // A digest nobody can match (tampered, or from another version) is a full path too.
    psql(
        &pg,
        "postgres",
        "UPDATE neon.compute_ctl_catalog_digest SET digest = 'other'",
    )
    .await;
    let (_, connections) = run(&pg, &third).await;
    assert!(connections >= 4, "{connections}");
    assert_eq!(run(&pg, &third).await, (0, 1));
}
