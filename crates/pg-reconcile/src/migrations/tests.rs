//! The migrations against a real PostgreSQL 15: each one's effect, checked by upstream's
//! verification query (`compute_tools/src/migrations/tests/`) re-expressed; the bookkeeping;
//! a second run; a failing migration and the run after it; hostile role names.

use pg_quote::quote_ident;
use test_postgres::{TestPostgres, TestPostgresConfig, hostile_names};
use tokio_postgres::{Client, Config};

use super::*;
use crate::{PlanOptions, Session, reconcile};

fn config(pg: &TestPostgres) -> Config {
    pg.connstr("postgres").parse().unwrap()
}

/// A session as `migrate` opens it (session guards included).
async fn session(pg: &TestPostgres) -> Session {
    Session::connect(&config(pg), "postgres", &Counters::default())
        .await
        .unwrap()
}

async fn version(client: &Client) -> i32 {
    server_version_num(client).await.unwrap()
}

async fn recorded_id(client: &Client) -> i64 {
    client.query_one(READ_ID, &[]).await.unwrap().get(0)
}

/// Whether migration `n`'s effect holds for `role`: upstream's check query for `n`, as our own
/// query. `None` for the retired migrations, which upstream never wrote a check for.
async fn effect_holds(client: &Client, n: i64, role: &str) -> Option<bool> {
    let sql = match n {
        1 => "SELECT rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = $1",
        // Members inherit; other roles outside pg_* do not bypass row security.
        2 => {
            "SELECT pg_catalog.bool_and(CASE \
               WHEN pg_catalog.pg_has_role(a.oid, p.oid, 'MEMBER') THEN a.rolinherit \
               WHEN pg_catalog.starts_with(a.rolname, 'pg_') THEN true \
               ELSE NOT a.rolbypassrls END) \
             FROM pg_catalog.pg_roles a, pg_catalog.pg_roles p WHERE p.rolname = $1"
        }
        // Upstream's check passes below 16, where the role does not exist.
        3 if version(client).await < 160_000 => "SELECT $1::text IS NOT NULL",
        3 => "SELECT pg_catalog.pg_has_role($1::name, 'pg_create_subscription', 'MEMBER')",
        4 | 12 => {
            let granted = if n == 4 {
                "pg_monitor"
            } else {
                "pg_signal_backend"
            };
            let holds: bool = client
                .query_one(
                    "SELECT pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER') AND EXISTS ( \
                       SELECT FROM pg_catalog.pg_auth_members m \
                       WHERE m.roleid = g.oid AND m.member = r.oid AND m.admin_option) \
                     FROM pg_catalog.pg_roles r, pg_catalog.pg_roles g \
                     WHERE r.rolname = $1 AND g.rolname = $2",
                    &[&role, &granted],
                )
                .await
                .unwrap()
                .get(0);
            return Some(holds);
        }
        // Every one of the two functions that exists here (only the first on 15, where
        // PUBLIC may execute it) is executable by the role.
        10 => {
            "SELECT pg_catalog.bool_and(pg_catalog.has_function_privilege(r.oid, p.oid, 'EXECUTE')) \
             FROM pg_catalog.pg_proc p, pg_catalog.pg_roles r \
             WHERE r.rolname = $1 AND p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace \
               AND p.proname IN ('pg_export_snapshot', 'pg_log_standby_snapshot')"
        }
        11 => {
            "SELECT pg_catalog.has_function_privilege(r.oid, \
               'pg_catalog.pg_show_replication_origin_status()'::pg_catalog.regprocedure, 'EXECUTE') \
             FROM pg_catalog.pg_roles r WHERE r.rolname = $1"
        }
        _ => return None,
    };
    Some(client.query_one(sql, &[&role]).await.unwrap().get(0))
}

/// The numbers whose effect does not hold on a fresh server with the roles of
/// `each_migration_has_its_effect_and_records_its_number` (on 15, 3 and 10 hold already).
const CHANGES_SOMETHING_ON_15: [i64; 5] = [1, 2, 4, 11, 12];

