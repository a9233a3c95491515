//! Audit logging and log export around the postgres process (the spec's `audit_log_level`
//! and `logs_export_host`); the postgresql.conf lines are `pg-config`'s, the catalog part
//! `pg-reconcile`'s. This module owns:
//!
//! - the checks made before anything is wiped ([`preflight`]): the audit libraries are
//!   installed in the postgres binary's library directory, a compliance level (`Hipaa`,
//!   `Extended`, `Full`) has its collector in `AUDIT_LOGGING_ENDPOINT` or
//!   `AUDIT_LOGGING_TLS_ENDPOINT` (upstream's start failure), and `logs_export_host` is a
//!   valid `host:port`;
//! - the rsyslog configs in `--rsyslog-config-dir` (the audit one naming
//!   `--rsyslog-work-dir`) and rsyslog's restart
//!   (`--rsyslog-restart-command`, else upstream's `pkill rsyslogd` and up to 5 s for
//!   `pgrep rsyslogd` to find it back): the audit config at every start with a compliance level,
//!   the log export config only when its text changes (at start and on `/configure`);
//! - the GC of `PGDATA/log/audit*.log` files untouched for 15 minutes, every 60 s, which also
//!   sets `compute_audit_log_dir_size` (upstream's name and timings).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use compute_spec::{ComputeAudit, SyslogTarget, ValidatedSpec};
use tokio_util::sync::CancellationToken;

use crate::process;
use crate::startup::StartContext;
use crate::state::Compute;

/// The environment variable naming the plain-TCP audit collector (`host:port`).
pub(crate) const AUDIT_LOGGING_ENDPOINT: &str = "AUDIT_LOGGING_ENDPOINT";
/// The environment variable naming the TLS audit collector (`host:port`); wins over the other.
pub(crate) const AUDIT_LOGGING_TLS_ENDPOINT: &str = "AUDIT_LOGGING_TLS_ENDPOINT";

/// How long an audit file may stay untouched before the GC deletes it.
const AUDIT_FILE_MAX_AGE: Duration = Duration::from_secs(15 * 60);
/// Time between GC runs.
const GC_INTERVAL: Duration = Duration::from_secs(60);
/// How long the restart (command, or rsyslogd found back) may take.
const RESTART_LIMIT: Duration = Duration::from_secs(5);

/// What the start configures, decided by [`preflight`].
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditSetup {
    /// The audit collector and whether it is TLS (compliance levels only).
    pub(crate) collector: Option<(SyslogTarget, bool)>,
    /// The log export target (`logs_export_host`).
    pub(crate) logs_export: Option<SyslogTarget>,
}

/// The libraries an audit level preloads.
fn audit_libraries(level: ComputeAudit) -> &'static [&'static str] {
    match level {
        ComputeAudit::Disabled => &[],
        ComputeAudit::Log | ComputeAudit::Base => &["pgaudit"],
        ComputeAudit::Hipaa | ComputeAudit::Extended | ComputeAudit::Full => {
            &["pgaudit", "pgauditlogtofile"]
        }
    }
}

fn is_compliance(level: ComputeAudit) -> bool {
    audit_libraries(level).len() == 2
}

