//! Writing the config files into PGDATA (rendering is `pg-config`'s): `postgresql.conf`,
//! `standby.signal` for read-only modes, the `pg_hba.conf` access line, and the temporary
//! override file. Every file is written atomically and given to the Postgres user.

use std::path::Path;

use anyhow::Context;
use compute_spec::ValidatedSpec;
use pg_config::{ConfigOptions, FileOptions, ServerSupport};

/// Settings of the compute that are not in the spec.
#[derive(Debug, Clone)]
pub(crate) struct ConfigContext<'a> {
    /// `neon.privileged_role_name`.
    pub(crate) privileged_role_name: &'a str,
    /// Port of the internal HTTP API (`neon.extension_server_port`).
    pub(crate) internal_http_port: u16,
    /// Owner of the written files.
    pub(crate) owner: Option<(u32, u32)>,
    /// What the postgres binary supports, when settings it does not are to be dropped
    /// (`--drop-unsupported-settings`).
    pub(crate) drop_unsupported: Option<&'a ServerSupport>,
    /// compute_ctl installs TLS files (`compute_ctl_config.tls`): `ssl = on` and their names.
    pub(crate) tls: bool,
    /// compute_ctl's own connection (`-C`): its Unix socket directory, if it names one, is
    /// where postgres puts its socket by default ([`socket_directory`]).
    pub(crate) connstr: &'a tokio_postgres::Config,
}

/// Where postgres puts its Unix socket unless the spec says (`unix_socket_directories`): the
/// directory `-C` connects through, if it names one, else `/tmp` — PostgreSQL's own default
/// and upstream's, writable by any user (Debian's build defaults to `/var/run/postgresql`,
/// where only Debian's `postgres` user can create the socket's lock file).
pub(crate) fn socket_directory(connstr: &tokio_postgres::Config) -> String {
    connstr
        .get_hosts()
        .iter()
        .find_map(|host| match host {
            tokio_postgres::config::Host::Unix(dir) => Some(dir.display().to_string()),
            tokio_postgres::config::Host::Tcp(_) => None,
        })
        .unwrap_or_else(|| "/tmp".to_owned())
}

impl ConfigContext<'_> {
    fn options(&self) -> ConfigOptions {
        ConfigOptions {
            privileged_role_name: self.privileged_role_name.to_owned(),
            extension_server_port: Some(self.internal_http_port),
            strict_overcommit: std::fs::read_to_string("/proc/sys/vm/overcommit_memory")
                .is_ok_and(|v| v.trim() == "2"),
            drop_unsupported: self.drop_unsupported.cloned(),
            tls: self.tls,
            unix_socket_directories: Some(socket_directory(self.connstr)),
            ..ConfigOptions::default()
        }
    }

    fn file_options(&self) -> FileOptions {
        FileOptions {
            owner: self.owner,
            ..FileOptions::default()
        }
    }
}

/// Writes `postgresql.conf` (and, for non-primaries, `standby.signal`) into `pgdata`, and the
/// temporary override file, empty, if it is missing: `postgresql.conf` includes it, and
/// postgres would say it is skipping a missing file at every read of its configuration
/// (upstream leaves it empty after its first use).
pub(crate) fn write_config_files(
    pgdata: &Path,
    spec: &ValidatedSpec,
    ctx: &ConfigContext<'_>,
) -> anyhow::Result<()> {
    for file in pg_config::pgdata_files(spec, &ctx.options()) {
        pg_config::write_file_atomically(
            &pgdata.join(file.name),
            file.contents.as_bytes(),
            &ctx.file_options(),
        )
        .with_context(|| format!("write {}", file.name))?;
    }
    if !pgdata.join(pg_config::TEMP_OVERRIDE_CONF).exists() {
        write_temp_override(pgdata, "", ctx)?;
    }
    Ok(())
}

/// What the temporary override file (`pg_config::TEMP_OVERRIDE_CONF`, included last by
/// `postgresql.conf`) holds while compute_ctl configures the catalog: the cluster size limit
/// lifted, so creating roles, databases and extensions cannot fail on it (upstream does the
/// same). Only when the spec preloads `neon`, the library that defines the setting.
pub(crate) fn catalog_override(spec: &ValidatedSpec) -> Option<&'static str> {
    pg_reconcile::preloads(spec, "neon").then_some("neon.max_cluster_size = -1\n")
}

/// Writes `contents` into the temporary override file; an empty text clears it.
pub(crate) fn write_temp_override(
    pgdata: &Path,
    contents: &str,
    ctx: &ConfigContext<'_>,
) -> anyhow::Result<()> {
    pg_config::write_file_atomically(
        &pgdata.join(pg_config::TEMP_OVERRIDE_CONF),
        contents.as_bytes(),
        &ctx.file_options(),
    )
    .with_context(|| format!("write {}", pg_config::TEMP_OVERRIDE_CONF))
}