#[tokio::test]
async fn each_migration_has_its_effect_and_records_its_number() {
    let pg = TestPostgres::start().unwrap();
    let session = session(&pg).await;
    let client = session.client();
    // A privileged role without BYPASSRLS, a member that does not inherit, an outsider that
    // bypasses row security: what migrations 1 and 2 repair.
    client
        .batch_execute(
            "CREATE ROLE priv NOLOGIN NOBYPASSRLS; CREATE ROLE member NOINHERIT IN ROLE priv; \
             CREATE ROLE outsider BYPASSRLS",
        )
        .await
        .unwrap();
    let list = migrations("priv", version(client).await);
    assert_eq!(list.len() as i64, MIGRATION_COUNT);
    for n in 1..=MIGRATION_COUNT {
        let before = effect_holds(client, n, "priv").await;
        let done = run(client, &list[..n as usize]).await.unwrap();
        assert_eq!(
            done,
            Migrated {
                previous_id: n - 1,
                current_id: n,
                ran: vec![n]
            }
        );
        assert_eq!(recorded_id(client).await, n);
        match effect_holds(client, n, "priv").await {
            Some(after) => {
                assert!(after, "migration {n}: its check fails after it ran");
                if CHANGES_SOMETHING_ON_15.contains(&n) {
                    assert_eq!(before, Some(false), "migration {n}: held before it ran");
                }
            }
            None => assert!(matches!(list[n as usize - 1].step, Step::Skip(_)), "{n}"),
        }
    }
    for n in 1..=MIGRATION_COUNT {
        assert_ne!(effect_holds(client, n, "priv").await, Some(false), "{n}");
    }
}

