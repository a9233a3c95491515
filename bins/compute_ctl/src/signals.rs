//! Termination signals: SIGTERM and SIGINT ask for a fast stop, SIGQUIT for an immediate
//! one, and any second signal escalates to immediate. Each becomes a stop request on the
//! compute ([`Compute::request_shutdown`]), which the supervisor passes on to Postgres.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use crate::state::{Compute, ShutdownMode};

/// Installs the handlers (before anything else can block, so that a signal always works).
pub(crate) fn install_signal_handlers(compute: Arc<Compute>) -> anyhow::Result<()> {
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
