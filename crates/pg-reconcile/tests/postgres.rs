//! Observe, plan and apply against a real PostgreSQL 15 started by the test.

mod convergence;
use convergence::{assert_converged, converge};

use compute_spec::ValidatedSpec;
use pg_reconcile::{
    Catalog, Connector, Counters, Outcome, PhaseKind, PlanOptions, Session, SessionGuards,
    ValidUntil, apply, observe_cluster, plan, plan_read_only, reconcile,
};
use serde_json::{Value, json};
use test_postgres::{TestPostgres, TestPostgresConfig};
use tokio_postgres::Config;

const SCRAM: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=:c3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3M=";

use test_postgres::hostile_names;

fn spec(value: Value) -> ValidatedSpec {
    let mut value = value;
    value["format_version"] = json!(1.0);
    ValidatedSpec::from_json(&value.to_string()).unwrap()
}

fn config(pg: &TestPostgres) -> Config {
    pg.connstr("postgres").parse().unwrap()
}

/// Unguarded-by-pgaudit admin sessions on `pg`.
fn connector(pg: &TestPostgres, counters: &Counters) -> Connector {
    Connector::new(&config(pg), SessionGuards::default(), counters)
}

fn md5_of(i: usize) -> String {
    format!("{i:032x}")
}

/// Runs `query` in database `db` (any name: no connection-string quoting involved) and returns
/// the first column of every row, one per line.
async fn sql(pg: &TestPostgres, db: &str, query: &str) -> Result<String, String> {
    let mut c = config(pg);
    c.dbname(db);
    let (client, connection) = c
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("{e:?}"))?;
    tokio::spawn(connection);
    let rows = client
        .simple_query(query)
        .await
        .map_err(|e| format!("{db:?}: {e:?}"))?;
    Ok(rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

async fn observe(pg: &TestPostgres) -> Catalog {
    let session = Session::connect(&config(pg), "postgres", &Counters::default())
        .await
        .unwrap();
    session.observe().await.unwrap()
}

#[tokio::test]
async fn hostile_names_as_roles_databases_and_owners_converge() {
    let pg = TestPostgres::start().unwrap();
    let names = hostile_names();
    let roles: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"name": n, "encrypted_password": md5_of(i)}))
        .collect();
    // Each database is owned by the role of the next name, so owner ≠ name.
    let dbs: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"name": n, "owner": names[(i + 1) % names.len()]}))
        .collect();
    let s = spec(json!({"cluster": {"roles": roles, "databases": dbs}}));
    let text = converge(&pg, &s).await;
    assert!(!text.contains(&md5_of(3)), "plan text must not show hashes");
    let catalog = observe(&pg).await;
    for (i, n) in names.iter().enumerate() {
        let role = catalog.roles.get(n).unwrap_or_else(|| panic!("role {n:?}"));
        assert_eq!(
            role.password.as_deref(),
            Some(&*format!("md5{}", md5_of(i)))
        );
        assert!(role.login && role.createdb && role.member_of.contains("neon_superuser"));
        let db = catalog
            .databases
            .get(n)
            .unwrap_or_else(|| panic!("db {n:?}"));
        assert_eq!(&db.owner, &names[(i + 1) % names.len()]);
        assert!(db.all_privileges.contains("neon_superuser"), "{n:?}");
    }
    assert_converged(&pg, &s).await;

    // Rename a hostile database and delete a hostile role that owns objects in two hostile
    // databases (one connection per database, by name, with no URL rewriting).
    let victim = &names[9]; // `";$$ $x$ %I`
    for db in [&names[1], &names[13]] {
        let role = pg_quote::quote_ident(victim);
        sql(
            &pg,
            db,
            &format!(
                "GRANT CREATE ON SCHEMA public TO {role}; SET ROLE {role}; \
                 CREATE TABLE owned_by_victim (x int); \
                 CREATE FUNCTION victim_fn() RETURNS int LANGUAGE sql AS 'select 1'"
            ),
        )
        .await
        .unwrap();
    }
    let mut remaining: Vec<Value> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| *n != victim)
        .map(|(i, n)| json!({"name": n, "encrypted_password": md5_of(i)}))
        .collect();
    remaining.push(json!({"name": "new owner"}));
    let dbs: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let owner = &names[(i + 1) % names.len()];
            let owner = if owner == victim { "new owner" } else { owner };
            let name = if n == &names[2] { "renamed %20" } else { n };
            json!({"name": name, "owner": owner})
        })
        .collect();
    let s2 = spec(json!({
        "cluster": {"roles": remaining, "databases": dbs},
        "delta_operations": [
            {"action": "delete_role", "name": victim},
            {"action": "rename_db", "name": names[2], "new_name": "renamed %20"}
        ]
    }));
    converge(&pg, &s2).await;
    let catalog = observe(&pg).await;
    assert!(!catalog.roles.contains_key(victim));
    assert!(catalog.databases.contains_key("renamed %20"));
    assert!(!catalog.databases.contains_key(&names[2]));
    // Objects went to each database's owner.
    let owner_of_1 = &names[2];
    let out = sql(
        &pg,
        &names[1],
        "select pg_get_userbyid(relowner) from pg_class where relname = 'owned_by_victim'",
    )
    .await
    .unwrap();
    assert_eq!(&out, owner_of_1);
    assert_converged(&pg, &s2).await;
}

