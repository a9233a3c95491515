//! Writing the config files into PGDATA: `postgresql.conf`, the `pg_hba.conf` line and
//! `standby.signal`.
//!
//! TEMPORARY ADAPTER: rendering belongs to `pg-config`; until it lands this module renders a
//! minimal postgresql.conf itself (through `pg-quote`). Delete `render_postgresql_conf` when
//! merging `pg-config` and call its renderer from [`write_config_files`].

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use compute_spec::{ComputeMode, ValidatedSpec};

/// The line upstream guarantees in `pg_hba.conf`: password logins from anywhere.
pub const HBA_LINE: &str = "host\tall\t\tall\t\tall\t\tmd5";

/// Settings of the compute that are not in the spec.
#[derive(Debug, Clone)]
pub struct ConfigContext<'a> {
    /// `neon.privileged_role_name`.
    pub privileged_role_name: &'a str,
    /// Port of the internal HTTP API (`neon.extension_server_port`).
    pub internal_http_port: u16,
}

fn render_postgresql_conf(spec: &ValidatedSpec, ctx: &ConfigContext<'_>) -> String {
    use pg_quote::quote_conf_value as q;
    let s = spec.spec();
    let storage = spec.storage();
    let mut out = String::new();
    if let Some(conf) = &s.cluster.postgresql_conf {
        out.push_str(conf);
        out.push('\n');
    }
    if let Some(ps) = &storage.pageserver {
        out.push_str("# Neon storage settings\n\n");
        let urls: Option<Vec<&str>> = ps
            .shards
            .values()
            .map(|shard| {
                shard
                    .pageservers
                    .first()
                    .and_then(|p| p.libpq_url.as_deref())
            })
            .collect();
        if let Some(size) = ps.stripe_size {
            out.push_str(&format!("neon.stripe_size={size}\n"));
        }
        match urls {
            Some(urls) => out.push_str(&format!(
                "neon.pageserver_connstring={}\n",
                q(&urls.join(","))
            )),
            None => out.push_str("# no neon.pageserver_connstring\n"),
        }
        if !storage.safekeepers.is_empty() {
            out.push_str(&format!(
                "neon.safekeepers={}\n",
                q(&storage.safekeepers.join(","))
            ));
        }
        if let Some(t) = storage.tenant_id {
            out.push_str(&format!("neon.tenant_id={}\n", q(&t.to_string())));
        }
        if let Some(t) = storage.timeline_id {
            out.push_str(&format!("neon.timeline_id={}\n", q(&t.to_string())));
        }
    }
    match s.mode {
        ComputeMode::Primary => {}
        ComputeMode::Replica => out.push_str("hot_standby=on\n"),
        ComputeMode::Static(lsn) => {
            out.push_str(&format!(
                "hot_standby=on\nrecovery_target_lsn={}\n",
                q(&lsn.to_string())
            ));
        }
    }
    out.push_str(&format!(
        "neon.privileged_role_name={}\n",
        q(ctx.privileged_role_name)
    ));
    out.push_str(&format!(
        "neon.extension_server_port={}\n",
        ctx.internal_http_port
    ));
    if let Some(settings) = &s.cluster.settings {
        out.push_str("# Managed by compute_ctl: begin\n");
        for opt in settings {
            match &opt.value {
                Some(v) if opt.vartype == "string" => {
                    out.push_str(&format!("{} = {}\n", opt.name, q(v)))
                }
                Some(v) => out.push_str(&format!("{} = {}\n", opt.name, v)),
                None => out.push_str(&format!("{}\n", opt.name)),
            }
        }
        out.push_str("# Managed by compute_ctl: end\n");
    }
    out.push_str("include_if_exists = 'compute_ctl_temp_override.conf'\n");
    out
}

/// Writes `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("file has no parent directory")?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config")
    ));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// Writes `postgresql.conf` (and, for non-primaries, `standby.signal`) into `pgdata`.
pub fn write_config_files(
    pgdata: &Path,
    spec: &ValidatedSpec,
    ctx: &ConfigContext<'_>,
) -> anyhow::Result<()> {
    let conf = render_postgresql_conf(spec, ctx);
    write_atomic(&pgdata.join("postgresql.conf"), conf.as_bytes())
        .context("write postgresql.conf")?;
    if !spec.spec().mode.is_primary() {
        write_atomic(&pgdata.join("standby.signal"), b"").context("write standby.signal")?;
    }
    Ok(())
}

/// Appends [`HBA_LINE`] to `pg_hba.conf` unless a line equal to it is present.
pub fn ensure_hba_line(pgdata: &Path) -> anyhow::Result<()> {
    let path = pgdata.join("pg_hba.conf");
    let mut text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    if text.lines().any(|l| l == HBA_LINE) {
        return Ok(());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(HBA_LINE);
    text.push('\n');
    write_atomic(&path, text.as_bytes()).context("write pg_hba.conf")
}

/// Empties `compute_ctl_temp_override.conf` or writes `contents` into it.
pub fn write_temp_override(pgdata: &Path, contents: &str) -> anyhow::Result<()> {
    write_atomic(
        &pgdata.join("compute_ctl_temp_override.conf"),
        contents.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hba_line_is_added_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pg_hba.conf"), "local all all trust").unwrap();
        ensure_hba_line(dir.path()).unwrap();
        ensure_hba_line(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("pg_hba.conf")).unwrap();
        assert_eq!(text, format!("local all all trust\n{HBA_LINE}\n"));
    }

    #[test]
    fn standalone_conf_has_settings_and_no_storage() {
        let spec = ValidatedSpec::from_json(
            r#"{"format_version":1.0,"cluster":{"roles":[],"databases":[],
               "settings":[{"name":"work_mem","value":"8MB","vartype":"string"},
                           {"name":"max_connections","value":"50","vartype":"integer"}]}}"#,
        )
        .unwrap();
        let ctx = ConfigContext {
            privileged_role_name: "neon_superuser",
            internal_http_port: 3081,
        };
        let text = render_postgresql_conf(&spec, &ctx);
        assert!(!text.contains("neon.pageserver_connstring"), "{text}");
        assert!(
            text.contains("work_mem = '8MB'\nmax_connections = 50\n"),
            "{text}"
        );
        assert!(text.ends_with("include_if_exists = 'compute_ctl_temp_override.conf'\n"));
    }
}
