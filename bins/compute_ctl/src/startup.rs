//! The startup sequence, each step timed: wipe PGDATA, then either `initdb` (standalone: no
//! pageserver in the spec) or config + sync safekeepers + basebackup (storage mode), then the
//! config files (remote extensions fetched meanwhile: `remote_extensions`), `postgres` until
//! `ready`, and the catalog configuration (for a Primary without
//! `skip_pg_catalog_updates`: reconciliation, then upstream's migrations). Also the
//! reconfiguration of a running compute (reconciliation only, never migrations).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use compute_spec::{ComputeMode, Lsn, ValidatedSpec};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catalog;
use crate::cli::Options;
use crate::config_files::{self, ConfigContext};
use crate::metrics::Phase;
use crate::process::{self, Postmaster, ReadinessWatch, RunAs};
use crate::state::Compute;
use crate::tls::{self, TlsSettings};
use compute_spec::api::{ApplySummary, ComputeMetrics, OperationOutcome, OperationResult};

/// What the startup steps need.
#[derive(Debug, Clone)]
pub(crate) struct StartContext {
    /// The shared compute.
    pub(crate) compute: Arc<Compute>,
    /// Settings.
    pub(crate) opts: Arc<Options>,
    /// User for Postgres programs.
    pub(crate) run_as: Option<RunAs>,
    /// Cancels the long steps (sync-safekeepers child, basebackup) of an interrupted start.
    pub(crate) cancel: CancellationToken,
    /// What the postgres binary supports, kept with `--drop-unsupported-settings`.
    pub(crate) server_support: Option<Arc<pg_config::ServerSupport>>,
    /// The installation's libraries when `server_support` was not probed at launch: found
    /// once (`pg_binary::probe_libraries`, no server run), started with the start so that it
    /// is ready when needed, and shared by every user.
    pub(crate) libraries_probe:
        Arc<tokio::sync::OnceCell<Result<Arc<pg_config::ServerSupport>, String>>>,
    /// Postgres's TLS files (`compute_ctl_config.tls`), when configured.
    pub(crate) tls: Option<TlsSettings>,
}

impl StartContext {
    fn record(&self, phase: Phase, elapsed: Duration, set: impl FnOnce(&mut ComputeMetrics, u64)) {
        let ms = elapsed.as_millis() as u64;
        self.compute.metrics.observe_phase(phase, elapsed);
        self.compute.with(|s| set(&mut s.startup, ms));
        tracing::info!(phase = ?phase, ms, "startup step done");
    }

    fn config_context(&self) -> ConfigContext<'_> {
        ConfigContext {
            privileged_role_name: &self.opts.privileged_role_name,
            internal_http_port: self.opts.internal_http_port,
            owner: self.owner(),
            drop_unsupported: self.server_support.as_deref(),
            tls: self.tls.is_some(),
            connstr: &self.opts.pg_config,
        }
    }

    /// Owner to give the files written into PGDATA: the Postgres user when running as root.
    pub(crate) fn owner(&self) -> Option<(u32, u32)> {
        self.run_as.map(|u| (u.uid, u.gid))
    }

    /// The installation's libraries (only [`pg_config::ServerSupport::has_library`] and
    /// `libdir` are to be asked of the answer): `server_support`, or one library probe shared
    /// by every caller of the start (a failed probe is remembered, not repeated).
    pub(crate) async fn libraries(&self) -> anyhow::Result<Arc<pg_config::ServerSupport>> {
        if let Some(support) = &self.server_support {
            return Ok(support.clone());
        }
        let probe = || async {
            let pgbin = self.opts.pgbin.clone();
            tokio::task::spawn_blocking(move || pg_binary::probe_libraries(&pgbin))
                .await
                .map_err(|e| format!("join the library probe: {e}"))?
                .map(Arc::new)
                .map_err(|e| format!("find the libraries of the postgres installation: {e}"))
        };
        match self.libraries_probe.get_or_init(probe).await {
            Ok(support) => Ok(support.clone()),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        }
    }

    /// Starts [`Self::libraries`] in the background, so that its answer is ready when the
    /// catalog step asks.
    fn probe_libraries_early(&self) {
        if self.server_support.is_none() {
            let ctx = self.clone();
            tokio::spawn(async move {
                let _ = ctx.libraries().await;
            });
        }
    }

    /// Whether the `neon` library exists (then the reconciler manages the extension); a failed
    /// probe counts as no (vanilla).
    async fn neon_library(&self) -> bool {
        match self.libraries().await {
            Ok(support) => support.has_library("neon") == Some(true),
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "the neon extension is not managed"
                );
                false
            }
        }
    }
}

