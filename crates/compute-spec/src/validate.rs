//! Validation: from JSON text or a parsed [`ComputeSpec`] to a [`ValidatedSpec`], the only form
//! other crates act on. Every finding is a [`Diagnostic`] with a stable code, a severity, a
//! JSON pointer and (for text input) a line:column; all are collected, not just the first.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use crate::locate::{Location, locate_pointers};
use crate::options::{DatabaseOption, TypedRole};
use crate::rules::{self, Typed};
use crate::shape::ShapeWalk;
use crate::spec::{ComputeSpec, Database, PageserverConnectionInfo, Role};
use crate::{TenantId, TimelineId};

/// The stable diagnostic codes. Tools may match on them; they never change meaning.
pub mod codes {
    /// The input is larger than [`super::ValidationOptions::max_bytes`].
    pub const TOO_LARGE: &str = "too-large";
    /// The input is not UTF-8 (reported by callers that read bytes).
    pub const INVALID_UTF8: &str = "invalid-utf8";
    /// The input is not JSON (includes empty, truncated and too deeply nested input).
    pub const SYNTAX: &str = "syntax";
    /// The same key twice in one JSON object.
    pub const DUPLICATE_KEY: &str = "duplicate-key";
    /// A value has the wrong JSON type or does not parse as its field's type.
    pub const INVALID_TYPE: &str = "invalid-type";
    /// A required field is absent.
    pub const MISSING_FIELD: &str = "missing-field";
    /// A field this crate does not know (kept, ignored by compute_ctl).
    pub const UNKNOWN_FIELD: &str = "unknown-field";
    /// A ComputeConfig wrapper whose `spec` is null: nothing to act on.
    pub const NO_SPEC: &str = "no-spec";
    /// `format_version` is not 1.0.
    pub const UNSUPPORTED_FORMAT_VERSION: &str = "unsupported-format-version";
    /// Two roles with the same name.
    pub const DUPLICATE_ROLE: &str = "duplicate-role";
    /// Two databases with the same name.
    pub const DUPLICATE_DATABASE: &str = "duplicate-database";
    /// A database owner that is neither a spec role nor a role the compute provides.
    pub const UNKNOWN_OWNER: &str = "unknown-owner";
    /// A spec role (or a role's new name) that PostgreSQL reserves: `pg_*`, `public`, `none`,
    /// or one that SQL spells as a keyword (`current_user`, `session_user`, `current_role`).
    pub const RESERVED_ROLE_NAME: &str = "reserved-role-name";
    /// A delta operation deletes or renames a database the compute needs (`template0`,
    /// `template1`, or the one compute_ctl connects to: `postgres` by default) or renames
    /// another onto one; or the spec closes compute_ctl's database (`ALLOW_CONNECTIONS false`).
    pub const SYSTEM_DATABASE: &str = "system-database";
    /// A spec role that is the user compute_ctl connects as (`cloud_admin` by default) sets
    /// `NOLOGIN`, `VALID UNTIL` or `CONNECTION LIMIT`, or a password while compute_ctl logs in
    /// with one: compute_ctl would lock itself out. A password while compute_ctl logs in
    /// without one (trusted loopback, as upstream's docker-compose specs do it) is a warning.
    pub const ADMIN_ROLE_CHANGED: &str = "admin-role-changed";
    /// An empty role, database or owner name.
    pub const EMPTY_IDENTIFIER: &str = "empty-identifier";
    /// An identifier longer than 63 bytes (PostgreSQL would truncate it).
    pub const IDENTIFIER_TOO_LONG: &str = "identifier-too-long";
    /// An identifier containing a NUL character.
    pub const IDENTIFIER_NUL: &str = "identifier-nul";
    /// A role or database option that the allow-list refuses (`SUPERUSER`, `PASSWORD`, an
    /// unknown name, …).
    pub const OPTION_NOT_ALLOWED: &str = "option-not-allowed";
    /// An allowed role or database option whose value cannot be understood.
    pub const BAD_OPTION_VALUE: &str = "bad-option-value";
    /// A malformed md5 or SCRAM-SHA-256 password hash.
    pub const INVALID_PASSWORD_HASH: &str = "invalid-password-hash";
    /// An md5 hash without its `md5` prefix: accepted, but never equal to `pg_authid`'s.
    pub const MD5_WITHOUT_PREFIX: &str = "md5-without-prefix";
    /// A delta operation whose action is not one of the four known ones (upstream ignores it).
    pub const DELTA_UNKNOWN_ACTION: &str = "delta-unknown-action";
    /// A rename without `new_name`.
    pub const DELTA_MISSING_NEW_NAME: &str = "delta-missing-new-name";
    /// A delta operation acting on a name an earlier operation already deleted or renamed away.
    pub const DELTA_CONFLICT: &str = "delta-conflict";
    /// A rename onto a name that exists at that point (declared by the spec, or produced by an
    /// earlier operation), or onto itself.
    pub const DELTA_RENAME_ONTO_EXISTING: &str = "delta-rename-onto-existing";
    /// A rename of a name the spec still declares: the old name would be created again.
    pub const DELTA_RENAME_SOURCE_DECLARED: &str = "delta-rename-source-declared";
    /// A rename whose result is not declared in the spec: it refers to nothing the spec keeps.
    pub const DELTA_RENAME_TARGET_UNDECLARED: &str = "delta-rename-target-undeclared";
    /// A deletion of a name the spec declares: it is dropped and created again.
    pub const DELTA_DELETES_DECLARED: &str = "delta-deletes-declared";
    /// A delta operation deleting or renaming a role the compute provides (`cloud_admin`, …),
    /// or renaming another role onto one.
    pub const DELTA_PROVIDED_ROLE: &str = "delta-provided-role";
    /// `delete_role` of a role that owns a spec database.
    pub const DELETE_ROLE_OWNS_DATABASE: &str = "delete-role-owns-database";
    /// A malformed tenant id.
    pub const INVALID_TENANT_ID: &str = "invalid-tenant-id";
    /// A malformed timeline id.
    pub const INVALID_TIMELINE_ID: &str = "invalid-timeline-id";
    /// A malformed LSN.
    pub const INVALID_LSN: &str = "invalid-lsn";
    /// An ALL_CAPS template placeholder (`TENANT_ID`) where a value belongs.
    pub const PLACEHOLDER_VALUE: &str = "placeholder-value";
    /// The same safekeeper listed twice.
    pub const DUPLICATE_SAFEKEEPER: &str = "duplicate-safekeeper";
    /// A Primary with a pageserver but no safekeepers.
    pub const PRIMARY_WITHOUT_SAFEKEEPERS: &str = "primary-without-safekeepers";
    /// A storage setting given twice (top-level field and `neon.*` GUC, or the GUC twice) with
    /// different values.
    pub const CONFLICTING_STORAGE_SETTING: &str = "conflicting-storage-setting";
    /// The same GUC given twice.
    pub const DUPLICATE_SETTING: &str = "duplicate-setting";
    /// A setting name that is not a GUC name (`a.b_c`).
    pub const INVALID_SETTING_NAME: &str = "invalid-setting-name";
    /// A setting value that does not parse as its vartype.
    pub const VARTYPE_MISMATCH: &str = "vartype-mismatch";
    /// A vartype other than bool, integer, real, enum, string.
    pub const UNKNOWN_VARTYPE: &str = "unknown-vartype";
    /// A setting without a value.
    pub const MISSING_VALUE: &str = "missing-value";
    /// A value containing a newline or other control character that could inject a line into
    /// a config file.
    pub const CONFIG_INJECTION: &str = "config-injection";
    /// A feature flag this crate does not know (kept, ignored).
    pub const UNKNOWN_FEATURE: &str = "unknown-feature";
    /// A safekeeper address that is not `host:port`.
    pub const INVALID_SAFEKEEPER_ADDRESS: &str = "invalid-safekeeper-address";
    /// A `logs_export_host` that is not `host:port` (a DNS name, an IPv4 address or a
    /// bracketed IPv6 address; a port 1-65535): it is written into rsyslog's config.
    pub const INVALID_LOGS_EXPORT_HOST: &str = "invalid-logs-export-host";
    /// A pageserver shard index that is not `<number><count>` in hex matching `shard_count`,
    /// a shard without pageservers, or the wrong number of shards.
    pub const INVALID_SHARD_INDEX: &str = "invalid-shard-index";
    /// A sharded pageserver configuration without a stripe size.
    pub const MISSING_STRIPE_SIZE: &str = "missing-stripe-size";
    /// A field that compute_ctl accepts but does not act on (see `rules/not_acted_on.rs`):
    /// a warning naming the field, never a silent ignore.
    pub const NOT_ACTED_ON: &str = "not-acted-on";
    /// A `pgbouncer_settings` key pgbouncer's ini parser does not read as one key (only ASCII
    /// letters, digits and `_ . - *`), or a value starting or ending with whitespace, which it
    /// strips.
    pub const INVALID_PGBOUNCER_SETTING: &str = "invalid-pgbouncer-setting";
}

