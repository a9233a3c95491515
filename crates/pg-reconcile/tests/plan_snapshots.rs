//! Snapshot tests of plans, without a database: the catalog is built by hand.

use std::collections::BTreeSet;

use compute_spec::ValidatedSpec;
use compute_spec::codes::{BAD_OPTION_VALUE, OPTION_NOT_ALLOWED};
use expect_test::{Expect, expect};
use pg_reconcile::{
    Catalog, DatabaseContents, DatabaseInfo, PlanOptions, RoleInfo, ValidUntil, plan,
};

const MD5: &str = "0123456789abcdef0123456789abcdef";
const SCRAM: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=:c3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3M=";

fn role(f: impl FnOnce(&mut RoleInfo)) -> RoleInfo {
    let mut r = RoleInfo::postgres_defaults();
    f(&mut r);
    r
}

fn db(owner: &str, f: impl FnOnce(&mut DatabaseInfo)) -> DatabaseInfo {
    let mut d = DatabaseInfo {
        owner: owner.to_owned(),
        allow_connections: true,
        is_template: false,
        connection_limit: -1,
        invalid: false,
        all_privileges: BTreeSet::new(),
        contents: Some(observed_contents(false)),
        subscriptions: Default::default(),
    };
    f(&mut d);
    d
}

/// What a connection to a database observes: `public` owned by `pg_database_owner` (a fresh
/// PostgreSQL 15 database); when `converged`, the privileged role's default privileges,
/// schema `neon` and `public.health_check` too.
fn observed_contents(converged: bool) -> DatabaseContents {
    let privileged = || BTreeSet::from(["neon_superuser".to_owned()]);
    DatabaseContents {
        public_owner: Some("pg_database_owner".to_owned()),
        default_table_grantees: if converged {
            privileged()
        } else {
            BTreeSet::new()
        },
        default_sequence_grantees: if converged {
            privileged()
        } else {
            BTreeSet::new()
        },
        neon_schema: converged,
        health_check: converged,
        ..DatabaseContents::default()
    }
}

/// What a fresh `initdb -U cloud_admin` cluster looks like.
fn fresh() -> Catalog {
    let mut c = Catalog::default();
    c.roles.insert(
        "cloud_admin".into(),
        role(|r| {
            r.superuser = true;
            r.login = true;
            r.createdb = true;
            r.createrole = true;
            r.replication = true;
            r.bypassrls = true;
        }),
    );
    for name in ["pg_read_all_data", "pg_write_all_data", "pg_monitor"] {
        c.roles.insert(name.into(), role(|_| {}));
    }
    c.databases
        .insert("postgres".into(), db("cloud_admin", |_| {}));
    c.databases.insert(
        "template1".into(),
        db("cloud_admin", |d| d.is_template = true),
    );
    c.databases.insert(
        "template0".into(),
        db("cloud_admin", |d| {
            d.is_template = true;
            d.allow_connections = false;
        }),
    );
    c
}

fn privileged() -> RoleInfo {
    role(|r| {
        r.createdb = true;
        r.createrole = true;
        r.replication = true;
        r.bypassrls = true;
        r.member_of = ["pg_read_all_data".into(), "pg_write_all_data".into()].into();
    })
}

fn spec_role(password: Option<&str>) -> RoleInfo {
    role(|r| {
        r.login = true;
        r.createdb = true;
        r.createrole = true;
        r.replication = true;
        r.bypassrls = true;
        r.password = password.map(str::to_owned);
        r.member_of = ["neon_superuser".into()].into();
    })
}

/// Plans `spec` against `catalog`; a spec that validation rejects shows the diagnostics'
/// codes instead (it cannot be planned at all: there is no `ValidatedSpec`).
fn check(spec: &str, catalog: &Catalog, expect: Expect) {
    let out = match ValidatedSpec::from_json(spec) {
        Err(report) => {
            let mut out = String::from("rejected by validation:\n");
            for d in &report.diagnostics {
                out.push_str(&format!("  {:?} {} {}\n", d.severity, d.pointer, d.code));
            }
            out
        }
        Ok(spec) => match plan(&spec, catalog, &PlanOptions::default()) {
            Ok(p) => p.to_string(),
            Err(e) => e.to_string(),
        },
    };
    expect.assert_eq(&out);
}

