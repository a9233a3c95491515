//! Cost of one activity check against a real PostgreSQL 15 on loopback: the monitor's single
//! prepared query versus the baseline of upstream's five separate queries per cycle (run as
//! simple queries, one round trip each — the cheapest form of the baseline), on a quiet server
//! where every check runs (the common case of a compute waiting to be suspended).
//!
//! `cargo bench -p compute-monitor --bench check`; medians are in
//! `target/criterion/activity_check/*/new/estimates.json`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio_postgres::NoTls;

const UPSTREAM_QUERIES: &[&str] = &[
    "select coalesce(sum(active_time), 0), coalesce(sum(sessions), 0) from pg_stat_database \
     where datname not in ('postgres', 'template0', 'template1')",
    "select state, state_change from pg_stat_activity where backend_type = 'client backend' \
     and pid != pg_backend_pid() and usename != 'cloud_admin'",
    "select count(*) from pg_stat_replication where application_name != 'walproposer'",
    "select count(*) from pg_stat_subscription where pid is not null",
    "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'",
];

fn activity_check(c: &mut Criterion) {
    let pg = test_postgres::TestPostgres::start().expect("start PostgreSQL");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&pg.connstr("postgres"), NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    });
    let statement = runtime
        .block_on(client.prepare(compute_monitor::OBSERVATION_QUERY))
        .unwrap();
    let excluded = vec!["cloud_admin".to_owned()];

    let mut group = c.benchmark_group("activity_check");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("upstream_five_queries", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for query in UPSTREAM_QUERIES {
                    client.simple_query(query).await.unwrap();
                }
            })
        })
    });
    group.bench_function("one_prepared_query", |b| {
        b.iter(|| {
            runtime
                .block_on(client.query_one(&statement, &[&excluded]))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, activity_check);
criterion_main!(benches);