#[tokio::test]
async fn bookkeeping_is_created_owned_by_the_superuser_and_closed_to_public() {
    let pg = TestPostgres::start().unwrap();
    let session = session(&pg).await;
    let client = session.client();
    // A schema someone else made and opened to everyone is taken over and closed.
    client
        .batch_execute(
            "CREATE ROLE somebody; CREATE SCHEMA neon_migration AUTHORIZATION somebody; \
             GRANT ALL ON SCHEMA neon_migration TO PUBLIC",
        )
        .await
        .unwrap();
    let done = run(client, &[]).await.unwrap();
    assert_eq!(done.current_id, 0);
    let rows: Vec<(i32, i64)> = client
        .query("SELECT key, id FROM neon_migration.migration_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [(0, 0)]);
    let (owner, public_grants): (String, i64) = client
        .query_one(
            "SELECT n.nspowner::pg_catalog.regrole::text, \
               (SELECT count(*) FROM pg_catalog.aclexplode(n.nspacl) a WHERE a.grantee = 0) \
             FROM pg_catalog.pg_namespace n WHERE n.nspname = 'neon_migration'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((owner.as_str(), public_grants), ("cloud_admin", 0));
    let columns: Vec<String> = client
        .query(
            "SELECT a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod) \
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END \
               || coalesce(' default ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') \
             FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d \
               ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = 'neon_migration.migration_id'::pg_catalog.regclass \
               AND a.attnum > 0 ORDER BY a.attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        columns,
        ["key integer not null", "id bigint not null default 0"]
    );
    let primary_key: String = client
        .query_one(
            "SELECT pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint \
             WHERE conrelid = 'neon_migration.migration_id'::pg_catalog.regclass AND contype = 'p'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(primary_key, "PRIMARY KEY (key)");
}

/// `migrate` itself: its own connection, named `compute_ctl:migrations`; a second run does
/// nothing (the row is not even rewritten) and leaves a reconciled catalog converged.
#[tokio::test]
async fn second_run_does_nothing_and_the_reconciler_stays_converged() {
    let pg = TestPostgres::start_with(TestPostgresConfig {
        extra_conf: vec!["log_connections = on".into()],
        ..TestPostgresConfig::default()
    })
    .unwrap();
    let spec = compute_spec::ValidatedSpec::from_json(
        r#"{"format_version": 1.0, "cluster": {"roles": [{"name": "alice"}],
            "databases": [{"name": "app", "owner": "alice"}]}}"#,
    )
    .unwrap();
    let options = PlanOptions::default();
    reconcile(&spec, &options, &config(&pg), &Counters::default())
        .await
        .unwrap();
    let first = migrate(
        &config(&pg),
        SessionGuards::default(),
        &options.privileged_role_name,
    )
    .await
    .unwrap();
    assert_eq!(
        (first.previous_id, first.current_id, first.ran.len() as i64),
        (0, MIGRATION_COUNT, MIGRATION_COUNT)
    );
    assert!(
        pg.log().contains("application_name=compute_ctl:migrations"),
        "{}",
        pg.log()
    );
    let session = session(&pg).await;
    let row_version = "SELECT xmin::text FROM neon_migration.migration_id";
    let xmin: String = session
        .client()
        .query_one(row_version, &[])
        .await
        .unwrap()
        .get(0);

    let second = migrate(
        &config(&pg),
        SessionGuards::default(),
        &options.privileged_role_name,
    )
    .await
    .unwrap();
    assert_eq!(
        second,
        Migrated {
            previous_id: MIGRATION_COUNT,
            current_id: MIGRATION_COUNT,
            ran: vec![]
        }
    );
    let after: String = session
        .client()
        .query_one(row_version, &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(xmin, after, "the id row was rewritten");

    let again = reconcile(&spec, &options, &config(&pg), &Counters::default())
        .await
        .unwrap();
    assert_eq!(again.plan.operation_count(), 0, "{}", again.plan);
}

#[tokio::test]
async fn a_failing_migration_stops_the_run_and_the_next_run_starts_from_it() {
    let pg = TestPostgres::start().unwrap();
    let session = session(&pg).await;
    let client = session.client();
    client
        .batch_execute("CREATE ROLE priv NOLOGIN")
        .await
        .unwrap();
    let good = migrations("priv", version(client).await);
    let mut broken = good.clone();
    // Migration 4 does its work, then fails: none of it may stay.
    broken[3].step = Step::Sql(
        "GRANT pg_monitor TO priv WITH ADMIN OPTION; CREATE TABLE public.half_done (); \
         SELECT 1 / 0"
            .into(),
    );

    let error = run(client, &broken).await.unwrap_err();
    assert_eq!(error.migration_id(), Some(4));
    let text = error.to_string();
    assert!(
        text.starts_with("migration 4 (grant_pg_monitor_to_privileged_role): SQLSTATE 22012: "),
        "{text}"
    );
    assert_eq!(recorded_id(client).await, 3);
    let leftovers: bool = client
        .query_one(
            "SELECT pg_catalog.to_regclass('public.half_done') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!leftovers, "the failed migration's table stayed");
    assert_eq!(effect_holds(client, 4, "priv").await, Some(false));
    assert_eq!(
        effect_holds(client, 11, "priv").await,
        Some(false),
        "ran on after the failure"
    );
    // The session is usable again: not left inside the aborted transaction.
    client.batch_execute("SELECT 1").await.unwrap();

    let done = run(client, &good).await.unwrap();
    assert_eq!(done.previous_id, 3);
    assert_eq!(done.ran, (4..=MIGRATION_COUNT).collect::<Vec<_>>());
    assert_eq!(recorded_id(client).await, MIGRATION_COUNT);
    assert_eq!(effect_holds(client, 4, "priv").await, Some(true));
}

#[tokio::test]
async fn hostile_privileged_role_names_get_every_effect() {
    let pg = TestPostgres::start().unwrap();
    let session = session(&pg).await;
    let client = session.client();
    let version = version(client).await;
    for name in hostile_names() {
        client
            .batch_execute(&format!(
                "CREATE ROLE {} NOLOGIN; DROP SCHEMA IF EXISTS neon_migration CASCADE",
                quote_ident(&name)
            ))
            .await
            .unwrap();
        let done = run(client, &migrations(&name, version)).await;
        assert_eq!(done.unwrap().current_id, MIGRATION_COUNT, "{name:?}");
        for n in 1..=MIGRATION_COUNT {
            assert_ne!(
                effect_holds(client, n, &name).await,
                Some(false),
                "{name:?}: {n}"
            );
        }
    }
}

/// A migrated cluster is recognised in one read: the next `migrate` sends no DDL (only the
/// check); once the bookkeeping differs from what the full path leaves (opened to PUBLIC), the
/// full path runs again and closes it.
#[tokio::test]
async fn migrated_cluster_is_checked_without_ddl_and_a_changed_bookkeeping_is_repaired() {
    let pg = TestPostgres::start_with(TestPostgresConfig {
        extra_conf: vec![
            "log_statement = 'all'".into(),
            "log_line_prefix = '%a: '".into(),
        ],
        ..TestPostgresConfig::default()
    })
    .unwrap();
    let options = PlanOptions::default();
    let spec = compute_spec::ValidatedSpec::from_json(
        r#"{"format_version": 1.0, "cluster": {"roles": [], "databases": []}}"#,
    )
    .unwrap();
    let base = config(&pg);
    reconcile(&spec, &options, &base, &Counters::default())
        .await
        .unwrap();
    let migrate = || {
        migrate(
            &base,
            SessionGuards::default(),
            &options.privileged_role_name,
        )
    };
    migrate().await.unwrap();
    let ddl_lines = |log: &str| {
        log.lines()
            .filter(|l| l.starts_with("compute_ctl:migrations:"))
            .filter(|l| l.contains("CREATE SCHEMA") || l.contains("REVOKE"))
            .count()
    };
    let before = ddl_lines(&pg.log());
    assert!(before > 0, "{}", pg.log());
    let again = migrate().await.unwrap();
    assert!(again.ran.is_empty());
    assert_eq!(again.current_id, MIGRATION_COUNT);
    assert_eq!(ddl_lines(&pg.log()), before, "{}", pg.log());

    let session = session(&pg).await;
    session
        .client()
        .batch_execute("GRANT USAGE ON SCHEMA neon_migration TO PUBLIC")
        .await
        .unwrap();
    let repaired = migrate().await.unwrap();
    assert!(repaired.ran.is_empty());
    assert!(ddl_lines(&pg.log()) > before, "{}", pg.log());
    let public_usage: bool = session
        .client()
        .query_one(
            "SELECT pg_catalog.has_schema_privilege('public', 'neon_migration', 'USAGE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public_usage);
}