const FULL_SPEC: &str = r#"{"format_version": 1.0, "cluster": {
  "roles": [
    {"name": "alice", "encrypted_password": "0123456789abcdef0123456789abcdef"},
    {"name": "bob", "encrypted_password": "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=:c3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3M=",
     "options": [{"name": "NOCREATEDB", "vartype": "bool"},
                 {"name": "connection limit", "value": "5", "vartype": "integer"},
                 {"name": "VALID UNTIL", "value": "2030-01-02 03:04:05+02", "vartype": "string"},
                 {"name": "IN ROLE", "value": "alice", "vartype": "string"},
                 {"name": "IN ROLE pg_monitor", "vartype": "string"}]},
    {"name": "jwt user"},
    {"name": "it's \"x\""}
  ],
  "databases": [
    {"name": "app", "owner": "alice",
     "options": [{"name": "LC_COLLATE", "value": "C", "vartype": "string"},
                 {"name": "TEMPLATE", "value": "template0", "vartype": "string"},
                 {"name": "CONNECTION_LIMIT", "value": "20", "vartype": "integer"}]},
    {"name": "$x$ db", "owner": "it's \"x\""}
  ]},
  "local_proxy_config": {"jwks": [{"id": "1", "role_names": ["jwt user"], "jwks_url": "http://x", "provider_name": "p"}]}
}"#;

#[test]
fn fresh_cluster_plans_everything_with_secrets_redacted() {
    check(
        FULL_SPEC,
        &fresh(),
        expect![[r#"
            -- phase 1 create-privileged-role on database "postgres"
            CREATE ROLE "neon_superuser" CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS IN ROLE "pg_read_all_data", "pg_write_all_data";  -- role "neon_superuser": create: privileged role absent
            -- phase 2 create-and-alter-roles on database "postgres"
            CREATE ROLE "alice" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION LOGIN IN ROLE "neon_superuser" PASSWORD '<redacted>';  -- role "alice": create: absent
            CREATE ROLE "bob" INHERIT CREATEROLE NOCREATEDB BYPASSRLS REPLICATION LOGIN CONNECTION LIMIT 5 VALID UNTIL '2030-01-02 01:04:05.000000+00' IN ROLE "neon_superuser", "pg_monitor" PASSWORD '<redacted>';  -- role "bob": create: absent
            CREATE ROLE "jwt user" INHERIT NOCREATEROLE NOCREATEDB NOBYPASSRLS NOREPLICATION LOGIN;  -- role "jwt user": create: absent
            CREATE ROLE "it's ""x""" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION LOGIN IN ROLE "neon_superuser";  -- role "it's \"x\"": create: absent
            -- phase 3 grant-role-memberships on database "postgres"
            GRANT "alice" TO "bob";  -- role "bob": grant: not a member of "alice"
            -- phase 4 create-and-alter-databases on database "postgres" (objects independent)
            CREATE DATABASE "app" OWNER "alice" LC_COLLATE 'C' TEMPLATE 'template0' CONNECTION LIMIT 20;  -- database "app": create: absent
            GRANT ALL PRIVILEGES ON DATABASE "app" TO "neon_superuser";  -- database "app": grant: "neon_superuser" gets all privileges on a new database
            CREATE DATABASE "$x$ db" OWNER "it's ""x""";  -- database "$x$ db": create: absent
            GRANT ALL PRIVILEGES ON DATABASE "$x$ db" TO "neon_superuser";  -- database "$x$ db": grant: "neon_superuser" gets all privileges on a new database
            -- phase 5 create-schema-neon on database "postgres"
            CREATE SCHEMA IF NOT EXISTS neon;  -- schema "neon": create: absent
            -- phase 6 schema-privileges on database "app"
            DO $x$
            DECLARE
              db_owner text := 'alice';
              admin text := 'cloud_admin';
              privileged text := 'neon_superuser';
              public_owner text := (SELECT r.rolname FROM pg_catalog.pg_namespace n
                                      JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                                     WHERE n.nspname = 'public');
            BEGIN
              IF public_owner IS NULL THEN
                RETURN;
              END IF;
              IF public_owner IN (admin, 'zenith_admin') AND public_owner <> db_owner THEN
                EXECUTE pg_catalog.format('ALTER SCHEMA public OWNER TO %I', db_owner);
              END IF;
              IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'web_access') THEN
                EXECUTE pg_catalog.format('GRANT CREATE ON SCHEMA public TO %I', 'web_access');
              END IF;
              EXECUTE pg_catalog.format(
                'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO %I WITH GRANT OPTION',
                privileged);
              EXECUTE pg_catalog.format(
                'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO %I WITH GRANT OPTION',
                privileged);
            END
            $x$;  -- database "app": schema public: privileges (contents not observed; the block checks)
            -- phase 7 schema-privileges on database "$x$ db"
            DO $x$
            DECLARE
              db_owner text := 'it''s "x"';
              admin text := 'cloud_admin';
              privileged text := 'neon_superuser';
              public_owner text := (SELECT r.rolname FROM pg_catalog.pg_namespace n
                                      JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                                     WHERE n.nspname = 'public');
            BEGIN
              IF public_owner IS NULL THEN
                RETURN;
              END IF;
              IF public_owner IN (admin, 'zenith_admin') AND public_owner <> db_owner THEN
                EXECUTE pg_catalog.format('ALTER SCHEMA public OWNER TO %I', db_owner);
              END IF;
              IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'web_access') THEN
                EXECUTE pg_catalog.format('GRANT CREATE ON SCHEMA public TO %I', 'web_access');
              END IF;
              EXECUTE pg_catalog.format(
                'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO %I WITH GRANT OPTION',
                privileged);
              EXECUTE pg_catalog.format(
                'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO %I WITH GRANT OPTION',
                privileged);
            END
            $x$;  -- database "$x$ db": schema public: privileges (contents not observed; the block checks)
            -- phase 8 create-health-check on database "postgres"
            CREATE TABLE IF NOT EXISTS public.health_check (id pg_catalog.int4 GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, updated_at pg_catalog.timestamptz DEFAULT pg_catalog.now());  -- table "public.health_check": create: absent
            INSERT INTO public.health_check (id, updated_at) VALUES (1, pg_catalog.now()) ON CONFLICT (id) DO NOTHING;  -- table "public.health_check": create: the row /check_writability updates
        "#]],
    );
}

