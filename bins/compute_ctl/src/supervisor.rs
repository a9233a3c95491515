//! Supervision of one compute: waiting for a spec in `empty`, the start, the postmaster until
//! it exits (stop requests passed on as signals, escalated when ignored), what follows its
//! exit (the shutdown sync-safekeepers, the final status), the linger, and the configurator
//! that applies specs posted to `/configure` while running.

use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};

use compute_spec::api::ComputeStatus;
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::installed_extensions;
use crate::local_proxy;
use crate::metrics::Phase;
use crate::pgbouncer::{Pgbouncer, PgbouncerHandle};
use crate::process::{self, Postmaster};
use crate::startup::{self, StartContext};
use crate::state::{ShutdownMode, ShutdownRequest};
use crate::tls;

/// How long to stay up after `/terminate?mode=immediate` so that its answer goes out.
const RESPONSE_GRACE: Duration = Duration::from_millis(300);

/// The signal a stop request sends to the postmaster: `/terminate` sends SIGINT (a fast
/// shutdown) whatever its mode, as upstream; the mode only decides how long compute_ctl stays
/// up afterwards. Signals to compute_ctl: SIGTERM/SIGINT fast, SIGQUIT (or a second signal)
/// immediate.
fn postgres_signal(request: ShutdownRequest) -> Signal {
    match request.mode {
        _ if request.from_http => Signal::SIGINT,
        ShutdownMode::Fast => Signal::SIGINT,
        ShutdownMode::Immediate => Signal::SIGQUIT,
    }
}

/// How long a postmaster may take after SIGINT before it gets SIGQUIT, and after SIGQUIT
/// before it gets SIGKILL: a stop never waits without bound (neon_local gives compute_ctl
/// 10 s to exit after it asked).
const FAST_STOP_LIMIT: Duration = Duration::from_secs(5);
const IMMEDIATE_STOP_LIMIT: Duration = Duration::from_secs(2);

pub(crate) async fn requested(
    rx: &mut watch::Receiver<Option<ShutdownRequest>>,
) -> ShutdownRequest {
    match rx.wait_for(Option::is_some).await {
        Ok(req) => req.unwrap_or(ShutdownRequest {
            mode: ShutdownMode::Fast,
            from_http: false,
        }),
        Err(_) => std::future::pending().await,
    }
}

/// Fails the compute with `error`, then serves `/status` for the linger time (cut short by a
/// termination request, which then gets its answer: `Terminated`) and returns exit code 1.
pub(crate) async fn fail_and_linger(
    ctx: &StartContext,
    error: &anyhow::Error,
    shutdown: &mut watch::Receiver<Option<ShutdownRequest>>,
) -> i32 {
    tracing::error!(error = format!("{error:#}"), linger = ?ctx.opts.linger, "compute failed");
    ctx.compute.fail(format!("{error:#}"));
    tokio::select! {
        () = tokio::time::sleep(ctx.opts.linger) => {}
        _ = requested(shutdown) => {
            let _ = ctx.compute.transition(ComputeStatus::Terminated);
            tokio::time::sleep(RESPONSE_GRACE).await;
        }
    }
    1
}

/// A compute that fails while Postgres runs (a reconfiguration) serves its error for the
/// linger time, then is stopped as a signal would stop it (fast, escalated when ignored):
/// `failed` is never a dead end. Ends early when the status moves on (`/terminate`).
async fn stop_after_failed_linger(ctx: StartContext) {
    let mut status = ctx.compute.subscribe();
    if status
        .wait_for(|s| *s == ComputeStatus::Failed)
        .await
        .is_err()
    {
        return;
    }
    tracing::error!(linger = ?ctx.opts.linger, "compute failed: postgres is stopped after the linger time");
    tokio::select! {
        () = tokio::time::sleep(ctx.opts.linger) => {
            ctx.compute.request_shutdown(ShutdownMode::Fast, false);
        }
        _ = status.wait_for(|s| *s != ComputeStatus::Failed) => {}
    }
}

