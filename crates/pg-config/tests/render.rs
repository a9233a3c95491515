//! Snapshot tests of rendered `postgresql.conf` files: upstream's fixtures and each compute mode.

use compute_spec::ValidatedSpec;
use expect_test::{Expect, ExpectFile, expect, expect_file};
use pg_config::{ConfigOptions, pgdata_files, render_postgresql_conf};

fn fixture(name: &str) -> ValidatedSpec {
    let path = format!("{}/../../specs/upstream/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    ValidatedSpec::from_json(&text).unwrap_or_else(|e| panic!("{path}: {e:?}"))
}

fn check_fixture(name: &str, expect: ExpectFile) {
    expect.assert_eq(&render_postgresql_conf(
        &fixture(name),
        &ConfigOptions::default(),
    ));
}

#[test]
fn upstream_fixtures() {
    check_fixture(
        "latest_libs_compute_api_tests_cluster_spec@6a35a3e9f1.json",
        expect_file!["snapshots/latest_cluster_spec.conf"],
    );
    check_fixture(
        "latest_docker-compose_config@6a35a3e9f1.json",
        expect_file!["snapshots/latest_docker_compose.conf"],
    );
    check_fixture(
        "2023-04_libs_compute_api_tests_cluster_spec@f0b2e076d9.json",
        expect_file!["snapshots/2023-04_cluster_spec.conf"],
    );
    check_fixture(
        "early-2023_compute_tools_tests_cluster_spec@1401021b21.json",
        expect_file!["snapshots/early-2023_cluster_spec.conf"],
    );
    check_fixture(
        "early-2023_docker-compose_spec@1401021b21.json",
        expect_file!["snapshots/early-2023_docker_compose.conf"],
    );
}

/// A spec with every storage field, spec settings that collide with compute_ctl-owned names,
/// a duplicated setting and values that need quoting. (Settings that validation rejects — bad
/// names, null values, newlines — are covered by `render_setting_line`'s unit tests.)
fn storage_spec(mode: &str, extra: &str) -> ValidatedSpec {
    let text = format!(
        r#"{{
        "format_version": 1.0,
        "mode": {mode},
        {extra}
        "tenant_id": "0123456789abcdef0123456789abcdef",
        "timeline_id": "fedcba9876543210fedcba9876543210",
        "project_id": "proj-1", "branch_id": "br-2", "endpoint_id": "ep-3",
        "safekeeper_connstrings": ["sk1:5454", "sk2:5454", "sk3:5454"],
        "safekeepers_generation": 7,
        "pageserver_connection_info": {{
            "shard_count": 2, "stripe_size": 2048,
            "shards": {{
                "0102": {{"pageservers": [{{"id": 2, "libpq_url": "postgresql://ps2:6400"}}]}},
                "0002": {{"pageservers": [{{"id": 1, "libpq_url": "postgresql://ps1:6400"}}]}}
            }}
        }},
        "cluster": {{
            "roles": [], "databases": [],
            "settings": [
                {{"name": "neon.safekeepers", "value": "sk1:5454,sk2:5454,sk3:5454", "vartype": "string"}},
                {{"name": "Hot_Standby", "value": "off", "vartype": "bool"}},
                {{"name": "work_mem", "value": "1MB", "vartype": "integer"}},
                {{"name": "work_mem", "value": "4MB", "vartype": "integer"}},
                {{"name": "default_transaction_isolation", "value": "repeatable read", "vartype": "enum"}},
                {{"name": "shared_preload_libraries", "value": "neon, pg_stat_statements", "vartype": "string"}},
                {{"name": "test.quote", "value": "it's a \\ 'test'", "vartype": "string"}}
            ]
        }}
    }}"#
    );
    ValidatedSpec::from_json(&text).unwrap()
}

fn check(spec: &ValidatedSpec, options: &ConfigOptions, expect: Expect) {
    expect.assert_eq(&render_postgresql_conf(spec, options));
}