fn converged() -> Catalog {
    let mut c = fresh();
    c.roles.insert("neon_superuser".into(), privileged());
    // md5 stored with its prefix, spec without: equal.
    c.roles
        .insert("alice".into(), spec_role(Some(&format!("md5{MD5}"))));
    let mut bob = spec_role(Some(SCRAM));
    bob.createdb = false;
    bob.connection_limit = 5;
    bob.valid_until = Some(ValidUntil::At(1_893_546_245_000_000));
    bob.member_of
        .extend(["alice".to_owned(), "pg_monitor".to_owned()]);
    c.roles.insert("bob".into(), bob);
    c.roles.insert(
        "jwt user".into(),
        role(|r| {
            r.login = true;
        }),
    );
    c.roles.insert("it's \"x\"".into(), spec_role(None));
    c.databases.insert(
        "app".into(),
        db("alice", |d| {
            d.connection_limit = 20;
            d.all_privileges = ["neon_superuser".into()].into();
        }),
    );
    c.databases.insert(
        "$x$ db".into(),
        db("it's \"x\"", |d| {
            d.all_privileges = ["neon_superuser".into()].into()
        }),
    );
    for d in c.databases.values_mut() {
        d.contents = Some(observed_contents(true));
    }
    c
}

#[test]
fn converged_cluster_plans_nothing() {
    check(
        FULL_SPEC,
        &converged(),
        expect![[r#"
        -- nothing to do
    "#]],
    );
}

#[test]
fn drift_is_altered_only_where_it_differs() {
    let mut c = converged();
    let alice = c.roles.get_mut("alice").unwrap();
    alice.password = Some(format!("md5{}", "f".repeat(32)));
    alice.createdb = false;
    let bob = c.roles.get_mut("bob").unwrap();
    bob.member_of.remove("pg_monitor");
    bob.valid_until = Some(ValidUntil::Infinity);
    let app = c.databases.get_mut("app").unwrap();
    app.owner = "bob".into();
    app.connection_limit = -1;
    app.all_privileges.clear();
    check(
        FULL_SPEC,
        &c,
        expect![[r#"
            -- phase 1 create-and-alter-roles on database "postgres"
            ALTER ROLE "alice" CREATEDB PASSWORD '<redacted>';  -- role "alice": alter: createdb, password differ
            ALTER ROLE "bob" VALID UNTIL '2030-01-02 01:04:05.000000+00';  -- role "bob": alter: valid until differs
            -- phase 2 grant-role-memberships on database "postgres"
            GRANT "pg_monitor" TO "bob";  -- role "bob": grant: not a member of "pg_monitor"
            -- phase 3 create-and-alter-databases on database "postgres" (objects independent)
            ALTER DATABASE "app" OWNER TO "alice";  -- database "app": alter: owner is "bob"
            ALTER DATABASE "app" WITH CONNECTION LIMIT 20;  -- database "app": alter: connection limit differs
            GRANT ALL PRIVILEGES ON DATABASE "app" TO "neon_superuser";  -- database "app": grant: "neon_superuser" lacks privileges
        "#]],
    );
}

#[test]
fn renames_deletes_and_invalid_databases() {
    let mut c = converged();
    // alice was "old alice" (md5 password, cleared by the rename); bob is to be deleted.
    let alice = c.roles.remove("alice").unwrap();
    c.roles.insert("old alice".into(), alice);
    c.databases.get_mut("app").unwrap().owner = "old alice".into();
    c.roles.insert("gone".into(), spec_role(None));
    c.databases
        .insert("broken".into(), db("gone", |d| d.invalid = true));
    c.databases.insert("olddb".into(), db("gone", |_| {}));
    c.databases
        .insert("tmpl".into(), db("gone", |d| d.is_template = true));
    c.databases
        .insert("closed".into(), db("gone", |d| d.allow_connections = false));
    let spec = FULL_SPEC.replace(
        r#""local_proxy_config""#,
        r#""delta_operations": [
            {"action": "rename_role", "name": "old alice", "new_name": "alice"},
            {"action": "rename_role", "name": "never existed", "new_name": "x"},
            {"action": "delete_role", "name": "gone"},
            {"action": "delete_db", "name": "tmpl"},
            {"action": "rename_db", "name": "olddb", "new_name": "tmpl"},
            {"action": "delete_db", "name": "not there"},
            {"action": "frobnicate", "name": "x"}],
        "local_proxy_config""#,
    );
    let spec = ValidatedSpec::from_json(&spec).unwrap();
    let p = plan(&spec, &c, &PlanOptions::default()).unwrap();
    let text = p.to_string();
    // The revocation blocks are long; check them apart and elide them from the snapshot.
    let revokes: Vec<&str> = text.lines().filter(|l| l.starts_with("DO $x$")).collect();
    assert_eq!(revokes.len(), 5, "{text}");
    assert!(text.contains("target_name text := 'gone';"), "{text}");
    assert!(
        text.contains("'DATABASE'"),
        "the system database also revokes database grants"
    );
    let text: String = text
        .split("DO $x$")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_owned()
            } else {
                format!("DO <revoke>{}", &part[part.find("$x$;").unwrap() + 3..])
            }
        })
        .collect();
    expect![[r#"
        -- warning: /delta_operations/6: unknown action "frobnicate" ignored
        -- phase 1 drop-invalid-databases on database "postgres"
        DROP DATABASE IF EXISTS "broken";  -- database "broken": drop: invalid (interrupted DROP DATABASE)
        -- phase 2 rename-roles on database "postgres"
        ALTER ROLE "old alice" RENAME TO "alice";  -- role "old alice": rename: to "alice"
        -- phase 3 create-and-alter-roles on database "postgres"
        ALTER ROLE "alice" PASSWORD '<redacted>';  -- role "alice": alter: password differs
        -- phase 4 rename-and-drop-databases on database "postgres"
        ALTER DATABASE "tmpl" IS_TEMPLATE false;  -- database "tmpl": drop: is a template, which cannot be dropped
        DROP DATABASE IF EXISTS "tmpl" WITH (FORCE);  -- database "tmpl": drop: delete_db
        ALTER DATABASE "olddb" RENAME TO "tmpl";  -- database "olddb": rename: to "tmpl"
        -- phase 5 delete-role-references on database "postgres"
        REASSIGN OWNED BY "gone" TO "cloud_admin";  -- role "gone": delete: objects go to "cloud_admin"
        DO <revoke>;  -- role "gone": delete: privileges granted by other roles
        DROP OWNED BY "gone";  -- role "gone": delete: remaining privileges and objects
        -- phase 6 delete-role-references on database "$x$ db"
        REASSIGN OWNED BY "gone" TO "it's ""x""";  -- role "gone": delete: objects go to "it's \"x\""
        DO <revoke>;  -- role "gone": delete: privileges granted by other roles
        DROP OWNED BY "gone";  -- role "gone": delete: remaining privileges and objects
        -- phase 7 delete-role-references on database "app"
        REASSIGN OWNED BY "gone" TO "alice";  -- role "gone": delete: objects go to "alice"
        DO <revoke>;  -- role "gone": delete: privileges granted by other roles
        DROP OWNED BY "gone";  -- role "gone": delete: remaining privileges and objects
        -- phase 8 delete-role-references on database "template1"
        REASSIGN OWNED BY "gone" TO "cloud_admin";  -- role "gone": delete: objects go to "cloud_admin"
        DO <revoke>;  -- role "gone": delete: privileges granted by other roles
        DROP OWNED BY "gone";  -- role "gone": delete: remaining privileges and objects
        -- phase 9 delete-role-references on database "tmpl"
        REASSIGN OWNED BY "gone" TO "cloud_admin";  -- role "gone": delete: objects go to "cloud_admin"
        DO <revoke>;  -- role "gone": delete: privileges granted by other roles
        DROP OWNED BY "gone";  -- role "gone": delete: remaining privileges and objects
        -- phase 10 drop-roles on database "postgres"
        DROP ROLE IF EXISTS "gone";  -- role "gone": delete: delete_role
    "#]]
    .assert_eq(&text);
    assert!(
        !format!("{p:?}").contains(MD5),
        "Debug output must not leak hashes"
    );
}

#[test]
fn bad_input_is_refused_with_every_problem_located() {
    check(
        r#"{"format_version": 1.0, "cluster": {
          "roles": [
            {"name": "a", "encrypted_password": "hunter2",
             "options": [{"name": "SUPERUSER", "vartype": "bool"},
                         {"name": "LOGIN; DROP ROLE x", "vartype": "bool"},
                         {"name": "CONNECTION LIMIT", "value": "lots", "vartype": "integer"},
                         {"name": "VALID UNTIL", "value": "soon", "vartype": "string"},
                         {"name": "IN ROLE", "value": "ghost", "vartype": "string"},
                         {"name": "IN ROLE \"x\"; DROP", "vartype": "string"}]},
            {"name": "a"},
            {"name": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}],
          "databases": [{"name": "nul\u0000", "owner": ""},
                        {"name": "d", "owner": "nobody",
                         "options": [{"name": "OID", "value": "1", "vartype": "integer"}]}]},
          "delta_operations": [{"action": "delete_role", "name": "cloud_admin"},
                               {"action": "delete_db", "name": "d"},
                               {"action": "rename_role", "name": "x"}]}"#,
        &fresh(),
        expect![[r#"
            rejected by validation:
              Error /cluster/roles/0/encrypted_password invalid-password-hash
              Error /cluster/roles/0/options/0 option-not-allowed
              Error /cluster/roles/0/options/1 option-not-allowed
              Error /cluster/roles/0/options/2 bad-option-value
              Error /cluster/roles/0/options/3 bad-option-value
              Error /cluster/roles/0/options/5 bad-option-value
              Error /cluster/roles/1/name duplicate-role
              Error /cluster/roles/2/name identifier-too-long
              Error /cluster/databases/0/name identifier-nul
              Error /cluster/databases/0/owner empty-identifier
              Error /cluster/databases/1/owner unknown-owner
              Error /cluster/databases/1/options/0 option-not-allowed
              Error /delta_operations/0/name delta-provided-role
              Error /delta_operations/1/name delta-deletes-declared
              Error /delta_operations/2 delta-missing-new-name
        "#]],
    );
}

/// Options off the allow-list and option values that cannot be rendered are refused by
/// validation (the planner never sees them); what validation lets through but the planner
/// still refuses is what depends on the catalog: memberships in roles that will not exist.
#[test]
fn planner_refuses_what_it_cannot_render() {
    check(
        r#"{"format_version": 1.0, "cluster": {
          "roles": [
            {"name": "a", "options": [{"name": "SUPERUSER", "vartype": "bool"},
                                      {"name": "LOGIN; DROP ROLE x", "vartype": "bool"},
                                      {"name": "CONNECTION LIMIT", "value": "lots", "vartype": "integer"},
                                      {"name": "VALID UNTIL", "value": "soon", "vartype": "string"},
                                      {"name": "IN ROLE", "value": "ghost", "vartype": "string"},
                                      {"name": "IN ROLE \"x\"; DROP", "vartype": "string"}]}],
          "databases": [{"name": "d", "owner": "a",
                         "options": [{"name": "OID", "value": "1", "vartype": "integer"}]}]}}"#,
        &fresh(),
        expect![[r#"
            rejected by validation:
              Error /cluster/roles/0/options/0 option-not-allowed
              Error /cluster/roles/0/options/1 option-not-allowed
              Error /cluster/roles/0/options/2 bad-option-value
              Error /cluster/roles/0/options/3 bad-option-value
              Error /cluster/roles/0/options/5 bad-option-value
              Error /cluster/databases/0/options/0 option-not-allowed
        "#]],
    );
    check(
        r#"{"format_version": 1.0, "cluster": {
          "roles": [
            {"name": "a", "options": [{"name": "IN ROLE", "value": "ghost", "vartype": "string"}]}],
          "databases": [{"name": "d", "owner": "a"}]}}"#,
        &fresh(),
        expect![[r#"
            cannot plan the spec: 1 problem(s)
              /cluster/roles/0/options: role "a" is to be a member of "ghost", which does not exist"#]],
    );
}

/// Validation finds, without any catalog, the option problems the planner cannot render, and
/// types the options of a spec whose options are all renderable.
#[test]
fn validation_finds_static_option_problems() {
    let report = compute_spec::ValidatedSpec::from_json(
        r#"{"format_version": 1.0, "cluster": {
          "roles": [
            {"name": "a", "options": [{"name": "SUPERUSER", "vartype": "bool"},
                                      {"name": "CREATEDB", "vartype": "bool"},
                                      {"name": "CONNECTION LIMIT", "value": "lots", "vartype": "integer"}]},
            {"name": "b", "options": [{"name": "IN ROLE", "value": "a", "vartype": "string"}]}],
          "databases": [{"name": "d", "owner": "a",
                         "options": [{"name": "OID", "value": "1", "vartype": "integer"},
                                     {"name": "TEMPLATE", "value": "template0", "vartype": "enum"}]}]}}"#,
    )
    .unwrap_err();
    let found: Vec<&str> = report
        .diagnostics
        .iter()
        .filter(|d| [OPTION_NOT_ALLOWED, BAD_OPTION_VALUE].contains(&d.code))
        .map(|d| d.pointer.as_str())
        .collect();
    assert_eq!(
        found,
        [
            "/cluster/roles/0/options/0",
            "/cluster/roles/0/options/2",
            "/cluster/databases/0/options/0"
        ]
    );
    let clean = compute_spec::ValidatedSpec::from_json(
        r#"{"format_version": 1.0, "cluster": {"roles": [{"name": "a",
            "options": [{"name": "LOGIN", "vartype": "bool"}]}], "databases": []}}"#,
    )
    .unwrap();
    let (_, typed) = clean.roles().next().unwrap();
    assert_eq!(typed.options.login, Some(true));
}