#[tokio::test]
async fn deleting_a_role_with_objects_in_several_databases_and_foreign_grants() {
    let pg = TestPostgres::start().unwrap();
    let s1 = spec(json!({"cluster": {
        "roles": [{"name": "owner1"}, {"name": "victim"}, {"name": "grantor"}],
        "databases": [{"name": "d1", "owner": "owner1"}, {"name": "d2", "owner": "owner1"}]
    }}));
    converge(&pg, &s1).await;
    pg.psql(
        "d1",
        "GRANT CREATE ON SCHEMA public TO victim; SET ROLE owner1; CREATE TABLE shared (x int); CREATE SCHEMA s; \
         GRANT SELECT ON shared TO grantor WITH GRANT OPTION; \
         GRANT USAGE ON SCHEMA s TO grantor WITH GRANT OPTION; \
         SET ROLE grantor; GRANT SELECT ON shared TO victim; GRANT USAGE ON SCHEMA s TO victim; \
         SET ROLE victim; CREATE TABLE mine1 (x int);",
    )
    .unwrap();
    pg.psql(
        "d2",
        "GRANT CREATE ON SCHEMA public TO victim; SET ROLE victim; CREATE TABLE mine2 (x int); CREATE SEQUENCE seq2; \
         CREATE FUNCTION f2() RETURNS int LANGUAGE sql AS 'select 1';",
    )
    .unwrap();
    // What upstream did before #10299 fails: DROP OWNED does not revoke foreign grants.
    let err = pg
        .psql(
            "d1",
            "BEGIN; REASSIGN OWNED BY victim TO owner1; DROP OWNED BY victim; DROP ROLE victim;",
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be dropped"), "{err}");

    let s2 = spec(json!({"cluster": {
        "roles": [{"name": "owner1"}, {"name": "grantor"}],
        "databases": [{"name": "d1", "owner": "owner1"}, {"name": "d2", "owner": "owner1"}]},
        "delta_operations": [{"action": "delete_role", "name": "victim"}]
    }));
    let text = converge(&pg, &s2).await;
    assert!(
        text.contains("delete-role-references on database \"d2\""),
        "{text}"
    );
    let catalog = observe(&pg).await;
    assert!(!catalog.roles.contains_key("victim"));
    let owners = pg
        .psql(
            "d2",
            "select string_agg(relname || '=' || pg_get_userbyid(relowner), ',' order by relname) \
             from pg_class where relname in ('mine2', 'seq2')",
        )
        .unwrap();
    assert_eq!(owners.trim(), "mine2=owner1,seq2=owner1");
    let owner = pg
        .psql(
            "d1",
            "select pg_get_userbyid(relowner) from pg_class where relname = 'mine1'",
        )
        .unwrap();
    assert_eq!(owner.trim(), "owner1");
    // The grant from the other grantor is gone, the grantor's own privilege stays.
    let acl = pg
        .psql(
            "d1",
            "select relacl::text from pg_class where relname = 'shared'",
        )
        .unwrap();
    assert!(
        acl.contains("grantor=r*/owner1") && !acl.contains("victim"),
        "{acl}"
    );
    // Re-running (as after a crash once the role is gone) plans nothing.
    assert_converged(&pg, &s2).await;
}

#[tokio::test]
async fn upstream_fixture_spec_converges_with_its_delta_operations() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../specs/upstream/latest_libs_compute_api_tests_cluster_spec@6a35a3e9f1.json"
    );
    let s = ValidatedSpec::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pg = TestPostgres::start().unwrap();
    // The state the fixture's delta operations expect: a role to rename (md5 password, which
    // the rename clears), a role to delete that owns a table, databases to rename and delete.
    for statement in [
        format!(
            "CREATE ROLE \"zenith new\" LOGIN PASSWORD 'md5{}'",
            md5_of(7)
        ),
        "CREATE ROLE zenith2".to_owned(),
        "CREATE DATABASE \"DB\"".to_owned(),
        "CREATE DATABASE zenith_test".to_owned(),
        "GRANT CREATE ON SCHEMA public TO zenith2; SET ROLE zenith2; CREATE TABLE t2 (x int)"
            .to_owned(),
    ] {
        pg.psql("postgres", &statement).unwrap();
    }
    let text = converge(&pg, &s).await;
    assert!(
        text.contains(r#"ALTER ROLE "zenith new" RENAME TO "zenith ""new""";"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ALTER DATABASE "DB" RENAME TO "DB2";"#),
        "{text}"
    );
    let catalog = observe(&pg).await;
    assert!(!catalog.roles.contains_key("zenith2") && !catalog.roles.contains_key("zenith new"));
    assert!(
        !catalog.databases.contains_key("zenith_test") && !catalog.databases.contains_key("DB")
    );
    let renamed = &catalog.roles["zenith \"new\""];
    let want = s
        .spec()
        .cluster
        .roles
        .iter()
        .find(|r| r.name == "zenith \"new\"")
        .unwrap();
    let want = want.encrypted_password.as_deref().unwrap();
    assert_eq!(
        renamed
            .password
            .as_deref()
            .map(|p| p.trim_start_matches("md5")),
        Some(want.trim_start_matches("md5"))
    );
    assert_eq!(catalog.databases["DB2"].owner, "alexk");
    assert_converged(&pg, &s).await;
}