/// How bad a finding is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Suspicious but usable.
    Warning,
    /// The spec cannot be acted on.
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One finding, located by JSON pointer and, for text input, line:column.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Diagnostic {
    /// Stable machine-readable code, e.g. `duplicate-role`; see [`codes`].
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// JSON pointer of the offending value, e.g. `/cluster/roles/3/name`.
    pub pointer: String,
    /// Human-readable message. Never contains a password, hash or token.
    pub message: String,
    /// Where the pointer's value starts in the source text; `None` for a parsed spec.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Diagnostic {
    /// A diagnostic without a location (filled in by [`locate_diagnostics`]).
    pub fn new(
        code: &'static str,
        severity: Severity,
        pointer: String,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            code,
            severity,
            pointer,
            message: message.into(),
            location: None,
        }
    }
}

/// All findings of one validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("spec is invalid: {} error(s)", self.error_count())]
pub struct ValidationReport {
    /// Every finding, errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl ValidationReport {
    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }
}

/// Fills in `location` for diagnostics whose pointer exists in `text` (which must be valid
/// JSON), in one pass, then sorts them by location. Diagnostics already located keep theirs.
pub fn locate_diagnostics(text: &str, diagnostics: &mut [Diagnostic]) {
    let wanted = diagnostics
        .iter()
        .filter(|d| d.location.is_none())
        .map(|d| d.pointer.as_str());
    let found = locate_pointers(text, wanted);
    for d in diagnostics.iter_mut().filter(|d| d.location.is_none()) {
        // An unknown field is shown at its key; everything else at the offending value.
        d.location = found.get(&d.pointer).map(|l| match (d.code, l.member) {
            (codes::UNKNOWN_FIELD, Some(member)) => member,
            _ => l.value,
        });
    }
    diagnostics.sort_by_key(|d| d.location.unwrap_or(Location { line: 0, column: 0 }));
}

