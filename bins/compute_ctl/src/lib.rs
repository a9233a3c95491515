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

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

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
use crate::process::RunAs;
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

/// Runs compute_ctl: HTTP API, spec, startup, supervision. Returns the process exit code:
/// the postmaster's exit code (128 + signal when killed), 1 after a failed start (once the
/// linger time is over), 0 when stopped before Postgres ran.
pub async fn run(opts: Options) -> anyhow::Result<i32> {
    let opts = Arc::new(opts);
    let compute = Arc::new(Compute::new());
    let run_as = match &opts.pg_user {
        Some(name) if nix::unistd::Uid::effective().is_root() => Some(RunAs::lookup(name)?),
        Some(name) => {
            let me = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
                .ok()
                .flatten();
            if me.is_none_or(|u| u.name != *name) {
                anyhow::bail!("--pg-user {name:?} needs compute_ctl to run as root");
            }
            None
        }
        None => None,
    };
    install_signal_handlers(compute.clone())?;

    let auth = Arc::new(RwLock::new(None));
    let state = HttpState {
        compute: compute.clone(),
        opts: opts.clone(),
        auth: auth.clone(),
    };
    let external = http::serve(
        SocketAddr::new(opts.http_bind, opts.external_http_port),
        http::external_router(state.clone()),
        "external",
    )
    .await?;
    let internal = http::serve(
        SocketAddr::new(opts.http_bind, opts.internal_http_port),
        http::internal_router(state),
        "internal",
    )
    .await?;

    let background = CancellationToken::new();
    let informant = vm_informant::spawn(opts.vm_informant.clone(), background.clone());
    let ctx = StartContext {
        compute,
        opts,
        run_as,
        cancel: CancellationToken::new(),
    };
    let code = supervise(&ctx, &auth).await;

    background.cancel();
    if let Some(task) = informant {
        let _ = task.await;
    }
    external.abort();
    internal.abort();
    Ok(code)
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

fn postgres_signal(mode: ShutdownMode) -> Signal {
    match mode {
        ShutdownMode::Fast => Signal::SIGINT,
        ShutdownMode::Immediate => Signal::SIGQUIT,
    }
}

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

async fn supervise(ctx: &StartContext, auth: &RwLock<Option<Authenticator>>) -> i32 {
    let compute = &ctx.compute;
    let mut shutdown = compute.subscribe_shutdown();

    let loaded = match spec_source::load(&ctx.opts).await {
        Ok(loaded) => loaded,
        Err(e) => return fail_and_linger(ctx, &e.context("obtain spec"), &mut shutdown).await,
    };
    match Authenticator::from_jwks(&loaded.ctl.jwks, ctx.opts.compute_id.clone()) {
        Ok(a) => {
            if a.is_none() && !ctx.opts.http_bind.is_loopback() {
                tracing::warn!(bind = %ctx.opts.http_bind, "no JWK set configured: the external HTTP API is unauthenticated");
            }
            *auth.write().unwrap_or_else(|e| e.into_inner()) = a;
        }
        Err(e) => {
            return fail_and_linger(
                ctx,
                &anyhow::Error::new(e).context("load compute_ctl_config.jwks"),
                &mut shutdown,
            )
            .await;
        }
    }

    let spec = match loaded.spec {
        Some(spec) => {
            let _ = compute.transition_with(ComputeStatus::Init, |s| s.spec = Some(spec.clone()));
            spec
        }
        None => {
            tracing::info!("no spec yet: waiting for POST /configure");
            let waited = Instant::now();
            let mut status = compute.subscribe();
            tokio::select! {
                _ = status.wait_for(|s| *s == ComputeStatus::ConfigurationPending) => {}
                _ = requested(&mut shutdown) => {
                    let _ = compute.transition(ComputeStatus::Terminated);
                    tokio::time::sleep(RESPONSE_GRACE).await;
                    return 0;
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
                (Ok(()), Some(spec)) => spec,
                _ => {
                    // A termination request won the race.
                    let _ = compute.transition(ComputeStatus::Terminated);
                    return 0;
                }
            }
        }
    };
    let span = tracing::info_span!(
        "compute",
        tenant = spec.storage().tenant_id.map(|t| t.to_string()),
        timeline = spec.storage().timeline_id.map(|t| t.to_string()),
    );
    run_compute(ctx, &spec, &mut shutdown)
        .instrument(span)
        .await
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
                pm.signal(postgres_signal(request.mode));
                pm.wait().await;
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
    let exit = loop {
        if let Some(request) = *shutdown.borrow_and_update() {
            postmaster.signal(postgres_signal(request.mode));
        }
        tokio::select! {
            status = postmaster.wait() => break status,
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break postmaster.wait().await;
                }
            }
        }
    };
    configurator.abort();
    monitor_cancel.cancel();
    let _ = monitor.await;
    let code = process::exit_code(exit);
    let request = *shutdown.borrow();
    if matches!(
        compute.status(),
        ComputeStatus::TerminationPendingFast | ComputeStatus::TerminationPendingImmediate
    ) {
        if let Some(lsn) = startup::shutdown_sync(ctx, spec).await {
            compute.with(|s| s.terminate_lsn = Some(lsn.to_string()));
        }
        let _ = compute.transition(ComputeStatus::Terminated);
        tracing::info!(%exit, "postgres stopped");
    } else {
        tracing::error!(%exit, "postgres exited unexpectedly");
        compute.fail(format!("postgres exited unexpectedly ({exit})"));
    }
    match request {
        Some(ShutdownRequest {
            mode: ShutdownMode::Fast,
            from_http: true,
        }) => {
            let mut later = compute.subscribe_shutdown();
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
    code
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