/// A crash leaves a prefix of the plan done (the server runs one connection's statements in
/// order, each in its own transaction). From every such prefix, the next run converges.
#[tokio::test]
async fn crash_after_any_prefix_of_the_plan_converges() {
    let setup = [
        format!("CREATE ROLE old LOGIN PASSWORD 'md5{}'", md5_of(1)),
        "CREATE ROLE victim".to_owned(),
        "CREATE DATABASE d1 OWNER old".to_owned(),
        "CREATE DATABASE gone".to_owned(),
        "CREATE DATABASE broken".to_owned(),
        "UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'broken'".to_owned(),
    ];
    let s = spec(json!({"cluster": {
        "roles": [{"name": "new", "encrypted_password": md5_of(1)},
                  {"name": "r2", "encrypted_password": SCRAM, "options": [{"name": "IN ROLE", "value": "new", "vartype": "string"}]}],
        "databases": [{"name": "d1", "owner": "r2"}, {"name": "d2", "owner": "new"}]},
        "delta_operations": [
            {"action": "rename_role", "name": "old", "new_name": "new"},
            {"action": "delete_role", "name": "victim"},
            {"action": "delete_db", "name": "gone"}]
    }));
    let options = PlanOptions::default();
    let mut cut = 0;
    let mut total = usize::MAX;
    while cut <= total {
        let pg = TestPostgres::start().unwrap();
        for statement in &setup {
            pg.psql("postgres", statement).unwrap();
        }
        sql(
            &pg,
            "d1",
            "GRANT CREATE ON SCHEMA public TO victim; SET ROLE victim; CREATE TABLE v (x int)",
        )
        .await
        .unwrap();
        let admin = connector(&pg, &Counters::default());
        let (observed, sessions) = observe_cluster(&s, &admin, "postgres").await.unwrap();
        drop(sessions);
        let full = plan(&s, &observed, &options).unwrap();
        total = full.operation_count();
        // The first `cut` operations, then a crash.
        let mut partial = full.clone();
        let mut left = cut;
        for phase in &mut partial.phases {
            phase.operations.truncate(left);
            left -= phase.operations.len();
        }
        partial.phases.retain(|p| !p.operations.is_empty());
        let report = apply(&partial, &connector(&pg, &Counters::default()), &[]).await;
        assert!(report.is_success(), "cut {cut}: {report:?}");
        converge(&pg, &s).await;
        let catalog = observe(&pg).await;
        assert!(!catalog.roles.contains_key("victim") && !catalog.roles.contains_key("old"));
        assert_eq!(
            catalog.roles["new"].password.as_deref(),
            Some(&*format!("md5{}", md5_of(1)))
        );
        assert!(catalog.roles["r2"].member_of.contains("new"));
        assert_eq!(catalog.databases["d1"].owner, "r2");
        assert!(
            !catalog.databases.contains_key("gone") && !catalog.databases.contains_key("broken")
        );
        assert_converged(&pg, &s).await;
        // Every fourth cut point keeps the test short; the first and last are always tried.
        cut = if cut == total {
            cut + 1
        } else {
            (cut + 4).min(total)
        };
    }
    assert!(
        total > 10,
        "the plan exercises every phase: {total} operations"
    );
}

#[tokio::test]
async fn invalid_database_is_dropped_and_recreated() {
    let pg = TestPostgres::start().unwrap();
    let s = spec(json!({"cluster": {
        "roles": [{"name": "app"}],
        "databases": [{"name": "broken db", "owner": "app"}, {"name": "gone", "owner": "app"}]
    }}));
    converge(&pg, &s).await;
    pg.psql(
        "postgres",
        "UPDATE pg_database SET datconnlimit = -2 WHERE datname IN ('broken db', 'gone')",
    )
    .unwrap();
    let catalog = observe(&pg).await;
    assert!(catalog.databases["broken db"].invalid);
    let s2 = spec(json!({"cluster": {
        "roles": [{"name": "app"}],
        "databases": [{"name": "broken db", "owner": "app"}]
    }}));
    let text = converge(&pg, &s2).await;
    assert!(
        text.starts_with("-- phase 1 drop-invalid-databases"),
        "{text}"
    );
    let catalog = observe(&pg).await;
    assert!(!catalog.databases["broken db"].invalid);
    assert!(!catalog.databases.contains_key("gone"));
    sql(&pg, "broken db", "select 1").await.unwrap();
    assert_converged(&pg, &s2).await;
}