/// Appends the access line to `pg_hba.conf` unless present.
pub(crate) fn ensure_hba_line(pgdata: &Path, ctx: &ConfigContext<'_>) -> anyhow::Result<()> {
    let path = pgdata.join(pg_config::PG_HBA_CONF);
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let updated = pg_config::with_hba_access_line(&existing);
    if updated == existing {
        return Ok(());
    }
    pg_config::write_file_atomically(&path, updated.as_bytes(), &ctx.file_options())
        .context("write pg_hba.conf")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_context() -> ConfigContext<'static> {
        ConfigContext {
            privileged_role_name: "neon_superuser",
            internal_http_port: 3081,
            owner: None,
            drop_unsupported: None,
            tls: false,
            connstr: Box::leak(Box::new(tokio_postgres::Config::new())),
        }
    }

    #[test]
    fn the_socket_goes_where_the_connstr_looks_or_to_tmp() {
        let check = |connstr: &str, expect: &str| {
            let config: tokio_postgres::Config = connstr.parse().unwrap();
            assert_eq!(socket_directory(&config), expect, "{connstr}");
        };
        check("postgresql://cloud_admin@127.0.0.1:55432/postgres", "/tmp");
        check(
            "host=/run/compute port=55432 user=cloud_admin",
            "/run/compute",
        );
        check(
            "postgresql://cloud_admin@%2Fsrv%2Fsock:55432/postgres",
            "/srv/sock",
        );
        check("host=localhost,/run/b port=1", "/run/b");
        check("user=cloud_admin", "/tmp");
    }

    #[test]
    fn the_cluster_size_limit_is_lifted_only_where_neon_is_preloaded() {
        let spec = |preload: &str| {
            ValidatedSpec::from_json(&format!(
                r#"{{"format_version":1.0,"cluster":{{"roles":[],"databases":[],"settings":[
                   {{"name":"shared_preload_libraries","value":"{preload}","vartype":"string"}}]}}}}"#
            ))
            .unwrap()
        };
        assert_eq!(
            catalog_override(&spec("neon,pg_stat_statements")),
            Some("neon.max_cluster_size = -1\n")
        );
        assert_eq!(catalog_override(&spec("pg_stat_statements")), None);

        let dir = tempfile::tempdir().unwrap();
        let ctx = test_context();
        let path = dir.path().join(pg_config::TEMP_OVERRIDE_CONF);
        write_temp_override(dir.path(), "neon.max_cluster_size = -1\n", &ctx).unwrap();
        let parsed = pg_config::parse_conf(&std::fs::read_to_string(&path).unwrap());
        let lines: Vec<(&str, &str)> = parsed
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(lines, [("neon.max_cluster_size", "-1")]);
        write_temp_override(dir.path(), "", &ctx).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn config_files_are_written_for_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = test_context();
        let spec = ValidatedSpec::from_json(
            r#"{"format_version":1.0,"mode":"Replica","cluster":{"roles":[],"databases":[],
               "settings":[{"name":"work_mem","value":"8MB","vartype":"string"}]}}"#,
        )
        .unwrap();
        write_config_files(dir.path(), &spec, &ctx).unwrap();
        let conf = std::fs::read_to_string(dir.path().join("postgresql.conf")).unwrap();
        assert!(conf.contains("work_mem = '8MB'"), "{conf}");
        assert!(conf.contains("neon.extension_server_port"), "{conf}");
        assert!(dir.path().join("standby.signal").is_file());
        let temp_override = dir.path().join(pg_config::TEMP_OVERRIDE_CONF);
        assert_eq!(std::fs::read_to_string(&temp_override).unwrap(), "");
        // An override in force is not cleared by writing the config again.
        write_temp_override(dir.path(), "neon.max_cluster_size = -1\n", &ctx).unwrap();
        write_config_files(dir.path(), &spec, &ctx).unwrap();
        assert_ne!(std::fs::read_to_string(&temp_override).unwrap(), "");

        std::fs::write(dir.path().join("pg_hba.conf"), "local all all trust\n").unwrap();
        ensure_hba_line(dir.path(), &ctx).unwrap();
        ensure_hba_line(dir.path(), &ctx).unwrap();
        let hba = std::fs::read_to_string(dir.path().join("pg_hba.conf")).unwrap();
        assert_eq!(
            hba.matches(pg_config::HBA_ACCESS_LINE).count(),
            1,
            "{hba:?}"
        );
    }
}