/// Runs the whole start: returns the ready, configured postmaster. On error, a postmaster that
/// was started is stopped (immediate) before returning.
pub(crate) async fn start_compute(
    ctx: &StartContext,
    spec: &ValidatedSpec,
) -> anyhow::Result<Postmaster> {
    let pgdata = ctx.opts.pgdata.clone();
    ctx.probe_libraries_early();
    // Remote extensions are fetched while PGDATA is prepared, and awaited before Postgres
    // starts (its preload libraries may be among them).
    let remote_extensions = RemoteExtensionsTask::spawn(ctx, spec);

    // Before anything is written: a start whose TLS files never come changes nothing.
    let tls_pair = match &ctx.tls {
        Some(settings) => Some(tls::wait_for_pair(settings, &ctx.cancel).await?),
        None => None,
    };

    // Before anything is wiped: a start that cannot audit as asked fails here.
    let audit = crate::audit::preflight(ctx, spec, |name| std::env::var(name).ok()).await?;

    let t = Instant::now();
    let (force, owner) = (ctx.opts.force_wipe, ctx.owner());
    let dir = pgdata.clone();
    tokio::task::spawn_blocking(move || crate::pgdata::wipe_and_create(&dir, force, owner))
        .await
        .context("join wipe task")?
        .context("prepare data directory")?;
    ctx.record(Phase::PreparePgdata, t.elapsed(), |_, _| {});
    ctx.compute.mark_phase("prepare");

    if spec.storage().pageserver.is_none() {
        cancellable(ctx, initdb(ctx))
            .await
            .context("initdb (standalone mode)")?;
        ctx.compute.mark_phase("initdb");
    } else {
        // walproposer (sync-safekeepers) reads neon.* settings from postgresql.conf.
        write_config(ctx, spec)?;
        let lsn = storage_lsn(ctx, spec).await?;
        ctx.compute.mark_phase("sync_safekeepers");
        basebackup(ctx, spec, lsn).await?;
        ctx.compute.mark_phase("basebackup");
    }

    report_dropped_settings(ctx, spec);
    let t = Instant::now();
    write_config(ctx, spec)?;
    if let Some(pair) = &tls_pair {
        tls::install(&pgdata, pair, ctx.owner())?;
    }
    config_files::ensure_hba_line(&pgdata, &ctx.config_context())?;
    ctx.record(Phase::WriteConfig, t.elapsed(), |_, _| {});
    crate::audit::configure_rsyslog(ctx, spec, &audit).await?;

    remote_extensions.finish().await;
    ctx.compute.mark_phase("config");
    let t = Instant::now();
    let mut postmaster = start_postgres(ctx, spec).await?;
    ctx.record(Phase::StartPostgres, t.elapsed(), |m, ms| {
        m.start_postgres_ms = ms
    });
    ctx.compute.mark_phase("start_postgres");

    if spec.spec().mode.is_primary() {
        let t = Instant::now();
        let configure = async {
            configure_catalog(ctx, spec).await?;
            if !spec.spec().skip_pg_catalog_updates {
                run_migrations(ctx).await;
            }
            Ok(())
        };
        if let Err(e) = cancellable(ctx, configure).await {
            postmaster.stop_immediate(stop_grace(ctx)).await;
            return Err(e);
        }
        ctx.record(Phase::Config, t.elapsed(), |m, ms| m.config_ms = ms);
        ctx.compute.mark_phase("catalog");
    }
    Ok(postmaster)
}

/// The start's remote extension work (`remote_extensions::prepare_at_start`) in its own task;
/// aborted if the start ends before it is awaited.
struct RemoteExtensionsTask(Option<tokio::task::JoinHandle<()>>);

