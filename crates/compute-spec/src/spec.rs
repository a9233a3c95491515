//! The ComputeSpec document ("cluster spec") and everything inside it, as serde types.
//!
//! Field names, optionality and defaults follow upstream's `libs/compute_api/src/spec.rs`
//! (both the early-2023 and the newest shape). Unknown fields are accepted, as upstream does,
//! but kept in each object's `unknown_fields` so that they can be reported and round-trip.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Lsn, TenantId, TimelineId};

/// Fields of an object that this crate does not know, kept verbatim (name → JSON value).
pub type UnknownFields = BTreeMap<String, serde_json::Value>;

/// The cluster spec: everything a compute needs to know to start and to configure Postgres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComputeSpec {
    /// Always `1.0`; not interpreted.
    pub format_version: f32,
    /// Legacy (early 2023, then removed upstream): when the spec was made. Unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Id of the control-plane operation that produced this spec; logged only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_uuid: Option<String>,
    /// Feature flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<ComputeFeature>,
    /// Swap size to set on bind (VMs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_size_bytes: Option<u64>,
    /// Disk quota to set (VMs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_quota_bytes: Option<u64>,
    /// When true, the vm-monitor is not allowed to resize the local file cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_lfc_resizing: Option<bool>,
    /// Roles, databases and settings of the Postgres cluster.
    pub cluster: Cluster,
    /// Imperative changes (renames and deletions) to apply before converging to `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_operations: Option<Vec<DeltaOp>>,
    /// Skip all role, database and extension SQL at start and on reconfiguration.
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_pg_catalog_updates: bool,
    /// The tenant; otherwise taken from the `neon.tenant_id` setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    /// The timeline; otherwise taken from the `neon.timeline_id` setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline_id: Option<TimelineId>,
    /// How to reach the pageserver(s), modern form. Preferred over `pageserver_connstring`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pageserver_connection_info: Option<PageserverConnectionInfo>,
    /// Legacy form: comma-separated libpq connection strings, one per shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pageserver_connstring: Option<String>,
    /// Stripe size in pages, for the legacy sharded form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_stripe_size: Option<u32>,
    /// Written as `neon.project_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Written as `neon.branch_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<String>,
    /// Written as `neon.endpoint_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// Safekeeper membership generation; prefixes `neon.safekeepers` with `g#<N>:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safekeepers_generation: Option<u32>,
    /// `host:port` of each safekeeper; otherwise taken from the `neon.safekeepers` setting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safekeeper_connstrings: Vec<String>,
    /// Primary (read-write), Replica (hot standby following the latest LSN) or Static (read-only
    /// at a fixed LSN).
    #[serde(default, skip_serializing_if = "ComputeMode::is_primary")]
    pub mode: ComputeMode,
    /// JWT used as the password towards pageserver and safekeepers; handed to Postgres as
    /// `NEON_AUTH_TOKEN`. A secret: never log it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_auth_token: Option<String>,
    /// Extensions that can be downloaded on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_extensions: Option<RemoteExtSpec>,
    /// Settings written into pgbouncer.ini, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub pgbouncer_settings: Option<IndexMap<String, String>>,
    /// Configuration of the local_proxy sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_proxy_config: Option<LocalProxySpec>,
    /// Parallel per-database connections used when reconfiguring a running compute.
    #[serde(default = "default_reconfigure_concurrency")]
    pub reconfigure_concurrency: usize,
    /// Drop all logical-replication subscriptions once per timeline before start.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drop_subscriptions_before_start: bool,
    /// pgaudit level.
    #[serde(default, skip_serializing_if = "ComputeAudit::is_disabled")]
    pub audit_log_level: ComputeAudit,
    /// rsyslog forwarding target for Postgres logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_export_host: Option<String>,
    /// Endpoint storage address, for LFC prewarm/offload state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_storage_addr: Option<String>,
    /// Token for endpoint storage. A secret: never log it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_storage_token: Option<String>,
    /// Prewarm the local file cache after start.
    #[serde(default, skip_serializing_if = "is_false")]
    pub autoprewarm: bool,
    /// Period of LFC state upload, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload_lfc_interval_seconds: Option<NonZeroU64>,
    /// Auto-suspend timeout. Required by the newest upstream, absent from early specs, hence
    /// optional here; `-1` and `0` mean the default (3600 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_timeout_seconds: Option<i64>,
    /// Legacy (early 2023): OpenTelemetry carrier (`traceparent`, `tracestate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_tracing_context: Option<BTreeMap<String, String>>,
    /// Databricks-only settings, kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databricks_settings: Option<serde_json::Value>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub unknown_fields: UnknownFields,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_reconfigure_concurrency() -> usize {
    1
}