/// The checks that can fail a start with audit logging or log export, made before PGDATA is
/// touched. `env` reads an environment variable (`std::env::var` in production).
pub(crate) async fn preflight(
    ctx: &StartContext,
    spec: &ValidatedSpec,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<AuditSetup> {
    let compute = spec.spec();
    let level = compute.audit_log_level;
    let logs_export = match &compute.logs_export_host {
        Some(host) => Some(compute_spec::parse_syslog_target(host).context("logs_export_host")?),
        None => None,
    };
    let collector = if is_compliance(level) {
        let plain = env(AUDIT_LOGGING_ENDPOINT);
        let tls = env(AUDIT_LOGGING_TLS_ENDPOINT);
        let target = pg_config::audit_target(plain.as_deref(), tls.as_deref())
            .with_context(|| format!("audit_log_level {level:?}: the audit collector"))?;
        match target {
            Some(target) => Some(target),
            None => bail!(
                "audit_log_level {level:?} needs the audit collector: \
                 {AUDIT_LOGGING_ENDPOINT} and {AUDIT_LOGGING_TLS_ENDPOINT} are both empty"
            ),
        }
    } else {
        None
    };
    check_libraries(ctx, level).await?;
    Ok(AuditSetup {
        collector,
        logs_export,
    })
}

/// Fails naming the first audit library the postgres installation lacks.
async fn check_libraries(ctx: &StartContext, level: ComputeAudit) -> anyhow::Result<()> {
    let libraries = audit_libraries(level);
    if libraries.is_empty() {
        return Ok(());
    }
    let support = ctx
        .libraries()
        .await
        .with_context(|| format!("audit_log_level {level:?}: find the audit libraries"))?;
    for library in libraries {
        if support.has_library(library) != Some(true) {
            bail!(
                "audit_log_level {level:?} needs the {library} library, which is not installed \
                 in {} (the library directory of {})",
                support.libdir,
                ctx.opts.pgbin.display()
            );
        }
    }
    Ok(())
}

/// After PGDATA is prepared, before postgres starts: the audit rsyslog config (compliance
/// levels) and the log export config, rsyslog restarted once if either changed.
pub(crate) async fn configure_rsyslog(
    ctx: &StartContext,
    spec: &ValidatedSpec,
    setup: &AuditSetup,
) -> anyhow::Result<()> {
    let mut changed = false;
    if let Some((target, tls)) = &setup.collector {
        let compute = spec.spec();
        let log_directory = log_directory(&ctx.opts.pgdata);
        let utf8 = |path: &Path| {
            path.to_str().map(str::to_owned).with_context(|| {
                format!(
                    "{} is not UTF-8: rsyslog's config cannot name it",
                    path.display()
                )
            })
        };
        let log_directory = utf8(&log_directory)?;
        let work_directory = utf8(&ctx.opts.rsyslog_work_dir)?;
        let text = pg_config::render_audit_rsyslog_conf(&pg_config::AuditRsyslogConfig {
            log_directory: &log_directory,
            endpoint_id: compute.endpoint_id.as_deref().unwrap_or(""),
            project_id: compute.project_id.as_deref().unwrap_or(""),
            target,
            tls: *tls,
            work_directory: &work_directory,
        })?;
        write_rsyslog_conf(ctx, pg_config::AUDIT_RSYSLOG_CONF, &text)?;
        tracing::info!(
            host = target.host,
            port = target.port,
            tls,
            "audit forwarding configured"
        );
        changed = true;
    }
    changed |= write_logs_export_conf(ctx, setup.logs_export.as_ref())?;
    if changed {
        restart_rsyslog(ctx).await?;
    }
    Ok(())
}

/// On `/configure`: the log export config for the new spec, rsyslog restarted if it changed.
pub(crate) async fn reconfigure_logs_export(
    ctx: &StartContext,
    spec: &ValidatedSpec,
) -> anyhow::Result<()> {
    let target = match &spec.spec().logs_export_host {
        Some(host) => Some(compute_spec::parse_syslog_target(host).context("logs_export_host")?),
        None => None,
    };
    if write_logs_export_conf(ctx, target.as_ref())? {
        restart_rsyslog(ctx).await?;
    }
    Ok(())
}

/// Writes the log export config if its text differs from the file's; `true` when written.
/// Without a target nothing is written (as upstream: postgres then stops sending to syslog).
fn write_logs_export_conf(
    ctx: &StartContext,
    target: Option<&SyslogTarget>,
) -> anyhow::Result<bool> {
    let Some(target) = target else {
        return Ok(false);
    };
    let text = pg_config::render_postgres_logs_conf(target)?;
    let path = ctx
        .opts
        .rsyslog_config_dir
        .join(pg_config::POSTGRES_LOGS_CONF);
    match std::fs::read_to_string(&path) {
        Ok(current) if current == text => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    }
    write_rsyslog_conf(ctx, pg_config::POSTGRES_LOGS_CONF, &text)?;
    tracing::info!(
        host = target.host,
        port = target.port,
        "postgres log export configured"
    );
    Ok(true)
}

fn write_rsyslog_conf(ctx: &StartContext, name: &str, text: &str) -> anyhow::Result<()> {
    let path = ctx.opts.rsyslog_config_dir.join(name);
    pg_config::write_file_atomically(&path, text.as_bytes(), &pg_config::FileOptions::default())
        .with_context(|| format!("write {}", path.display()))
}

/// `--rsyslog-restart-command` within [`RESTART_LIMIT`]; without it upstream's way: kill
/// rsyslogd (its supervisor starts it again with the new config) and wait for it to be back.
async fn restart_rsyslog(ctx: &StartContext) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let dir = &ctx.opts.rsyslog_config_dir;
    if let Some((program, args)) = ctx.opts.rsyslog_restart_command.split_first() {
        let mut cmd = process::command(program, None, dir);
        cmd.args(args).name("rsyslog restart command").tail_lines(5);
        cmd.run(Some(RESTART_LIMIT), &cancel)
            .await
            .context("restart rsyslog (--rsyslog-restart-command)")?;
        return Ok(());
    }
    let mut pkill = process::command("pkill", None, dir);
    pkill.arg("rsyslogd").name("pkill");
    // pkill exits 1 when no rsyslogd ran: the wait below decides.
    let _ = pkill.run(Some(RESTART_LIMIT), &cancel).await;
    let deadline = tokio::time::Instant::now() + RESTART_LIMIT;
    let mut pause = Duration::from_millis(2);
    loop {
        let mut pgrep = process::command("pgrep", None, dir);
        pgrep.arg("rsyslogd").name("pgrep");
        if pgrep.run(Some(RESTART_LIMIT), &cancel).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() + pause > deadline {
            bail!("rsyslogd is not running {RESTART_LIMIT:?} after it was restarted");
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

/// Where pgauditlogtofile writes (its default `pgaudit.log_directory`, `log`, in PGDATA).
fn log_directory(pgdata: &Path) -> PathBuf {
    pgdata.join("log")
}

/// With a compliance level: every [`GC_INTERVAL`] until `cancel`, deletes the audit files
/// untouched for [`AUDIT_FILE_MAX_AGE`] and sets `compute_audit_log_dir_size`.
pub(crate) fn spawn_gc(
    ctx: &StartContext,
    spec: &ValidatedSpec,
    cancel: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !is_compliance(spec.spec().audit_log_level) {
        return None;
    }
    let dir = log_directory(&ctx.opts.pgdata);
    let compute = ctx.compute.clone();
    Some(tokio::spawn(async move {
        loop {
            let (dir, compute) = (dir.clone(), compute.clone());
            let _ = tokio::task::spawn_blocking(move || collect_garbage(&dir, &compute)).await;
            tokio::select! {
                () = tokio::time::sleep(GC_INTERVAL) => {}
                () = cancel.cancelled() => return,
            }
        }
    }))
}

fn collect_garbage(dir: &Path, compute: &Compute) {
    let now = SystemTime::now();
    match gc_audit_files(dir, now, AUDIT_FILE_MAX_AGE) {
        Ok(size) => {
            compute.metrics.audit_log_dir_size.set(size);
        }
        // pgauditlogtofile creates the directory at its first entry.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            compute.metrics.audit_log_dir_size.set(0);
        }
        Err(e) => tracing::warn!(error = %e, dir = %dir.display(), "audit log GC failed"),
    }
}

/// Deletes the regular files `audit*.log` in `dir` not modified within `max_age` of `now`;
/// returns the total size of the regular files named `*log` that remain.
fn gc_audit_files(dir: &Path, now: SystemTime, max_age: Duration) -> std::io::Result<u64> {
    let mut size = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !meta.is_file() || !name.ends_with("log") {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if old && name.starts_with("audit") && name.ends_with(".log") {
            std::fs::remove_file(entry.path())?;
            continue;
        }
        size += meta.len();
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_deletes_only_old_audit_files_and_measures_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: usize| {
            std::fs::write(dir.path().join(name), vec![b'x'; bytes]).unwrap();
        };
        write("audit-old.log", 10);
        write("audit-new.log", 20);
        write("postgresql.log", 300);
        write("audit-old.txt", 4000);
        std::fs::create_dir(dir.path().join("audit-dir.log")).unwrap();
        let now = SystemTime::now();
        let old = std::fs::File::options()
            .write(true)
            .open(dir.path().join("audit-old.log"))
            .unwrap();
        old.set_modified(now - Duration::from_secs(16 * 60))
            .unwrap();
        let size = gc_audit_files(dir.path(), now, AUDIT_FILE_MAX_AGE).unwrap();
        assert_eq!(size, 320);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "audit-dir.log",
                "audit-new.log",
                "audit-old.txt",
                "postgresql.log"
            ]
        );
        assert!(gc_audit_files(&dir.path().join("missing"), now, AUDIT_FILE_MAX_AGE).is_err());
    }
}