impl RemoteExtensionsTask {
    fn spawn(ctx: &StartContext, spec: &ValidatedSpec) -> RemoteExtensionsTask {
        if ctx.opts.remote_ext_base_url.is_none() || spec.spec().remote_extensions.is_none() {
            return RemoteExtensionsTask(None);
        }
        let (compute, opts, spec) = (ctx.compute.clone(), ctx.opts.clone(), spec.clone());
        let cancel = ctx.cancel.clone();
        let task = async move {
            crate::remote_extensions::prepare_at_start(&compute, &opts, &spec, &cancel).await;
        };
        RemoteExtensionsTask(Some(tokio::spawn(task.in_current_span())))
    }

    async fn finish(mut self) {
        if let Some(task) = self.0.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "remote extensions task failed");
        }
    }
}

impl Drop for RemoteExtensionsTask {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// How long a postmaster stopped on a failed start has for its immediate shutdown before
/// SIGKILL.
const FAILED_START_STOP_GRACE: Duration = Duration::from_secs(10);
/// The same for an interrupted start: a termination request ends compute_ctl within a bound
/// whatever postgres does (hung, stopped, ignoring SIGQUIT).
const INTERRUPTED_START_STOP_GRACE: Duration = Duration::from_secs(2);

fn stop_grace(ctx: &StartContext) -> Duration {
    if ctx.cancel.is_cancelled() {
        INTERRUPTED_START_STOP_GRACE
    } else {
        FAILED_START_STOP_GRACE
    }
}

/// Runs `step` unless the start is cancelled first; dropping the step stops what it started
/// (a child is killed, a postmaster gets an immediate shutdown).
async fn cancellable<T>(
    ctx: &StartContext,
    step: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = step => r,
        () = ctx.cancel.cancelled() => bail!("start cancelled"),
    }
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
        ])
        .classify_lines(process::chatter_output());
    process::run_to_completion("initdb", cmd, &ctx.cancel).await?;
    ctx.record(Phase::Initdb, t.elapsed(), |m, ms| m.initdb_ms = ms);
    Ok(())
}

/// With `--drop-unsupported-settings`: logs each setting of `spec` that the rendered
/// postgresql.conf leaves out, and lists them for `/status`.
fn report_dropped_settings(ctx: &StartContext, spec: &ValidatedSpec) {
    let Some(support) = &ctx.server_support else {
        return;
    };
    let dropped = pg_config::unsupported_settings(spec, support);
    for setting in &dropped {
        tracing::warn!(
            setting = setting.name,
            source = %setting.source,
            reason = %setting.reason,
            kept = setting.kept_value.as_deref(),
            "setting dropped: this postgres binary does not support it"
        );
    }
    ctx.compute.with(|s| s.dropped_settings = dropped);
}

/// Probes the postgres binary (`postgres --describe-config` and its library directory, run as
/// the Postgres user): what `--drop-unsupported-settings` drops, and whether the `neon`
/// library exists.
pub(crate) async fn probe_server_support(
    opts: &Options,
    run_as: Option<RunAs>,
) -> anyhow::Result<pg_config::ServerSupport> {
    let pgbin = opts.pgbin.clone();
    let run_as = run_as.map(|u| (u.uid, u.gid));
    let probed = tokio::task::spawn_blocking(move || pg_binary::PgBinary::probe(&pgbin, run_as))
        .await
        .context("join the probe task")?
        .context("probe the postgres binary")?;
    Ok(probed.into())
}

fn write_config(ctx: &StartContext, spec: &ValidatedSpec) -> anyhow::Result<()> {
    config_files::write_config_files(&ctx.opts.pgdata, spec, &ctx.config_context())
}

fn tenant_and_timeline(
    spec: &ValidatedSpec,
) -> anyhow::Result<(compute_spec::TenantId, compute_spec::TimelineId)> {
    let storage = spec.storage();
    match (storage.tenant_id, storage.timeline_id) {
        (Some(tenant), Some(timeline)) => Ok((tenant, timeline)),
        _ => bail!("the spec names a pageserver but no tenant_id and timeline_id"),
    }
}

fn sync_config(ctx: &StartContext, spec: &ValidatedSpec) -> neon_clients::SyncSafekeepersConfig {
    neon_clients::SyncSafekeepersConfig {
        pgbin: ctx.opts.pgbin.clone(),
        pgdata: ctx.opts.pgdata.clone(),
        auth_token: spec.spec().storage_auth_token.clone(),
        run_as: ctx.owner(),
        timeout: ctx.opts.sync_safekeepers_timeout,
    }
}

