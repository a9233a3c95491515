//! Upstream's Rust unit expectations for rendering and quoting
//! (`compute_tools/tests/pg_helpers_tests.rs`, `compute_tools/tests/config_test.rs` and the
//! related `compute.rs` unit test, at 6a35a3e9f1), re-expressed against our functions. Where
//! our text may differ, the real PostgreSQL 15 reads both forms back and must find the same
//! value. Upstream's expected outputs are test data here; everything built from ours goes
//! through `pg_quote`.
//!
//! | upstream test (file::function) | ours | status |
//! |---|---|---|
//! | pg_helpers_tests.rs::params_serialize | `params_serialize` | passes: our statements put `OWNER` first and quote the template (`TEMPLATE 'template0'`); on a server both forms give the same role and database rows |
//! | pg_helpers_tests.rs::settings_serialize | `settings_serialize` | passes: every line is upstream's byte for byte; our whole postgresql.conf gives the parser the same 25 values |
//! | pg_helpers_tests.rs::ident_pg_quote | `quoting_reads_back_as_upstream` | passes: same text, read back as the input |
//! | pg_helpers_tests.rs::ident_pg_quote_dollar (14 cases) | `quoting_reads_back_as_upstream` | passes: 8 cases are the same text; 6 (`x`, `xx`, `x$`, `xx$`, `$xx`, `$xx$`) use a shorter tag; all read back as the input, alone and nested in a `DO` block (ours needs no separate outer tag) |
//! | pg_helpers_tests.rs::generic_options_search | `generic_options_search` | passes through `ValidatedSpec::storage`; a setting without a value is refused by validation instead of being found as none |
//! | pg_helpers_tests.rs::test_escape_literal | `quoting_reads_back_as_upstream` | passes: same text, read back as the input with `standard_conforming_strings` on and off |
//! | config_test.rs::test_line_in_file | `line_in_file` | passes through `pg_config::with_hba_access_line`: the same lines; ours ends the file with a newline and adds no empty line |
//! | compute.rs::tests::duplicate_safekeeper_connstring | `duplicate_safekeeper_connstring` | passes: refused, with our message (`duplicate entry in neon.safekeepers: "…"`) |
//!
//! Counts: 8 upstream tests: 8 pass, 0 wait on issue 12, 0 wait on issue 13, 0 not applicable.

use std::borrow::Cow;
use std::collections::BTreeMap;

use compute_spec::{ValidatedSpec, codes};
use pg_quote::{dollar_quote, quote_ident, quote_literal};
use test_postgres::TestPostgres;

/// Upstream's spec fixture (`libs/compute_api/tests/cluster_spec.json` at 6a35a3e9f1).
fn upstream_fixture() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../specs/upstream/latest_libs_compute_api_tests_cluster_spec@6a35a3e9f1.json"
    );
    std::fs::read_to_string(path).unwrap()
}

