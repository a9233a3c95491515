//! The wire format of a Neon-style compute: the cluster spec (`ComputeSpec`), the
//! `ComputeConfig` wrapper, typed LSNs and ids, HTTP payload types, its JSON Schema
//! ([`json_schema`]), and validation of a spec into a [`ValidatedSpec`] — the only form the
//! other crates act on.
//!
//! Validation collects every finding as a [`Diagnostic`] with a stable code ([`codes`]), a
//! severity, a JSON pointer and, for text input, a line:column. Errors make the spec
//! unusable; warnings (unknown fields with "did you mean", md5 hashes without prefix, template
//! placeholders) do not. Validation also applies the allow-lists of role and database
//! options and keeps what it typed: [`ValidatedSpec::roles`] gives each role's
//! [`RoleOptions`] and [`PasswordHash`], [`ValidatedSpec::databases`] each database's
//! [`DatabaseOption`]s.
//!
//! This crate owns parsing and checking. It does no I/O (no files, no network, no processes)
//! and depends on no other workspace crate. It does not render config files (`pg-config`),
//! SQL (`pg-reconcile`), or check settings against a PostgreSQL binary (`spec-check --pgbin`).
//!
//! ```
//! use compute_spec::{ComputeMode, ValidatedSpec, ValidationOptions};
//!
//! let text = r#"{"format_version": 1.0,
//!                "cluster": {"roles": [{"name": "alice"}], "databases": []}}"#;
//! let spec = ValidatedSpec::from_json(text).unwrap();
//! assert_eq!(spec.spec().mode, ComputeMode::Primary);
//! assert!(spec.storage().pageserver.is_none()); // standalone: no storage configured
//!
//! // A database owned by a role that neither the spec nor the compute provides:
//! let text = r#"{"format_version": 1.0,
//!   "cluster": {"roles": [], "databases": [{"name": "app", "owner": "admin"}]}}"#;
//! let report = ValidatedSpec::from_json(text).unwrap_err();
//! let d = &report.diagnostics[0];
//! assert_eq!((d.code, d.pointer.as_str()), ("unknown-owner", "/cluster/databases/0/owner"));
//! assert_eq!(d.location.map(|l| (l.line, l.column)), Some((2, 67)));
//! // … unless the compute provides it (compute_ctl passes its own user).
//! let options = ValidationOptions::default().with_provided_role("admin");
//! assert!(ValidatedSpec::from_json_with(text, &options).is_ok());
//! ```
#![warn(missing_docs)]

pub mod api;
mod config;
mod id;
mod locate;
mod lsn;
mod options;
mod rules;
mod shape;
mod spec;
mod strict;
mod syslog_target;
mod validate;
mod values;

pub use api::ComputeStatus;
pub use config::{
    ComputeConfig, ComputeCtlConfig, ControlPlaneComputeStatus, ControlPlaneConfigResponse, JwkSet,
    SpecDocument, json_schema,
};
pub use id::{IdParseError, TenantId, TimelineId};
pub use locate::{Location, location_of_offset};
pub use lsn::{Lsn, LsnParseError};
pub use options::{DatabaseOption, PasswordHash, RoleOptions, TypedRole, ValidUntil};
pub use spec::{
    Cluster, ComputeAudit, ComputeFeature, ComputeMode, ComputeSpec, Database, DeltaAction,
    DeltaOp, ExtensionData, GenericOption, JwksSettings, LocalProxySpec, PageserverConnectionInfo,
    PageserverProtocol, PageserverShardConnectionInfo, PageserverShardInfo, RemoteExtSpec, Role,
    TlsConfig, UnknownFields,
};
pub use syslog_target::{SyslogTarget, SyslogTargetError, parse_syslog_target};
pub use validate::{
    DEFAULT_PROVIDED_ROLES, Diagnostic, SYSTEM_DATABASES, Severity, StorageSettings, ValidatedSpec,
    Validation, ValidationOptions, ValidationReport, codes, locate_diagnostics, validate_json,
};