/// The LSN to take the basebackup at: synced safekeepers (Primary with safekeepers: the
/// `TIMELINE_STATUS` fast path first, then `--sync-safekeepers`, retried as upstream), the mode's LSN (Static), or
/// 0 = latest.
async fn storage_lsn(ctx: &StartContext, spec: &ValidatedSpec) -> anyhow::Result<Lsn> {
    let storage = spec.storage();
    match spec.spec().mode {
        ComputeMode::Static(lsn) => Ok(lsn),
        ComputeMode::Replica => Ok(Lsn(0)),
        ComputeMode::Primary if storage.safekeepers.is_empty() => Ok(Lsn(0)),
        ComputeMode::Primary => {
            let (tenant_id, timeline_id) = tenant_and_timeline(spec)?;
            let fast = neon_clients::FastPathConfig {
                safekeepers: storage.safekeepers.clone(),
                tenant_id,
                timeline_id,
                auth_token: spec.spec().storage_auth_token.clone(),
                timeout: Duration::from_millis(100),
            };
            let synced = neon_clients::sync_safekeepers_fast_then_full_with_retries(
                &fast,
                &sync_config(ctx, spec),
                &neon_clients::RetryConfig::SYNC_SAFEKEEPERS,
                &ctx.cancel,
            )
            .await
            .context("sync safekeepers")?;
            ctx.record(Phase::SyncSkCheck, synced.check_duration, |m, ms| {
                m.sync_sk_check_ms = ms
            });
            if let Some(full) = synced.sync_duration {
                ctx.record(Phase::SyncSafekeepers, full, |m, ms| {
                    m.sync_safekeepers_ms = ms
                });
            }
            tracing::info!(lsn = %synced.lsn, method = ?synced.method, "safekeepers synced");
            Ok(synced.lsn)
        }
    }
}

async fn basebackup(ctx: &StartContext, spec: &ValidatedSpec, lsn: Lsn) -> anyhow::Result<()> {
    let (tenant_id, timeline_id) = tenant_and_timeline(spec)?;
    let info = spec
        .storage()
        .pageserver
        .as_ref()
        .context("no pageserver in the spec")?;
    let connstr = neon_clients::shard0_connstr(info)?;
    let request = neon_clients::BasebackupRequest {
        tenant_id,
        timeline_id,
        lsn,
        mode: spec.spec().mode,
        gzip: true,
    };
    let config = neon_clients::BasebackupConfig {
        owner: ctx.owner(),
        stall_timeout: ctx.opts.basebackup_stall_timeout,
        retry_deadline: ctx.opts.storage_retry_deadline,
        ..neon_clients::BasebackupConfig::default()
    };
    let stats = neon_clients::fetch_basebackup(
        connstr,
        spec.spec().storage_auth_token.as_deref(),
        &request,
        &ctx.opts.pgdata,
        &config,
        &ctx.cancel,
    )
    .await
    .context("fetch basebackup")?;
    ctx.record(Phase::Basebackup, stats.duration, |m, ms| {
        m.basebackup_ms = ms;
        m.basebackup_bytes = stats.bytes;
        m.pageserver_connect_micros = stats.connect_micros;
    });
    tracing::info!(%lsn, bytes = stats.bytes, attempts = stats.attempts, "basebackup unpacked");
    Ok(())
}

/// After Postgres stopped, for a Primary with safekeepers: sync them once more and return the
/// flushed LSN (for `/terminate`). `cancel` kills the sync.
pub(crate) async fn shutdown_sync(
    ctx: &StartContext,
    spec: &ValidatedSpec,
    cancel: &CancellationToken,
) -> Option<Lsn> {
    if !spec.spec().mode.is_primary()
        || spec.storage().safekeepers.is_empty()
        || spec.storage().pageserver.is_none()
    {
        return None;
    }
    let t = Instant::now();
    match neon_clients::sync_safekeepers(&sync_config(ctx, spec), cancel).await {
        Ok(lsn) => {
            ctx.record(Phase::SyncSafekeepers, t.elapsed(), |m, ms| {
                m.sync_safekeepers_ms = ms
            });
            Some(lsn)
        }
        Err(e) => {
            tracing::warn!(error = %neon_clients::Chain(&e), "sync safekeepers after shutdown");
            None
        }
    }
}

