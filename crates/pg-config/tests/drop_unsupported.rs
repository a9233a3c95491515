//! Snapshot tests of `ConfigOptions::drop_unsupported`: a neon_local-style `postgresql.conf` and
//! `cluster.settings` rendered for an installation without Neon's libraries and GUCs, and the
//! report of the same decisions.

use compute_spec::ValidatedSpec;
use expect_test::{Expect, expect};
use pg_config::{ConfigOptions, ServerSupport, render_postgresql_conf, unsupported_settings};
use serde_json::json;

/// What neon_local writes, with quoting styles, comments, CRLF and hostile values mixed in.
const NEON_LOCAL_CONF: &str = "\
# Written by neon_local
max_wal_senders = '10'
wal_log_hints = 'off'
shared_preload_libraries = 'neon'
max_replication_write_lag = '15MB'
max_replication_flush_lag=10GB   # no spaces, bare
  Max_Replication_Apply_Lag '1GB'
synchronous_standby_names = 'walproposer'
neon.safekeepers = 'localhost:5454'
neon.pageserver_connstring = 'postgresql://no_user@localhost:64000'
shared_preload_libraries='neon,pg_stat_statements' # later line wins
session_preload_libraries = '\"neon\", \"auto_explain\"'\r
local_preload_libraries = 'neon'
application_name = 'it''s # not a comment'
unknown_thing = 'x\\' # escaped quote, still one value'
not_closed = 'x
include_if_exists = 'extra.conf'
";

/// A vanilla PostgreSQL 15 as far as these settings go.
fn vanilla() -> ServerSupport {
    ServerSupport {
        known_settings: [
            "max_wal_senders",
            "wal_log_hints",
            "shared_preload_libraries",
            "session_preload_libraries",
            "local_preload_libraries",
            "synchronous_standby_names",
            "application_name",
            "work_mem",
        ]
        .map(str::to_owned)
        .into(),
        libdir: "/usr/lib/postgresql/15/lib".to_owned(),
        libraries: ["pg_stat_statements.so", "auto_explain.so"]
            .map(str::to_owned)
            .into(),
        walproposer: false,
    }
}

fn spec() -> ValidatedSpec {
    let settings = json!([
        {"name": "work_mem", "value": "4MB", "vartype": "integer"},
        {"name": "shared_preload_libraries", "value": "pg_stat_statements", "vartype": "string"},
        {"name": "shared_preload_libraries", "value": "neon", "vartype": "string"},
        {"name": "max_replication_write_lag", "value": "500MB", "vartype": "integer"},
        {"name": "synchronous_standby_names", "value": "pageserver", "vartype": "string"},
        {"name": "session_preload_libraries", "value": "neon, auto_explain", "vartype": "string"},
        {"name": "neon.max_file_cache_size", "value": "1GB", "vartype": "integer"},
    ]);
    let spec = json!({"format_version": 1.0, "mode": "Primary",
        "cluster": {"roles": [], "databases": [], "settings": settings,
                    "postgresql_conf": NEON_LOCAL_CONF}});
    ValidatedSpec::from_json(&spec.to_string()).unwrap()
}

fn check(support: ServerSupport, expect: Expect) {
    let options = ConfigOptions {
        drop_unsupported: Some(support),
        ..ConfigOptions::default()
    };
    expect.assert_eq(&render_postgresql_conf(&spec(), &options));
}