/// Runs the compute from the spec given at start, or waits in `Empty` for one from
/// `POST /configure` first.
pub(crate) async fn supervise(
    ctx: &StartContext,
    spec: Option<compute_spec::ValidatedSpec>,
    shutdown: &mut watch::Receiver<Option<ShutdownRequest>>,
) -> i32 {
    let spec = match spec {
        Some(spec) => spec,
        None => match wait_for_spec(ctx, shutdown).await {
            Some(spec) => spec,
            None => return 0,
        },
    };
    let span = tracing::info_span!(
        "compute",
        tenant = spec.storage().tenant_id.map(|t| t.to_string()),
        timeline = spec.storage().timeline_id.map(|t| t.to_string()),
    );
    let lease = crate::lsn_lease::spawn(ctx.compute.clone(), &spec);
    let code = run_compute(ctx, &spec, shutdown).instrument(span).await;
    if let Some(lease) = lease {
        lease.stop().await;
    }
    code
}

/// In `Empty`: waits for `/configure` (→ `Init` with its spec) or a termination request
/// (→ `Terminated`, `None`).
async fn wait_for_spec(
    ctx: &StartContext,
    shutdown: &mut watch::Receiver<Option<ShutdownRequest>>,
) -> Option<compute_spec::ValidatedSpec> {
    let compute = &ctx.compute;
    tracing::info!("no spec yet: waiting for POST /configure");
    let waited = Instant::now();
    let mut status = compute.subscribe();
    tokio::select! {
        _ = status.wait_for(|s| *s == ComputeStatus::ConfigurationPending) => {}
        _ = requested(shutdown) => {
            let _ = compute.transition(ComputeStatus::Terminated);
            tokio::time::sleep(RESPONSE_GRACE).await;
            return None;
        }
    }
    let mut spec = None;
    let moved = compute.transition_with(ComputeStatus::Init, |s| {
        spec = s.pending_spec.take();
        s.spec = spec.clone();
        s.startup.wait_for_spec_ms = waited.elapsed().as_millis() as u64;
        s.mark_phase("wait_for_spec");
        s.start_time = SystemTime::now();
        s.start_instant = Instant::now();
    });
    match (moved, spec) {
        (Ok(()), Some(spec)) => {
            crate::spec_source::report_accepted(&spec, &ctx.opts);
            Some(spec)
        }
        _ => {
            // A termination request won the race.
            let _ = compute.transition(ComputeStatus::Terminated);
            None
        }
    }
}

