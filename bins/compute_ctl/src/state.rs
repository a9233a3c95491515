//! The compute state machine and the state shared between the main task and the HTTP API.
//!
//! ```text
//!            (no spec)                    POST /configure
//!   Empty ────────────────────────────► ConfigurationPending ──┐
//!     │  (spec at start)                      ▲      │         │ (from Empty: main task)
//!     ▼                                       │      ▼         ▼
//!   Init ◄────────────────────────────────────┼── Configuration   Init
//!     │ ok        │ error                     │      │ ok / error
//!     ▼           ▼                           │      ▼
//!   Running ───► Failed (terminal: linger, exit 1)   Running | Failed
//!     │  └───────── POST /configure ──────────┘
//!     │
//!     ▼  POST /terminate, SIGTERM/SIGINT (fast) or SIGQUIT (immediate)
//!   TerminationPendingFast ──(second signal)──► TerminationPendingImmediate
//!     │                                               │
//!     └──────────────► Terminated (postgres exited) ◄─┘
//! ```
//!
//! `Empty → Failed` happens when the spec given at start cannot be read or is invalid.
//! Every other move is refused by [`ComputeStatus::can_become`]. `Empty`, `Init`,
//! `ConfigurationPending`, `Configuration` and `Running` may all go to a termination state
//! (signals can arrive at any time; `/terminate` accepts only `Empty` and `Running`).

use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use compute_spec::{ComputeStatus, ValidatedSpec};
use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::{Metrics, StartupMetrics};

/// Whether `from → to` is a legal move of the state machine (see the module docs).
pub fn can_become(from: ComputeStatus, to: ComputeStatus) -> bool {
    use ComputeStatus::*;
    let terminating = matches!(to, TerminationPendingFast | TerminationPendingImmediate);
    match from {
        Empty => matches!(to, ConfigurationPending | Init | Failed) || terminating,
        ConfigurationPending => matches!(to, Init | Configuration) || terminating,
        Init => matches!(to, Running | Failed) || terminating,
        Running => matches!(to, ConfigurationPending | Failed) || terminating,
        Configuration => matches!(to, Running | Failed) || terminating,
        Failed => false,
        TerminationPendingFast => matches!(to, TerminationPendingImmediate | Terminated),
        TerminationPendingImmediate => to == Terminated,
        Terminated => false,
    }
}

/// A refused state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid compute status: {from}")]
pub struct IllegalTransition {
    /// The current status.
    pub from: ComputeStatus,
    /// The refused target.
    pub to: ComputeStatus,
}

/// How Postgres is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownMode {
    /// SIGINT: disconnect clients, checkpoint, exit.
    Fast,
    /// SIGQUIT: exit at once (crash recovery on the next start).
    Immediate,
}

impl ShutdownMode {
    /// The termination status that goes with this mode.
    pub fn pending_status(self) -> ComputeStatus {
        match self {
            ShutdownMode::Fast => ComputeStatus::TerminationPendingFast,
            ShutdownMode::Immediate => ComputeStatus::TerminationPendingImmediate,
        }
    }
}

/// A request to stop the compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownRequest {
    /// How Postgres is stopped.
    pub mode: ShutdownMode,
    /// Came from `POST /terminate` (the caller waits for the answer; lingering applies)
    /// rather than from a signal.
    pub from_http: bool,
}

/// Outcome of the last reconciliation, per operation, for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplySummary {
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// One entry per operation, in execution order.
    pub operations: Vec<OperationResult>,
}

/// The result of one reconciliation operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperationResult {
    /// What was done, e.g. `create role "alice"`. Never contains a password.
    pub operation: String,
    /// `ok`, `skipped` or `failed`.
    pub result: String,
    /// Error text when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything behind the lock.
#[derive(Debug)]
pub struct ComputeState {
    /// Current status.
    pub status: ComputeStatus,
    /// Why the compute failed.
    pub error: Option<String>,
    /// When startup began (reset when a spec arrives after `Empty`).
    pub start_time: SystemTime,
    /// Monotonic twin of `start_time`, for durations.
    pub start_instant: Instant,
    /// The spec in effect.
    pub spec: Option<ValidatedSpec>,
    /// A spec received by `/configure`, waiting for the main task.
    pub pending_spec: Option<ValidatedSpec>,
    /// Requested shutdown, if any.
    pub shutdown: Option<ShutdownMode>,
    /// Startup timings.
    pub startup: StartupMetrics,
    /// Last reconciliation outcome.
    pub last_apply: Option<ApplySummary>,
    /// LSN flushed by the shutdown sync-safekeepers (Primary with safekeepers).
    pub terminate_lsn: Option<String>,
    /// Settings of the spec in effect left out of postgresql.conf because the postgres binary
    /// does not support them (`--drop-unsupported-settings`).
    pub dropped_settings: Vec<pg_config::DroppedSetting>,
}