/// Roles, databases and settings of the Postgres cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Cluster {
    /// The project id; logged only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Display name; unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Control-plane state; unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Roles that must exist.
    pub roles: Vec<Role>,
    /// Databases that must exist.
    pub databases: Vec<Database>,
    /// A whole postgresql.conf text, written verbatim at the top of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgresql_conf: Option<String>,
    /// postgresql.conf settings (GUCs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Vec<GenericOption>>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub unknown_fields: UnknownFields,
}

/// A role (user) that must exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Role {
    /// Role name, at most 63 bytes.
    pub name: String,
    /// Pre-hashed password: md5 hex (with or without the `md5` prefix) or a SCRAM-SHA-256
    /// verifier. `None` means no password. A secret: never log it.
    #[serde(default)]
    pub encrypted_password: Option<String>,
    /// Role attributes, e.g. `{"name":"CREATEDB","vartype":"bool"}`.
    #[serde(default)]
    pub options: Option<Vec<GenericOption>>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub unknown_fields: UnknownFields,
}

/// A database that must exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Database {
    /// Database name, at most 63 bytes.
    pub name: String,
    /// Owning role: a spec role or a role the compute provides.
    pub owner: String,
    /// Creation options, e.g. `LC_COLLATE`, `TEMPLATE`.
    #[serde(default)]
    pub options: Option<Vec<GenericOption>>,
    /// Derived, never read from a spec: the database does not allow connections.
    #[serde(default, skip_deserializing, skip_serializing_if = "is_false")]
    pub restrict_conn: bool,
    /// Derived, never read from a spec: the database was left invalid by an interrupted drop.
    #[serde(default, skip_deserializing, skip_serializing_if = "is_false")]
    pub invalid: bool,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub unknown_fields: UnknownFields,
}

/// A named option with an optional value and a type tag, used for settings, role options and
/// database options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GenericOption {
    /// Option name.
    pub name: String,
    /// Option value; `None` renders the bare name.
    #[serde(default)]
    pub value: Option<String>,
    /// Type tag: `string`, `bool`, `integer`, `real`, `enum`. Only `string` changes rendering
    /// upstream (quoted and escaped).
    pub vartype: String,
}

/// One imperative change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeltaOp {
    /// `delete_role`, `rename_role`, `delete_db` or `rename_db`; see [`DeltaOp::kind`].
    pub action: String,
    /// The role or database acted on.
    pub name: String,
    /// The new name, for renames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
}

/// The known kinds of [`DeltaOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeltaAction {
    /// Drop a role, after reassigning and dropping what it owns.
    DeleteRole,
    /// Rename a role.
    RenameRole,
    /// Drop a database.
    DeleteDb,
    /// Rename a database.
    RenameDb,
}

impl DeltaOp {
    /// The action, or `None` when it is not one of the four known ones (upstream ignores those).
    pub fn kind(&self) -> Option<DeltaAction> {
        match self.action.as_str() {
            "delete_role" => Some(DeltaAction::DeleteRole),
            "rename_role" => Some(DeltaAction::RenameRole),
            "delete_db" => Some(DeltaAction::DeleteDb),
            "rename_db" => Some(DeltaAction::RenameDb),
            _ => None,
        }
    }
}

/// What kind of compute this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum ComputeMode {
    /// Read-write primary.
    #[default]
    Primary,
    /// Read-only at a fixed LSN: `{"Static": "X/Y"}`.
    Static(Lsn),
    /// Hot standby following the latest LSN.
    Replica,
}

impl ComputeMode {
    /// Whether this is [`ComputeMode::Primary`].
    pub fn is_primary(&self) -> bool {
        matches!(self, ComputeMode::Primary)
    }

    /// The name used in `neon.compute_mode` and in connection options.
    pub fn as_guc_value(&self) -> &'static str {
        match self {
            ComputeMode::Primary => "primary",
            ComputeMode::Static(_) => "static",
            ComputeMode::Replica => "replica",
        }
    }
}