/// Databases of one phase are created on several sessions at once (the system database's and
/// up to three more, within `max_sessions`): a failure is reported on its own database's
/// operations, the other databases are created, and the end state is the converged one.
#[tokio::test]
async fn independent_databases_are_created_on_parallel_sessions() {
    let roles: Vec<Value> = (0..6)
        .map(|i| json!({"name": format!("owner {i}"), "encrypted_password": md5_of(i)}))
        .collect();
    let mut dbs: Vec<Value> = (0..6)
        .map(|i| json!({"name": format!("db {i}"), "owner": format!("owner {i}")}))
        .collect();
    let good = spec(json!({"cluster": {"roles": roles, "databases": dbs}}));
    dbs[3]["options"] =
        json!([{"name": "TEMPLATE", "value": "no such template", "vartype": "string"}]);
    let bad = spec(json!({"cluster": {"roles": roles, "databases": dbs}}));
    // (session budget, connections: the system database's and the extra ones of the phase)
    for (max_sessions, connections) in [(None, 4), (Some(1), 2)] {
        let pg = TestPostgres::start().unwrap();
        let options = PlanOptions {
            max_sessions,
            ..PlanOptions::default()
        };
        let counters = Counters::default();
        let done = reconcile(&bad, &options, &config(&pg), &counters)
            .await
            .unwrap();
        assert_eq!(counters.connections(), connections, "{max_sessions:?}");
        let phase = |kind| {
            done.plan
                .phases
                .iter()
                .position(|p| p.kind == kind)
                .unwrap()
        };
        let creation = phase(PhaseKind::CreateAndAlterDatabases);
        let first: usize = done.plan.phases[..creation]
            .iter()
            .map(|p| p.operations.len())
            .sum();
        let ops = &done.plan.phases[creation].operations;
        for (op, outcome) in ops.iter().zip(&done.report.outcomes[first..]) {
            match outcome {
                Outcome::Failed(e) => {
                    assert_eq!(e.object, r#"database "db 3""#);
                    assert_eq!(op.object.to_string(), e.object);
                }
                other => assert_eq!(other, &Outcome::Ok, "{op:?}"),
            }
        }
        let failed: Vec<_> = done.report.errors().collect();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0].message.contains("no such template"), "{failed:?}");
        assert!(
            done.report.outcomes[first + ops.len()..]
                .iter()
                .all(|o| *o == Outcome::NotRun)
        );
        let catalog = observe(&pg).await;
        for i in [0, 1, 2, 4, 5] {
            assert_eq!(
                catalog.databases[&format!("db {i}")].owner,
                format!("owner {i}")
            );
        }
        assert!(!catalog.databases.contains_key("db 3"));
        converge(&pg, &good).await;
        assert_converged(&pg, &good).await;
    }
}

#[tokio::test]
async fn renames_keep_attributes_and_reset_md5_passwords() {
    let pg = TestPostgres::start().unwrap();
    let s1 = spec(json!({"cluster": {
        "roles": [
            {"name": "old md5", "encrypted_password": "md5".to_owned() + &md5_of(1),
             "options": [{"name": "CONNECTION LIMIT", "value": "7", "vartype": "integer"}]},
            {"name": "old scram", "encrypted_password": SCRAM}],
        "databases": [{"name": "old db", "owner": "old md5"}, {"name": "template db", "owner": "old scram",
            "options": [{"name": "IS_TEMPLATE", "value": "true", "vartype": "bool"}]}]
    }}));
    converge(&pg, &s1).await;
    let s2 = spec(json!({"cluster": {
        "roles": [
            // The md5 hash given without its prefix equals the stored one.
            {"name": "new md5", "encrypted_password": md5_of(1),
             "options": [{"name": "CONNECTION LIMIT", "value": "7", "vartype": "integer"}]},
            {"name": "new scram", "encrypted_password": SCRAM}],
        "databases": [{"name": "new db", "owner": "new md5"}]},
        "delta_operations": [
            {"action": "rename_role", "name": "old md5", "new_name": "new md5"},
            {"action": "rename_role", "name": "old scram", "new_name": "new scram"},
            {"action": "rename_db", "name": "old db", "new_name": "new db"},
            {"action": "delete_db", "name": "template db"}]
    }));
    let text = converge(&pg, &s2).await;
    // Only the md5 password is set again (the rename cleared it); the SCRAM one survives.
    assert!(
        text.contains("ALTER ROLE \"new md5\" PASSWORD '<redacted>';"),
        "{text}"
    );
    assert!(!text.contains("ALTER ROLE \"new scram\""), "{text}");
    let catalog = observe(&pg).await;
    let r = &catalog.roles["new md5"];
    assert_eq!(r.password.as_deref(), Some(&*format!("md5{}", md5_of(1))));
    assert_eq!(r.connection_limit, 7);
    assert_eq!(catalog.roles["new scram"].password.as_deref(), Some(SCRAM));
    assert!(!catalog.roles.contains_key("old md5"));
    assert_eq!(catalog.databases["new db"].owner, "new md5");
    assert!(!catalog.databases.contains_key("template db"));
    // The same spec again: renames already done, nothing to do.
    assert_converged(&pg, &s2).await;
}

