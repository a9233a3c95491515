//! compute_ctl's orchestration: turns a bare container or VM into a running PostgreSQL compute
//! and supervises it until the postmaster exits.
//!
//! This package owns the startup sequence ([`startup`]), the state machine ([`state`]), the
//! HTTP API ([`http`], [`auth`]), child processes and readiness detection ([`process`]),
//! data-directory safety ([`pgdata`]), signals and the vm-informant sidecar. It does not own
//! the spec format (`compute-spec`), config rendering (`pg-config`), catalog reconciliation
//! (`pg-reconcile`) or the storage protocols (`neon-clients`).
//!
//! ```no_run
//! use clap::Parser;
//! # async fn f() -> anyhow::Result<()> {
//! let cli = compute_ctl::cli::Cli::parse_from([
//!     "compute_ctl", "-D", "/tmp/compute", "-C", "postgresql://cloud_admin@127.0.0.1:55432/postgres",
//!     "-S", "specs/examples/standalone.json", "-b", "/usr/lib/postgresql/15/bin/postgres",
//! ]);
//! let exit_code = compute_ctl::run(cli.into_options()?).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config_files;
pub mod http;
pub mod metrics;
pub mod pgdata;
pub mod process;
pub mod spec_source;
pub mod startup;
pub mod state;
pub mod vm_informant;

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use compute_spec::ComputeStatus;
use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::Authenticator;
use crate::cli::Options;
use crate::http::HttpState;
use crate::metrics::Phase;
use crate::process::{Postmaster, RunAs};
use crate::startup::StartContext;
use crate::state::{Compute, ShutdownMode, ShutdownRequest};

/// How long to stay up after `/terminate?mode=immediate` so that its answer goes out.
const RESPONSE_GRACE: Duration = Duration::from_millis(300);

/// The log filter: `RUST_LOG` (default `info`), except that the database client's own
/// records are kept at `info` or above whatever `RUST_LOG` says: at `debug` tokio-postgres logs
/// query text and parameters, which include password hashes during reconciliation.
pub fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let filter = rust_log
        .and_then(|text| tracing_subscriber::EnvFilter::try_new(text).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    filter.add_directive(
        "tokio_postgres=info"
            .parse()
            .expect("a constant, valid filter directive"),
    )
}

/// Runs compute_ctl: spec, HTTP API, startup, supervision. Returns the process exit code:
/// the postmaster's exit code (128 + signal when killed), 1 after a failed start (once the
/// linger time is over), 0 when stopped before Postgres ran.
///
/// As upstream, the spec and compute_ctl's config are read *before* the HTTP listeners exist,
/// so that a control plane polling `/status` from launch sees `init` (or `empty` when started
/// without a spec) from the first answer. A termination signal interrupts a slow control plane.
pub async fn run(opts: Options) -> anyhow::Result<i32> {
    let opts = Arc::new(opts);
    let compute = Arc::new(Compute::new());
    let run_as = resolve_run_as(&opts)?;
    install_signal_handlers(compute.clone())?;
    let mut shutdown = compute.subscribe_shutdown();

    let loaded = tokio::select! {
        loaded = spec_source::load(&opts) => loaded,
        _ = requested(&mut shutdown) => {
            tracing::info!("stopped while obtaining the spec");
            let _ = compute.transition(ComputeStatus::Terminated);
            return Ok(0);
        }
    };
    let prepared = loaded.and_then(|loaded| {
        let auth = Authenticator::from_jwks(&loaded.ctl.jwks, opts.compute_id.clone())
            .context("load compute_ctl_config.jwks")?;
        Ok((loaded.spec, auth))
    });
    let auth = match &prepared {
        Ok((_, auth)) => auth.clone(),
        Err(_) => Authenticator::refusing_all(),
    };
    if let Ok((Some(spec), _)) = &prepared {
        warn_about_unsupported_fields(spec, &opts);
        let _ = compute.transition_with(ComputeStatus::Init, |s| s.spec = Some(spec.clone()));
    }
    let state = HttpState {
        compute: compute.clone(),
        opts: opts.clone(),
        auth: Arc::new(http_auth(auth, &opts)),
    };
    let servers = http::Servers::start(&opts, state).await?;

    let (prepared, server_support) = match prepared {
        Ok(prepared) if opts.drop_unsupported_settings => {
            match startup::probe_server_support(&opts, run_as).await {
                Ok(support) => (Ok(prepared), Some(Arc::new(support))),
                Err(e) => (Err(e), None),
            }
        }
        other => (other, None),
    };
    let background = CancellationToken::new();
    let informant = vm_informant::spawn(opts.vm_informant.clone(), background.clone());
    let ctx = StartContext {
        compute,
        opts,
        run_as,
        cancel: CancellationToken::new(),
        server_support,
    };
    let code = match prepared {
        Ok((spec, _)) => supervise(&ctx, spec, &mut shutdown).await,
        Err(e) => fail_and_linger(&ctx, &e.context("obtain spec"), &mut shutdown).await,
    };

    background.cancel();
    if let Some(task) = informant {
        let _ = task.await;
    }
    servers.stop().await;
    Ok(code)
}

/// The user Postgres programs run as: `--pg-user` when root; otherwise the flag, if given,
/// must name the current user.
fn resolve_run_as(opts: &Options) -> anyhow::Result<Option<RunAs>> {
    match &opts.pg_user {
        Some(name) if nix::unistd::Uid::effective().is_root() => Ok(Some(RunAs::lookup(name)?)),
        Some(name) => {
            let me = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
                .ok()
                .flatten();
            if me.is_none_or(|u| u.name != *name) {
                anyhow::bail!("--pg-user {name:?} needs compute_ctl to run as root");
            }
            Ok(None)
        }
        None => Ok(None),
    }
}