/// Feature flags. Unknown strings are kept as [`ComputeFeature::Unknown`] instead of failing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(from = "String", into = "String")]
#[schemars(with = "String")]
pub enum ComputeFeature {
    /// Also count `pg_stat_database` session counters as activity.
    ActivityMonitorExperimental,
    /// Configure TLS in Postgres.
    TlsExperimental,
    /// A flag this crate does not know, kept verbatim.
    Unknown(String),
}

impl From<String> for ComputeFeature {
    fn from(s: String) -> Self {
        match s.as_str() {
            "activity_monitor_experimental" => ComputeFeature::ActivityMonitorExperimental,
            "tls_experimental" => ComputeFeature::TlsExperimental,
            _ => ComputeFeature::Unknown(s),
        }
    }
}

impl From<ComputeFeature> for String {
    fn from(f: ComputeFeature) -> Self {
        match f {
            ComputeFeature::ActivityMonitorExperimental => "activity_monitor_experimental".into(),
            ComputeFeature::TlsExperimental => "tls_experimental".into(),
            ComputeFeature::Unknown(s) => s,
        }
    }
}

/// pgaudit level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum ComputeAudit {
    /// No audit logging.
    #[default]
    Disabled,
    /// DDL and role statements.
    Log,
    /// Same as `Log`.
    Base,
    /// Everything but misc, to a file, HIPAA retention.
    Hipaa,
    /// Everything but misc.
    Extended,
    /// Everything, with parameters.
    Full,
}

impl ComputeAudit {
    /// Whether this is [`ComputeAudit::Disabled`].
    pub fn is_disabled(&self) -> bool {
        matches!(self, ComputeAudit::Disabled)
    }
}

/// Modern description of how to reach the pageserver shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PageserverConnectionInfo {
    /// Number of shards; 0 means unsharded.
    pub shard_count: u8,
    /// Stripe size in pages.
    #[serde(default)]
    pub stripe_size: Option<u32>,
    /// Shard index (4 hex digits: number then count, `"0000"` when unsharded) → pageservers.
    pub shards: BTreeMap<String, PageserverShardInfo>,
    /// Which protocol to prefer.
    #[serde(default)]
    pub prefer_protocol: PageserverProtocol,
}

/// The pageservers that hold one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PageserverShardInfo {
    /// Candidate pageservers; the first is used.
    pub pageservers: Vec<PageserverShardConnectionInfo>,
}

/// Addresses of one pageserver for one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PageserverShardConnectionInfo {
    /// Pageserver node id.
    #[serde(default)]
    pub id: Option<u64>,
    /// libpq connection string (URL or key=value form).
    #[serde(default)]
    pub libpq_url: Option<String>,
    /// gRPC URL.
    #[serde(default)]
    pub grpc_url: Option<String>,
}

/// Protocol to talk to the pageserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PageserverProtocol {
    /// PostgreSQL wire protocol.
    #[default]
    Libpq,
    /// gRPC.
    Grpc,
}

/// Extensions that can be downloaded on demand.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RemoteExtSpec {
    /// Extensions any project may install.
    #[serde(default)]
    pub public_extensions: Option<Vec<String>>,
    /// Extensions this project may install.
    #[serde(default)]
    pub custom_extensions: Option<Vec<String>>,
    /// Shared library name → extension that ships it.
    #[serde(default)]
    pub library_index: BTreeMap<String, String>,
    /// Extension → control files and archive path.
    #[serde(default)]
    pub extension_data: BTreeMap<String, ExtensionData>,
}

/// Files of one remote extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExtensionData {
    /// Control file name → content.
    pub control_data: BTreeMap<String, String>,
    /// Path of the archive relative to the extension server's base URL.
    pub archive_path: String,
}

/// Configuration of the local_proxy sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LocalProxySpec {
    /// JWKS providers whose roles log in through local_proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Vec<JwksSettings>>,
    /// TLS files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// One JWKS provider for local_proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JwksSettings {
    /// Provider id.
    pub id: String,
    /// Roles that authenticate with this provider.
    pub role_names: Vec<String>,
    /// Where to fetch the key set.
    pub jwks_url: String,
    /// Provider name.
    pub provider_name: String,
    /// Expected audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
}

/// Paths of a TLS key and certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsConfig {
    /// Private key file.
    pub key_path: String,
    /// Certificate file.
    pub cert_path: String,
}