#[tokio::test]
async fn passwords_never_reach_the_server_log_even_when_a_statement_fails() {
    let pg = TestPostgres::start_with(TestPostgresConfig {
        extra_conf: vec![
            "log_statement = 'all'".into(),
            "log_min_duration_statement = 0".into(),
            "log_min_error_statement = 'info'".into(),
            "debug_print_parse = on".into(),
            "debug_print_rewritten = on".into(),
            "debug_print_plan = on".into(),
        ],
        ..TestPostgresConfig::default()
    })
    .unwrap();
    let hash = "0123456789abcdef0123456789abcdef";
    // The privileged role exists already, so the stale plan below fails on the roles.
    converge(
        &pg,
        &spec(json!({"cluster": {"roles": [], "databases": []}})),
    )
    .await;
    let s = spec(json!({"cluster": {
        "roles": [{"name": "a", "encrypted_password": hash}, {"name": "b", "encrypted_password": SCRAM}],
        "databases": [{"name": "d", "owner": "a"}]
    }}));
    let options = PlanOptions::default();
    let counters = Counters::default();
    let session = Session::connect(&config(&pg), "postgres", &counters)
        .await
        .unwrap();
    let stale = session.observe().await.unwrap();
    let p = plan(&s, &stale, &options).unwrap();
    let sessions = [session];
    let first = apply(&p, &connector(&pg, &counters), &sessions).await;
    assert!(first.is_success(), "{first:?}");
    // Applying the same plan again, as if another actor had created the roles meanwhile: the
    // CREATE ROLE statements (with their passwords) fail.
    let again = apply(&p, &connector(&pg, &counters), &sessions).await;
    let errors: Vec<_> = again.errors().collect();
    assert_eq!(errors.len(), 2, "{again:?}");
    let e = errors.iter().find(|e| e.object == "role \"a\"").unwrap();
    assert_eq!(e.sqlstate.as_deref(), Some("42710"));
    assert!(!e.is_retryable());
    assert!(
        e.to_string()
            .starts_with("role \"a\": SQLSTATE 42710: role \"a\" already exists")
    );
    // Later phases did not run.
    assert!(again.outcomes.contains(&Outcome::NotRun));
    // The next run converges.
    assert_converged(&pg, &s).await;
    drop(sessions);
    let log = pg.log();
    assert!(log.contains("already exists"), "the failure is logged");
    assert!(
        log.contains("statement: CREATE DATABASE \"d\""),
        "statements without secrets are logged:\n{log}"
    );
    assert!(log.contains("statement: SET log_statement = 'none'"));
    for secret in [hash, "a2tra2tr", "c3Nzc3Nz"] {
        assert!(
            !log.contains(secret),
            "secret {secret} in the server log:\n{log}"
        );
    }
}

/// With `pg_stat_statements` preloaded and tracking every statement, utility ones included,
/// the statements that carry password hashes (create and alter) are not recorded, while the
/// reconciler's other statements are (so tracking was on).
#[tokio::test]
async fn passwords_never_reach_pg_stat_statements() {
    let pg = TestPostgres::start_with(TestPostgresConfig {
        extra_conf: vec![
            "shared_preload_libraries = 'pg_stat_statements'".into(),
            "pg_stat_statements.track = 'all'".into(),
            "pg_stat_statements.track_utility = on".into(),
        ],
        ..TestPostgresConfig::default()
    })
    .unwrap();
    pg.psql("postgres", "CREATE EXTENSION pg_stat_statements")
        .unwrap();
    let hash = "0123456789abcdef0123456789abcdef";
    let roles = |first: &str, second: &str| {
        spec(json!({"cluster": {
            "roles": [{"name": "a", "encrypted_password": first}, {"name": "b", "encrypted_password": second}],
            "databases": [{"name": "stats_db", "owner": "a"}]
        }}))
    };
    converge(&pg, &roles(hash, SCRAM)).await;
    // Changed passwords: ALTER ROLE … PASSWORD.
    let other = "fedcba9876543210fedcba9876543210";
    converge(&pg, &roles(SCRAM, other)).await;
    let recorded = sql(&pg, "postgres", "SELECT query FROM pg_stat_statements")
        .await
        .unwrap();
    assert!(
        recorded.contains("CREATE DATABASE \"stats_db\""),
        "tracking was on for statements without secrets:\n{recorded}"
    );
    let rows = recorded.lines().count();
    let with_a_secret = recorded
        .lines()
        .filter(|row| {
            [hash, other, "a2tra2tr", "c3Nzc3Nz", "PASSWORD"]
                .iter()
                .any(|secret| row.contains(secret))
        })
        .count();
    println!("figures: {rows} rows in pg_stat_statements, {with_a_secret} with a hash");
    for secret in [hash, other, "a2tra2tr", "c3Nzc3Nz", "PASSWORD"] {
        assert!(
            !recorded.contains(secret),
            "{secret} in pg_stat_statements:\n{recorded}"
        );
    }
}

/// Every `pg_stat_activity` row, as `pid|state|query` on one line (an idle session shows its
/// last query), and the pids waiting for a lock.
async fn activity_and_waiters(pg: &TestPostgres) -> (Vec<String>, Vec<String>) {
    let activity = sql(
        pg,
        "postgres",
        "SELECT pid || '|' || coalesce(state, '') || '|' || \
                translate(coalesce(query, ''), E'\\n\\r', '  ') \
         FROM pg_stat_activity",
    )
    .await
    .unwrap();
    let waiters = sql(pg, "postgres", "SELECT pid FROM pg_locks WHERE NOT granted")
        .await
        .unwrap();
    (
        activity.lines().map(str::to_owned).collect(),
        waiters.lines().map(str::to_owned).collect(),
    )
}