/// The shared compute: state behind a mutex, a watch channel announcing each status change,
/// and the Prometheus metrics.
#[derive(Debug)]
pub struct Compute {
    state: Mutex<ComputeState>,
    status_tx: watch::Sender<ComputeStatus>,
    shutdown_tx: watch::Sender<Option<ShutdownRequest>>,
    /// Prometheus registry and families.
    pub metrics: Metrics,
    /// Last activity, written by the compute monitor.
    pub activity: std::sync::Arc<compute_monitor::ActivityTracker>,
}

impl Compute {
    /// A compute in status `Empty`.
    pub fn new() -> Compute {
        let (status_tx, _) = watch::channel(ComputeStatus::Empty);
        let (shutdown_tx, _) = watch::channel(None);
        let metrics = Metrics::new();
        metrics.set_status(ComputeStatus::Empty);
        Compute {
            state: Mutex::new(ComputeState {
                status: ComputeStatus::Empty,
                error: None,
                start_time: SystemTime::now(),
                start_instant: Instant::now(),
                spec: None,
                pending_spec: None,
                shutdown: None,
                startup: StartupMetrics::default(),
                last_apply: None,
                terminate_lsn: None,
                dropped_settings: Vec::new(),
            }),
            status_tx,
            shutdown_tx,
            metrics,
            activity: std::sync::Arc::new(compute_monitor::ActivityTracker::new()),
        }
    }

    /// Runs `f` with the state locked. Keep `f` short: never await inside.
    pub fn with<R>(&self, f: impl FnOnce(&mut ComputeState) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// The current status.
    pub fn status(&self) -> ComputeStatus {
        *self.status_tx.borrow()
    }

    /// A receiver that sees every later status change.
    pub fn subscribe(&self) -> watch::Receiver<ComputeStatus> {
        self.status_tx.subscribe()
    }

    /// Moves to `to` if legal, running `f` on the state under the same lock (so that, e.g.,
    /// the pending spec and the status change together).
    pub fn transition_with(
        &self,
        to: ComputeStatus,
        f: impl FnOnce(&mut ComputeState),
    ) -> Result<(), IllegalTransition> {
        self.with(|state| {
            let from = state.status;
            if !can_become(from, to) {
                return Err(IllegalTransition { from, to });
            }
            f(state);
            state.status = to;
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
    pub fn transition(&self, to: ComputeStatus) -> Result<(), IllegalTransition> {
        self.transition_with(to, |_| {})
    }

    /// Asks the compute to stop: moves to the termination status of `mode` when legal (a
    /// second request may escalate fast to immediate) and wakes the main task. In `Failed` or
    /// `Terminated` only the wake-up happens (a lingering compute exits early).
    pub fn request_shutdown(&self, mode: ShutdownMode, from_http: bool) {
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
    pub fn subscribe_shutdown(&self) -> watch::Receiver<Option<ShutdownRequest>> {
        self.shutdown_tx.subscribe()
    }

    /// Moves to `Failed` with `error` (if legal; a compute already terminating stays so).
    pub fn fail(&self, error: String) {
        let _ = self.transition_with(ComputeStatus::Failed, |state| state.error = Some(error));
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

    const ALL: [ComputeStatus; 9] = [
        Empty,
        ConfigurationPending,
        Init,
        Running,
        Configuration,
        Failed,
        TerminationPendingFast,
        TerminationPendingImmediate,
        Terminated,
    ];

    #[test]
    fn transition_table() {
        let mut table = String::new();
        for from in ALL {
            let to: Vec<&str> = ALL
                .iter()
                .filter(|to| can_become(from, **to))
                .map(|s| s.as_str())
                .collect();
            table.push_str(&format!("{} -> {}\n", from.as_str(), to.join(", ")));
        }
        let expect = "\
empty -> configuration_pending, init, failed, termination_pending_fast, termination_pending_immediate
configuration_pending -> init, configuration, termination_pending_fast, termination_pending_immediate
init -> running, failed, termination_pending_fast, termination_pending_immediate
running -> configuration_pending, failed, termination_pending_fast, termination_pending_immediate
configuration -> running, failed, termination_pending_fast, termination_pending_immediate
failed -> 
termination_pending_fast -> termination_pending_immediate, terminated
termination_pending_immediate -> terminated
terminated -> 
";
        assert_eq!(table, expect);
    }

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
