//! Per-database privileges, system-database objects and admin session options, against a real
//! PostgreSQL 15 started by the test, with hostile database and role names.

mod convergence;
use convergence::{assert_converged, converge};

use compute_spec::ValidatedSpec;
use pg_quote::{quote_ident, quote_literal};
use pg_reconcile::{Connector, Counters, Session, SessionGuards};
use serde_json::{Value, json};
use test_postgres::{TestPostgres, TestPostgresConfig, hostile_names};
use tokio_postgres::Config;

fn spec(value: Value) -> ValidatedSpec {
    let mut value = value;
    value["format_version"] = json!(1.0);
    ValidatedSpec::from_json(&value.to_string()).unwrap()
}

fn config(pg: &TestPostgres) -> Config {
    pg.connstr("postgres").parse().unwrap()
}

/// First column of every row of `query`, run in `db` on a guarded admin session.
async fn sql(pg: &TestPostgres, db: &str, query: &str) -> Vec<String> {
    let session = Session::connect(&config(pg), db, &Counters::default())
        .await
        .unwrap();
    rows(&session, query).await
}

async fn rows(session: &Session, query: &str) -> Vec<String> {
    session
        .client()
        .simple_query(query)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e:?}"))
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn schema_privileges_in_hostile_databases() {
    let pg = TestPostgres::start().unwrap();
    let names = hostile_names();
    pg.psql("postgres", "CREATE ROLE web_access").unwrap();
    let s = spec(json!({"cluster": {
        "roles": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
        "databases": names.iter().map(|n| json!({"name": n, "owner": n})).collect::<Vec<_>>(),
    }}));
    // Databases created by the plan: contents unknown, the guarded block does the work.
    let first = converge(&pg, &s).await;
    assert!(first.contains("contents not observed"), "{first}");
    for name in &names {
        let facts = sql(
            &pg,
            name,
            "SELECT pg_catalog.has_schema_privilege('web_access', 'public', 'CREATE')::text
             UNION ALL SELECT pg_catalog.count(DISTINCT d.defaclobjtype)::text
               FROM pg_catalog.pg_default_acl d
               JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace,
                    pg_catalog.aclexplode(d.defaclacl) x
              WHERE n.nspname = 'public' AND x.is_grantable
                AND x.grantee = 'neon_superuser'::pg_catalog.regrole",
        )
        .await;
        assert_eq!(facts, ["true", "2"], "database {name:?}");
    }
    assert_converged(&pg, &s).await;

    // Now drift, in observed databases: public owned by the superuser (moved), by another
    // role (kept), default privileges revoked (granted again), schema public dropped (nothing).
    let [by_admin, by_other, revoked, dropped] = [&names[0], &names[3], &names[9], &names[13]];
    sql(&pg, by_admin, "ALTER SCHEMA public OWNER TO cloud_admin").await;
    sql(
        &pg,
        by_other,
        &format!("ALTER SCHEMA public OWNER TO {}", quote_ident(&names[5])),
    )
    .await;
    sql(
        &pg,
        revoked,
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM neon_superuser;
         REVOKE CREATE ON SCHEMA public FROM web_access",
    )
    .await;
    sql(&pg, dropped, "DROP SCHEMA public CASCADE").await;
    // Drift inside databases is repaired by an apply that observes them: the digest the last
    // apply recorded would let this one trust them (tests/converged_digest.rs), so it goes.
    sql(
        &pg,
        "postgres",
        "DELETE FROM neon.compute_ctl_catalog_digest",
    )
    .await;
    let second = converge(&pg, &s).await;
    assert!(!second.contains("contents not observed"), "{second}");
    assert_eq!(
        second.matches("-- phase").count(),
        2,
        "only two databases have work:\n{second}"
    );
    let owner = |db: &str| {
        let db = db.to_owned();
        let pg = &pg;
        async move {
            sql(
                pg,
                &db,
                "SELECT nspowner::pg_catalog.regrole::text FROM pg_catalog.pg_namespace \
                 WHERE nspname = 'public'",
            )
            .await
        }
    };
    assert_eq!(owner(by_admin).await, [quote_ident(by_admin)]);
    assert_eq!(owner(by_other).await, [quote_ident(&names[5])]);
    assert_eq!(owner(dropped).await, Vec::<String>::new());
    assert_eq!(
        sql(
            &pg,
            revoked,
            "SELECT pg_catalog.has_schema_privilege('web_access', 'public', 'CREATE')::text"
        )
        .await,
        ["true"]
    );
    assert_converged(&pg, &s).await;

    // The default privileges are effective: a table and a sequence the superuser creates give
    // the privileged role every privilege with grant option, so a spec role (its member) can
    // grant them on.
    let db = &names[7];
    let grantee = &names[8];
    let checks = sql(
        &pg,
        db,
        &format!(
            "CREATE TABLE public.t (id int); CREATE SEQUENCE public.s;
             SET ROLE {member};
             GRANT SELECT, INSERT ON public.t TO {grantee};
             GRANT USAGE ON SEQUENCE public.s TO {grantee};
             RESET ROLE;
             SELECT pg_catalog.has_table_privilege('neon_superuser', 'public.t',
                      'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER WITH GRANT OPTION')::text
             UNION ALL SELECT pg_catalog.has_sequence_privilege('neon_superuser', 'public.s',
                      'USAGE, SELECT, UPDATE WITH GRANT OPTION')::text
             UNION ALL SELECT pg_catalog.has_table_privilege({grantee_lit}, 'public.t', 'INSERT')::text
             UNION ALL SELECT g.grantor::text FROM information_schema.role_table_grants g
                WHERE g.grantee = {grantee_lit} AND g.privilege_type = 'SELECT'",
            member = quote_ident(&names[1]),
            grantee = quote_ident(grantee),
            grantee_lit = quote_literal(grantee),
        ),
    )
    .await;
    assert_eq!(checks, ["true", "true", "true", "neon_superuser"]);
}