/// While the reconciler's `ALTER ROLE … PASSWORD` waits for a lock (another session updated
/// the role in an open transaction), `pg_stat_activity` shows no row with the hash or a
/// `PASSWORD '…'` clause: the waiting backend's query text is off (`track_activities =
/// off`; the observation's earlier query names `rolpassword`, which is no secret). Then
/// the other transaction rolls back and the apply finishes (a commit would make PostgreSQL
/// 15 fail it: "tuple concurrently updated").
#[tokio::test]
async fn a_blocked_password_statement_never_shows_in_pg_stat_activity() {
    let pg = TestPostgres::start().unwrap();
    let roles = |hash: &str| {
        spec(json!({"cluster": {
            "roles": [{"name": "a", "encrypted_password": hash}], "databases": []
        }}))
    };
    converge(&pg, &roles(&md5_of(1))).await;
    let (blocker, connection) = config(&pg).connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    blocker
        .batch_execute("BEGIN; ALTER ROLE a CONNECTION LIMIT 5")
        .await
        .unwrap();
    let hash = md5_of(2);
    let changed = roles(&hash);
    let base = config(&pg);
    let apply = tokio::spawn(async move {
        reconcile(
            &changed,
            &PlanOptions::default(),
            &base,
            &Counters::default(),
        )
        .await
    });
    let (mut polls, mut rows, mut waited) = (0, Vec::new(), 0);
    let started = std::time::Instant::now();
    while polls < 20 && started.elapsed() < std::time::Duration::from_secs(20) {
        let (activity, waiters) = activity_and_waiters(&pg).await;
        if !waiters.is_empty() {
            polls += 1;
            waited += activity
                .iter()
                .filter(|row| {
                    waiters
                        .iter()
                        .any(|pid| row.starts_with(&format!("{pid}|")))
                })
                .count();
            rows.extend(activity);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let with_a_hash = rows
        .iter()
        .filter(|row| row.contains(&hash) || row.to_uppercase().contains("PASSWORD '"))
        .count();
    println!(
        "figures: {polls} polls while the ALTER ROLE waited, {} rows seen ({waited} of the \
         waiting backend), {with_a_hash} with a hash",
        rows.len()
    );
    assert_eq!(polls, 20, "the password statement never waited for a lock");
    assert_eq!(waited, 20, "{rows:#?}");
    assert_eq!(with_a_hash, 0, "{rows:#?}");
    assert!(!apply.is_finished(), "the apply did not wait");
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let done = apply.await.unwrap().unwrap();
    assert!(done.report.is_success(), "{:?}", done.report);
    let password = observe(&pg).await.roles["a"].password.clone();
    assert_eq!(password, Some(format!("md5{hash}")));
}

#[tokio::test]
async fn password_statements_are_not_sent_when_logging_cannot_be_turned_off() {
    let pg = TestPostgres::start_with(TestPostgresConfig {
        extra_conf: vec!["log_statement = 'all'".into()],
        ..TestPostgresConfig::default()
    })
    .unwrap();
    // A role that may create roles but may not change logging settings.
    pg.psql(
        "postgres",
        "CREATE ROLE plain LOGIN CREATEROLE; CREATE ROLE neon_superuser",
    )
    .unwrap();
    let hash = "fedcba9876543210fedcba9876543210";
    let s = spec(json!({"cluster": {
        "roles": [{"name": "a", "encrypted_password": hash, "options": [
            {"name": "NOREPLICATION", "vartype": "bool"}, {"name": "NOBYPASSRLS", "vartype": "bool"}]}],
        "databases": []
    }}));
    let mut base = config(&pg);
    base.user("plain");
    let counters = Counters::default();
    let p = plan(&s, &observe(&pg).await, &PlanOptions::default()).unwrap();
    let report = apply(
        &p,
        &Connector::new(&base, SessionGuards::default(), &counters),
        &[],
    )
    .await;
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert_eq!(
        errors[0].sqlstate.as_deref(),
        Some("42501"),
        "{}",
        errors[0]
    );
    assert!(
        !observe(&pg).await.roles.contains_key("a"),
        "nothing was sent"
    );
    assert!(!pg.log().contains(hash));
}

/// Per-database settings a user may set (upstream's test_db_with_custom_settings) do not
/// reach the reconciler's sessions: deleting a role whose objects live in such a database
/// runs there as the superuser, writable, without a timeout.
#[tokio::test]
async fn per_database_settings_do_not_reach_the_reconciler() {
    let pg = TestPostgres::start().unwrap();
    let before = spec(json!({"cluster": {
        "roles": [{"name": "some_other_role"}, {"name": "leaver"}],
        "databases": [{"name": "db_with_custom_settings", "owner": "some_other_role"}]}}));
    converge(&pg, &before).await;
    // The system database's objects are gone and its sessions are trapped too.
    sql(
        &pg,
        "postgres",
        "DROP TABLE public.health_check; DROP SCHEMA neon CASCADE;
         ALTER DATABASE postgres SET default_transaction_read_only = on;
         ALTER DATABASE postgres SET search_path = non_public_schema;
         ALTER DATABASE postgres SET lock_timeout = 1",
    )
    .await
    .unwrap();
    sql(
        &pg,
        "db_with_custom_settings",
        "CREATE TABLE owned_by_leaver (id int); ALTER TABLE owned_by_leaver OWNER TO leaver;
         CREATE SCHEMA non_public_schema;
         ALTER SCHEMA public OWNER TO cloud_admin; CREATE ROLE web_access;
         ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM neon_superuser;
         ALTER DATABASE db_with_custom_settings SET role = some_other_role;
         ALTER DATABASE db_with_custom_settings SET default_transaction_read_only = on;
         ALTER DATABASE db_with_custom_settings SET search_path = non_public_schema;
         ALTER DATABASE db_with_custom_settings SET statement_timeout = 1;
         ALTER DATABASE db_with_custom_settings SET lock_timeout = 1;
         ALTER ROLE cloud_admin SET statement_timeout = 1",
    )
    .await
    .unwrap();
    assert_eq!(
        sql(&pg, "db_with_custom_settings", "SELECT current_role")
            .await
            .unwrap(),
        "some_other_role"
    );
    let after = spec(json!({
        "cluster": {"roles": [{"name": "some_other_role"}],
                    "databases": [{"name": "db_with_custom_settings", "owner": "some_other_role"}]},
        "delta_operations": [{"action": "delete_role", "name": "leaver"}]}));
    let text = converge(&pg, &after).await;
    for part in [
        "REASSIGN OWNED BY \"leaver\"",
        "ALTER SCHEMA public OWNER TO \"some_other_role\"",
        "GRANT CREATE ON SCHEMA public TO \"web_access\"",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES",
        "CREATE SCHEMA IF NOT EXISTS neon",
        "CREATE TABLE IF NOT EXISTS public.health_check",
    ] {
        assert!(text.contains(part), "{part:?} not in the plan:\n{text}");
    }
    assert_converged(&pg, &after).await;
    // The test's own plain connection would now time out (1 ms); the reconciler's does not.
    let session = Session::connect(
        &config(&pg),
        "db_with_custom_settings",
        &Counters::default(),
    )
    .await
    .unwrap();
    let rows = session
        .client()
        .simple_query(
            "SELECT current_user || ' ' || current_setting('default_transaction_read_only') \
             || ' ' || current_setting('statement_timeout') || ' ' \
             || current_setting('lock_timeout') || ' [' \
             || current_setting('search_path') || '] ' || tableowner \
             FROM pg_catalog.pg_tables WHERE tablename = 'owned_by_leaver'",
        )
        .await
        .unwrap();
    let value = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(
        value.as_deref(),
        Some("cloud_admin off 0 0 [] some_other_role")
    );
}

#[tokio::test]
async fn read_only_plan_changes_nothing_and_forward_ddl_is_off() {
    let pg = TestPostgres::start().unwrap();
    let s = spec(
        json!({"cluster": {"roles": [{"name": "r"}], "databases": [{"name": "d", "owner": "r"}]}}),
    );
    let p = plan_read_only(&s, &PlanOptions::default(), &pg.url())
        .await
        .unwrap();
    assert_eq!(
        p.phases.iter().map(|p| p.kind).collect::<Vec<_>>(),
        [
            PhaseKind::CreatePrivilegedRole,
            PhaseKind::CreateAndAlterRoles,
            PhaseKind::CreateAndAlterDatabases,
            PhaseKind::CreateSchemaNeon,
            PhaseKind::SchemaPrivileges,
            PhaseKind::CreateHealthCheck,
        ]
    );
    let catalog = observe(&pg).await;
    assert!(!catalog.roles.contains_key("r") && !catalog.roles.contains_key("neon_superuser"));
    let session = Session::connect(&config(&pg), "postgres", &Counters::default())
        .await
        .unwrap();
    let rows = session
        .client()
        .simple_query("SHOW neon.forward_ddl")
        .await
        .unwrap();
    let value = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("off"));
}

mod property {
    //! Random specs, applied, read back equal to the spec.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    struct RoleCase {
        name: String,
        password: u8,
        createdb: Option<bool>,
        login: Option<bool>,
        inherit: Option<bool>,
        connection_limit: Option<i32>,
        valid_until: Option<usize>,
    }

    /// `VALID UNTIL` values and what PostgreSQL stores for them.
    const VALID_UNTIL: [(&str, ValidUntil); 3] = [
        ("infinity", ValidUntil::Infinity),
        (
            "2030-01-02 03:04:05+02",
            ValidUntil::At(1_893_546_245_000_000),
        ),
        ("2031-06-01", ValidUntil::At(1_938_038_400_000_000)),
    ];

    fn role_case() -> impl Strategy<Value = RoleCase> {
        (
            "[a-z$\" '%;#🐘]{1,12}",
            0u8..4,
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(-1i32..100),
            proptest::option::of(0..VALID_UNTIL.len()),
        )
            .prop_map(
                |(name, password, createdb, login, inherit, connection_limit, valid_until)| {
                    RoleCase {
                        name,
                        password,
                        createdb,
                        login,
                        inherit,
                        connection_limit,
                        valid_until,
                    }
                },
            )
    }

    fn password(case: &RoleCase, i: usize) -> Option<String> {
        match case.password {
            0 => None,
            1 => Some(md5_of(i + 1000)),
            2 => Some(format!("md5{}", md5_of(i + 2000))),
            _ => Some(SCRAM.to_owned()),
        }
    }

    fn to_spec(roles: &[RoleCase], dbs: &[(String, usize, Option<i32>)]) -> ValidatedSpec {
        let roles_json: Vec<Value> = roles
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut options = Vec::new();
                let mut flag = |name: &str, v: Option<bool>| {
                    if let Some(v) = v {
                        options.push(json!({"name": name, "value": v.to_string(), "vartype": "bool"}));
                    }
                };
                flag("CREATEDB", r.createdb);
                flag("LOGIN", r.login);
                flag("INHERIT", r.inherit);
                if let Some(n) = r.connection_limit {
                    options.push(json!({"name": "CONNECTION LIMIT", "value": n.to_string(), "vartype": "integer"}));
                }
                if let Some(v) = r.valid_until {
                    options.push(json!({"name": "VALID UNTIL", "value": VALID_UNTIL[v].0, "vartype": "string"}));
                }
                json!({"name": r.name, "encrypted_password": password(r, i), "options": options})
            })
            .collect();
        let dbs_json: Vec<Value> = dbs
            .iter()
            .map(|(name, owner, limit)| {
                let options: Vec<Value> = limit
                    .iter()
                    .map(|n| json!({"name": "CONNECTION LIMIT", "value": n.to_string(), "vartype": "integer"}))
                    .collect();
                json!({"name": name, "owner": roles[*owner].name, "options": options})
            })
            .collect();
        spec(json!({"cluster": {"roles": roles_json, "databases": dbs_json}}))
    }

    #[test]
    fn random_specs_read_back_equal() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let pg = TestPostgres::start().unwrap();
        let strategy = proptest::collection::vec(role_case(), 1..6).prop_flat_map(|roles| {
            let n = roles.len();
            (
                Just(roles),
                proptest::collection::vec(
                    ("[a-z$ '\"=]{1,10}", 0..n, proptest::option::of(-1i32..50)),
                    0..3,
                ),
            )
        });
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 16,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(&strategy, |(mut roles, mut dbs)| {
                let mut seen = BTreeSet::new();
                roles.retain(|r| seen.insert(r.name.clone()));
                let mut seen = BTreeSet::new();
                dbs.retain(|(n, _, _)| {
                    !["postgres", "template0", "template1"].contains(&n.as_str())
                        && seen.insert(n.clone())
                });
                for d in &mut dbs {
                    d.1 %= roles.len();
                }
                let s = to_spec(&roles, &dbs);
                runtime.block_on(async {
                    converge(&pg, &s).await;
                    let catalog = observe(&pg).await;
                    for (i, r) in roles.iter().enumerate() {
                        let got = &catalog.roles[&r.name];
                        let want_pw = password(r, i).map(|p| {
                            if p.starts_with("SCRAM") || p.starts_with("md5") {
                                p
                            } else {
                                format!("md5{p}")
                            }
                        });
                        assert_eq!(got.password, want_pw, "{:?}", r.name);
                        assert_eq!(got.createdb, r.createdb.unwrap_or(true));
                        assert_eq!(got.login, r.login.unwrap_or(true));
                        assert_eq!(got.inherit, r.inherit.unwrap_or(true));
                        assert_eq!(got.connection_limit, r.connection_limit.unwrap_or(-1));
                        assert!(got.member_of.contains("neon_superuser"));
                        if let Some(v) = r.valid_until {
                            assert_eq!(got.valid_until, Some(VALID_UNTIL[v].1), "{:?}", r.name);
                        }
                    }
                    for (name, owner, limit) in &dbs {
                        assert_eq!(catalog.databases[name].owner, roles[*owner].name);
                        if let Some(n) = limit {
                            assert_eq!(catalog.databases[name].connection_limit, *n);
                        }
                    }
                    assert_converged(&pg, &s).await;
                });
                Ok(())
            })
            .unwrap();
    }
}