/// Starts the compute from `spec` and supervises the postmaster until it exits.
async fn run_compute(
    ctx: &StartContext,
    spec: &compute_spec::ValidatedSpec,
    shutdown: &mut watch::Receiver<Option<ShutdownRequest>>,
) -> i32 {
    let compute = &ctx.compute;
    let tls = ctx.tls.as_ref().map(tls::TlsSettings::files);
    if let Err(e) = local_proxy::apply_at_start(&ctx.opts.local_proxy_dir, spec, tls) {
        return fail_and_linger(ctx, &e, shutdown).await;
    }
    let start = startup::start_compute(ctx, spec);
    tokio::pin!(start);
    let started = tokio::select! {
        r = &mut start => r,
        request = requested(shutdown) => {
            tracing::info!(mode = ?request.mode, "startup interrupted by a termination request");
            // The long steps stop on the token (a sync-safekeepers child is killed); a
            // postmaster already started gets an immediate shutdown when dropped.
            ctx.cancel.cancel();
            if let Ok(Ok(mut pm)) = tokio::time::timeout(Duration::from_secs(10), &mut start).await {
                stop_postmaster(&mut pm, shutdown, &compute.supervision).await;
            }
            let _ = compute.transition(ComputeStatus::Terminated);
            return 0;
        }
    };
    let mut postmaster = match started {
        Ok(pm) => pm,
        Err(e) => return fail_and_linger(ctx, &e, shutdown).await,
    };
    // Once postgres is up (and the TLS files it is given, if any, exist); stopped when
    // dropped.
    let pgbouncer = Pgbouncer::start(ctx, spec);
    let total = compute.with(|s| {
        let total = s.start_instant.elapsed();
        s.startup.total_startup_ms = total.as_millis() as u64;
        total
    });
    compute.metrics.observe_phase(Phase::Total, total);
    if compute
        .transition_with(ComputeStatus::Running, |s| s.mark_phase("running"))
        .is_ok()
    {
        let (metrics, phases) = compute.with(|s| (s.startup.clone(), s.clock.summary()));
        crate::running_report::report_running(&metrics, &phases, &ctx.opts.pg_config);
    }

    let configurator = tokio::spawn(configurator(ctx.clone(), pgbouncer.handle()));
    let failed_linger = tokio::spawn(stop_after_failed_linger(ctx.clone()));
    let monitor_cancel = CancellationToken::new();
    let tls_watcher = ctx
        .tls
        .clone()
        .map(|settings| tls::spawn_watcher(ctx.clone(), settings, monitor_cancel.clone()));
    let monitor = compute_monitor::spawn(
        monitor_config(ctx, spec),
        compute.activity.clone(),
        monitor_cancel.clone(),
    );
    let extension_stats = installed_extensions::spawn(
        compute.clone(),
        extension_scan_config(ctx, spec),
        monitor_cancel.clone(),
    );
    let audit_gc = crate::audit::spawn_gc(ctx, spec, monitor_cancel.clone());
    let exit = stop_after_monitors(
        &mut postmaster,
        shutdown,
        &monitor_cancel,
        &compute.supervision,
    )
    .await;
    configurator.abort();
    failed_linger.abort();
    let failed_before = compute.with(|s| s.error.is_some());
    pgbouncer.stop().await;
    monitor_cancel.cancel();
    let _ = monitor.await;
    let _ = extension_stats.await;
    if let Some(watcher) = tls_watcher {
        let _ = watcher.await;
    }
    if let Some(gc) = audit_gc {
        let _ = gc.await;
    }
    let request = *shutdown.borrow();
    after_postgres_exit(ctx, spec, request, exit).await;
    match request {
        None if !exit.success() => linger_after_failure(ctx, shutdown).await,
        _ => linger_after_terminate(ctx, request).await,
    }
    match process::exit_code(exit) {
        // A compute that had failed ends in 1, as after a failed start, even when Postgres
        // then stopped cleanly.
        0 if failed_before => 1,
        code => code,
    }
}

/// The compute monitor's settings: compute_ctl's connection; the `pg_stat_database` counters
/// count as activity with the spec feature `activity_monitor_experimental` (as upstream).
fn monitor_config(
    ctx: &StartContext,
    spec: &compute_spec::ValidatedSpec,
) -> compute_monitor::MonitorConfig {
    let mut config = compute_monitor::MonitorConfig::new(ctx.opts.pg_config.clone());
    config.database_counters = spec
        .spec()
        .features
        .contains(&compute_spec::ComputeFeature::ActivityMonitorExperimental);
    config
}

/// The installed-extensions scans: at once for a Primary (even with
/// `skip_pg_catalog_updates`), then periodically in every mode, as upstream.
fn extension_scan_config(
    ctx: &StartContext,
    spec: &compute_spec::ValidatedSpec,
) -> installed_extensions::ScanConfig {
    installed_extensions::ScanConfig {
        pg: ctx.opts.pg_config.clone(),
        default_interval: ctx.opts.installed_extensions_collection_interval,
        scan_at_start: spec.spec().mode.is_primary(),
    }
}

