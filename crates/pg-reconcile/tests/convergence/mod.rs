//! Helpers shared by the pg-reconcile test files that run against a real PostgreSQL: apply a
//! spec and check success, and check that a cluster is converged.

use compute_spec::ValidatedSpec;
use pg_reconcile::{
    Connector, Counters, PlanOptions, Reconciled, SessionGuards, observe_cluster, plan, reconcile,
};
use test_postgres::TestPostgres;
use tokio_postgres::Config;

/// Admin sessions to `pg`'s system database.
fn config(pg: &TestPostgres) -> Config {
    pg.connstr("postgres").parse().unwrap()
}

/// One `reconcile` of `spec` with default options, counted in `counters`.
async fn reconcile_counted(
    pg: &TestPostgres,
    spec: &ValidatedSpec,
    counters: &Counters,
) -> Reconciled {
    reconcile(spec, &PlanOptions::default(), &config(pg), counters)
        .await
        .unwrap()
}

/// Reconciles, asserts every operation succeeded (and has an outcome), and returns the plan's
/// text.
pub(crate) async fn converge(pg: &TestPostgres, spec: &ValidatedSpec) -> String {
    let done = reconcile_counted(pg, spec, &Counters::default()).await;
    let errors: Vec<String> = done.report.errors().map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{}", done.plan);
    assert_eq!(done.report.outcomes.len(), done.plan.operation_count());
    done.plan.to_string()
}

/// Plans against the live cluster, fully observed, and asserts there is nothing to do,
/// observed in one round trip on one connection per database: the system database (catalog
/// and contents together) and each other spec database (its contents). Then `reconcile` itself
/// plans nothing, and once it has recorded its digest (a cluster converged by `apply` alone
/// has none), recognises the cluster in three round trips (the catalog, whether a digest is
/// kept, the digest) on one connection.
pub(crate) async fn assert_converged(pg: &TestPostgres, spec: &ValidatedSpec) {
    let counters = Counters::default();
    let connector = Connector::new(&config(pg), SessionGuards::for_spec(spec), &counters);
    let (catalog, _sessions) = observe_cluster(spec, &connector, "postgres").await.unwrap();
    let planned = plan(spec, &catalog, &PlanOptions::default()).unwrap();
    assert!(planned.is_empty(), "not converged:\n{planned}");
    let others = spec
        .databases()
        .filter(|(d, _)| d.name != "postgres")
        .count() as u64;
    assert_eq!(
        (counters.round_trips(), counters.connections()),
        (1 + others, 1 + others)
    );
    for _ in 0..2 {
        let done = reconcile_counted(pg, spec, &Counters::default()).await;
        assert!(done.plan.is_empty(), "not converged:\n{}", done.plan);
    }
    let counters = Counters::default();
    reconcile_counted(pg, spec, &counters).await;
    assert_eq!((counters.round_trips(), counters.connections()), (3, 1));
}
