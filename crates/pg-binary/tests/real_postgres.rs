//! Against the real PostgreSQL 15: what the probe finds, and that a neon_local-style
//! `postgresql.conf` rendered with `drop_unsupported` from the probe is accepted by the server
//! (`postgres -C`) and starts it, where the unfiltered file is refused.

use std::path::Path;

use compute_spec::ValidatedSpec;
use pg_binary::PgBinary;
use pg_config::{ConfigOptions, DropReason, render_postgresql_conf, unsupported_settings};

fn probe() -> PgBinary {
    let run_as = test_postgres::unprivileged_user()
        .unwrap()
        .map(|(uid, gid)| (uid.as_raw(), gid.as_raw()));
    PgBinary::probe(&test_postgres::pg_bin_dir().join("postgres"), run_as).unwrap()
}

#[test]
fn probes_the_real_postgres() {
    let pg = probe();
    assert!(pg.knows_setting("work_mem"));
    assert!(pg.knows_setting("WORK_MEM"));
    assert!(
        pg.knows_setting("neon.safekeepers"),
        "dotted: a placeholder"
    );
    // Hidden by --describe-config, confirmed by a run.
    assert!(pg.knows_setting("application_name"));
    assert!(pg.knows_setting("allow_system_table_mods"));
    assert!(!pg.settings().iter().any(|g| g.name == "application_name"));
    // Not in vanilla 15 (or not compiled in).
    assert!(!pg.knows_setting("max_replication_write_lag"));
    assert!(!pg.knows_setting("debug_io_direct"), "PostgreSQL 16");
    assert!(!pg.knows_setting("wal_debug"), "needs WAL_DEBUG");

    let pkglibdir = std::process::Command::new(test_postgres::pg_bin_dir().join("pg_config"))
        .arg("--pkglibdir")
        .output()
        .unwrap();
    let pkglibdir = String::from_utf8(pkglibdir.stdout).unwrap();
    assert_eq!(pg.libdir(), Path::new(pkglibdir.trim()));
    let has_pgss = pg.libdir().join("pg_stat_statements.so").is_file();
    assert_eq!(pg.has_library("pg_stat_statements"), has_pgss);
    assert_eq!(pg.has_library("$libdir/pg_stat_statements"), has_pgss);
    assert!(pg.has_library("plpgsql"));
    assert!(!pg.has_library("neon"));
    assert!(!pg.support().walproposer);
    for guc in pg.settings() {
        assert!(
            pg.support().known_settings.contains(&guc.name),
            "{}",
            guc.name
        );
    }
}

/// The library-only probe finds the same library directory and libraries as the full probe
/// (without running the server), and knows no setting; a missing binary is an error.
#[test]
fn library_probe_agrees_with_the_full_probe() {
    let full = probe();
    let libraries = pg_binary::probe_libraries(&test_postgres::pg_bin_dir()).unwrap();
    assert_eq!(libraries.libdir, full.support().libdir);
    assert_eq!(libraries.libraries, full.support().libraries);
    assert!(!libraries.libraries.is_empty());
    assert_eq!(libraries.walproposer, full.support().walproposer);
    assert_eq!(libraries.has_library("plpgsql"), Some(true));
    assert!(libraries.known_settings.is_empty());
    let missing = pg_binary::probe_libraries(Path::new("/nonexistent/bin/postgres")).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/bin/postgres"),
        "{missing}"
    );
}

/// neon_local's settings, as it writes them, plus a vanilla library.
const NEON_LOCAL_CONF: &str = "\
max_wal_senders = '10'
wal_log_hints = 'off'
max_replication_slots = '10'
hot_standby = on
shared_buffers = 1MB
fsync = off
max_connections = 100
wal_level = 'logical'
wal_sender_timeout = '5s'
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'neon'
max_replication_write_lag = '15MB'
max_replication_flush_lag='10GB'
synchronous_standby_names = 'walproposer' # commits would wait
neon.safekeepers = 'localhost:5454'
neon.pageserver_connstring = 'postgresql://no_user@localhost:64000'
shared_preload_libraries='neon,pg_stat_statements'
application_name = 'it''s \\'quoted\\''
";

fn spec() -> ValidatedSpec {
    let spec = serde_json::json!({"format_version": 1.0, "cluster": {"roles": [], "databases": [],
        "postgresql_conf": NEON_LOCAL_CONF,
        "settings": [{"name": "max_replication_apply_lag", "value": "-1", "vartype": "integer"}]}});
    ValidatedSpec::from_json(&spec.to_string()).unwrap()
}

/// `postgres -C name -D pgdata` as the unprivileged user: exit success, stdout, stderr.
fn show(pgdata: &Path, name: &str) -> (bool, String, String) {
    let out = test_postgres::command_as_pg_user(test_postgres::pg_bin_dir().join("postgres"))
        .unwrap()
        .arg("-C")
        .arg(name)
        .arg("-D")
        .arg(pgdata)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn filtered_neon_local_conf_is_accepted() {
    let pg = probe();
    let has_pgss = pg.has_library("pg_stat_statements");
    let spec = spec();
    let dropped = unsupported_settings(&spec, pg.support());
    let names: Vec<&str> = dropped.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "shared_preload_libraries",
            "max_replication_write_lag",
            "max_replication_flush_lag",
            "synchronous_standby_names",
            "shared_preload_libraries",
            "max_replication_apply_lag",
        ]
    );
    assert_eq!(dropped[3].reason, DropReason::NoWalproposer);
    assert_eq!(
        dropped[4].kept_value.as_deref(),
        has_pgss.then_some("pg_stat_statements")
    );

    let dir = tempfile::tempdir().unwrap();
    test_postgres::chown_to_pg_user(dir.path()).unwrap();
    let pgdata = dir.path().join("pgdata");
    test_postgres::initdb(&pgdata, "cloud_admin").unwrap();
    let conf_path = pgdata.join("postgresql.conf");

    // Without the option the server refuses the file.
    std::fs::write(
        &conf_path,
        render_postgresql_conf(&spec, &ConfigOptions::default()),
    )
    .unwrap();
    let (ok, _, stderr) = show(&pgdata, "shared_preload_libraries");
    assert!(!ok);
    assert!(
        stderr.contains("unrecognized configuration parameter \"max_replication_write_lag\""),
        "{stderr}"
    );

    let options = ConfigOptions {
        drop_unsupported: Some(pg.support().clone()),
        ..ConfigOptions::default()
    };
    let conf = render_postgresql_conf(&spec, &options);
    std::fs::write(&conf_path, &conf).unwrap();
    let expect_libraries = if has_pgss { "pg_stat_statements" } else { "" };
    let (ok, stdout, stderr) = show(&pgdata, "shared_preload_libraries");
    assert!(ok, "{stderr}\n{conf}");
    assert_eq!(stdout, expect_libraries);
    assert_eq!(show(&pgdata, "synchronous_standby_names").1, "");
    assert_eq!(show(&pgdata, "application_name").1, "it's 'quoted'");
    assert_eq!(show(&pgdata, "neon.safekeepers").1, "localhost:5454");

    // And the server starts with it, loads the kept library and commits without waiting.
    let lines: Vec<String> = conf.lines().map(str::to_owned).collect();
    let server = test_postgres::TestPostgres::start_with(test_postgres::TestPostgresConfig {
        extra_conf: lines,
        ..Default::default()
    })
    .unwrap();
    let out = server
        .psql(
            "postgres",
            "SET synchronous_commit = on; CREATE TABLE t (); SHOW shared_preload_libraries;",
        )
        .unwrap();
    assert!(out.contains(expect_libraries), "{out}");
}