/// Roles every compute has without the spec declaring them. Database owners may be these.
pub const DEFAULT_PROVIDED_ROLES: &[&str] = &[
    "cloud_admin",
    "neon_superuser",
    "zenith_admin",
    // PostgreSQL's predefined roles (15, plus those 16 adds).
    "pg_checkpoint",
    "pg_create_subscription",
    "pg_database_owner",
    "pg_execute_server_program",
    "pg_monitor",
    "pg_read_all_data",
    "pg_read_all_settings",
    "pg_read_all_stats",
    "pg_read_server_files",
    "pg_signal_backend",
    "pg_stat_scan_tables",
    "pg_use_reserved_connections",
    "pg_write_all_data",
    "pg_write_server_files",
];

/// What validation may assume about the compute that will run the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationOptions {
    /// Roles that exist without the spec declaring them (valid database owners). Defaults to
    /// [`DEFAULT_PROVIDED_ROLES`]; compute_ctl adds its connection user and privileged role.
    pub provided_roles: BTreeSet<String>,
    /// Larger inputs are rejected with `too-large` before parsing. Default 64 MiB.
    pub max_bytes: usize,
    /// Databases a delta operation must not delete or rename: the templates and the database
    /// compute_ctl connects to. Defaults to [`SYSTEM_DATABASES`]; compute_ctl adds its
    /// connection's database.
    pub system_databases: BTreeSet<String>,
    /// The user compute_ctl connects as (`cloud_admin` by default; compute_ctl's `-C` user):
    /// a spec must not make it `NOLOGIN`, set its password, `VALID UNTIL` or `CONNECTION
    /// LIMIT`. Set it with [`ValidationOptions::with_admin_user`], which also makes it a
    /// provided role.
    pub admin_user: String,
    /// The database compute_ctl connects to (`postgres` by default; compute_ctl's `-C`
    /// database): a spec must not close it to connections. Set it with
    /// [`ValidationOptions::with_admin_database`], which also makes it a system database.
    pub admin_database: String,
    /// Whether compute_ctl logs in with a password (its `-C` carries one): then a spec that
    /// sets the admin user's password is refused; otherwise (trusted loopback or socket, the
    /// default) it is a warning.
    pub admin_password_login: bool,
}

