//! Helpers shared by the integration tests: standalone-mode configuration of a real server
//! through `pg-config`, the reconciler's options, and a catalog dump.
#![allow(
    dead_code,
    reason = "each test binary compiles this module and uses a subset of it"
)]

use std::path::{Path, PathBuf};

use compute_spec::ValidatedSpec;
use pg_config::{ConfigOptions, FileOptions};
use test_postgres::TestPostgres;

/// The superuser compute_ctl connects as (and the `-U` of `initdb`).
pub(crate) const SUPERUSER: &str = "cloud_admin";

/// The upstream example specs, sorted by file name, with their text.
pub(crate) fn upstream_specs() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/upstream");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            (path, text)
        })
        .collect()
}

/// What compute_ctl writes into PGDATA in standalone mode, through `pg-config` only: every
/// file of `pgdata_files` (`postgresql.conf` replaces initdb's wholesale) and the `pg_hba.conf`
/// access line, each written atomically and given to the unprivileged user when we are root.
/// Then the real server is started on that directory.
pub(crate) fn configure_and_start(pg: &mut TestPostgres, spec: &ValidatedSpec) {
    let owner = test_postgres::unprivileged_user()
        .expect("look up the postgres user")
        .map(|(uid, gid)| (uid.as_raw(), gid.as_raw()));
    let file_options = FileOptions {
        owner,
        ..FileOptions::default()
    };
    for file in pg_config::pgdata_files(spec, &ConfigOptions::default()) {
        pg_config::write_file_atomically(
            &pg.pgdata.join(file.name),
            file.contents.as_bytes(),
            &file_options,
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", file.name));
    }
    let hba_path = pg.pgdata.join(pg_config::PG_HBA_CONF);
    let hba = std::fs::read_to_string(&hba_path).expect("read pg_hba.conf");
    let hba = pg_config::with_hba_access_line(&hba);
    pg_config::write_file_atomically(&hba_path, hba.as_bytes(), &file_options)
        .expect("write pg_hba.conf");
    if let Err(e) = pg.start_in_place() {
        panic!("start postgres on the rendered configuration: {e}");
    }
}

/// The connection compute_ctl uses (its `--connstr`): the superuser, system database, TCP.
pub(crate) fn connection(pg: &TestPostgres) -> tokio_postgres::Config {
    pg.connstr("postgres")
        .parse()
        .expect("test-postgres gives a valid connection string")
}

/// The reconciler's options as compute_ctl derives them from its connection string.
pub(crate) fn plan_options() -> pg_reconcile::PlanOptions {
    pg_reconcile::PlanOptions {
        superuser: SUPERUSER.to_owned(),
        ..pg_reconcile::PlanOptions::default()
    }
}

/// A text dump of everything the reconciler could change, in a stable order: roles with every
/// attribute and password hash, memberships, databases with owner, options and ACL, and
/// per-role/per-database settings.
pub(crate) const CATALOG_DUMP: &str = "\
SELECT 'role', a.oid::text, a.rolname, a.rolsuper::text, a.rolinherit::text,
       a.rolcreaterole::text, a.rolcreatedb::text, a.rolcanlogin::text,
       a.rolreplication::text, a.rolbypassrls::text, a.rolconnlimit::text,
       coalesce(a.rolpassword, '-'), coalesce(a.rolvaliduntil::text, '-')
  FROM pg_authid a
UNION ALL
SELECT 'member', m.roleid::text, m.member::text, m.grantor::text, m.admin_option::text,
       '', '', '', '', '', '', '', ''
  FROM pg_auth_members m
UNION ALL
SELECT 'database', d.oid::text, d.datname, d.datdba::text, d.datistemplate::text,
       d.datallowconn::text, d.datconnlimit::text, coalesce(d.datacl::text, '-'),
       d.encoding::text, d.datcollate, d.datctype, '', ''
  FROM pg_database d
UNION ALL
SELECT 'setting', s.setdatabase::text, s.setrole::text, array_to_string(s.setconfig, ','),
       '', '', '', '', '', '', '', '', ''
  FROM pg_db_role_setting s
ORDER BY 1, 2, 3, 4";

/// [`CATALOG_DUMP`] run against `pg`.
pub(crate) fn catalog_dump(pg: &TestPostgres) -> String {
    pg.psql("postgres", CATALOG_DUMP).expect("dump the catalog")
}

/// Runs `sql` with `psql` and splits its output into rows of `|`-separated columns, each
/// column decoded from hex: select `encode(convert_to(x, 'UTF8'), 'hex')` for every column so
/// that names with quotes, backslashes or newlines come back byte for byte.
pub(crate) fn psql_hex_rows(pg: &TestPostgres, dbname: &str, sql: &str) -> Vec<Vec<String>> {
    let out = pg
        .psql(dbname, sql)
        .unwrap_or_else(|e| panic!("psql {sql}: {e}"));
    out.lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split('|').map(decode_hex).collect())
        .collect()
}

fn decode_hex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("psql printed hex"))
        .collect();
    String::from_utf8(bytes).expect("UTF-8 names")
}

/// `encode(convert_to(<expr>, 'UTF8'), 'hex')`, for [`psql_hex_rows`].
pub(crate) fn hex(expr: &str) -> String {
    format!("encode(convert_to(({expr})::text, 'UTF8'), 'hex')")
}
