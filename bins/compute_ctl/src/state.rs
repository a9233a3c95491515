//! The compute's shared state: its status, changed only through [`Compute::transition`] and
//! [`Compute::transition_with`], which refuse the moves [`ComputeStatus::can_become`] does not
//! allow (the state machine and its diagram are documented on [`ComputeStatus`] in
//! `compute_spec::api`); the data behind a mutex ([`ComputeData`], which holds no status); stop
//! requests; the Prometheus metrics and the activity tracker.

use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use compute_spec::ValidatedSpec;
use compute_spec::api::{
    ApplySummary, ComputeMetrics, ComputeStatus, DroppedSetting, TerminateMode,
};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// A refused state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid compute status: {from}")]
pub(crate) struct IllegalTransition {
    /// The current status.
    pub(crate) from: ComputeStatus,
    /// The refused target.
    pub(crate) to: ComputeStatus,
}

/// How Postgres is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShutdownMode {
    /// SIGINT: disconnect clients, checkpoint, exit.
    Fast,
    /// SIGQUIT: exit at once (crash recovery on the next start).
    Immediate,
}

impl ShutdownMode {
    /// The termination status that goes with this mode.
    pub(crate) fn pending_status(self) -> ComputeStatus {
        match self {
            ShutdownMode::Fast => TerminateMode::Fast.pending_status(),
            ShutdownMode::Immediate => TerminateMode::Immediate.pending_status(),
        }
    }
}

impl From<TerminateMode> for ShutdownMode {
    fn from(mode: TerminateMode) -> ShutdownMode {
        match mode {
            TerminateMode::Fast => ShutdownMode::Fast,
            TerminateMode::Immediate => ShutdownMode::Immediate,
        }
    }
}

/// A request to stop the compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShutdownRequest {
    /// How Postgres is stopped.
    pub(crate) mode: ShutdownMode,
    /// Came from `POST /terminate` (the caller waits for the answer; lingering applies)
    /// rather than from a signal.
    pub(crate) from_http: bool,
}

/// Everything behind the lock but the status.
#[derive(Debug)]
pub(crate) struct ComputeData {
    /// Why the compute failed.
    pub(crate) error: Option<String>,
    /// When startup began (reset when a spec arrives after `Empty`).
    pub(crate) start_time: SystemTime,
    /// Monotonic twin of `start_time`, for durations.
    pub(crate) start_instant: Instant,
    /// The spec in effect.
    pub(crate) spec: Option<ValidatedSpec>,
    /// A spec received by `/configure`, waiting for the main task.
    pub(crate) pending_spec: Option<ValidatedSpec>,
    /// Requested shutdown, if any.
    pub(crate) shutdown: Option<ShutdownMode>,
    /// Startup timings (their `startup_phases` left empty: [`ComputeData::metrics`] fills it
    /// from `clock`).
    pub(crate) startup: ComputeMetrics,
    /// The start's wall clock, from launch.
    pub(crate) clock: crate::startup_phases::PhaseClock,
    /// Last reconciliation outcome.
    pub(crate) last_apply: Option<ApplySummary>,
    /// LSN flushed by the shutdown sync-safekeepers (Primary with safekeepers).
    pub(crate) terminate_lsn: Option<compute_spec::Lsn>,
    /// Settings of the spec in effect left out of postgresql.conf because the postgres binary
    /// does not support them (`--drop-unsupported-settings`).
    pub(crate) dropped_settings: Vec<DroppedSetting>,
}

impl ComputeData {
    /// Ends the start's phase `phase` now.
    pub(crate) fn mark_phase(&mut self, phase: &str) {
        self.clock.mark(phase, Instant::now());
    }

    /// The startup metrics as `/metrics.json` answers them, with the phases so far.
    pub(crate) fn metrics(&self) -> ComputeMetrics {
        ComputeMetrics {
            startup_phases: self.clock.phases().to_vec(),
            ..self.startup.clone()
        }
    }
}

/// The shared compute: the status (in a watch channel that announces each change), the data
/// behind a mutex, stop requests, and the Prometheus metrics.
#[derive(Debug)]
pub(crate) struct Compute {
    data: Mutex<ComputeData>,
    status_tx: watch::Sender<ComputeStatus>,
    shutdown_tx: watch::Sender<Option<ShutdownRequest>>,
    /// Prometheus registry and families.
    pub(crate) metrics: Metrics,
    /// Last activity, written by the compute monitor.
    pub(crate) activity: std::sync::Arc<compute_monitor::ActivityTracker>,
    /// Remote extensions: the installation's directories and the downloads done.
    pub(crate) remote_extensions: crate::remote_extensions::RemoteExtensions,
    /// The postmaster's supervision beats this while it waits (`GET /healthz`).
    pub(crate) supervision: crate::liveness::Heartbeat,
}

