//! The startup sequence, each step timed: wipe PGDATA, then either `initdb` (standalone: no
//! pageserver in the spec) or config + sync safekeepers + basebackup (storage mode), then the
//! config files, `postgres` until `ready`, and the catalog configuration. Also the
//! reconfiguration of a running compute.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use compute_spec::{ComputeMode, ValidatedSpec};

use crate::catalog;
use crate::cli::Options;
use crate::config_files::{self, ConfigContext};
use crate::metrics::{Phase, StartupMetrics};
use crate::process::{self, Postmaster, ReadinessWatch, RunAs};
use crate::state::{ApplySummary, Compute};

/// What the startup steps need.
#[derive(Debug, Clone)]
pub struct StartContext {
    /// The shared compute.
    pub compute: Arc<Compute>,
    /// Settings.
    pub opts: Arc<Options>,
    /// User for Postgres programs.
    pub run_as: Option<RunAs>,
}

impl StartContext {
    fn record(&self, phase: Phase, elapsed: Duration, set: impl FnOnce(&mut StartupMetrics, u64)) {
        let ms = elapsed.as_millis() as u64;
        self.compute.metrics.observe_phase(phase, elapsed);
        self.compute.with(|s| set(&mut s.startup, ms));
        tracing::info!(phase = ?phase, ms, "startup step done");
    }

    fn config_context(&self) -> ConfigContext<'_> {
        ConfigContext {
            privileged_role_name: &self.opts.privileged_role_name,
            internal_http_port: self.opts.internal_http_port,
        }
    }

    fn owner(&self) -> Option<(u32, u32)> {
        self.run_as.map(|u| (u.uid, u.gid))
    }
}

/// Runs the whole start: returns the ready, configured postmaster. On error, a postmaster that
/// was started is stopped (immediate) before returning.
pub async fn start_compute(ctx: &StartContext, spec: &ValidatedSpec) -> anyhow::Result<Postmaster> {
    let pgdata = ctx.opts.pgdata.clone();
    let started = Instant::now();

    let t = Instant::now();
    let (force, owner) = (ctx.opts.force_wipe, ctx.owner());
    let dir = pgdata.clone();
    tokio::task::spawn_blocking(move || crate::pgdata::wipe_and_create(&dir, force, owner))
        .await
        .context("join wipe task")?
        .context("prepare data directory")?;
    ctx.record(Phase::PreparePgdata, t.elapsed(), |_, _| {});

    if spec.storage().pageserver.is_none() {
        initdb(ctx).await.context("initdb (standalone mode)")?;
    } else {
        // walproposer (sync-safekeepers) reads neon.* settings from postgresql.conf.
        write_config(ctx, spec)?;
        let lsn = storage_lsn(ctx, spec).await?;
        basebackup(ctx, spec, lsn).await?;
    }

    let t = Instant::now();
    write_config(ctx, spec)?;
    config_files::ensure_hba_line(&pgdata)?;
    chown_tree(&pgdata, ctx.owner())?;
    ctx.record(Phase::WriteConfig, t.elapsed(), |_, _| {});

    let t = Instant::now();
    let mut postmaster = start_postgres(ctx, spec).await?;
    ctx.record(Phase::StartPostgres, t.elapsed(), |m, ms| {
        m.start_postgres_ms = ms
    });

    if spec.spec().mode.is_primary() {
        let t = Instant::now();
        if let Err(e) = configure_catalog(ctx, spec).await {
            postmaster.stop_immediate().await;
            return Err(e);
        }
        ctx.record(Phase::Config, t.elapsed(), |m, ms| m.config_ms = ms);
    }
    let _ = started;
    Ok(postmaster)
}

async fn initdb(ctx: &StartContext) -> anyhow::Result<()> {
    let t = Instant::now();
    let user = ctx
        .opts
        .pg_config
        .get_user()
        .context("--connstr names no user")?;
    let mut cmd = process::command(
        ctx.opts.pg_bin_dir.join("initdb"),
        ctx.run_as,
        &ctx.opts.pgdata,
    );
    cmd.arg("--pgdata")
        .arg(&ctx.opts.pgdata)
        .args(["--username", user])
        .args([
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        ]);
    process::run_to_completion("initdb", cmd).await?;
    ctx.record(Phase::Initdb, t.elapsed(), |m, ms| m.initdb_ms = ms);
    Ok(())
}

fn write_config(ctx: &StartContext, spec: &ValidatedSpec) -> anyhow::Result<()> {
    config_files::write_config_files(&ctx.opts.pgdata, spec, &ctx.config_context())
}

