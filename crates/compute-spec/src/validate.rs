//! Validation: from a parsed [`ComputeSpec`] to a [`ValidatedSpec`], the only form other crates
//! act on. (Minimal first version: storage resolution only; the full rule set follows.)

use crate::spec::{
    ComputeSpec, PageserverConnectionInfo, PageserverProtocol, PageserverShardConnectionInfo,
    PageserverShardInfo,
};
use crate::{TenantId, TimelineId};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Suspicious but usable.
    Warning,
    /// The spec cannot be acted on.
    Error,
}

/// One finding, located by JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Stable machine-readable code, e.g. `duplicate-role`.
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// JSON pointer of the offending value, e.g. `/cluster/roles/3/name`.
    pub pointer: String,
    /// Human-readable message.
    pub message: String,
}

/// All findings of one validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("spec is invalid: {} error(s)", self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count())]
pub struct ValidationReport {
    /// Every finding, errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
}

/// Storage settings resolved in upstream's order: top-level fields first, then `neon.*` GUCs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageSettings {
    /// Tenant, if known.
    pub tenant_id: Option<TenantId>,
    /// Timeline, if known.
    pub timeline_id: Option<TimelineId>,
    /// Pageserver shards, if any storage is configured (standalone mode otherwise).
    pub pageserver: Option<PageserverConnectionInfo>,
    /// Safekeepers `host:port`, possibly empty.
    pub safekeepers: Vec<String>,
}

/// A spec that passed validation. Construct it with [`ValidatedSpec::from_json`] or
/// [`ValidatedSpec::from_spec`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedSpec {
    spec: ComputeSpec,
    storage: StorageSettings,
    warnings: Vec<Diagnostic>,
}

impl ValidatedSpec {
    /// Parses and validates a JSON text in either document shape. A wrapper whose `spec` is
    /// `null` is an error here: there is nothing to act on.
    pub fn from_json(text: &str) -> Result<ValidatedSpec, ValidationReport> {
        let spec: ComputeSpec = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(obj)) if crate::SpecDocument::is_wrapper(&obj) => {
                match obj.get("spec") {
                    Some(v) => serde_json::from_value(v.clone()).map_err(|e| parse_error(&e))?,
                    None => return Err(parse_error(&"no spec in document")),
                }
            }
            Ok(v) => serde_json::from_value(v).map_err(|e| parse_error(&e))?,
            Err(e) => return Err(parse_error(&e)),
        };
        Self::from_spec(spec)
    }

    /// Validates an already-parsed spec.
    pub fn from_spec(spec: ComputeSpec) -> Result<ValidatedSpec, ValidationReport> {
        let storage = resolve_storage(&spec);
        Ok(ValidatedSpec {
            spec,
            storage,
            warnings: Vec::new(),
        })
    }

    /// The spec.
    pub fn spec(&self) -> &ComputeSpec {
        &self.spec
    }

    /// Resolved storage settings.
    pub fn storage(&self) -> &StorageSettings {
        &self.storage
    }

    /// Warnings found during validation.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }
}

fn parse_error(e: &dyn std::fmt::Display) -> ValidationReport {
    ValidationReport {
        diagnostics: vec![Diagnostic {
            code: "parse",
            severity: Severity::Error,
            pointer: String::new(),
            message: e.to_string(),
        }],
    }
}

fn setting<'a>(spec: &'a ComputeSpec, name: &str) -> Option<&'a str> {
    spec.cluster
        .settings
        .as_ref()?
        .iter()
        .find(|o| o.name == name)
        .and_then(|o| o.value.as_deref())
}

fn resolve_storage(spec: &ComputeSpec) -> StorageSettings {
    let tenant_id = spec
        .tenant_id
        .or_else(|| setting(spec, "neon.tenant_id").and_then(|v| v.parse().ok()));
    let timeline_id = spec
        .timeline_id
        .or_else(|| setting(spec, "neon.timeline_id").and_then(|v| v.parse().ok()));
    let legacy = spec
        .pageserver_connstring
        .as_deref()
        .or_else(|| setting(spec, "neon.pageserver_connstring"));
    let pageserver = spec.pageserver_connection_info.clone().or_else(|| {
        let connstrs: Vec<&str> = legacy?.split(',').map(str::trim).collect();
        let count = if connstrs.len() == 1 {
            0
        } else {
            connstrs.len() as u8
        };
        let shards = connstrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let info = PageserverShardInfo {
                    pageservers: vec![PageserverShardConnectionInfo {
                        id: None,
                        libpq_url: Some((*c).to_owned()),
                        grpc_url: None,
                    }],
                };
                (format!("{:02x}{:02x}", i, count), info)
            })
            .collect();
        Some(PageserverConnectionInfo {
            shard_count: count,
            stripe_size: spec
                .shard_stripe_size
                .or_else(|| setting(spec, "neon.stripe_size").and_then(|v| v.parse().ok())),
            shards,
            prefer_protocol: PageserverProtocol::Libpq,
        })
    });
    let safekeepers = if !spec.safekeeper_connstrings.is_empty() {
        spec.safekeeper_connstrings.clone()
    } else if spec.mode.is_primary() {
        setting(spec, "neon.safekeepers")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    StorageSettings {
        tenant_id,
        timeline_id,
        pageserver,
        safekeepers,
    }
}
