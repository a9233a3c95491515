//! The HTTP API of compute_ctl as data: every request and response body that crosses its
//! boundary, in the shape of Neon's `compute_api` (`responses.rs`, `requests.rs`), plus this
//! project's additions (`activity_reason`, `last_apply`, `dropped_settings`, located
//! diagnostics). compute_ctl serializes these types and nothing else; another tool that talks
//! to compute_ctl can deserialize them. Each derives [`schemars::JsonSchema`]; compute_ctl's
//! `openapi.json` is checked against them by a test.
//!
//! The compute state machine lives here too ([`ComputeStatus`], [`ComputeStatus::can_become`]),
//! since its statuses are what `/status` reports.
//!
//! ```
//! use compute_spec::api::{ComputeStatus, TerminateResponse};
//!
//! assert!(ComputeStatus::Init.can_become(ComputeStatus::Running));
//! assert!(!ComputeStatus::Failed.can_become(ComputeStatus::Running));
//! assert_eq!(ComputeStatus::ConfigurationPending.to_string(), "configuration-pending");
//! let body: TerminateResponse = serde_json::from_str(r#"{"lsn":"0/16B3748"}"#).unwrap();
//! assert_eq!(body.lsn.unwrap().to_string(), "0/16B3748");
//! ```

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Diagnostic, Lsn};

/// The compute's lifecycle state, as reported by `GET /status` (snake_case in JSON; Display is
/// upstream's kebab-case, used in 412 texts and the `compute_ctl_up` label).
///
/// ```text
///            (no spec)                    POST /configure
///   Empty ────────────────────────────► ConfigurationPending ──┐
///     │  (spec at start)                      ▲      │         │ (from Empty: main task)
///     ▼                                       │      ▼         ▼
///   Init ◄────────────────────────────────────┼── Configuration   Init
///     │ ok        │ error                     │      │ ok / error
///     ▼           ▼                           │      ▼
///   Running ───► Failed (linger, then exit 1)        Running | Failed
///     │  └───────── POST /configure ──────────┘
///     │
///     ▼  POST /terminate, a signal, or postgres stopped from outside (from Failed too)
///   TerminationPendingFast ──(second signal)──► TerminationPendingImmediate
///     │                                               │
///     └──────────────► Terminated (postgres exited) ◄─┘
/// ```
///
/// `Empty → Failed` happens when the spec given at start cannot be read or is invalid. Every
/// other move is refused by [`ComputeStatus::can_become`]. `Empty`, `Init`,
/// `ConfigurationPending`, `Configuration`, `Running` and `Failed` may all go to a termination
/// state (signals can arrive at any time; `/terminate` accepts `Empty`, `Running` and, unlike
/// upstream, `Failed`, so that a failed compute is never a dead end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
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
    /// Start or configuration failed; see the error. After `--linger` (or at `/terminate`, a
    /// signal) compute_ctl stops Postgres, if it runs, and exits 1.
    Failed,
    /// A fast stop was requested; Postgres is shutting down.
    TerminationPendingFast,
    /// An immediate stop was requested; Postgres is shutting down.
    TerminationPendingImmediate,
    /// Postgres has exited after a termination request.
    Terminated,
}

impl ComputeStatus {
    /// Every status, in the order of the state machine.
    pub const ALL: [ComputeStatus; 9] = [
        ComputeStatus::Empty,
        ComputeStatus::ConfigurationPending,
        ComputeStatus::Init,
        ComputeStatus::Running,
        ComputeStatus::Configuration,
        ComputeStatus::Failed,
        ComputeStatus::TerminationPendingFast,
        ComputeStatus::TerminationPendingImmediate,
        ComputeStatus::Terminated,
    ];

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

    /// Whether `self → to` is a legal move of the state machine (see the type's docs).
    pub fn can_become(self, to: ComputeStatus) -> bool {
        use ComputeStatus::*;
        let terminating = matches!(to, TerminationPendingFast | TerminationPendingImmediate);
        match self {
            Empty => matches!(to, ConfigurationPending | Init | Failed) || terminating,
            ConfigurationPending => matches!(to, Init | Configuration) || terminating,
            Init => matches!(to, Running | Failed) || terminating,
            Running => matches!(to, ConfigurationPending | Failed) || terminating,
            Configuration => matches!(to, Running | Failed) || terminating,
            Failed => terminating,
            TerminationPendingFast => matches!(to, TerminationPendingImmediate | Terminated),
            TerminationPendingImmediate => to == Terminated,
            Terminated => false,
        }
    }
}

