//! The ComputeConfig wrapper `{"spec": ComputeSpec|null, "compute_ctl_config": {...}}` and the
//! control-plane response, plus detection of which document shape a text holds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{ComputeSpec, TlsConfig, UnknownFields};

/// The newer document shape, used by `--config`, the control-plane response and `/configure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComputeConfig {
    /// The spec; `null` means the compute starts empty and waits for `/configure`.
    pub spec: Option<ComputeSpec>,
    /// Settings of compute_ctl itself.
    pub compute_ctl_config: ComputeCtlConfig,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub unknown_fields: UnknownFields,
}

/// Settings of compute_ctl itself (not of Postgres).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ComputeCtlConfig {
    /// Keys that may sign JWTs presented to the HTTP API. An empty set disables auth.
    pub jwks: JwkSet,
    /// Postgres's TLS key and certificate: compute_ctl copies them into PGDATA, turns `ssl` on
    /// and installs renewals (the HTTP API stays plain HTTP, as upstream's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Fields not known to this crate.
    #[serde(flatten)]
    pub unknown_fields: UnknownFields,
}

/// A JSON Web Key set (RFC 7517). Keys are kept as JSON objects; the HTTP layer interprets them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Whether the control plane has a spec for this compute yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControlPlaneComputeStatus {
    /// No tenant attached yet: keep waiting.
    Empty,
    /// A spec is attached.
    Attached,
}

/// Response of `GET {cp}/compute/api/v2/computes/{id}/spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ControlPlaneConfigResponse {
    /// The spec, `null` while empty.
    pub spec: Option<ComputeSpec>,
    /// Empty or attached.
    pub status: ControlPlaneComputeStatus,
    /// Settings of compute_ctl. Older control planes omit it.
    #[serde(default)]
    pub compute_ctl_config: ComputeCtlConfig,
}

/// A spec document in either shape upstream has used.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecDocument {
    /// The early shape: a bare ComputeSpec object.
    Bare(ComputeSpec),
    /// The newer shape: the ComputeConfig wrapper.
    Wrapped(ComputeConfig),
}

impl SpecDocument {
    /// Whether a parsed JSON object is the wrapper shape: it has `compute_ctl_config` or `spec`
    /// and no `cluster`.
    pub fn is_wrapper(object: &serde_json::Map<String, serde_json::Value>) -> bool {
        !object.contains_key("cluster")
            && (object.contains_key("compute_ctl_config") || object.contains_key("spec"))
    }

    /// The spec inside, if any.
    pub fn spec(&self) -> Option<&ComputeSpec> {
        match self {
            SpecDocument::Bare(spec) => Some(spec),
            SpecDocument::Wrapped(config) => config.spec.as_ref(),
        }
    }

    /// Splits into the spec and compute_ctl's own settings (default for the bare shape).
    pub fn into_parts(self) -> (Option<ComputeSpec>, ComputeCtlConfig) {
        match self {
            SpecDocument::Bare(spec) => (Some(spec), ComputeCtlConfig::default()),
            SpecDocument::Wrapped(config) => (config.spec, config.compute_ctl_config),
        }
    }
}

impl Serialize for SpecDocument {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SpecDocument::Bare(spec) => spec.serialize(serializer),
            SpecDocument::Wrapped(config) => config.serialize(serializer),
        }
    }
}

impl JsonSchema for SpecDocument {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SpecDocument".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A compute spec document: a bare ComputeSpec (early shape) or the \
                            ComputeConfig wrapper {\"spec\", \"compute_ctl_config\"}.",
            "anyOf": [
                generator.subschema_for::<ComputeSpec>(),
                generator.subschema_for::<ComputeConfig>(),
            ],
        })
    }
}

/// The JSON Schema (draft 2020-12) of a spec document in either shape, generated from the types.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(SpecDocument);
    schema.insert("title".to_owned(), "Neon compute spec".into());
    schema.to_value()
}