/// The authentication of the external API: the config's keys; without keys every
/// authenticated route is refused (upstream), unless `--allow-unauthenticated`.
fn http_auth(auth: Authenticator, opts: &Options) -> Option<Authenticator> {
    if auth.has_keys() || !opts.allow_unauthenticated {
        return Some(auth);
    }
    tracing::warn!("no JWK set and --allow-unauthenticated: the external HTTP API is open");
    None
}

/// Spec fields this build does not act on yet: said at start, never silently ignored.
fn warn_about_unsupported_fields(spec: &compute_spec::ValidatedSpec, opts: &Options) {
    if spec.spec().remote_extensions.is_some() {
        tracing::warn!(
            base_url = opts.remote_ext_base_url.as_ref().map(|u| u.as_str()),
            "remote_extensions: remote extensions are not downloaded by this build"
        );
    }
}

fn install_signal_handlers(compute: Arc<Compute>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let requested = tokio::select! {
                _ = term.recv() => ShutdownMode::Fast,
                _ = int.recv() => ShutdownMode::Fast,
                _ = quit.recv() => ShutdownMode::Immediate,
            };
            seen += 1;
            // A second signal escalates.
            let mode = if seen > 1 {
                ShutdownMode::Immediate
            } else {
                requested
            };
            tracing::info!(?mode, signals = seen, "termination signal received");
            compute.request_shutdown(mode, false);
        }
    });
    Ok(())
}

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

async fn requested(rx: &mut watch::Receiver<Option<ShutdownRequest>>) -> ShutdownRequest {
    match rx.wait_for(Option::is_some).await {
        Ok(req) => req.unwrap_or(ShutdownRequest {
            mode: ShutdownMode::Fast,
            from_http: false,
        }),
        Err(_) => std::future::pending().await,
    }
}

/// Fails the compute with `error`, then serves `/status` for the linger time (cut short by a
/// termination request) and returns exit code 1.
async fn fail_and_linger(
    ctx: &StartContext,
    error: &anyhow::Error,
    shutdown: &mut watch::Receiver<Option<ShutdownRequest>>,
) -> i32 {
    tracing::error!(error = format!("{error:#}"), linger = ?ctx.opts.linger, "compute failed");
    ctx.compute.fail(format!("{error:#}"));
    tokio::select! {
        () = tokio::time::sleep(ctx.opts.linger) => {}
        _ = requested(shutdown) => {}
    }
    1
}

/// Runs the compute from the spec given at start, or waits in `Empty` for one from
/// `POST /configure` first.
async fn supervise(
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
    run_compute(ctx, &spec, shutdown).instrument(span).await
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
        s.start_time = SystemTime::now();
        s.start_instant = Instant::now();
    });
    match (moved, spec) {
        (Ok(()), Some(spec)) => {
            warn_about_unsupported_fields(&spec, &ctx.opts);
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
                stop_postmaster(&mut pm, shutdown).await;
            }
            let _ = compute.transition(ComputeStatus::Terminated);
            return 0;
        }
    };
    let mut postmaster = match started {
        Ok(pm) => pm,
        Err(e) => return fail_and_linger(ctx, &e, shutdown).await,
    };
    let total = compute.with(|s| {
        let total = s.start_instant.elapsed();
        s.startup.total_startup_ms = total.as_millis() as u64;
        total
    });
    compute.metrics.observe_phase(Phase::Total, total);
    if compute.transition(ComputeStatus::Running).is_ok() {
        let metrics = compute.with(|s| s.startup);
        tracing::info!(?metrics, "compute start finished");
    }

    let configurator = tokio::spawn(configurator(ctx.clone()));
    let monitor_cancel = CancellationToken::new();
    let monitor = compute_monitor::spawn(
        compute_monitor::MonitorConfig::new(ctx.opts.pg_config.clone()),
        compute.activity.clone(),
        monitor_cancel.clone(),
    );
    let exit = stop_postmaster(&mut postmaster, shutdown).await;
    configurator.abort();
    monitor_cancel.cancel();
    let _ = monitor.await;
    let request = *shutdown.borrow();
    after_postgres_exit(ctx, spec, request, exit).await;
    linger_after_terminate(ctx, request).await;
    process::exit_code(exit)
}

/// Waits for the postmaster to exit. Each stop request is passed on as a signal; a postmaster
/// that ignores it is escalated to SIGQUIT after [`FAST_STOP_LIMIT`] and to SIGKILL after
/// [`IMMEDIATE_STOP_LIMIT`] more.
async fn stop_postmaster(
    postmaster: &mut Postmaster,
    shutdown: &mut watch::Receiver<Option<ShutdownRequest>>,
) -> ExitStatus {
    let mut sent: Option<(Signal, tokio::time::Instant)> = None;
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
/// - any other exit: `Failed` with the exit status.
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
            compute.with(|s| s.terminate_lsn = Some(lsn.to_string()));
        }
    }
    let _ = compute.transition(ComputeStatus::Terminated);
    tracing::info!(%exit, "postgres stopped");
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

/// Applies specs posted to `/configure` while the compute runs.
async fn configurator(ctx: StartContext) {
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

#[cfg(test)]
mod log_filter_tests {
    use super::log_filter;

    #[test]
    fn database_client_never_logs_below_info() {
        for rust_log in [
            None,
            Some("debug"),
            Some("trace"),
            Some("tokio_postgres=trace"),
        ] {
            let filter = log_filter(rust_log).to_string();
            assert!(
                filter.contains("tokio_postgres=info"),
                "{rust_log:?}: {filter}"
            );
            assert!(
                !filter.contains("tokio_postgres=trace"),
                "{rust_log:?}: {filter}"
            );
        }
        assert!(log_filter(Some("debug")).to_string().contains("debug"));
    }
}