/// The databases every compute needs: `CREATE DATABASE` copies `template1`, `template0` is
/// its pristine source, and compute_ctl connects to `postgres` unless told otherwise.
pub const SYSTEM_DATABASES: &[&str] = &["postgres", "template0", "template1"];

/// Role names PostgreSQL refuses (`public`, `none`) or SQL reads as keywords.
pub(crate) const RESERVED_ROLE_NAMES: &[&str] = &[
    "public",
    "none",
    "current_user",
    "session_user",
    "current_role",
];

impl Default for ValidationOptions {
    fn default() -> Self {
        ValidationOptions {
            provided_roles: DEFAULT_PROVIDED_ROLES
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
            max_bytes: 64 << 20,
            system_databases: SYSTEM_DATABASES.iter().map(|d| (*d).to_owned()).collect(),
            admin_user: "cloud_admin".to_owned(),
            admin_database: "postgres".to_owned(),
            admin_password_login: false,
        }
    }
}

impl ValidationOptions {
    /// Adds a database compute_ctl needs (its connection's).
    pub fn with_system_database(mut self, name: impl Into<String>) -> Self {
        self.system_databases.insert(name.into());
        self
    }

    /// Adds a role the compute provides.
    pub fn with_provided_role(mut self, name: impl Into<String>) -> Self {
        self.provided_roles.insert(name.into());
        self
    }

    /// Names the user compute_ctl connects as; it is also a provided role.
    pub fn with_admin_user(mut self, name: impl Into<String>) -> Self {
        self.admin_user = name.into();
        self.provided_roles.insert(self.admin_user.clone());
        self
    }

    /// Names the database compute_ctl connects to; it is also a system database.
    pub fn with_admin_database(mut self, name: impl Into<String>) -> Self {
        self.admin_database = name.into();
        self.system_databases.insert(self.admin_database.clone());
        self
    }
}

/// The outcome of checking a document, whatever it holds: the typed spec when the text parsed
/// into one (even if rules then failed), where it sits in the document, and every finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// The typed spec, when the document parsed into one. Read it, do not change it: what
    /// validation typed from it is kept apart, and [`Validation::into_validated`] only checks
    /// that the numbers of roles and databases still match.
    pub spec: Option<ComputeSpec>,
    /// JSON pointer of the spec inside the document: `""` (bare) or `"/spec"` (wrapper).
    pub spec_pointer: &'static str,
    /// Every finding, located and in source order.
    pub report: ValidationReport,
    /// What the rules typed from `spec` (options, password hashes), when it was checked.
    typed: Option<Typed>,
}

impl Validation {
    /// The [`ValidatedSpec`] when the document holds a spec and no finding is an error;
    /// otherwise every finding. Callers may first add findings of their own (e.g. `spec-check
    /// --pgbin`'s) to `report`.
    pub fn into_validated(mut self) -> Result<ValidatedSpec, ValidationReport> {
        if self.report.has_errors() {
            return Err(self.report);
        }
        match (self.spec, self.typed) {
            (Some(spec), Some(typed)) if typed.matches(&spec) => {
                Ok(ValidatedSpec::new(spec, typed, self.report.diagnostics))
            }
            (spec, _) => {
                let message = if spec.is_some() {
                    "the spec was replaced after validation"
                } else {
                    "the document does not hold a usable spec"
                };
                self.report.diagnostics.push(Diagnostic::new(
                    codes::INVALID_TYPE,
                    Severity::Error,
                    self.spec_pointer.to_owned(),
                    message,
                ));
                Err(self.report)
            }
        }
    }
}