impl Compute {
    /// A compute in status `Empty`.
    pub(crate) fn new() -> Compute {
        let (status_tx, _) = watch::channel(ComputeStatus::Empty);
        let (shutdown_tx, _) = watch::channel(None);
        let metrics = Metrics::new();
        metrics.set_status(ComputeStatus::Empty);
        Compute {
            data: Mutex::new(ComputeData {
                error: None,
                start_time: SystemTime::now(),
                start_instant: Instant::now(),
                spec: None,
                pending_spec: None,
                shutdown: None,
                startup: ComputeMetrics::default(),
                clock: crate::startup_phases::PhaseClock::new(crate::startup_phases::launched()),
                last_apply: None,
                terminate_lsn: None,
                dropped_settings: Vec::new(),
            }),
            status_tx,
            shutdown_tx,
            metrics,
            activity: std::sync::Arc::new(compute_monitor::ActivityTracker::new()),
            remote_extensions: Default::default(),
            supervision: Default::default(),
        }
    }

    /// Ends the start's phase `phase` now (`startup_phases`).
    pub(crate) fn mark_phase(&self, phase: &str) {
        self.with(|s| s.mark_phase(phase));
    }

    /// Runs `f` with the data locked. Keep `f` short: never await inside.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut ComputeData) -> R) -> R {
        let mut guard = self.data.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// The current status.
    pub(crate) fn status(&self) -> ComputeStatus {
        *self.status_tx.borrow()
    }

    /// A receiver that sees every later status change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<ComputeStatus> {
        self.status_tx.subscribe()
    }

    /// Moves to `to` if legal, running `f` on the data under the same lock (so that, e.g.,
    /// the pending spec and the status change together).
    pub(crate) fn transition_with(
        &self,
        to: ComputeStatus,
        f: impl FnOnce(&mut ComputeData),
    ) -> Result<(), IllegalTransition> {
        self.with(|data| {
            let from = self.status();
            if !from.can_become(to) {
                return Err(IllegalTransition { from, to });
            }
            f(data);
            tracing::info!(
                from = from.as_str(),
                to = to.as_str(),
                "compute status changed"
            );
            self.metrics.set_status(to);
            self.status_tx.send_replace(to);
            Ok(())
        })
    }

    /// Moves to `to` if legal.
    pub(crate) fn transition(&self, to: ComputeStatus) -> Result<(), IllegalTransition> {
        self.transition_with(to, |_| {})
    }

    /// Asks the compute to stop: moves to the termination status of `mode` when legal (a
    /// second request may escalate fast to immediate) and wakes the main task. In `Terminated`
    /// only the wake-up happens (a lingering compute exits early).
    pub(crate) fn request_shutdown(&self, mode: ShutdownMode, from_http: bool) {
        let mode = self.with(|s| match (s.shutdown, mode) {
            (Some(ShutdownMode::Immediate), _) => ShutdownMode::Immediate,
            _ => mode,
        });
        let _ = self.transition_with(mode.pending_status(), |s| s.shutdown = Some(mode));
        self.with(|s| s.shutdown = Some(mode));
        self.shutdown_tx
            .send_replace(Some(ShutdownRequest { mode, from_http }));
    }

    /// A receiver of shutdown requests.
    pub(crate) fn subscribe_shutdown(&self) -> watch::Receiver<Option<ShutdownRequest>> {
        self.shutdown_tx.subscribe()
    }

    /// Moves to `Failed` with `error` (if legal; a compute already terminating stays so).
    pub(crate) fn fail(&self, error: String) {
        let _ = self.transition_with(ComputeStatus::Failed, |data| data.error = Some(error));
    }
}

impl Default for Compute {
    fn default() -> Self {
        Compute::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ComputeStatus::*;

    #[test]
    fn illegal_moves_change_nothing_and_are_not_announced() {
        let compute = Compute::new();
        let rx = compute.subscribe();
        let err = compute.transition(Running).unwrap_err();
        assert_eq!(err.to_string(), "invalid compute status: empty");
        assert_eq!(compute.status(), Empty);
        assert!(!rx.has_changed().unwrap());
        compute.transition(Init).unwrap();
        compute.fail("boom".into());
        assert_eq!(compute.status(), Failed);
        assert_eq!(compute.with(|s| s.error.clone()).as_deref(), Some("boom"));
        assert!(compute.transition(Running).is_err());
    }
}