#[test]
fn neon_local_conf_on_vanilla_postgres() {
    check(
        vanilla(),
        expect![[r#"
            # Written by neon_local
            max_wal_senders = '10'
            wal_log_hints = 'off'
            # line 4: shared_preload_libraries dropped by compute_ctl: library neon not in /usr/lib/postgresql/15/lib
            # line 5: max_replication_write_lag dropped by compute_ctl: unknown to this postgres binary
            # line 6: max_replication_flush_lag dropped by compute_ctl: unknown to this postgres binary
            # line 7: Max_Replication_Apply_Lag dropped by compute_ctl: unknown to this postgres binary
            # line 8: synchronous_standby_names dropped by compute_ctl: no walproposer (neon library) to be the synchronous standby
            neon.safekeepers = 'localhost:5454'
            neon.pageserver_connstring = 'postgresql://no_user@localhost:64000'
            # line 11: shared_preload_libraries rewritten by compute_ctl: library neon not in /usr/lib/postgresql/15/lib
            shared_preload_libraries = 'pg_stat_statements'
            # line 12: session_preload_libraries rewritten by compute_ctl: library neon not in /usr/lib/postgresql/15/lib
            session_preload_libraries = '"auto_explain"'
            # line 13: local_preload_libraries dropped by compute_ctl: library neon not in /usr/lib/postgresql/15/lib
            application_name = 'it''s # not a comment'
            # line 15: unknown_thing dropped by compute_ctl: unknown to this postgres binary
            not_closed = 'x
            include_if_exists = 'extra.conf'
            # Neon storage settings

            lc_messages = 'C.UTF-8'
            lc_monetary = 'C.UTF-8'
            lc_time = 'C.UTF-8'
            lc_numeric = 'C.UTF-8'
            neon.compute_mode = 'primary'
            neon.privileged_role_name = 'neon_superuser'
            neon.disable_logical_replication_subscribers = false
            # Managed by compute_ctl: begin
            work_mem = 4MB
            shared_preload_libraries = 'pg_stat_statements'
            # /cluster/settings/2: shared_preload_libraries dropped by compute_ctl: library neon not in /usr/lib/postgresql/15/lib
            # /cluster/settings/3: max_replication_write_lag dropped by compute_ctl: unknown to this postgres binary
            # /cluster/settings/4: synchronous_standby_names dropped by compute_ctl: no walproposer (neon library) to be the synchronous standby
            # /cluster/settings/5: session_preload_libraries rewritten by compute_ctl: library neon not in /usr/lib/postgresql/15/lib
            session_preload_libraries = 'auto_explain'
            neon.max_file_cache_size = 1GB
            # Managed by compute_ctl: end
            include_if_exists = 'compute_ctl_temp_override.conf'
        "#]],
    );
}

/// With Neon's libraries and GUCs, nothing is dropped: the file is the one rendered without
/// the option.
#[test]
fn nothing_dropped_on_neon_postgres() {
    let mut neon = vanilla();
    neon.walproposer = true;
    neon.libraries.insert("neon.so".to_owned());
    neon.libraries.insert("plugins/neon.so".to_owned()); // local_preload_libraries
    for name in [
        "max_replication_write_lag",
        "max_replication_flush_lag",
        "max_replication_apply_lag",
        "unknown_thing",
    ] {
        neon.known_settings.insert(name.to_owned());
    }
    assert_eq!(unsupported_settings(&spec(), &neon), []);
    let options = ConfigOptions {
        drop_unsupported: Some(neon),
        ..ConfigOptions::default()
    };
    assert_eq!(
        render_postgresql_conf(&spec(), &options),
        render_postgresql_conf(&spec(), &ConfigOptions::default())
    );
}

#[test]
fn report_lists_what_is_dropped() {
    let report: Vec<String> = unsupported_settings(&spec(), &vanilla())
        .iter()
        .map(|d| {
            let kept = match &d.kept_value {
                Some(kept) => format!(" -> {kept:?}"),
                None => String::new(),
            };
            format!(
                "{}: {} = {:?}{kept}: {}",
                d.source, d.name, d.value, d.reason
            )
        })
        .collect();
    expect![[r#"
        line 4 of /cluster/postgresql_conf: shared_preload_libraries = "neon": library neon not in /usr/lib/postgresql/15/lib
        line 5 of /cluster/postgresql_conf: max_replication_write_lag = "15MB": unknown to this postgres binary
        line 6 of /cluster/postgresql_conf: max_replication_flush_lag = "10GB": unknown to this postgres binary
        line 7 of /cluster/postgresql_conf: Max_Replication_Apply_Lag = "1GB": unknown to this postgres binary
        line 8 of /cluster/postgresql_conf: synchronous_standby_names = "walproposer": no walproposer (neon library) to be the synchronous standby
        line 11 of /cluster/postgresql_conf: shared_preload_libraries = "neon,pg_stat_statements" -> "pg_stat_statements": library neon not in /usr/lib/postgresql/15/lib
        line 12 of /cluster/postgresql_conf: session_preload_libraries = "\"neon\", \"auto_explain\"" -> "\"auto_explain\"": library neon not in /usr/lib/postgresql/15/lib
        line 13 of /cluster/postgresql_conf: local_preload_libraries = "neon": library neon not in /usr/lib/postgresql/15/lib
        line 15 of /cluster/postgresql_conf: unknown_thing = "x' # escaped quote, still one value": unknown to this postgres binary
        /cluster/settings/2: shared_preload_libraries = "neon": library neon not in /usr/lib/postgresql/15/lib
        /cluster/settings/3: max_replication_write_lag = "500MB": unknown to this postgres binary
        /cluster/settings/4: synchronous_standby_names = "pageserver": no walproposer (neon library) to be the synchronous standby
        /cluster/settings/5: session_preload_libraries = "neon, auto_explain" -> "auto_explain": library neon not in /usr/lib/postgresql/15/lib
    "#]]
    .assert_eq(&(report.join("\n") + "\n"));
}

/// With audit on, `shared_preload_libraries` is compute_ctl's (the spec's list plus pgaudit):
/// it is built from the spec's list without the missing libraries.
#[test]
fn audit_list_is_built_from_the_kept_libraries() {
    let spec = json!({"format_version": 1.0, "audit_log_level": "Log",
        "cluster": {"roles": [], "databases": [], "settings": [
            {"name": "shared_preload_libraries", "value": "neon,pg_stat_statements", "vartype": "string"}]}});
    let spec = ValidatedSpec::from_json(&spec.to_string()).unwrap();
    let options = ConfigOptions {
        drop_unsupported: Some(vanilla()),
        ..ConfigOptions::default()
    };
    let conf = render_postgresql_conf(&spec, &options);
    assert!(
        conf.contains("\nshared_preload_libraries = 'pg_stat_statements,pgaudit'\n"),
        "{conf}"
    );
    assert!(
        conf.contains(
            "\n# /cluster/settings/0: shared_preload_libraries is set above by compute_ctl\n"
        ),
        "{conf}"
    );
}