/// Parses and checks a document in either shape, collecting every diagnostic. This is what
/// `spec-check` runs; [`ValidatedSpec::from_json_with`] builds on it.
pub fn validate_json(text: &str, options: &ValidationOptions) -> Validation {
    let mut diagnostics = Vec::new();
    let (spec, spec_pointer) = parse_document(text, options, &mut diagnostics);
    if spec.is_none() && !diagnostics.iter().any(|d| d.severity == Severity::Error) {
        // Defensive: a document that yields no spec must never look clean.
        diagnostics.push(Diagnostic::new(
            codes::INVALID_TYPE,
            Severity::Error,
            spec_pointer.to_owned(),
            "the document does not hold a usable spec",
        ));
    }
    let typed = spec
        .as_ref()
        .map(|spec| rules::check(spec, spec_pointer, options, &mut diagnostics));
    if !diagnostics.is_empty() && diagnostics.iter().all(|d| d.location.is_none()) {
        locate_diagnostics(text, &mut diagnostics);
    } else {
        // Some are already located (syntax errors): the text may not be JSON.
        diagnostics.sort_by_key(|d| d.location.unwrap_or(Location { line: 0, column: 0 }));
    }
    Validation {
        spec,
        spec_pointer,
        report: ValidationReport { diagnostics },
        typed,
    }
}

fn located(code: &'static str, message: String, location: Location) -> Diagnostic {
    Diagnostic {
        location: Some(location),
        ..Diagnostic::new(code, Severity::Error, String::new(), message)
    }
}

fn parse_document(
    text: &str,
    options: &ValidationOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Option<ComputeSpec>, &'static str) {
    let Some(value) = parse_json(text, options, diagnostics) else {
        return (None, "");
    };
    let (spec_value, spec_pointer) = match find_spec(&value, diagnostics) {
        Ok(found) => found,
        Err(spec_pointer) => return (None, spec_pointer),
    };
    let typed = ComputeSpec::deserialize(spec_value);
    let before = diagnostics.len();
    ShapeWalk {
        check_types: typed.is_err(),
        diagnostics,
    }
    .spec(spec_value, spec_pointer);
    match typed {
        Ok(spec) => (Some(spec), spec_pointer),
        Err(e) => {
            let found_errors = diagnostics[before..]
                .iter()
                .any(|d| d.severity == Severity::Error);
            if !found_errors {
                diagnostics.push(Diagnostic::new(
                    codes::INVALID_TYPE,
                    Severity::Error,
                    spec_pointer.to_owned(),
                    e.to_string(),
                ));
            }
            (None, spec_pointer)
        }
    }
}

