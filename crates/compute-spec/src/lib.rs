//! The wire format of a Neon-style compute: the cluster spec (`ComputeSpec`), the
//! `ComputeConfig` wrapper, typed LSNs and ids, HTTP payload types, and validation of a spec
//! into a [`ValidatedSpec`] — the only form the other crates act on.
//!
//! This crate owns parsing and checking. It does no I/O (no files, no network, no processes)
//! and depends on no other workspace crate. It does not render config files (`pg-config`) or
//! SQL (`pg-reconcile`).
//!
//! ```
//! use compute_spec::{ComputeMode, ValidatedSpec};
//!
//! let text = r#"{"format_version": 1.0,
//!                "cluster": {"roles": [{"name": "alice"}], "databases": []}}"#;
//! let spec = ValidatedSpec::from_json(text).unwrap();
//! assert_eq!(spec.spec().mode, ComputeMode::Primary);
//! assert!(spec.storage().pageserver.is_none()); // standalone: no storage configured
//! ```
#![warn(missing_docs)]

mod config;
mod id;
mod locate;
mod lsn;
mod rules;
mod shape;
mod spec;
mod status;
mod validate;
mod values;

pub use config::{
    ComputeConfig, ComputeCtlConfig, ControlPlaneComputeStatus, ControlPlaneConfigResponse, JwkSet,
    SpecDocument, json_schema,
};
pub use id::{IdParseError, TenantId, TimelineId};
pub use locate::{Location, location_of_offset};
pub use lsn::{Lsn, LsnParseError};
pub use spec::{
    Cluster, ComputeAudit, ComputeFeature, ComputeMode, ComputeSpec, Database, DeltaAction,
    DeltaOp, ExtensionData, GenericOption, JwksSettings, LocalProxySpec, PageserverConnectionInfo,
    PageserverProtocol, PageserverShardConnectionInfo, PageserverShardInfo, RemoteExtSpec, Role,
    TlsConfig, UnknownFields,
};
pub use status::ComputeStatus;
pub use validate::{
    DEFAULT_PROVIDED_ROLES, Diagnostic, Severity, StorageSettings, ValidatedSpec, Validation,
    ValidationOptions, ValidationReport, codes, locate_diagnostics, validate_json,
};
