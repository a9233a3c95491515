//! Proof against the real server: every value of a rendered `postgresql.conf`, hostile ones
//! included, is read back by PostgreSQL 15 (`postgres -C NAME -D DIR`, then `current_setting` on the
//! started server) as exactly the spec value, and the `pg_hba.conf` access line is accepted.

use std::path::Path;

use compute_spec::{GenericOption, ValidatedSpec};
use pg_config::{
    ConfigOptions, FileOptions, PG_HBA_CONF, POSTGRESQL_CONF, SettingLineError,
    render_postgresql_conf, render_setting_line, with_hba_access_line, write_file_atomically,
};
use serde_json::json;

/// Values that break naive quoting: quotes, backslashes, comment and assignment characters,
/// unicode, empty, very long, padding, `$`, `%`, tab, and injection attempts.
fn hostile_values() -> Vec<String> {
    let mut values: Vec<String> = [
        "it's",
        "''",
        "'",
        "\"double\"",
        "\\",
        "\\\\n",
        "C:\\path\\",
        "\\'",
        "# not a comment",
        "value # trailing",
        "a = b",
        "x=y",
        "🐘 ünïcødé ✓",
        "",
        "  padded both sides  ",
        " leading",
        "trailing ",
        "$1 $$ $x$ ${HOME}",
        "%s %I %% %m",
        "tab\there",
        "'; include '/etc/passwd",
        "x' \ninclude 'y",
        "on",
        "-1",
        "1.5",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    values.push("long 'quoted' \\ value ".repeat(500));
    values
}

/// `postgres -C name -D pgdata`, run as the unprivileged user; the value without the newline,
/// or `None` when the server does not know the parameter.
fn show(pgdata: &Path, name: &str) -> Option<String> {
    let postgres = test_postgres::pg_bin_dir().join("postgres");
    let out = test_postgres::command_as_pg_user(postgres)
        .unwrap()
        .arg("-C")
        .arg(name)
        .arg("-D")
        .arg(pgdata)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert!(
            stderr.contains("unrecognized configuration parameter"),
            "postgres -C {name}: {stderr}"
        );
        return None;
    }
    let text = String::from_utf8(out.stdout).unwrap();
    Some(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

#[test]
fn postgres_reads_back_every_value() {
    let dir = tempfile::tempdir().unwrap();
    test_postgres::chown_to_pg_user(dir.path()).unwrap();
    let pgdata = dir.path().join("pgdata");
    test_postgres::initdb(&pgdata, "cloud_admin").unwrap();
    let socket_dir = dir.path().join("sock");
    std::fs::create_dir(&socket_dir).unwrap();
    test_postgres::chown_to_pg_user(&socket_dir).unwrap();
    let port = test_postgres::free_port();
    let verbatim = format!(
        "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = {}\n\
         max_connections = 10\n",
        pg_quote::quote_conf_value(&socket_dir.to_string_lossy())
    );

    // (name, vartype, value, what the server must show)
    let mut expected: Vec<(String, &str, String, String)> = Vec::new();
    for (i, value) in hostile_values().into_iter().enumerate() {
        // Custom placeholders keep any text. Only `string` ones pass validation with such
        // values; the others are written with `render_setting_line` below, to show that even
        // a value validation would reject never breaks the file.
        for vartype in ["string", "integer", "bool", "enum", "real"] {
            let name = format!("test.{vartype}_{i}");
            expected.push((name, vartype, value.clone(), value.clone()));
        }
    }
    // Real parameters of each vartype (the server shows integers in their base unit).
    for (name, vartype, value, shown) in [
        (
            "log_line_prefix",
            "string",
            "%m [%p] it's # = \\ $x$ 🐘 ",
            None,
        ),
        ("fsync", "bool", "off", None),
        ("max_connections", "integer", "77", None),
        ("work_mem", "integer", "4MB", Some("4096")),
        ("statement_timeout", "integer", "1min", Some("60000")),
        ("random_page_cost", "real", "1.5", None),
        ("wal_level", "enum", "logical", None),
        ("search_path", "string", "\"my schema\", public", None),
    ] {
        expected.push((
            name.to_owned(),
            vartype,
            value.to_owned(),
            shown.unwrap_or(value).to_owned(),
        ));
    }
    let in_spec = |name: &str, vartype: &str, value: &str| {
        !name.starts_with("test.") || (vartype == "string" && !value.contains('\n'))
    };
    let settings: Vec<_> = expected
        .iter()
        .filter(|(name, vartype, value, _)| in_spec(name, vartype, value))
        .map(|(name, vartype, value, _)| json!({"name": name, "vartype": vartype, "value": value}))
        .collect();
    let spec = json!({
        "format_version": 1.0,
        "mode": {"Static": "1/2A"},
        "tenant_id": "0123456789abcdef0123456789abcdef",
        "timeline_id": "fedcba9876543210fedcba9876543210",
        "project_id": "it's a 'project' \\",
        "safekeeper_connstrings": ["sk1:5454", "sk2:5454"],
        "safekeepers_generation": 3,
        "pageserver_connstring": "host=ps port=6400 password='x\\'y'",
        "cluster": {"roles": [], "databases": [], "settings": settings,
                    "postgresql_conf": verbatim},
    });
    let spec = ValidatedSpec::from_json(&spec.to_string()).unwrap();
    let options = ConfigOptions {
        privileged_role_name: "super \"user\" 'x'".to_owned(),
        extension_server_port: Some(3081),
        ..ConfigOptions::default()
    };
    let mut conf = render_postgresql_conf(&spec, &options);
    for (name, vartype, value, _) in &expected {
        if in_spec(name, vartype, value) {
            continue;
        }
        let option = GenericOption {
            name: name.clone(),
            value: Some(value.clone()),
            vartype: (*vartype).to_owned(),
        };
        match render_setting_line(&option) {
            Ok(line) => conf.push_str(&format!("{line}\n")),
            Err(SettingLineError::UnwritableValue { .. }) => assert!(value.contains('\n')),
            Err(other) => panic!("{name}: {other}"),
        }
    }
    let owner = test_postgres::unprivileged_user()
        .unwrap()
        .map(|(uid, gid)| (uid.as_raw(), gid.as_raw()));
    let file_options = FileOptions {
        owner,
        ..FileOptions::default()
    };
    write_file_atomically(
        &pgdata.join(POSTGRESQL_CONF),
        conf.as_bytes(),
        &file_options,
    )
    .unwrap();

    // `postgres -C` for both rendering paths (always quoted; bare when plain, else quoted);
    // bool, enum and real take the second path and are checked on the running server below.
    for (name, _, value, shown) in expected
        .iter()
        .filter(|(_, vartype, ..)| ["string", "integer"].contains(vartype))
    {
        // A value with a newline cannot be written: it is left out (validation rejects it
        // anyway), and the rest of the file is still read.
        let shown = (!value.contains('\n')).then_some(shown.as_str());
        assert_eq!(show(&pgdata, name).as_deref(), shown, "{name} = {value:?}");
    }
    for (name, shown) in [
        ("port", port.to_string().as_str()),
        ("neon.tenant_id", "0123456789abcdef0123456789abcdef"),
        ("neon.timeline_id", "fedcba9876543210fedcba9876543210"),
        ("neon.project_id", "it's a 'project' \\"),
        ("neon.safekeepers", "g#3:sk1:5454,sk2:5454"),
        (
            "neon.pageserver_connstring",
            "host=ps port=6400 password='x\\'y'",
        ),
        ("neon.compute_mode", "static"),
        ("neon.privileged_role_name", "super \"user\" 'x'"),
        ("neon.extension_server_port", "3081"),
        ("hot_standby", "on"),
        ("recovery_target_lsn", "1/2A"),
    ] {
        assert_eq!(show(&pgdata, name).as_deref(), Some(shown), "{name}");
    }

    // The access line is accepted by the server, and a running server shows the same values.
    let hba_path = pgdata.join(PG_HBA_CONF);
    let hba = std::fs::read_to_string(&hba_path).unwrap();
    let hba = with_hba_access_line(&hba);
    write_file_atomically(&hba_path, hba.as_bytes(), &file_options).unwrap();
    let server = Server::start(&pgdata, &dir.path().join("server.log"));
    let connstr = format!("host=127.0.0.1 port={port} user=cloud_admin dbname=postgres");
    let last_rule = server.psql(
        &connstr,
        "select type, database, user_name, address, auth_method, error \
         from pg_hba_file_rules order by line_number desc limit 1",
    );
    assert_eq!(last_rule, "host|{all}|{all}|all|md5|\n");
    // One query compares every value on the server (in base units, as `postgres -C` shows
    // them); it returns the names that differ.
    let pairs: Vec<String> = expected
        .iter()
        .filter(|(_, _, value, _)| !value.contains('\n'))
        .map(|(name, _, _, shown)| {
            format!(
                "({}, {})",
                pg_quote::quote_literal(name),
                pg_quote::quote_literal(shown)
            )
        })
        .collect();
    let sql = format!(
        "select n from (values {}) v(n, e) where coalesce((select setting from pg_settings \
         where name = n), current_setting(n)) is distinct from e",
        pairs.join(", ")
    );
    assert_eq!(server.psql(&connstr, &sql), "", "settings that differ");
    assert_eq!(
        server.psql(&connstr, "show neon.privileged_role_name"),
        "super \"user\" 'x'\n"
    );
}

/// A server started with `pg_ctl` on a data directory; stopped on drop.
struct Server<'a> {
    pgdata: &'a Path,
}

impl<'a> Server<'a> {
    fn start(pgdata: &'a Path, log: &Path) -> Server<'a> {
        let status = test_postgres::command_as_pg_user(test_postgres::pg_bin_dir().join("pg_ctl"))
            .unwrap()
            .arg("-D")
            .arg(pgdata)
            .args(["start", "-w", "-t", "60", "-l"])
            .arg(log)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Server { pgdata }
    }

    fn psql(&self, connstr: &str, sql: &str) -> String {
        let out = std::process::Command::new(test_postgres::pg_bin_dir().join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                connstr,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        if let Ok(mut cmd) =
            test_postgres::command_as_pg_user(test_postgres::pg_bin_dir().join("pg_ctl"))
        {
            let _ = cmd
                .arg("-D")
                .arg(self.pgdata)
                .args(["stop", "-m", "immediate", "-w"])
                .stdout(std::process::Stdio::null())
                .status();
        }
    }
}