/// The JSON tree of `text` (strict: no duplicate keys), or `None` with a located diagnostic.
fn parse_json(
    text: &str,
    options: &ValidationOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Value> {
    if text.len() > options.max_bytes {
        let message = format!(
            "the document is {} bytes, more than the limit of {} bytes",
            text.len(),
            options.max_bytes
        );
        let start = Location { line: 1, column: 1 };
        diagnostics.push(located(crate::validate::codes::TOO_LARGE, message, start));
        return None;
    }
    match serde_json::from_str::<crate::strict::StrictValue>(text) {
        Ok(v) => Some(v.0),
        Err(e) => {
            let full = e.to_string();
            let message = match full.rfind(" at line ") {
                Some(i) => full[..i].to_owned(),
                None => full,
            };
            let (code, message) = if text.trim().is_empty() {
                (
                    codes::SYNTAX,
                    "the document is empty; expected a JSON object".to_owned(),
                )
            } else if message.starts_with("duplicate key") {
                (codes::DUPLICATE_KEY, message)
            } else {
                (codes::SYNTAX, format!("not valid JSON: {message}"))
            };
            let location = Location {
                line: e.line().max(1),
                column: e.column().max(1),
            };
            diagnostics.push(located(code, message, location));
            None
        }
    }
}

/// The spec inside a document of either shape and its pointer, the wrapper's own shape
/// checked; or the pointer where a spec was expected, with a diagnostic.
fn find_spec<'v>(
    value: &'v Value,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<(&'v Value, &'static str), &'static str> {
    let Value::Object(object) = value else {
        diagnostics.push(Diagnostic::new(
            codes::INVALID_TYPE,
            Severity::Error,
            String::new(),
            format!(
                "expected a JSON object (a spec or a {{\"spec\", \"compute_ctl_config\"}} wrapper), found {}",
                crate::shape::kind_of(value)
            ),
        ));
        return Err("");
    };
    if !crate::SpecDocument::is_wrapper(object) {
        return Ok((value, ""));
    }
    let typed_ok = crate::ComputeCtlConfig::deserialize(
        object.get("compute_ctl_config").unwrap_or(&Value::Null),
    )
    .is_ok();
    ShapeWalk {
        check_types: !typed_ok,
        diagnostics,
    }
    .wrapper(value);
    match object.get("spec") {
        Some(Value::Null) => {
            diagnostics.push(Diagnostic::new(
                codes::NO_SPEC,
                Severity::Error,
                "/spec".to_owned(),
                "the spec is null: this configuration starts an empty compute, there is no spec to check",
            ));
            Err("/spec")
        }
        Some(spec) => Ok((spec, "/spec")),
        None => {
            diagnostics.push(Diagnostic::new(
                codes::NO_SPEC,
                Severity::Error,
                String::new(),
                "the document has no spec (a ComputeConfig without `spec` starts an empty compute): there is no spec to check",
            ));
            Err("/spec")
        }
    }
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

/// A spec that passed validation: no error-level finding. Construct it with
/// [`ValidatedSpec::from_json`], [`ValidatedSpec::from_json_with`] or
/// [`ValidatedSpec::from_spec`].
///
/// Besides the spec it holds what validation typed from it: each role's options
/// ([`TypedRole`]: attributes from the allow-list, the password in stored form) and each
/// database's options ([`DatabaseOption`]), so that consumers act on typed values and never
/// parse or check an option again.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedSpec {
    spec: ComputeSpec,
    storage: StorageSettings,
    warnings: Vec<Diagnostic>,
    roles: Vec<TypedRole>,
    databases: Vec<Vec<DatabaseOption>>,
}

impl ValidatedSpec {
    fn new(spec: ComputeSpec, typed: Typed, warnings: Vec<Diagnostic>) -> ValidatedSpec {
        ValidatedSpec {
            storage: rules::resolve_storage(&spec),
            spec,
            warnings,
            roles: typed.roles,
            databases: typed.databases,
        }
    }

    /// Parses and validates a JSON text in either document shape with default options. A
    /// wrapper whose `spec` is `null` is an error here: there is nothing to act on.
    pub fn from_json(text: &str) -> Result<ValidatedSpec, ValidationReport> {
        Self::from_json_with(text, &ValidationOptions::default())
    }

    /// Like [`ValidatedSpec::from_json`], with options. On failure the report holds every
    /// finding, warnings included, each with a line:column.
    pub fn from_json_with(
        text: &str,
        options: &ValidationOptions,
    ) -> Result<ValidatedSpec, ValidationReport> {
        validate_json(text, options).into_validated()
    }

    /// Validates an already-parsed spec with default options (pointers relative to the spec;
    /// no line:column). Unknown fields the spec remembers are reported as warnings, except
    /// those of options and delta operations, which the types do not keep.
    pub fn from_spec(spec: ComputeSpec) -> Result<ValidatedSpec, ValidationReport> {
        Self::from_spec_with(spec, &ValidationOptions::default())
    }

    /// Validates an already-parsed spec.
    pub fn from_spec_with(
        spec: ComputeSpec,
        options: &ValidationOptions,
    ) -> Result<ValidatedSpec, ValidationReport> {
        let mut diagnostics = Vec::new();
        crate::shape::typed_unknown_fields(&spec, &mut diagnostics);
        let typed = rules::check(&spec, "", options, &mut diagnostics);
        let report = ValidationReport { diagnostics };
        if report.has_errors() {
            return Err(report);
        }
        Ok(ValidatedSpec::new(spec, typed, report.diagnostics))
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

    /// Each role of `spec().cluster.roles` with what validation typed from it, in spec order.
    pub fn roles(&self) -> impl ExactSizeIterator<Item = (&Role, &TypedRole)> + '_ {
        self.spec.cluster.roles.iter().zip(&self.roles)
    }

    /// Each database of `spec().cluster.databases` with its typed options, in spec order.
    pub fn databases(&self) -> impl ExactSizeIterator<Item = (&Database, &[DatabaseOption])> + '_ {
        self.spec
            .cluster
            .databases
            .iter()
            .zip(self.databases.iter().map(Vec::as_slice))
    }

    /// Gives up the spec.
    pub fn into_spec(self) -> ComputeSpec {
        self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes_of(text: &str) -> Vec<(&'static str, String)> {
        validate_json(text, &ValidationOptions::default())
            .report
            .diagnostics
            .into_iter()
            .map(|d| (d.code, d.pointer))
            .collect()
    }

    #[test]
    fn api_shapes() {
        // The wrapper shape with a valid spec validates; storage comes from the GUCs.
        let text = r#"{"spec": {"format_version": 1.0, "mode": {"Static": "0/16B3748"},
            "cluster": {"roles": [], "databases": [], "settings": [
              {"name": "neon.tenant_id", "value": "b0554b632bd4d547a63b86c3630317e8", "vartype": "string"},
              {"name": "neon.pageserver_connstring", "value": "host=ps port=6400", "vartype": "string"}]}},
            "compute_ctl_config": {"jwks": {"keys": []}}}"#;
        let spec = ValidatedSpec::from_json(text).unwrap();
        assert_eq!(
            spec.storage().tenant_id.map(|t| t.to_string()).as_deref(),
            Some("b0554b632bd4d547a63b86c3630317e8")
        );
        assert!(spec.storage().pageserver.is_some());
        assert!(spec.storage().safekeepers.is_empty()); // Static: no safekeepers needed
        assert!(spec.warnings().is_empty());

        // from_spec reports remembered unknown fields as warnings, and rules as errors.
        let mut parsed: ComputeSpec = serde_json::from_str(
            r#"{"format_version": 1.0, "cluster": {"roles": [{"name": "a", "superuser": true}],
                "databases": []}, "operaton_uuid": "x"}"#,
        )
        .unwrap();
        let ok = ValidatedSpec::from_spec(parsed.clone()).unwrap();
        let warnings: Vec<_> = ok.warnings().iter().map(|d| d.pointer.as_str()).collect();
        assert_eq!(warnings, ["/operaton_uuid", "/cluster/roles/0/superuser"]);
        parsed.cluster.roles.push(parsed.cluster.roles[0].clone());
        let err = ValidatedSpec::from_spec(parsed).unwrap_err();
        assert_eq!(err.error_count(), 1);
        assert_eq!(err.to_string(), "spec is invalid: 1 error(s)");
    }

    /// `format_version` 2.0 is accepted with a located warning, not refused: upstream does
    /// not read the field, so a compatible newer spec must still run.
    #[test]
    fn another_format_version_is_a_warning() {
        let v = validate_json(
            r#"{"format_version": 2.0, "cluster": {"roles": [], "databases": []}}"#,
            &ValidationOptions::default(),
        );
        let found: Vec<_> = v
            .report
            .diagnostics
            .iter()
            .map(|d| (d.severity, d.code, d.pointer.as_str()))
            .collect();
        assert_eq!(
            found,
            [(
                Severity::Warning,
                codes::UNSUPPORTED_FORMAT_VERSION,
                "/format_version"
            )]
        );
        assert!(v.into_validated().is_ok());
    }

    #[test]
    fn too_large_and_not_object() {
        let options = ValidationOptions {
            max_bytes: 10,
            ..ValidationOptions::default()
        };
        let v = validate_json("{\"format_version\": 1.0}", &options);
        assert_eq!(v.report.diagnostics[0].code, codes::TOO_LARGE);
        assert_eq!(codes_of("42"), [(codes::INVALID_TYPE, String::new())]);
        assert_eq!(codes_of("null"), [(codes::INVALID_TYPE, String::new())]);
    }
}
