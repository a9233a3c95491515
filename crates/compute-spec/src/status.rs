//! HTTP payload types shared with control planes: the compute status and its string forms.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The compute's lifecycle state, as reported by `GET /status` (snake_case in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeStatus {
    /// Started without a spec; waiting for `POST /configure`.
    Empty,
    /// A spec was received by `/configure`; the main task will pick it up.
    ConfigurationPending,
    /// Preparing the data directory and starting Postgres.
    Init,
    /// Postgres runs and is configured.
    Running,
    /// Applying a new spec to a running compute.
    Configuration,
    /// Start or configuration failed; see the error.
    Failed,
    /// `/terminate?mode=fast` received; Postgres is shutting down.
    TerminationPendingFast,
    /// `/terminate?mode=immediate` received; Postgres is shutting down.
    TerminationPendingImmediate,
    /// Postgres has exited after a termination request.
    Terminated,
}

impl ComputeStatus {
    /// The snake_case form used in JSON (`configuration_pending`).
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeStatus::Empty => "empty",
            ComputeStatus::ConfigurationPending => "configuration_pending",
            ComputeStatus::Init => "init",
            ComputeStatus::Running => "running",
            ComputeStatus::Configuration => "configuration",
            ComputeStatus::Failed => "failed",
            ComputeStatus::TerminationPendingFast => "termination_pending_fast",
            ComputeStatus::TerminationPendingImmediate => "termination_pending_immediate",
            ComputeStatus::Terminated => "terminated",
        }
    }
}

impl fmt::Display for ComputeStatus {
    /// The kebab-case form upstream uses in error messages (`configuration-pending`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', "-"))
    }
}