async fn start_postgres(ctx: &StartContext, spec: &ValidatedSpec) -> anyhow::Result<Postmaster> {
    let pgdata = &ctx.opts.pgdata;
    let mut watch = ReadinessWatch::new(pgdata)?;
    let mut cmd = process::command(&ctx.opts.pgbin, ctx.run_as, pgdata);
    cmd.arg("-D")
        .arg(pgdata)
        .classify_lines(process::server_output(spec));
    if let Some(port) = ctx.opts.pg_config.get_ports().first() {
        cmd.arg("-p").arg(port.to_string());
    }
    if let Some(token) = &spec.spec().storage_auth_token {
        cmd.env("NEON_AUTH_TOKEN", token);
    }
    let mut postmaster = Postmaster::spawn(cmd)?;
    // `None`: the start was cancelled.
    let ready = tokio::select! {
        ready = watch.wait_ready(postmaster.wait(), ctx.opts.pg_ready_timeout) => Some(ready),
        () = ctx.cancel.cancelled() => None,
    };
    let Some(ready) = ready else {
        postmaster.stop_immediate(stop_grace(ctx)).await;
        bail!("start cancelled");
    };
    if let Err(e) = ready {
        postmaster.stop_immediate(stop_grace(ctx)).await;
        return Err(match postmaster.last_fatal().await {
            Some(fatal) => anyhow::Error::new(e).context(format!("start postgres: {fatal}")),
            None => anyhow::Error::new(e).context("start postgres"),
        });
    }
    tracing::info!(pid = postmaster.pid(), "postgres is ready");
    Ok(postmaster)
}

/// Applies the catalog part of the spec (the writability check table included), unless
/// `skip_pg_catalog_updates` (then nothing, as upstream: a woken compute's catalog is left as
/// the basebackup had it). Where `neon` is preloaded, the cluster size limit is lifted in the
/// temporary override file around the work (`config_files::catalog_override`), with a reload
/// before and after, and the file is emptied whatever the outcome.
async fn configure_catalog(ctx: &StartContext, spec: &ValidatedSpec) -> anyhow::Result<()> {
    if spec.spec().skip_pg_catalog_updates {
        tracing::info!("skip_pg_catalog_updates: the catalog is left as it is");
        return Ok(());
    }
    let Some(lift) = config_files::catalog_override(spec) else {
        reconcile(ctx, spec).await?;
        return Ok(());
    };
    let pgdata = &ctx.opts.pgdata;
    config_files::write_temp_override(pgdata, lift, &ctx.config_context())?;
    reload(ctx).await?;
    let reconciled = reconcile(ctx, spec).await;
    let cleared = config_files::write_temp_override(pgdata, "", &ctx.config_context());
    reload(ctx).await?;
    reconciled?;
    cleared
}

/// Limit of one migration run: a migration waiting on a lock held by a session must not keep
/// the compute from starting.
const MIGRATIONS_TIMEOUT: Duration = Duration::from_secs(60);

/// Upstream's compute migrations (`pg_reconcile::migrate`), at start only, after the catalog
/// is configured. Unlike upstream, which runs them in a background task after the start, they
/// run before `running`, so a running compute has them (a migrated cluster costs one
/// bookkeeping round trip and one read). A failure does not fail the start: it is logged and
/// counted in `compute_ctl_db_migration_failed_total{migration_id}`, and the next start
/// resumes from the failed migration.
async fn run_migrations(ctx: &StartContext) {
    let privileged = &ctx.opts.privileged_role_name;
    let run = pg_reconcile::migrate(
        &ctx.opts.pg_config,
        catalog::guards(&ctx.compute),
        privileged,
    );
    match tokio::time::timeout(MIGRATIONS_TIMEOUT, run).await {
        Ok(Ok(done)) => tracing::info!(
            previous_id = done.previous_id,
            current_id = done.current_id,
            ran = done.ran.len(),
            "migrations done"
        ),
        Ok(Err(e)) => {
            if let Some(id) = e.migration_id() {
                ctx.compute.metrics.count_migration_failure(id);
            }
            tracing::error!(error = %neon_clients::Chain(&e), "migrations failed; the start goes on");
        }
        Err(_) => tracing::error!(
            timeout = ?MIGRATIONS_TIMEOUT,
            "migrations did not finish in time; the start goes on"
        ),
    }
}