/// With pgaudit loaded and auditing everything server-wide, an audit level converges: the
/// extension exists, the system database's own `pgaudit.log` is `none`, a second run plans
/// nothing; and no statement of the reconciler — password hashes included — is in the audit
/// log, while a user's statement is (so auditing was on).
#[tokio::test]
async fn an_audit_level_converges_and_the_reconciler_is_never_audited() {
    let pg = TestPostgres::start_with(TestPostgresConfig {
        extra_conf: vec![
            "shared_preload_libraries = 'pgaudit'".into(),
            "pgaudit.log = 'all'".into(),
            "pgaudit.log_parameter = on".into(),
        ],
        ..TestPostgresConfig::default()
    })
    .unwrap();
    let hash = "0123456789abcdef0123456789abcdef";
    let s = spec(json!({"audit_log_level": "Log", "cluster": {
        "roles": [{"name": "a", "encrypted_password": hash}, {"name": "b", "encrypted_password": SCRAM}],
        "databases": [{"name": "d", "owner": "a"}]
    }}));
    let plan = converge(&pg, &s).await;
    assert!(
        plan.contains("configure-audit on database \"postgres\"\nCREATE EXTENSION IF NOT EXISTS \"pgaudit\" WITH SCHEMA public;"),
        "{plan}"
    );
    assert_converged(&pg, &s).await;
    assert_eq!(
        sql(
            &pg,
            "postgres",
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pgaudit'"
        )
        .await
        .unwrap(),
        "public"
    );
    let setting = "SELECT c FROM pg_db_role_setting s, unnest(s.setconfig) c \
                   WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = 'postgres')";
    assert_eq!(
        sql(&pg, "postgres", setting).await.unwrap(),
        "pgaudit.log=none"
    );
    // A user session in another database is audited.
    sql(&pg, "d", "CREATE TABLE audited_by_pgaudit (x int)")
        .await
        .unwrap();
    let log = pg.log();
    assert!(
        log.contains("AUDIT: SESSION") && log.contains("CREATE TABLE audited_by_pgaudit"),
        "auditing is on:\n{log}"
    );
    for reconciler_statement in [
        "CREATE ROLE",
        "ALTER DATABASE",
        "CREATE EXTENSION",
        "pg_authid",
    ] {
        let audited = log
            .lines()
            .any(|l| l.contains("AUDIT:") && l.contains(reconciler_statement));
        assert!(!audited, "{reconciler_statement} audited:\n{log}");
    }
    for secret in [hash, "a2tra2tr", "c3Nzc3Nz"] {
        assert!(
            !log.contains(secret),
            "secret {secret} in the server log:\n{log}"
        );
    }
}