#[tokio::test]
async fn system_database_objects_and_pg_stat_statements_only_when_preloaded() {
    let preload = json!([{"name": "shared_preload_libraries", "value": "pg_stat_statements",
                          "vartype": "string"}]);
    let installed = "SELECT e.extname || ' in ' || n.nspname FROM pg_catalog.pg_extension e \
                     JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
                     WHERE e.extname <> 'plpgsql'";
    for preloaded in [false, true] {
        let pg = TestPostgres::start_with(TestPostgresConfig {
            extra_conf: if preloaded {
                vec!["shared_preload_libraries = 'pg_stat_statements'".into()]
            } else {
                Vec::new()
            },
            ..TestPostgresConfig::default()
        })
        .unwrap();
        let settings = if preloaded {
            preload.clone()
        } else {
            json!([])
        };
        let s = spec(json!({"cluster": {"roles": [], "databases": [], "settings": settings}}));
        let text = converge(&pg, &s).await;
        assert!(text.contains("CREATE SCHEMA IF NOT EXISTS neon"), "{text}");
        assert!(
            !text.contains("EXTENSION neon"),
            "vanilla: no neon extension\n{text}"
        );
        assert_eq!(text.contains("create-extensions"), preloaded, "{text}");
        let want: &[&str] = if preloaded {
            &["pg_stat_statements in public"]
        } else {
            &[]
        };
        assert_eq!(sql(&pg, "postgres", installed).await, want);
        assert_eq!(
            sql(
                &pg,
                "postgres",
                "(SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) || ' ' || a.attidentity::pg_catalog.text
                    FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = 'public.health_check'::pg_catalog.regclass
                     AND a.attnum > 0
                   ORDER BY a.attnum)
                 UNION ALL SELECT id::text FROM public.health_check"
            )
            .await,
            ["integer d", "timestamp with time zone ", "1"]
        );
        assert_converged(&pg, &s).await;
    }
}

#[tokio::test]
async fn admin_sessions_start_guarded_and_the_connection_string_wins() {
    let pg = TestPostgres::start().unwrap();
    pg.psql(
        "postgres",
        "ALTER DATABASE postgres SET search_path = public; \
         ALTER DATABASE postgres SET lock_timeout = 1; \
         ALTER DATABASE postgres SET default_transaction_read_only = on",
    )
    .unwrap();
    let show = "SELECT '[' || pg_catalog.current_setting('search_path') || '] ' \
                || pg_catalog.current_setting('lock_timeout') || ' ' \
                || pg_catalog.current_setting('statement_timeout') || ' ' \
                || pg_catalog.current_setting('default_transaction_read_only') || ' ' \
                || pg_catalog.current_setting('neon.forward_ddl') || ' ' \
                || coalesce(pg_catalog.current_setting('pgaudit.log', true), '-')";
    let check = |guards: SessionGuards, own: Option<&'static str>, expect: &'static str| {
        let mut base = config(&pg);
        if let Some(own) = own {
            base.options(own);
        }
        async move {
            let session = Connector::new(&base, guards, &Counters::default())
                .connect("postgres")
                .await
                .unwrap();
            assert_eq!(rows(&session, show).await, [expect], "{guards:?} {own:?}");
        }
    };
    check(SessionGuards::default(), None, "[] 0 0 off off -").await;
    // pgaudit is not installed here: the setting is a placeholder, but it is sent.
    check(SessionGuards { pgaudit: true }, None, "[] 0 0 off off none").await;
    check(
        SessionGuards::default(),
        Some("-c statement_timeout=5s -c search_path=pg_catalog"),
        "[pg_catalog] 0 5s off off -",
    )
    .await;
}