async fn client(pg: &TestPostgres, db: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = pg.connstr("postgres").parse().unwrap();
    config.dbname(db);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The single text value `sql` selects.
async fn select_text(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// pg_helpers_tests.rs::params_serialize: `to_pg_options` of the fixture's first database
/// and first role. Ours renders whole statements; both forms, run on a server, must make the
/// same catalog rows.
#[tokio::test]
async fn params_serialize() {
    const UPSTREAM_DB_OPTIONS: &str =
        r#"LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER "alexk""#;
    const UPSTREAM_ROLE_OPTIONS: &str = " LOGIN PASSWORD 'md56b1d16b78004bbd51fa06af9eda75972'";
    let spec = ValidatedSpec::from_json(&upstream_fixture()).unwrap();
    assert_eq!(spec.spec().cluster.databases[0].name, "DB2");
    assert_eq!(spec.spec().cluster.roles[0].name, "postgres");
    let options = pg_reconcile::PlanOptions::default();
    let plan = pg_reconcile::plan(&spec, &pg_reconcile::Catalog::default(), &options).unwrap();
    let statement = |object: pg_reconcile::ObjectRef, head: &str| {
        plan.operations()
            .find(|op| op.object == object && op.statement.expose_sql().starts_with(head))
            .unwrap_or_else(|| panic!("no {head} for {object}:\n{plan}"))
            .statement
            .expose_sql()
            .to_owned()
    };
    // Textually: the same options, in another order (owner first), the template quoted.
    assert_eq!(
        statement(pg_reconcile::ObjectRef::Database("DB2".into()), "CREATE"),
        r#"CREATE DATABASE "DB2" OWNER "alexk" LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE 'template0'"#
    );
    assert!(
        statement(pg_reconcile::ObjectRef::Role("postgres".into()), "CREATE").ends_with(
            r#" LOGIN IN ROLE "neon_superuser" PASSWORD 'md56b1d16b78004bbd51fa06af9eda75972'"#
        )
    );

    // Semantically: our plan applied, then upstream's statements (its fixed prefix plus the
    // expected options) for twins of the role and database; the catalog rows must match.
    let pg = TestPostgres::start().unwrap();
    let config: tokio_postgres::Config = pg.connstr("postgres").parse().unwrap();
    let done =
        pg_reconcile::reconcile(&spec, &options, &config, &pg_reconcile::Counters::default())
            .await
            .unwrap();
    assert!(done.report.is_success(), "{:?}", done.report);
    let admin = client(&pg, "postgres").await;
    for statement in [
        format!(
            "CREATE ROLE {} INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION \
             IN ROLE neon_superuser{UPSTREAM_ROLE_OPTIONS}",
            quote_ident("postgres (upstream)")
        ),
        format!(
            "CREATE DATABASE {} {UPSTREAM_DB_OPTIONS}",
            quote_ident("DB2 (upstream)")
        ),
        format!(
            "GRANT ALL PRIVILEGES ON DATABASE {} TO neon_superuser",
            quote_ident("DB2 (upstream)")
        ),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    let role_row = |name: &'static str| {
        let admin = &admin;
        async move {
            let sql = "SELECT concat_ws(' ', rolsuper, rolinherit, rolcreaterole, rolcreatedb, \
                       rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolpassword, \
                       rolvaliduntil, (SELECT string_agg(r.rolname || '/' || m.admin_option, ',') \
                       FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
                       WHERE m.member = a.oid)) FROM pg_authid a WHERE rolname = $1";
            admin
                .query_one(sql, &[&name])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    let ours = role_row("postgres").await;
    assert_eq!(ours, role_row("postgres (upstream)").await);
    assert!(
        ours.contains("md56b1d16b78004bbd51fa06af9eda75972"),
        "{ours}"
    );
    let db_row = |name: &'static str| {
        let admin = &admin;
        async move {
            let sql = "SELECT concat_ws(' ', pg_get_userbyid(datdba), encoding, datlocprovider, \
                       datcollate, datctype, datistemplate, datallowconn, datconnlimit, \
                       datacl::text) FROM pg_database WHERE datname = $1";
            admin
                .query_one(sql, &[&name])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    let ours = db_row("DB2").await;
    assert_eq!(ours, db_row("DB2 (upstream)").await);
    assert!(ours.starts_with("alexk 6 c C C "), "{ours}");
}

/// Upstream's expected `as_pg_settings()` of the fixture, line for line.
const UPSTREAM_SETTINGS: &str = r#"fsync = off
wal_level = logical
hot_standby = on
autoprewarm = off
offload_lfc_interval_seconds = 20
neon.safekeepers = '127.0.0.1:6502,127.0.0.1:6503,127.0.0.1:6501'
wal_log_hints = on
log_connections = on
shared_buffers = 32768
port = 55432
max_connections = 100
max_wal_senders = 10
listen_addresses = '0.0.0.0'
wal_sender_timeout = 0
password_encryption = md5
maintenance_work_mem = 65536
max_parallel_workers = 8
max_worker_processes = 8
neon.tenant_id = 'b0554b632bd4d547a63b86c3630317e8'
max_replication_slots = 10
neon.timeline_id = '2414a61ffc94e428f14b5758fe308e13'
shared_preload_libraries = 'neon'
synchronous_standby_names = 'walproposer'
neon.pageserver_connstring = 'host=127.0.0.1 port=6400'
test.escaping = 'here''s a backslash \\ and a quote '' and a double-quote " hooray'
"#;

/// pg_helpers_tests.rs::settings_serialize: each setting line is upstream's, byte for byte;
/// and the whole postgresql.conf we render gives PostgreSQL's parser the same value for
/// every setting as upstream's text does (`pg_file_settings`, last line per name wins).
#[tokio::test]
async fn settings_serialize() {
    let spec = ValidatedSpec::from_json(&upstream_fixture()).unwrap();
    let settings = spec.spec().cluster.settings.as_ref().unwrap();
    let lines: String = settings
        .iter()
        .map(|s| pg_config::render_setting_line(s).unwrap() + "\n")
        .collect();
    assert_eq!(lines, UPSTREAM_SETTINGS);

    let conf = pg_config::render_postgresql_conf(&spec, &pg_config::ConfigOptions::default());
    let pg = TestPostgres::start().unwrap();
    // Parsed only: pg_file_settings reads the files again at each query, and the server is
    // never reloaded, so these values (port 55432, …) are not applied.
    std::fs::write(pg.pgdata.join("upstream.conf"), UPSTREAM_SETTINGS).unwrap();
    std::fs::write(pg.pgdata.join("ours.conf"), &conf).unwrap();
    let main = pg.pgdata.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&main).unwrap();
    text.push_str("\ninclude 'upstream.conf'\ninclude 'ours.conf'\n");
    std::fs::write(&main, text).unwrap();
    let admin = client(&pg, "postgres").await;
    let rows = admin
        .query(
            "SELECT sourcefile, name, setting, error FROM pg_file_settings ORDER BY seqno",
            &[],
        )
        .await
        .unwrap();
    let mut parsed: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    let mut refused: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for row in &rows {
        let file: String = row.get(0);
        let which = if file.ends_with("/upstream.conf") {
            "upstream"
        } else if file.ends_with("/ours.conf") {
            "ours"
        } else {
            continue;
        };
        if let Some(error) = row.get::<_, Option<String>>(3) {
            refused
                .entry(which)
                .or_default()
                .push(format!("{}: {error}", row.get::<_, String>(1)));
        }
        parsed.entry(which).or_default().insert(
            row.get(1),
            row.get::<_, Option<String>>(2).unwrap_or_default(),
        );
    }
    let (upstream, ours) = (&parsed["upstream"], &parsed["ours"]);
    assert_eq!(upstream.len(), 25);
    // Neon-only parameters a vanilla server does not know, the same in both.
    assert_eq!(refused["upstream"], refused["ours"]);
    assert_eq!(
        refused["ours"],
        [
            "autoprewarm: unrecognized configuration parameter",
            "offload_lfc_interval_seconds: unrecognized configuration parameter"
        ]
    );
    for (name, value) in upstream {
        assert_eq!(ours.get(name), Some(value), "{name}");
    }
    assert_eq!(
        upstream["test.escaping"],
        r#"here's a backslash \ and a quote ' and a double-quote " hooray"#
    );
}

/// pg_helpers_tests.rs::ident_pg_quote, ::ident_pg_quote_dollar (14 cases) and
/// ::test_escape_literal (4 cases), each read back by PostgreSQL.
#[tokio::test]
async fn quoting_reads_back_as_upstream() {
    let pg = TestPostgres::start().unwrap();
    let client = client(&pg, "postgres").await;

    // ident_pg_quote: the same text; a column named by it is named exactly the input.
    let input = "\"name\";\\n select 1;";
    assert_eq!(quote_ident(input), "\"\"\"name\"\";\\n select 1;\"");
    let rows = client
        .query(&format!("SELECT 1 AS {}", quote_ident(input)), &[])
        .await
        .unwrap();
    assert_eq!(rows[0].columns()[0].name(), input);

    // ident_pg_quote_dollar: (input, upstream's escaped form, upstream's outer tag, ours).
    // Upstream starts at tag `x` and lengthens it while the *input contains the tag*; ours
    // lengthens it only while `$tag$` occurs in the input or the input ends with `$tag`, so a
    // bare `x` needs no longer tag. Upstream also returns an outer tag for the surrounding
    // `DO` block; ours computes the `DO` block's tag from its whole body instead.
    let cases = [
        ("name", "$x$name$x$", "xx", "$x$name$x$"),
        ("name$", "$x$name$$x$", "xx", "$x$name$$x$"),
        ("name$$", "$x$name$$$x$", "xx", "$x$name$$$x$"),
        ("name$$$", "$x$name$$$$x$", "xx", "$x$name$$$$x$"),
        ("name$$$$", "$x$name$$$$$x$", "xx", "$x$name$$$$$x$"),
        ("name$x$", "$xx$name$x$$xx$", "xxx", "$xx$name$x$$xx$"),
        ("x", "$xx$x$xx$", "xxx", "$x$x$x$"),
        ("xx", "$xxx$xx$xxx$", "xxxx", "$x$xx$x$"),
        ("$x", "$xx$$x$xx$", "xxx", "$xx$$x$xx$"),
        ("x$", "$xx$x$$xx$", "xxx", "$x$x$$x$"),
        ("$x$", "$xx$$x$$xx$", "xxx", "$xx$$x$$xx$"),
        ("xx$", "$xxx$xx$$xxx$", "xxxx", "$x$xx$$x$"),
        ("$xx", "$xxx$$xx$xxx$", "xxxx", "$x$$xx$x$"),
        ("$xx$", "$xxx$$xx$$xxx$", "xxxx", "$x$$xx$$x$"),
    ];
    for (input, upstream, outer, ours) in cases {
        assert_eq!(dollar_quote(input), ours, "{input:?}");
        assert_eq!(
            select_text(&client, &format!("SELECT {ours}::text")).await,
            input
        );
        assert_eq!(
            select_text(&client, &format!("SELECT {upstream}::text")).await,
            input
        );
        // Nested in a DO block as the SQL templates use them: ours inside our own quoting
        // of the body, upstream's inside its outer tag; both bodies see exactly the input.
        let check = |quoted: &str| {
            format!(
                "BEGIN IF {quoted} IS DISTINCT FROM {} THEN RAISE EXCEPTION 'mismatch'; \
                 END IF; END",
                quote_literal(input)
            )
        };
        client
            .batch_execute(&format!("DO {}", dollar_quote(&check(ours))))
            .await
            .unwrap_or_else(|e| panic!("ours {input:?}: {e}"));
        client
            .batch_execute(&format!("DO ${outer}${}${outer}$", check(upstream)))
            .await
            .unwrap_or_else(|e| panic!("upstream {input:?}: {e}"));
    }

    // test_escape_literal: the same text; read back identically whatever
    // standard_conforming_strings says.
    let cases = [
        ("test", "'test'"),
        ("test'", "'test'''"),
        ("test\\'", "E'test\\\\'''"),
        ("test\\'\\'", "E'test\\\\''\\\\'''"),
    ];
    for conforming in ["on", "off"] {
        client
            .batch_execute(&format!("SET standard_conforming_strings = {conforming}"))
            .await
            .unwrap();
        for (input, upstream) in cases {
            assert_eq!(quote_literal(input), upstream, "{input:?}");
            assert_eq!(
                select_text(&client, &format!("SELECT {upstream}::text")).await,
                input,
                "standard_conforming_strings = {conforming}"
            );
        }
    }
}

/// pg_helpers_tests.rs::generic_options_search: the value of the first setting of a name, or
/// none. Ours has no public lookup; the storage settings are found that way
/// (`ValidatedSpec::storage`). A setting without a value, which upstream finds as none, is
/// refused by our validation instead.
#[test]
fn generic_options_search() {
    let with = |settings: &str| {
        ValidatedSpec::from_json(&format!(
            r#"{{"format_version": 1.0, "cluster": {{"roles": [], "databases": []{settings}}}}}"#
        ))
    };
    let tenant = r#"{"name": "neon.tenant_id", "value": "b0554b632bd4d547a63b86c3630317e8", "vartype": "string"}"#;
    let spec = with(&format!(r#", "settings": [{tenant}]"#)).unwrap();
    assert_eq!(
        spec.storage().tenant_id.map(|t| t.to_string()).as_deref(),
        Some("b0554b632bd4d547a63b86c3630317e8")
    );
    assert_eq!(spec.storage().timeline_id, None);
    for settings in [r#", "settings": []"#, ""] {
        let spec = with(settings).unwrap();
        assert_eq!(spec.storage().tenant_id, None);
        assert_eq!(spec.storage().timeline_id, None);
        assert!(spec.storage().safekeepers.is_empty());
    }
    let missing = r#"{"name": "neon.timeline_id", "value": null, "vartype": "int"}"#;
    let report = with(&format!(r#", "settings": [{tenant}, {missing}]"#)).unwrap_err();
    assert_eq!(report.diagnostics[0].code, codes::MISSING_VALUE);
    assert_eq!(report.diagnostics[0].pointer, "/cluster/settings/1");
}

/// config_test.rs::test_line_in_file, re-expressed with our analogue
/// `pg_config::with_hba_access_line` (a pure edit of the text; the only line compute_ctl
/// adds to a file this way).
#[test]
fn line_in_file() {
    let line = pg_config::HBA_ACCESS_LINE;
    // Present (here between other lines, one with a tab): nothing changes.
    let present = format!("line1\n{line}\nline3");
    assert!(matches!(
        pg_config::with_hba_access_line(&present),
        Cow::Borrowed(_)
    ));
    // Absent: appended after the existing lines. Upstream writes no final newline; ours
    // does, so the lines are the same.
    let absent = "line1\nline2.1\t line2.2\nline3";
    let out = pg_config::with_hba_access_line(absent);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["line1", "line2.1\t line2.2", "line3", line]
    );
    assert_eq!(out, format!("{absent}\n{line}\n"));
    // A new (empty) file: just the line.
    assert_eq!(pg_config::with_hba_access_line(""), format!("{line}\n"));
    // A file ending with a newline: upstream would leave an empty line before the new one
    // (untested there); ours does not.
    assert_eq!(
        pg_config::with_hba_access_line("line1\n"),
        format!("line1\n{line}\n")
    );
}

/// compute.rs::tests::duplicate_safekeeper_connstring (the unit test behind
/// test_compute_safekeeper_connstrings_duplicate): a duplicate in `neon.safekeepers` is
/// refused.
#[test]
fn duplicate_safekeeper_connstring() {
    let text = upstream_fixture().replace(
        "127.0.0.1:6502,127.0.0.1:6503,127.0.0.1:6501",
        "127.0.0.1:6502,127.0.0.1:6503,127.0.0.1:6501,127.0.0.1:6502",
    );
    let report = ValidatedSpec::from_json(&text).unwrap_err();
    let errors: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == compute_spec::Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{report}");
    let d = errors[0];
    assert_eq!(d.code, codes::DUPLICATE_SAFEKEEPER);
    assert_eq!(d.pointer, "/cluster/settings/5/value");
    // Upstream: "duplicate entry in safekeeper_connstrings: 127.0.0.1:6502!".
    assert_eq!(
        d.message,
        "duplicate entry in neon.safekeepers: \"127.0.0.1:6502\""
    );
}
