//! Every upstream example spec, through what compute_ctl does in standalone mode but with the
//! libraries only: `initdb` → `pg-config` renders and writes the config → the real server
//! starts on it → `pg-reconcile` converges roles, databases, renames and deletions → `psql`
//! reads the result back, and the cluster is converged (a second plan is empty).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{SUPERUSER, hex, psql_hex_rows};
use compute_spec::{ComputeSpec, DeltaAction, GenericOption, ValidatedSpec};
use pg_quote::{quote_ident, quote_literal};
use test_postgres::TestPostgres;

/// The settings a vanilla PostgreSQL 15 knows (the `pg_settings` of a running server).
fn known_settings(pg: &TestPostgres) -> BTreeSet<String> {
    pg.psql("postgres", "SELECT name FROM pg_settings")
        .expect("list pg_settings")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn string_setting(name: &str, value: &str) -> GenericOption {
    GenericOption {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        vartype: "string".to_owned(),
    }
}

/// Adapts an upstream spec, written for a Neon compute, to the vanilla PostgreSQL 15 of the
/// test, and returns the names of the settings it dropped. Only settings change; roles,
/// databases and delta operations are kept as they are.
///
/// - `shared_preload_libraries` lists `neon` (and pg_cron, timescaledb): not installed in a
///   vanilla server, which would refuse to start.
/// - `synchronous_standby_names = walproposer` names Neon's walproposer: a vanilla server
///   would make every commit (so every reconcile statement) wait for that standby forever.
/// - Settings without a `.` that the vanilla server does not know (`autoprewarm`,
///   `max_replication_flush_lag`, …) are Neon-only GUCs: a vanilla server rejects an
///   unknown name in postgresql.conf and refuses to start. Names with a `.` (`neon.*`,
///   `test.escaping`) are custom placeholders that vanilla accepts, so they stay (and are
///   checked).
/// - `port` and `listen_addresses` are the test server's free port on 127.0.0.1 (the spec's
///   55432/0.0.0.0 may be taken and must not be exposed), and `unix_socket_directories` is
///   the test's private socket directory.
fn adapt_to_vanilla(
    spec: &mut ComputeSpec,
    known: &BTreeSet<String>,
    pg: &TestPostgres,
) -> Vec<String> {
    let settings = spec.cluster.settings.get_or_insert_with(Vec::new);
    let mut dropped = Vec::new();
    settings.retain(|s| {
        let value = s.value.as_deref().unwrap_or_default();
        let neon_only = match s.name.as_str() {
            "shared_preload_libraries" => true,
            "synchronous_standby_names" => value == "walproposer",
            "port" | "listen_addresses" | "unix_socket_directories" => true,
            name => !name.contains('.') && !known.contains(name),
        };
        if neon_only {
            dropped.push(s.name.clone());
        }
        !neon_only
    });
    settings.push(GenericOption {
        name: "port".to_owned(),
        value: Some(pg.port.to_string()),
        vartype: "integer".to_owned(),
    });
    settings.push(string_setting("listen_addresses", "127.0.0.1"));
    settings.push(string_setting(
        "unix_socket_directories",
        pg.socket_dir.to_str().expect("UTF-8 temp path"),
    ));
    dropped
}

/// What was created before reconciling so that the spec's delta operations have something
/// to act on.
#[derive(Default)]
struct Seeded {
    /// Old role name → (oid, new name).
    renamed_roles: BTreeMap<String, (String, String)>,
    /// Old database name → (oid, new name); each holds a table `renamed_marker`.
    renamed_dbs: BTreeMap<String, (String, String)>,
    /// Roles to delete; each owns a table `owned_by_deleted_<i>` in `postgres`.
    deleted_roles: Vec<String>,
    deleted_dbs: Vec<String>,
}

fn oid_of(pg: &TestPostgres, catalog: &str, column: &str, name: &str) -> String {
    let sql = format!(
        "SELECT oid FROM {catalog} WHERE {column} = {}",
        quote_literal(name)
    );
    let oid = pg.psql("postgres", &sql).expect("read an oid");
    let oid = oid.trim().to_owned();
    assert!(!oid.is_empty(), "{name} not found in {catalog}");
    oid
}

/// Creates the objects the spec's delta operations name (as a previous life of the compute
/// would have left them).
fn seed_delta_objects(pg: &TestPostgres, spec: &ComputeSpec) -> Seeded {
    let mut seeded = Seeded::default();
    for (i, op) in spec.delta_operations.iter().flatten().enumerate() {
        let name = quote_ident(&op.name);
        match op.kind() {
            Some(DeltaAction::DeleteRole) => {
                let table = format!("owned_by_deleted_{i}");
                pg.psql(
                    "postgres",
                    &format!(
                        "CREATE ROLE {name} LOGIN; CREATE TABLE {table} (); \
                         ALTER TABLE {table} OWNER TO {name}"
                    ),
                )
                .expect("seed a role to delete");
                seeded.deleted_roles.push(op.name.clone());
            }
            Some(DeltaAction::RenameRole) => {
                // With an md5 password: PostgreSQL clears it on rename (the hash is salted
                // with the name), and the reconciler must set the spec's hash again.
                let password = quote_literal(&format!("md5{}", "0".repeat(32)));
                pg.psql(
                    "postgres",
                    &format!("CREATE ROLE {name} LOGIN PASSWORD {password}"),
                )
                .expect("seed a role to rename");
                let oid = oid_of(pg, "pg_roles", "rolname", &op.name);
                let new_name = op.new_name.clone().expect("rename has a new name");
                seeded
                    .renamed_roles
                    .insert(op.name.clone(), (oid, new_name));
            }
            Some(DeltaAction::DeleteDb) => {
                pg.psql("postgres", &format!("CREATE DATABASE {name}"))
                    .expect("seed a database to delete");
                seeded.deleted_dbs.push(op.name.clone());
            }
            Some(DeltaAction::RenameDb) => {
                pg.psql("postgres", &format!("CREATE DATABASE {name}"))
                    .expect("seed a database to rename");
                pg.psql(&op.name, "CREATE TABLE renamed_marker ()")
                    .expect("mark the database to rename");
                let oid = oid_of(pg, "pg_database", "datname", &op.name);
                let new_name = op.new_name.clone().expect("rename has a new name");
                seeded.renamed_dbs.insert(op.name.clone(), (oid, new_name));
            }
            _ => {}
        }
    }
    seeded
}

/// Every spec setting reads back from the server: the text `SHOW` prints, or for a plain
/// number the value in the setting's base unit (`shared_buffers = 32768` shows as `256MB`).
fn check_settings(pg: &TestPostgres, spec: &ComputeSpec) {
    let settings = spec.cluster.settings.as_deref().unwrap_or_default();
    assert!(!settings.is_empty(), "the spec has settings to check");
    let values: Vec<String> = settings
        .iter()
        .map(|s| format!("({})", quote_literal(&s.name)))
        .collect();
    let sql = format!(
        "SELECT {}, {}, {} FROM (VALUES {}) AS v(n)",
        hex("n"),
        hex("current_setting(n)"),
        hex("coalesce((SELECT setting FROM pg_settings WHERE name = n), '')"),
        values.join(", ")
    );
    let rows = psql_hex_rows(pg, "postgres", &sql);
    assert_eq!(rows.len(), settings.len());
    for (setting, row) in settings.iter().zip(&rows) {
        let expected = setting.value.as_deref().unwrap_or_default();
        let (shown, base) = (&row[1], &row[2]);
        let numeric = !expected.is_empty() && expected.bytes().all(|b| b.is_ascii_digit());
        assert!(
            shown == expected || (numeric && base == expected),
            "setting {}: spec {expected:?}, server shows {shown:?} (base unit {base:?})",
            setting.name
        );
    }
}

fn check_roles_and_databases(pg: &TestPostgres, spec: &ComputeSpec, seeded: &Seeded) {
    let roles: BTreeMap<String, Vec<String>> = psql_hex_rows(
        pg,
        "postgres",
        &format!(
            "SELECT {}, {}, {}, {}, {}, {} FROM pg_authid",
            hex("rolname"),
            hex("oid"),
            hex("rolcanlogin"),
            hex("coalesce(rolpassword, '')"),
            hex("pg_has_role(oid, 'neon_superuser', 'MEMBER')"),
            hex("rolsuper"),
        ),
    )
    .into_iter()
    .map(|row| (row[0].clone(), row[1..].to_vec()))
    .collect();
    for role in &spec.cluster.roles {
        let Some(row) = roles.get(&role.name) else {
            panic!(
                "spec role {:?} missing; roles: {:?}",
                role.name,
                roles.keys()
            );
        };
        if role.name == SUPERUSER {
            // A spec may list compute_ctl's own user (the docker-compose ones do): it must
            // stay a superuser, or compute_ctl locks itself out.
            assert_eq!(row[4], "true", "{SUPERUSER} is still a superuser");
            continue;
        }
        assert_eq!(row[4], "false", "spec role {:?} is no superuser", role.name);
        assert_eq!(row[1], "true", "spec role {:?} can log in", role.name);
        assert_eq!(row[3], "true", "{:?} is in neon_superuser", role.name);
        let expected = match role.encrypted_password.as_deref() {
            None => String::new(),
            Some(h) if h.len() == 32 => format!("md5{h}"),
            Some(h) => h.to_owned(),
        };
        assert_eq!(row[2], expected, "password hash of {:?}", role.name);
    }
    for (old, (oid, new)) in &seeded.renamed_roles {
        assert!(
            !roles.contains_key(old),
            "renamed role {old:?} still exists"
        );
        assert_eq!(
            &roles[new][0], oid,
            "{new:?} is {old:?} renamed, not a new role"
        );
    }
    for deleted in &seeded.deleted_roles {
        assert!(!roles.contains_key(deleted), "role {deleted:?} not deleted");
    }
    let orphans = pg
        .psql(
            "postgres",
            "SELECT tablename || ' ' || tableowner FROM pg_tables WHERE tablename LIKE 'owned_by_deleted_%'",
        )
        .expect("list reassigned tables");
    for line in orphans.lines() {
        assert!(
            line.ends_with(&format!(" {SUPERUSER}")),
            "reassigned: {line}"
        );
    }
    assert_eq!(orphans.lines().count(), seeded.deleted_roles.len());

    let databases: BTreeMap<String, (String, String)> = psql_hex_rows(
        pg,
        "postgres",
        &format!(
            "SELECT {}, {}, {} FROM pg_database",
            hex("datname"),
            hex("oid"),
            hex("pg_get_userbyid(datdba)")
        ),
    )
    .into_iter()
    .map(|row| (row[0].clone(), (row[1].clone(), row[2].clone())))
    .collect();
    for db in &spec.cluster.databases {
        let Some((_, owner)) = databases.get(&db.name) else {
            panic!(
                "spec database {:?} missing: {:?}",
                db.name,
                databases.keys()
            );
        };
        assert_eq!(owner, &db.owner, "owner of database {:?}", db.name);
    }
    for (old, (oid, new)) in &seeded.renamed_dbs {
        assert!(
            !databases.contains_key(old),
            "renamed database {old:?} exists"
        );
        assert_eq!(&databases[new].0, oid, "{new:?} is {old:?} renamed");
        let marker = pg
            .psql(
                new,
                "SELECT count(*) FROM pg_class WHERE relname = 'renamed_marker'",
            )
            .expect("look for the marker");
        assert_eq!(marker.trim(), "1", "{new:?} kept its content");
    }
    for deleted in &seeded.deleted_dbs {
        assert!(!databases.contains_key(deleted), "{deleted:?} not deleted");
    }
}

async fn spec_to_running_cluster(file_name: &str) {
    let (path, text) = common::upstream_specs()
        .into_iter()
        .find(|(path, _)| path.file_name().is_some_and(|n| n == file_name))
        .expect("fixture exists");
    let parsed = ValidatedSpec::from_json(&text)
        .unwrap_or_else(|e| panic!("{} does not validate: {e:?}", path.display()));

    let mut pg = TestPostgres::start().expect("initdb and start PostgreSQL 15");
    let known = known_settings(&pg);
    pg.stop_in_place().expect("stop the fresh server");

    let mut spec = parsed.into_spec();
    let dropped = adapt_to_vanilla(&mut spec, &known, &pg);
    // The server logs every statement: the reconciler must still keep password hashes out
    // of the log (it turns statement logging off for its session before sending them).
    for (name, value) in [
        ("log_statement", "all"),
        ("log_min_duration_statement", "0"),
    ] {
        let settings = spec.cluster.settings.get_or_insert_with(Vec::new);
        settings.retain(|s| s.name != name);
        settings.push(string_setting(name, value));
    }
    assert!(dropped.contains(&"shared_preload_libraries".to_owned()));
    // Validation includes the reconciler's option allow-lists.
    let spec = ValidatedSpec::from_spec(spec).expect("the adapted spec still validates");

    common::configure_and_start(&mut pg, &spec);
    check_settings(&pg, spec.spec());
    let seeded = seed_delta_objects(&pg, spec.spec());

    let options = common::plan_options();
    let connection = common::connection(&pg);
    let counters = pg_reconcile::Counters::default();
    let first = pg_reconcile::reconcile(&spec, &options, &connection, &counters)
        .await
        .unwrap_or_else(|e| panic!("reconcile {file_name}: {e}\n{}", pg.log()));
    assert!(
        first.report.is_success(),
        "{file_name}: {:?}",
        first.report.errors().collect::<Vec<_>>()
    );
    assert!(!first.plan.is_empty(), "a fresh cluster needs work");
    check_roles_and_databases(&pg, spec.spec(), &seeded);
    let log = pg.log();
    assert!(
        log.contains("statement: CREATE ROLE"),
        "statements are logged"
    );
    for role in &spec.spec().cluster.roles {
        if let Some(hash) = role.encrypted_password.as_deref() {
            assert!(
                !log.contains(hash),
                "the hash of {:?} is in the log",
                role.name
            );
        }
    }

    let read_only = pg_reconcile::plan_read_only(&spec, &options, &pg.connstr("postgres"))
        .await
        .expect("plan read-only against the converged server");
    assert!(read_only.is_empty(), "converged, yet planned:\n{read_only}");
    let second = pg_reconcile::reconcile(&spec, &options, &connection, &counters)
        .await
        .expect("reconcile again");
    assert!(second.plan.is_empty(), "second plan:\n{}", second.plan);
    assert!(second.report.is_success());
}

#[tokio::test]
async fn compute_api_tests_spec_2023_04() {
    spec_to_running_cluster("2023-04_libs_compute_api_tests_cluster_spec@f0b2e076d9.json").await;
}

#[tokio::test]
async fn compute_tools_tests_spec_early_2023() {
    spec_to_running_cluster("early-2023_compute_tools_tests_cluster_spec@1401021b21.json").await;
}

#[tokio::test]
async fn docker_compose_spec_early_2023() {
    spec_to_running_cluster("early-2023_docker-compose_spec@1401021b21.json").await;
}

#[tokio::test]
async fn docker_compose_config_latest() {
    spec_to_running_cluster("latest_docker-compose_config@6a35a3e9f1.json").await;
}

#[tokio::test]
async fn compute_api_tests_spec_latest() {
    spec_to_running_cluster("latest_libs_compute_api_tests_cluster_spec@6a35a3e9f1.json").await;
}

/// Every upstream fixture is covered by one of the tests above.
#[test]
fn every_upstream_fixture_has_a_test() {
    let names: Vec<String> = common::upstream_specs()
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let source = include_str!("spec_to_running_cluster.rs");
    for name in names {
        assert!(
            source.contains(&format!("(\"{name}\")")),
            "no test for {name}"
        );
    }
}