/// Waits for the postmaster to exit. Each stop request is passed on as a signal; a postmaster
/// that ignores it is escalated to SIGQUIT after [`FAST_STOP_LIMIT`] and to SIGKILL after
/// [`IMMEDIATE_STOP_LIMIT`] more. Beats `heartbeat` while it waits.
async fn stop_postmaster(
    postmaster: &mut Postmaster,
    shutdown: &mut watch::Receiver<Option<ShutdownRequest>>,
    heartbeat: &crate::liveness::Heartbeat,
) -> ExitStatus {
    let exit = watch_postmaster(postmaster, shutdown, heartbeat).await;
    heartbeat.stop();
    exit
}

async fn watch_postmaster(
    postmaster: &mut Postmaster,
    shutdown: &mut watch::Receiver<Option<ShutdownRequest>>,
    heartbeat: &crate::liveness::Heartbeat,
) -> ExitStatus {
    let mut sent: Option<(Signal, tokio::time::Instant)> = None;
    let mut beats = tokio::time::interval(crate::liveness::BEAT_EVERY);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Some(request) = *shutdown.borrow_and_update() {
            let signal = postgres_signal(request);
            if sent.is_none_or(|(previous, _)| severity(signal) > severity(previous)) {
                postmaster.signal(signal);
                sent = Some((signal, tokio::time::Instant::now()));
            }
        }
        let escalation = sent.and_then(|(signal, at)| match signal {
            Signal::SIGINT => Some((Signal::SIGQUIT, at + FAST_STOP_LIMIT)),
            Signal::SIGQUIT => Some((Signal::SIGKILL, at + IMMEDIATE_STOP_LIMIT)),
            _ => None,
        });
        let deadline = escalation.map(|(_, at)| at);
        tokio::select! {
            status = postmaster.wait() => return status,
            _ = beats.tick() => heartbeat.beat(),
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return postmaster.wait().await;
                }
            }
            () = sleep_until(deadline) => {
                if let Some((signal, _)) = escalation {
                    tracing::warn!(?signal, "postgres did not stop in time: escalating");
                    postmaster.signal(signal);
                    sent = Some((signal, tokio::time::Instant::now()));
                }
            }
        }
    }
}

/// [`stop_postmaster`], with the background tasks' token cancelled as soon as a stop is
/// requested, before postgres is signalled: the activity monitor then ends instead of
/// reporting the connection postgres closes as a failure.
async fn stop_after_monitors(
    postmaster: &mut Postmaster,
    shutdown: &mut watch::Receiver<Option<ShutdownRequest>>,
    monitors: &CancellationToken,
    heartbeat: &crate::liveness::Heartbeat,
) -> ExitStatus {
    let mut early = shutdown.clone();
    let cancel_monitors = async {
        requested(&mut early).await;
        monitors.cancel();
        std::future::pending::<()>().await;
    };
    tokio::pin!(cancel_monitors);
    let stop = stop_postmaster(postmaster, shutdown, heartbeat);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut cancel_monitors => {}
            status = &mut stop => return status,
        }
    }
}