#[test]
fn modes() {
    let options = ConfigOptions::default();
    check(
        &storage_spec(r#""Primary""#, ""),
        &options,
        expect![[r#"
            # Neon storage settings
            neon.stripe_size = 2048
            neon.pageserver_connstring = 'postgresql://ps1:6400,postgresql://ps2:6400'
            neon.safekeepers = 'g#7:sk1:5454,sk2:5454,sk3:5454'
            neon.tenant_id = '0123456789abcdef0123456789abcdef'
            neon.timeline_id = 'fedcba9876543210fedcba9876543210'
            neon.project_id = 'proj-1'
            neon.branch_id = 'br-2'
            neon.endpoint_id = 'ep-3'

            lc_messages = 'C.UTF-8'
            lc_monetary = 'C.UTF-8'
            lc_time = 'C.UTF-8'
            lc_numeric = 'C.UTF-8'
            neon.compute_mode = 'primary'
            neon.privileged_role_name = 'neon_superuser'
            neon.disable_logical_replication_subscribers = false
            # Managed by compute_ctl: begin
            # /cluster/settings/0: neon.safekeepers is set above by compute_ctl
            Hot_Standby = off
            # /cluster/settings/2: work_mem is set again later in the spec
            work_mem = 4MB
            default_transaction_isolation = 'repeatable read'
            shared_preload_libraries = 'neon, pg_stat_statements'
            test.quote = 'it''s a \\ ''test'''
            # Managed by compute_ctl: end
            include_if_exists = 'compute_ctl_temp_override.conf'
        "#]],
    );
    // A replica: hot_standby is compute_ctl's, the spec's `off` is left out; safekeepers
    // from the top-level field are still written (the generation too).
    check(
        &storage_spec(r#""Replica""#, ""),
        &options,
        expect![[r#"
            # Neon storage settings
            neon.stripe_size = 2048
            neon.pageserver_connstring = 'postgresql://ps1:6400,postgresql://ps2:6400'
            neon.safekeepers = 'g#7:sk1:5454,sk2:5454,sk3:5454'
            neon.tenant_id = '0123456789abcdef0123456789abcdef'
            neon.timeline_id = 'fedcba9876543210fedcba9876543210'
            neon.project_id = 'proj-1'
            neon.branch_id = 'br-2'
            neon.endpoint_id = 'ep-3'

            lc_messages = 'C.UTF-8'
            lc_monetary = 'C.UTF-8'
            lc_time = 'C.UTF-8'
            lc_numeric = 'C.UTF-8'
            neon.compute_mode = 'replica'
            hot_standby = on
            neon.privileged_role_name = 'neon_superuser'
            neon.disable_logical_replication_subscribers = false
            # Managed by compute_ctl: begin
            # /cluster/settings/0: neon.safekeepers is set above by compute_ctl
            # /cluster/settings/1: Hot_Standby is set above by compute_ctl
            # /cluster/settings/2: work_mem is set again later in the spec
            work_mem = 4MB
            default_transaction_isolation = 'repeatable read'
            shared_preload_libraries = 'neon, pg_stat_statements'
            test.quote = 'it''s a \\ ''test'''
            # Managed by compute_ctl: end
            include_if_exists = 'compute_ctl_temp_override.conf'
        "#]],
    );
    // Static, with the other options and the audit block: shared_preload_libraries becomes
    // compute_ctl's (spec list + pgaudit libraries) and is written once.
    let options = ConfigOptions {
        privileged_role_name: "my'admin".to_owned(),
        extension_server_port: Some(3081),
        locale: None,
        tls: true,
        strict_overcommit: true,
        drop_unsupported: None,
        unix_socket_directories: Some("/run/compute".to_owned()),
    };
    check(
        &storage_spec(
            r#"{"Static": "1/A0B0C0"}"#,
            r#""audit_log_level": "Hipaa", "drop_subscriptions_before_start": true,
               "features": ["tls_experimental"],
               "logs_export_host": "logs:514","#,
        ),
        &options,
        expect![[r#"
            # Neon storage settings
            neon.stripe_size = 2048
            neon.pageserver_connstring = 'postgresql://ps1:6400,postgresql://ps2:6400'
            neon.safekeepers = 'g#7:sk1:5454,sk2:5454,sk3:5454'
            neon.tenant_id = '0123456789abcdef0123456789abcdef'
            neon.timeline_id = 'fedcba9876543210fedcba9876543210'
            neon.project_id = 'proj-1'
            neon.branch_id = 'br-2'
            neon.endpoint_id = 'ep-3'

            ssl = on
            ssl_cert_file = 'server.crt'
            ssl_key_file = 'server.key'
            neon.compute_mode = 'static'
            hot_standby = on
            recovery_target_lsn = '1/A0B0C0'
            dynamic_shared_memory_type = mmap
            unix_socket_directories = '/run/compute'
            neon.privileged_role_name = 'my''admin'
            neon.extension_server_port = 3081
            neon.disable_logical_replication_subscribers = true
            log_destination = 'stderr,syslog'
            pgaudit.log_parameter = off
            pgaudit.log = 'all, -misc'
            pgaudit.log_catalog = off
            pgaudit.log_rotation_age = 5
            shared_preload_libraries = 'neon,pg_stat_statements,pgaudit,pgauditlogtofile'
            # Managed by compute_ctl: begin
            # /cluster/settings/0: neon.safekeepers is set above by compute_ctl
            # /cluster/settings/1: Hot_Standby is set above by compute_ctl
            # /cluster/settings/2: work_mem is set again later in the spec
            work_mem = 4MB
            default_transaction_isolation = 'repeatable read'
            # /cluster/settings/5: shared_preload_libraries is set above by compute_ctl
            test.quote = 'it''s a \\ ''test'''
            # Managed by compute_ctl: end
            include_if_exists = 'compute_ctl_temp_override.conf'
        "#]],
    );
}

#[test]
fn standalone_and_verbatim() {
    // No storage at all (standalone), a verbatim postgresql.conf without a final newline, a
    // shard without a libpq URL.
    let spec = ValidatedSpec::from_json(
        r#"{"format_version": 1.0,
            "cluster": {"roles": [], "databases": [], "postgresql_conf": "port = 5432\n# end"}}"#,
    )
    .unwrap();
    check(
        &spec,
        &ConfigOptions::default(),
        expect![[r#"
            port = 5432
            # end
            # Neon storage settings

            lc_messages = 'C.UTF-8'
            lc_monetary = 'C.UTF-8'
            lc_time = 'C.UTF-8'
            lc_numeric = 'C.UTF-8'
            neon.compute_mode = 'primary'
            neon.privileged_role_name = 'neon_superuser'
            neon.disable_logical_replication_subscribers = false
            include_if_exists = 'compute_ctl_temp_override.conf'
        "#]],
    );
    let spec = ValidatedSpec::from_json(
        r#"{"format_version": 1.0,
            "safekeeper_connstrings": ["sk1:5454"],
            "pageserver_connection_info": {"shard_count": 0,
                "shards": {"0000": {"pageservers": [{"grpc_url": "grpc://ps:51051"}]}}},
            "cluster": {"roles": [], "databases": [], "settings": []}}"#,
    )
    .unwrap();
    let conf = render_postgresql_conf(&spec, &ConfigOptions::default());
    assert!(
        conf.contains("\n# no neon.pageserver_connstring: a shard has no libpq URL\n"),
        "{conf}"
    );
    assert!(conf.contains("# Managed by compute_ctl: begin\n# Managed by compute_ctl: end\n"));

    let names = |mode: &str| {
        let spec = storage_spec(mode, "");
        pgdata_files(&spec, &ConfigOptions::default())
            .into_iter()
            .map(|f| (f.name, f.contents.len()))
            .filter(|(name, _)| *name == "standby.signal")
            .collect::<Vec<_>>()
    };
    assert_eq!(names(r#""Primary""#), []);
    assert_eq!(names(r#""Replica""#), [("standby.signal", 0)]);
    assert_eq!(names(r#"{"Static": "0/16B3748"}"#), [("standby.signal", 0)]);
}