impl fmt::Display for ComputeStatus {
    /// The kebab-case form upstream uses in error messages (`configuration-pending`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', "-"))
    }
}

/// Which kind of activity set `last_active` (this project's addition to `/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActivityReason {
    /// A client backend was not idle (running a query, or idle in a transaction): active now.
    ActiveBackend,
    /// The latest state change of an idle client backend (its last query ended then).
    IdleBackend,
    /// A WAL sender other than the walproposer was connected (logical or physical replica).
    WalSender,
    /// A logical-replication subscription worker was running.
    Subscription,
    /// An autovacuum worker was running.
    Autovacuum,
    /// The `pg_stat_database` session counters changed (catches short-lived connections).
    DatabaseCounters,
}

/// Body of `GET /status` (and of a successful `POST /configure`): upstream's six fields, then
/// ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ComputeStatusResponse {
    /// When the start began (reset when a spec arrives in `empty`), RFC 3339.
    pub start_time: String,
    /// Tenant of the spec, hex; `null` before a spec.
    pub tenant: Option<String>,
    /// Timeline of the spec, hex; `null` before a spec.
    pub timeline: Option<String>,
    /// The status.
    pub status: ComputeStatus,
    /// Last user activity (RFC 3339), `null` until the first.
    pub last_active: Option<String>,
    /// Why the compute failed.
    pub error: Option<String>,
    /// What kind of activity `last_active` is.
    #[serde(default)]
    pub activity_reason: Option<ActivityReason>,
    /// The last reconciliation, per operation.
    #[serde(default)]
    pub last_apply: Option<ApplySummary>,
    /// Settings left out of postgresql.conf as unsupported by the postgres binary
    /// (`--drop-unsupported-settings`); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_settings: Vec<DroppedSetting>,
}

/// Outcome of the last reconciliation, per operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApplySummary {
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// One entry per planned operation, in execution order.
    pub operations: Vec<OperationResult>,
}

/// The result of one reconciliation operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OperationResult {
    /// What was done and why, e.g. `role "alice": create`. Never contains a password.
    pub operation: String,
    /// How it went.
    pub result: OperationOutcome,
    /// The error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How one reconciliation operation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationOutcome {
    /// Applied.
    Ok,
    /// Refused by the server; see `error`.
    Failed,
    /// Not attempted: an earlier phase failed.
    NotRun,
}

impl OperationOutcome {
    /// The JSON spelling (`ok`, `failed`, `not_run`), also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationOutcome::Ok => "ok",
            OperationOutcome::Failed => "failed",
            OperationOutcome::NotRun => "not_run",
        }
    }
}

/// How `POST /terminate` stops Postgres (`?mode=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TerminateMode {
    /// Fast shutdown; compute_ctl serves its final status for the linger time afterwards.
    #[default]
    Fast,
    /// Fast shutdown too (as upstream); compute_ctl exits as soon as the answer is out.
    Immediate,
}

impl TerminateMode {
    /// The status a request of this mode moves the compute to.
    pub fn pending_status(self) -> ComputeStatus {
        match self {
            TerminateMode::Fast => ComputeStatus::TerminationPendingFast,
            TerminateMode::Immediate => ComputeStatus::TerminationPendingImmediate,
        }
    }
}

/// Body of a successful `POST /terminate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TerminateResponse {
    /// The LSN the shutdown sync-safekeepers flushed (a Primary with safekeepers), else `null`.
    pub lsn: Option<Lsn>,
}

/// Body of `GET /metrics.json`: startup timings, upstream's keys, every one always present
/// (0 when the step did not run); `initdb_ms` and `startup_phases` are ours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ComputeMetrics {
    /// Time spent waiting for `/configure` in `empty` (excluded from `total_startup_ms`).
    pub wait_for_spec_ms: u64,
    /// Full sync-safekeepers.
    pub sync_safekeepers_ms: u64,
    /// The safekeeper fast path (`TIMELINE_STATUS`).
    pub sync_sk_check_ms: u64,
    /// Connecting to the pageserver.
    pub pageserver_connect_micros: u64,
    /// Basebackup download and unpack.
    pub basebackup_ms: u64,
    /// Bytes of the basebackup stream.
    pub basebackup_bytes: u64,
    /// Start of `postgres` until `ready`.
    pub start_postgres_ms: u64,
    /// Catalog configuration (reconcile).
    pub config_ms: u64,
    /// From start (or spec receipt) to `running`.
    pub total_startup_ms: u64,
    /// Time to download the remote extensions of the preload libraries before Postgres
    /// started, in ms (0 without `--remote-ext-base-url` and `remote_extensions`).
    pub load_ext_ms: u64,
    /// Remote extension archives downloaded before Postgres started.
    pub num_ext_downloaded: u64,
    /// Largest of those archives, in bytes (compressed).
    pub largest_ext_size: u64,
    /// Total size of those archives, in bytes (compressed).
    pub total_ext_download_size: u64,
    /// `initdb` in standalone mode.
    #[serde(default)]
    pub initdb_ms: u64,
    /// The whole start, from compute_ctl's launch to `running`, cut into contiguous phases
    /// that add up to its wall time (filled as the start goes).
    #[serde(default)]
    pub startup_phases: Vec<StartupPhase>,
}