/// The LSN to take the basebackup at: synced safekeepers (Primary with safekeepers), the
/// mode's LSN (Static), or 0 = latest.
async fn storage_lsn(
    ctx: &StartContext,
    spec: &ValidatedSpec,
) -> anyhow::Result<compute_spec::Lsn> {
    match spec.spec().mode {
        ComputeMode::Static(lsn) => Ok(lsn),
        ComputeMode::Replica => Ok(compute_spec::Lsn(0)),
        ComputeMode::Primary if spec.storage().safekeepers.is_empty() => Ok(compute_spec::Lsn(0)),
        ComputeMode::Primary => {
            let _ = ctx;
            // neon-clients: fast path (TIMELINE_STATUS) then `postgres --sync-safekeepers`.
            bail!("sync safekeepers: storage mode needs the neon-clients crate, not merged yet")
        }
    }
}

async fn basebackup(
    ctx: &StartContext,
    spec: &ValidatedSpec,
    lsn: compute_spec::Lsn,
) -> anyhow::Result<()> {
    let _ = (ctx, spec, lsn);
    // neon-clients: basebackup at `lsn` unpacked into PGDATA, with stats.
    bail!("fetch basebackup: storage mode needs the neon-clients crate, not merged yet")
}

/// Gives `path` and everything below it to `owner`.
fn chown_tree(path: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).with_context(|| format!("read {}", path.display()))? {
            chown_tree(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

async fn start_postgres(ctx: &StartContext, spec: &ValidatedSpec) -> anyhow::Result<Postmaster> {
    let pgdata = &ctx.opts.pgdata;
    let mut watch = ReadinessWatch::new(pgdata)?;
    let mut cmd = process::command(&ctx.opts.pgbin, ctx.run_as, pgdata);
    cmd.arg("-D").arg(pgdata).kill_on_drop(false);
    if let Some(port) = ctx.opts.pg_config.get_ports().first() {
        cmd.arg("-p").arg(port.to_string());
    }
    if let Some(token) = &spec.spec().storage_auth_token {
        cmd.env("NEON_AUTH_TOKEN", token);
    }
    let mut postmaster = Postmaster::spawn(cmd)?;
    let ready = watch
        .wait_ready(postmaster.wait(), ctx.opts.pg_ready_timeout)
        .await;
    if let Err(e) = ready {
        postmaster.stop_immediate().await;
        return Err(e).context("start postgres");
    }
    tracing::info!(pid = postmaster.pid(), "postgres is ready");
    Ok(postmaster)
}

/// Applies the catalog part of the spec (unless `skip_pg_catalog_updates`) and prepares the
/// writability check table.
async fn configure_catalog(ctx: &StartContext, spec: &ValidatedSpec) -> anyhow::Result<()> {
    let client = catalog::connect(&ctx.opts.pg_config, None).await?;
    if !spec.spec().skip_pg_catalog_updates {
        let summary = reconcile(ctx, &client, spec).await?;
        ctx.compute.with(|s| s.last_apply = Some(summary));
    }
    catalog::create_writability_check_data(&client).await?;
    Ok(())
}

/// Roles, databases, grants: observe → plan → apply (pg-reconcile).
async fn reconcile(
    ctx: &StartContext,
    client: &tokio_postgres::Client,
    spec: &ValidatedSpec,
) -> anyhow::Result<ApplySummary> {
    let _ = (ctx, client, spec);
    // pg-reconcile lands here.
    Ok(ApplySummary {
        finished_at: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        operations: Vec::new(),
    })
}

/// Applies a new spec to a running compute: rewrite postgresql.conf, reload, reconcile.
pub async fn reconfigure(ctx: &StartContext, spec: &ValidatedSpec) -> anyhow::Result<()> {
    write_config(ctx, spec)?;
    chown_tree(&ctx.opts.pgdata.join("postgresql.conf"), ctx.owner())?;
    reload(ctx).await?;
    if spec.spec().mode.is_primary() {
        configure_catalog(ctx, spec).await?;
    }
    Ok(())
}

/// `pg_ctl reload`.
async fn reload(ctx: &StartContext) -> anyhow::Result<()> {
    let mut cmd = process::command(
        ctx.opts.pg_bin_dir.join("pg_ctl"),
        ctx.run_as,
        &ctx.opts.pgdata,
    );
    cmd.arg("reload").arg("-D").arg(&ctx.opts.pgdata);
    process::run_to_completion("pg_ctl", cmd).await
}