/// Subscriptions: those of a deleted database are dropped in it just before `DROP DATABASE`;
/// `drop_subscriptions_before_start` drops those of the spec databases and the system database
/// and records the timeline, after everything else; a recorded timeline plans nothing.
#[test]
fn subscriptions_dropped_before_their_database_and_before_start() {
    use pg_reconcile::SubscriptionInfo;
    let mut c = converged();
    let sub = |enabled: bool, slot: Option<&str>| SubscriptionInfo {
        enabled,
        slot_name: slot.map(str::to_owned),
    };
    c.databases.insert(
        "old's db".into(),
        db("alice", |d| {
            d.subscriptions
                .insert("it's sub".into(), sub(true, Some("it_s_slot")));
        }),
    );
    c.databases
        .get_mut("$x$ db")
        .unwrap()
        .subscriptions
        .insert("$x$".into(), sub(false, None));
    c.databases
        .get_mut("postgres")
        .unwrap()
        .subscriptions
        .insert("in postgres".into(), sub(false, Some("s")));
    let with = |extra: &str| {
        let mut spec = FULL_SPEC.trim_end().trim_end_matches('}').to_owned();
        spec.push_str(&format!(
            r#", "delta_operations": [{{"action": "delete_db", "name": "old's db"}}]{extra}}}"#
        ));
        spec
    };
    check(
        &with(""),
        &c,
        expect![[r#"
        -- phase 1 drop-subscriptions-of-dropped-databases on database "old's db"
        ALTER SUBSCRIPTION "it's sub" DISABLE;  -- subscription "it's sub" in database "old's db": disable: delete_db of its database
        ALTER SUBSCRIPTION "it's sub" SET (slot_name = NONE);  -- subscription "it's sub" in database "old's db": detach from slot "it_s_slot" (left on the publisher): delete_db of its database
        DROP SUBSCRIPTION IF EXISTS "it's sub";  -- subscription "it's sub" in database "old's db": drop: delete_db of its database
        -- phase 2 rename-and-drop-databases on database "postgres"
        DROP DATABASE IF EXISTS "old's db" WITH (FORCE);  -- database "old's db": drop: delete_db
    "#]],
    );
    let before_start = r#", "drop_subscriptions_before_start": true,
        "timeline_id": "0123456789abcdef0123456789abcdef""#;
    check(
        &with(before_start),
        &c,
        expect![[r#"
        -- phase 1 drop-subscriptions-of-dropped-databases on database "old's db"
        ALTER SUBSCRIPTION "it's sub" DISABLE;  -- subscription "it's sub" in database "old's db": disable: delete_db of its database
        ALTER SUBSCRIPTION "it's sub" SET (slot_name = NONE);  -- subscription "it's sub" in database "old's db": detach from slot "it_s_slot" (left on the publisher): delete_db of its database
        DROP SUBSCRIPTION IF EXISTS "it's sub";  -- subscription "it's sub" in database "old's db": drop: delete_db of its database
        -- phase 2 rename-and-drop-databases on database "postgres"
        DROP DATABASE IF EXISTS "old's db" WITH (FORCE);  -- database "old's db": drop: delete_db
        -- phase 3 drop-subscriptions-before-start on database "$x$ db"
        DROP SUBSCRIPTION IF EXISTS "$x$";  -- subscription "$x$" in database "$x$ db": drop: drop_subscriptions_before_start on timeline 0123456789abcdef0123456789abcdef
        -- phase 4 drop-subscriptions-before-start on database "postgres"
        ALTER SUBSCRIPTION "in postgres" SET (slot_name = NONE);  -- subscription "in postgres" in database "postgres": detach from slot "s" (left on the publisher): drop_subscriptions_before_start on timeline 0123456789abcdef0123456789abcdef
        DROP SUBSCRIPTION IF EXISTS "in postgres";  -- subscription "in postgres" in database "postgres": drop: drop_subscriptions_before_start on timeline 0123456789abcdef0123456789abcdef
        -- phase 5 record-subscriptions-dropped on database "postgres"
        CREATE SCHEMA IF NOT EXISTS neon;  -- database "postgres": record: drop_subscriptions_before_start done on timeline 0123456789abcdef0123456789abcdef
        CREATE TABLE IF NOT EXISTS neon.drop_subscriptions_done (id pg_catalog.int4 PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, timeline_id pg_catalog.text);  -- database "postgres": record: drop_subscriptions_before_start done on timeline 0123456789abcdef0123456789abcdef
        INSERT INTO neon.drop_subscriptions_done (id, timeline_id) VALUES (1, '0123456789abcdef0123456789abcdef') ON CONFLICT (id) DO UPDATE SET timeline_id = EXCLUDED.timeline_id;  -- database "postgres": record: drop_subscriptions_before_start done on timeline 0123456789abcdef0123456789abcdef
    "#]],
    );
    c.databases.remove("old's db");
    c.subscriptions_dropped_for = ["0123456789abcdef0123456789abcdef".to_owned()].into();
    check(
        &with(before_start),
        &c,
        expect![[r#"
        -- nothing to do
    "#]],
    );
}