/// One phase of a start (`ComputeMetrics::startup_phases`): it begins where the previous one
/// ended, so the phases add up to the wall time from launch to `running`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StartupPhase {
    /// `launch`, `spec`, `http`, `wait_for_spec`, `prepare`, `initdb`, `sync_safekeepers`,
    /// `basebackup`, `config`, `start_postgres`, `catalog` or `running`.
    pub phase: String,
    /// Microseconds from compute_ctl's launch to the start of the phase.
    pub start_us: u64,
    /// Length of the phase in microseconds.
    pub duration_us: u64,
}

/// Body of `GET /dbs_and_roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DbsAndRoles {
    /// Roles other than PostgreSQL's own `pg_*` roles.
    pub roles: Vec<ListedRole>,
    /// Databases other than templates.
    pub databases: Vec<ListedDatabase>,
}

/// A role as listed by `/dbs_and_roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListedRole {
    /// Name.
    pub name: String,
    /// Always `null`: password hashes are never served.
    pub encrypted_password: Option<String>,
    /// Always `null`.
    pub options: Option<Vec<crate::GenericOption>>,
}

/// A database as listed by `/dbs_and_roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListedDatabase {
    /// Name.
    pub name: String,
    /// Owner role.
    pub owner: String,
    /// Always `null`.
    pub options: Option<Vec<crate::GenericOption>>,
    /// Connections are not allowed (`NOT datallowconn`).
    pub restrict_conn: bool,
    /// Left invalid by an interrupted drop.
    pub invalid: bool,
}

/// A privilege `POST /grants` can give on a schema; upstream's list (`privilege.rs`), spelled
/// in upper case in JSON. PostgreSQL accepts only `USAGE` and `CREATE` on a schema: the others
/// are refused by the server (400 with its reason), as upstream forwards them too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Privilege {
    /// `SELECT`.
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `TRUNCATE`.
    Truncate,
    /// `REFERENCES`.
    References,
    /// `TRIGGER`.
    Trigger,
    /// `USAGE`.
    Usage,
    /// `CREATE`.
    Create,
    /// `CONNECT`.
    Connect,
    /// `TEMPORARY`.
    Temporary,
    /// `EXECUTE`.
    Execute,
}

impl Privilege {
    /// Every privilege, in upstream's order.
    pub const ALL: [Privilege; 12] = [
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Truncate,
        Privilege::References,
        Privilege::Trigger,
        Privilege::Usage,
        Privilege::Create,
        Privilege::Connect,
        Privilege::Temporary,
        Privilege::Execute,
    ];

    /// The SQL keyword (also the JSON spelling and `aclexplode`'s `privilege_type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::References => "REFERENCES",
            Privilege::Trigger => "TRIGGER",
            Privilege::Usage => "USAGE",
            Privilege::Create => "CREATE",
            Privilege::Connect => "CONNECT",
            Privilege::Temporary => "TEMPORARY",
            Privilege::Execute => "EXECUTE",
        }
    }
}

/// Body of the internal `POST /grants` (upstream's `SetRoleGrantsRequest`): give `role` the
/// `privileges` on `schema` of `database` that it does not hold yet. Its 201 answer echoes
/// the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SetRoleGrantsRequest {
    /// The database the schema is in.
    pub database: String,
    /// The schema.
    pub schema: String,
    /// What to grant.
    pub privileges: Vec<Privilege>,
    /// The grantee.
    pub role: String,
}

/// Body of a successful `POST /grants` (201): the request, echoed (upstream's
/// `SetRoleGrantsResponse`).
pub type SetRoleGrantsResponse = SetRoleGrantsRequest;

/// Body of the internal `POST /extensions` (upstream's `ExtensionInstallRequest`): have
/// `extension` at `version` in `database` — nothing when it is, `ALTER EXTENSION … UPDATE`
/// when another version is installed, else `CREATE EXTENSION` in schema `public`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExtensionInstallRequest {
    /// The extension's name.
    pub extension: String,
    /// The database.
    pub database: String,
    /// The wanted version.
    pub version: String,
}