/// Roles and databases: observe → plan → apply (pg-reconcile). Fails when an operation
/// failed; the per-operation results are kept either way.
async fn reconcile(ctx: &StartContext, spec: &ValidatedSpec) -> anyhow::Result<ApplySummary> {
    let pg = &ctx.opts.pg_config;
    let options = pg_reconcile::PlanOptions {
        privileged_role_name: ctx.opts.privileged_role_name.clone(),
        superuser: pg.get_user().unwrap_or("cloud_admin").to_owned(),
        system_database: pg.get_dbname().unwrap_or("postgres").to_owned(),
        neon_extension: ctx.neon_library().await,
        // Upstream's connection budget for a running compute; a start has no users to leave
        // connection slots to.
        max_sessions: (ctx.compute.status() != compute_spec::api::ComputeStatus::Init)
            .then_some(spec.spec().reconfigure_concurrency),
    };
    let reconciled =
        pg_reconcile::reconcile(spec, &options, pg, &pg_reconcile::Counters::default())
            .await
            .context("reconcile roles and databases")?;
    for warning in &reconciled.plan.warnings {
        tracing::warn!("reconcile: {warning}");
    }
    let operations: Vec<OperationResult> = reconciled
        .plan
        .operations()
        .zip(&reconciled.report.outcomes)
        .map(|(op, outcome)| {
            let (result, error) = match outcome {
                pg_reconcile::Outcome::Ok => (OperationOutcome::Ok, None),
                pg_reconcile::Outcome::Failed(e) => (OperationOutcome::Failed, Some(e.to_string())),
                _ => (OperationOutcome::NotRun, None),
            };
            ctx.compute.metrics.count_apply(result);
            OperationResult {
                operation: format!("{}: {}", op.object, op.reason),
                result,
                error,
            }
        })
        .collect();
    let summary = ApplySummary {
        finished_at: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        operations,
    };
    ctx.compute.with(|s| s.last_apply = Some(summary.clone()));
    let errors: Vec<String> = reconciled.report.errors().map(|e| e.to_string()).collect();
    if !errors.is_empty() {
        bail!("reconcile roles and databases: {}", errors.join("; "));
    }
    tracing::info!(operations = summary.operations.len(), "catalog reconciled");
    Ok(summary)
}

/// Applies a new spec to a running compute: rewrite postgresql.conf, reload, reconcile.
pub(crate) async fn reconfigure(ctx: &StartContext, spec: &ValidatedSpec) -> anyhow::Result<()> {
    report_dropped_settings(ctx, spec);
    crate::audit::reconfigure_logs_export(ctx, spec).await?;
    write_config(ctx, spec)?;
    reload(ctx).await?;
    if spec.spec().mode.is_primary() {
        configure_catalog(ctx, spec).await?;
    }
    Ok(())
}

/// How long a reload may take to be read by the postmaster.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// `pg_ctl reload`, then waits until the postmaster has read the files again
/// (`pg_conf_load_time()` moves), so what follows — the catalog work, the answer to
/// `/configure`, the next TLS connection — sees the new settings. `pg_ctl` only sends SIGHUP.
pub(crate) async fn reload(ctx: &StartContext) -> anyhow::Result<()> {
    let loaded_at = || async {
        let client =
            catalog::connect(&ctx.opts.pg_config, catalog::guards(&ctx.compute), None).await?;
        let row = client
            .query_one(
                "SELECT pg_catalog.pg_conf_load_time()::pg_catalog.text",
                &[],
            )
            .await
            .context("read pg_conf_load_time()")?;
        anyhow::Ok(row.get::<_, String>(0))
    };
    let before = loaded_at().await?;
    let mut cmd = process::command(
        ctx.opts.pg_bin_dir.join("pg_ctl"),
        ctx.run_as,
        &ctx.opts.pgdata,
    );
    cmd.arg("reload").arg("-D").arg(&ctx.opts.pgdata);
    process::run_to_completion("pg_ctl", cmd, &CancellationToken::new()).await?;
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while loaded_at().await? == before {
        if Instant::now() > deadline {
            bail!("postgres did not reload its configuration within {RELOAD_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