fn severity(signal: Signal) -> u8 {
    match signal {
        Signal::SIGINT => 1,
        Signal::SIGQUIT => 2,
        _ => 3,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What follows the postmaster's exit, by cause:
/// - `/terminate`: the shutdown sync-safekeepers (its LSN answers the request), `Terminated`;
/// - a signal to compute_ctl: `Terminated` at once, without syncing (upstream exits at once;
///   neon_local signals compute_ctl when the safekeepers may be down);
/// - a clean exit nobody here asked for (`pg_ctl stop` from outside, as neon_local's
///   `endpoint stop` does): the shutdown sync as after `/terminate`, then `Terminated`;
/// - any other exit: `Failed` with the exit status (served for the linger time, then
///   compute_ctl exits with the postmaster's code, 128 + signal when killed).
///
/// A signal arriving during the shutdown sync cuts it short.
async fn after_postgres_exit(
    ctx: &StartContext,
    spec: &compute_spec::ValidatedSpec,
    request: Option<ShutdownRequest>,
    exit: ExitStatus,
) {
    let compute = &ctx.compute;
    let sync = match request {
        Some(request) => request.from_http,
        None if exit.success() => {
            tracing::info!("postgres was stopped from outside compute_ctl");
            let _ = compute.transition(ComputeStatus::TerminationPendingFast);
            true
        }
        None => {
            tracing::error!(%exit, "postgres exited unexpectedly");
            compute.fail(format!("postgres exited unexpectedly ({exit})"));
            return;
        }
    };
    if sync {
        let mut later = compute.subscribe_shutdown();
        later.mark_unchanged();
        let cancel = CancellationToken::new();
        let sync = startup::shutdown_sync(ctx, spec, &cancel);
        tokio::pin!(sync);
        let lsn = tokio::select! {
            lsn = &mut sync => lsn,
            _ = later.changed() => {
                tracing::info!("termination signal: shutdown sync-safekeepers cut short");
                cancel.cancel();
                sync.await
            }
        };
        if let Some(lsn) = lsn {
            compute.with(|s| s.terminate_lsn = Some(lsn));
        }
    }
    let _ = compute.transition(ComputeStatus::Terminated);
    tracing::info!(%exit, "postgres stopped");
}

/// After postgres died under a running compute (`failed`): serves that status and its error
/// for the linger time, as after a failed start, so that a control plane polling `/status`
/// learns why; a termination request cuts it short. (Upstream exits 300 ms after postgres,
/// its status still `running`.)
async fn linger_after_failure(
    ctx: &StartContext,
    shutdown: &mut watch::Receiver<Option<ShutdownRequest>>,
) {
    tracing::info!(linger = ?ctx.opts.linger, "serving the failed status before exiting");
    tokio::select! {
        () = tokio::time::sleep(ctx.opts.linger) => {}
        _ = requested(shutdown) => {}
    }
}

/// After `/terminate`: fast mode serves the final status for the linger time (cut short by
/// another request), immediate mode only long enough for the answer to go out.
async fn linger_after_terminate(ctx: &StartContext, request: Option<ShutdownRequest>) {
    match request {
        Some(ShutdownRequest {
            mode: ShutdownMode::Fast,
            from_http: true,
        }) => {
            let mut later = ctx.compute.subscribe_shutdown();
            later.mark_unchanged();
            tokio::select! {
                () = tokio::time::sleep(ctx.opts.linger) => {}
                _ = later.changed() => {}
            }
        }
        Some(ShutdownRequest {
            from_http: true, ..
        }) => tokio::time::sleep(RESPONSE_GRACE).await,
        _ => {}
    }
}

/// Applies specs posted to `/configure` while the compute runs; pgbouncer's settings in the
/// background, local_proxy's first (both as upstream: their failures do not fail the
/// configuration).
async fn configurator(ctx: StartContext, pgbouncer: PgbouncerHandle) {
    let mut status = ctx.compute.subscribe();
    loop {
        if status
            .wait_for(|s| *s == ComputeStatus::ConfigurationPending)
            .await
            .is_err()
        {
            return;
        }
        let mut pending = None;
        if ctx
            .compute
            .transition_with(ComputeStatus::Configuration, |s| {
                pending = s.pending_spec.take()
            })
            .is_err()
        {
            continue;
        }
        let Some(spec) = pending else {
            ctx.compute
                .fail("configuration requested without a spec".into());
            return;
        };
        let t = Instant::now();
        pgbouncer.apply(&spec);
        let tls = ctx.tls.as_ref().map(tls::TlsSettings::files);
        local_proxy::apply_at_reconfigure(&ctx.opts.local_proxy_dir, &spec, tls, &ctx.compute);
        match startup::reconfigure(&ctx, &spec).await {
            Ok(()) => {
                tracing::info!(ms = t.elapsed().as_millis() as u64, "reconfiguration done");
                let _ = ctx
                    .compute
                    .transition_with(ComputeStatus::Running, |s| s.spec = Some(spec));
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "reconfiguration failed");
                ctx.compute.fail(format!("{e:#}"));
            }
        }
    }
}