/// Body of a successful `POST /extensions` (201, upstream's `ExtensionInstallResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExtensionInstallResponse {
    /// The extension's name.
    pub extension: String,
    /// The version now installed.
    pub version: String,
}

/// The body of the probes `GET /healthz` (liveness) and `GET /readyz` (readiness): the
/// compute's status and, in a refusal (503), why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProbeResponse {
    /// The compute's current status.
    pub status: ComputeStatus,
    /// Why the probe fails; absent when it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of every error answer: `{"error": "…"}`, upstream's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// The body of a refused spec (`POST /configure` 400 or 422): upstream's `error` plus every
/// finding, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ValidationErrorBody {
    /// Summary.
    pub error: String,
    /// Every finding.
    pub diagnostics: Vec<Diagnostic>,
}

/// Where a setting comes from in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "in", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SettingSource {
    /// A line of `cluster.postgresql_conf`.
    PostgresqlConf {
        /// Line number, from 1.
        line: usize,
    },
    /// An entry of `cluster.settings`.
    Settings {
        /// Its JSON pointer, `/cluster/settings/N`.
        pointer: String,
    },
}

impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingSource::PostgresqlConf { line } => {
                write!(f, "line {line} of /cluster/postgresql_conf")
            }
            SettingSource::Settings { pointer } => f.write_str(pointer),
        }
    }
}

/// Why a setting is dropped or rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// The name has no dot and the binary does not know it.
    UnknownSetting,
    /// Library list entries naming libraries that are not installed.
    MissingLibraries {
        /// The missing entries, as named in the list (without quotes).
        libraries: Vec<String>,
        /// Where they were looked for.
        libdir: String,
    },
    /// `synchronous_standby_names` waits for the walproposer, which this installation lacks:
    /// every commit would wait forever.
    NoWalproposer,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::UnknownSetting => f.write_str("unknown to this postgres binary"),
            DropReason::MissingLibraries { libraries, libdir } => {
                let plural = if libraries.len() == 1 { "y" } else { "ies" };
                write!(f, "librar{plural} {} not in {libdir}", libraries.join(", "))
            }
            DropReason::NoWalproposer => {
                f.write_str("no walproposer (neon library) to be the synchronous standby")
            }
        }
    }
}

/// A spec setting the postgres binary does not support: dropped, or rewritten without some
/// entries (`--drop-unsupported-settings`; decided by `pg-config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DroppedSetting {
    /// The name as written.
    pub name: String,
    /// Where it is in the spec.
    pub source: SettingSource,
    /// The value as written (unquoted).
    pub value: String,
    /// What is written instead (a library list without the missing entries), or `None` when
    /// nothing is.
    pub kept_value: Option<String>,
    /// Why.
    pub reason: DropReason,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table() {
        let mut table = String::new();
        for from in ComputeStatus::ALL {
            let to: Vec<&str> = ComputeStatus::ALL
                .iter()
                .filter(|to| from.can_become(**to))
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
failed -> termination_pending_fast, termination_pending_immediate
termination_pending_fast -> termination_pending_immediate, terminated
termination_pending_immediate -> terminated
terminated -> 
";
        assert_eq!(table, expect);
    }

    #[test]
    fn spellings_round_trip() {
        for status in ComputeStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(
                serde_json::from_str::<ComputeStatus>(&json).unwrap(),
                status
            );
            assert_eq!(status.to_string(), status.as_str().replace('_', "-"));
        }
        for outcome in [
            OperationOutcome::Ok,
            OperationOutcome::Failed,
            OperationOutcome::NotRun,
        ] {
            assert_eq!(
                serde_json::to_string(&outcome).unwrap(),
                format!("\"{}\"", outcome.as_str())
            );
        }
        let body = TerminateResponse {
            lsn: Some("0/16B3748".parse().unwrap()),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"lsn":"0/16B3748"}"#
        );
        assert_eq!(
            serde_json::to_string(&TerminateResponse { lsn: None }).unwrap(),
            r#"{"lsn":null}"#
        );
        for privilege in Privilege::ALL {
            let json = format!("\"{}\"", privilege.as_str());
            assert_eq!(serde_json::to_string(&privilege).unwrap(), json);
            assert_eq!(serde_json::from_str::<Privilege>(&json).unwrap(), privilege);
        }
        assert!(serde_json::from_str::<Privilege>(r#""ALL""#).is_err());
        assert!(serde_json::from_str::<Privilege>(r#""usage""#).is_err());
    }
}
