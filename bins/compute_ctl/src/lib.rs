//! compute_ctl's orchestration: turns a bare container or VM into a running PostgreSQL compute
//! and supervises it until the postmaster exits.
//!
//! Its public surface is the command line ([`cli`]) and [`run`]; everything else is private to
//! the package, split by concern: the startup sequence (`startup`), supervision of the
//! postmaster (`supervisor`), signals (`signals`), spec acquisition (`spec_source`), the
//! compute's shared state and its enforced transitions (`state`), the HTTP API (`http`, one
//! file per route, bodies from `compute_spec::api`) and its JWT auth (`auth`), child
//! processes and readiness detection (`process`), data-directory safety (`pgdata`), the
//! catalog behind the routes (`catalog`; `schema_dump` for `/database_schema`, `insights`,
//! `catalog_changes` for `/grants` and `/extensions`, their error classes in
//! `catalog_request`), the installed-extensions statistics (`installed_extensions`), the LSN
//! lease of a Static compute (`lsn_lease`), the services beside the compute (`pgbouncer`,
//! `local_proxy`), audit logging and log export around postgres (`audit`: preflight, rsyslog,
//! GC) and the vm-informant sidecar. It does not own the spec format or the API types
//! (`compute-spec`),
//! config rendering (`pg-config`), catalog reconciliation and migrations (`pg-reconcile`; it
//! decides only when they run) or the storage protocols (`neon-clients`).
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

mod audit;
mod auth;
mod catalog;
mod catalog_changes;
mod catalog_request;
mod catalog_sessions;
pub mod cli;
mod config_files;
mod control_plane;
mod http;
mod insights;
mod installed_extensions;
mod liveness;
mod local_proxy;
mod lsn_lease;
mod metrics;
mod pgbouncer;
mod pgdata;
mod process;
mod remote_extensions;
mod running_report;
mod schema_dump;
mod signals;
mod spec_file;
mod spec_source;
mod startup;
mod startup_phases;
mod state;
mod supervisor;
mod tls;
mod vm_informant;

use std::sync::Arc;

use anyhow::Context;
use compute_spec::api::ComputeStatus;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::cli::Options;
use crate::http::HttpState;
use crate::process::RunAs;
use crate::startup::StartContext;
pub use crate::startup_phases::note_launch;
use crate::state::Compute;

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
    compute.mark_phase("launch");
    let run_as = resolve_run_as(&opts)?;
    signals::install_signal_handlers(compute.clone())?;
    // As PID 1 or a child subreaper: reaps orphans until the runtime ends.
    let _reaper = process::reap_orphans_if_adopted();
    let mut shutdown = compute.subscribe_shutdown();

    let loaded = tokio::select! {
        loaded = spec_source::load(&opts) => loaded,
        _ = supervisor::requested(&mut shutdown) => {
            tracing::info!("stopped while obtaining the spec");
            let _ = compute.transition(ComputeStatus::Terminated);
            return Ok(0);
        }
    };
    let keys_of = |ctl: &compute_spec::ComputeCtlConfig| {
        Authenticator::from_jwks(&ctl.jwks, opts.compute_id.clone())
            .context("load compute_ctl_config.jwks")
    };
    let tls = loaded
        .as_ref()
        .ok()
        .and_then(|loaded| loaded.ctl.tls.as_ref())
        .map(|files| tls_settings(files, &opts));
    // The keys guard the API even when the spec is refused, if compute_ctl's config was read.
    let (prepared, auth) = match loaded {
        Ok(loaded) => match keys_of(&loaded.ctl) {
            Ok(auth) => (Ok(loaded.spec), auth),
            Err(e) => (Err(e), Authenticator::refusing_all()),
        },
        Err(e) => {
            let auth = e.ctl.as_ref().and_then(|ctl| keys_of(ctl).ok());
            (
                Err(e.error),
                auth.unwrap_or_else(Authenticator::refusing_all),
            )
        }
    };
    if let Ok(Some(spec)) = &prepared {
        spec_source::report_accepted(spec, &opts);
        let _ = compute.transition_with(ComputeStatus::Init, |s| s.spec = Some(spec.clone()));
    }
    let state = HttpState {
        compute: compute.clone(),
        opts: opts.clone(),
        auth: Arc::new(http_auth(auth, &opts)),
        run_as,
        catalog: Arc::new(catalog_sessions::CatalogSessions::new(
            catalog_sessions::CatalogLimits::from_options(&opts),
        )),
    };
    compute.mark_phase("spec");
    let servers = http::Servers::start(&opts, state).await?;
    compute.mark_phase("http");

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
        libraries_probe: Arc::default(),
        tls,
    };
    let code = match prepared {
        Ok(spec) => supervisor::supervise(&ctx, spec, &mut shutdown).await,
        Err(e) => supervisor::fail_and_linger(&ctx, &e.context("obtain spec"), &mut shutdown).await,
    };

    background.cancel();
    if let Some(task) = informant {
        let _ = task.await;
    }
    servers.stop().await;
    Ok(code)
}

/// Postgres's TLS files from compute_ctl's config, with the CLI's wait and watch timings.
fn tls_settings(files: &compute_spec::TlsConfig, opts: &Options) -> tls::TlsSettings {
    tls::TlsSettings {
        key_path: files.key_path.clone().into(),
        cert_path: files.cert_path.clone().into(),
        wait: opts.tls_wait_timeout,
        watch_interval: opts.tls_watch_interval,
    }
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
