//! The shape pass: walks the parsed JSON tree of a spec document and reports unknown fields
//! (warnings, with "did you mean") at every object level, and — when typed parsing failed —
//! every missing field and every value of the wrong type, each at its own JSON pointer.
//!
//! The field tables below are the single list of known field names per object; a test checks
//! them against the JSON Schema generated from the types, so they cannot drift apart.

use std::fmt::Write as _;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::spec::{
    ComputeAudit, ComputeFeature, ComputeMode, LocalProxySpec, PageserverConnectionInfo,
    RemoteExtSpec,
};
use crate::validate::{Diagnostic, Severity, codes};
use crate::{TenantId, TimelineId};

/// Where a field's value is checked.
#[derive(Clone, Copy)]
enum Check {
    /// Deserialize the value alone into the field's type.
    Type(fn(&Value) -> Result<(), (String, String)>),
    /// An object or array the walk descends into itself.
    Walked,
}

struct Field {
    name: &'static str,
    required: bool,
    check: Check,
}

const fn opt(name: &'static str, check: fn(&Value) -> Result<(), (String, String)>) -> Field {
    Field {
        name,
        required: false,
        check: Check::Type(check),
    }
}

const fn req(name: &'static str, check: fn(&Value) -> Result<(), (String, String)>) -> Field {
    Field {
        name,
        required: true,
        check: Check::Type(check),
    }
}

const fn walked(name: &'static str, required: bool) -> Field {
    Field {
        name,
        required,
        check: Check::Walked,
    }
}

/// Deserializes `value` alone as `T`; on failure, the pointer below `value` and the message.
fn check<T: DeserializeOwned>(value: &Value) -> Result<(), (String, String)> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut pointer = String::new();
            for segment in e.path().iter() {
                match segment {
                    serde_path_to_error::Segment::Seq { index } => {
                        pointer.push('/');
                        pointer.push_str(&index.to_string());
                    }
                    serde_path_to_error::Segment::Map { key } => {
                        pointer.push('/');
                        pointer.push_str(&escape_pointer(key));
                    }
                    serde_path_to_error::Segment::Enum { .. }
                    | serde_path_to_error::Segment::Unknown => {}
                }
            }
            Err((pointer, plain_message(&e.into_inner().to_string())))
        }
    }
}

/// A deserializer's message in the words of JSON rather than Rust: `expected i64` →
/// `expected an integer`, `expected a sequence` → `expected an array`, `invalid type: map` →
/// `invalid type: an object`.
pub(crate) fn plain_message(message: &str) -> String {
    let (head, expected) = match message.rsplit_once(", expected ") {
        Some((head, expected)) => (head, Some(expected)),
        None => (message, None),
    };
    let head = [
        ("invalid type: map", "invalid type: an object"),
        ("invalid type: sequence", "invalid type: an array"),
        ("invalid type: floating point", "invalid type: number"),
        ("invalid value: floating point", "invalid value: number"),
    ]
    .iter()
    .find_map(|(rust, json)| head.strip_prefix(rust).map(|rest| format!("{json}{rest}")))
    .unwrap_or_else(|| head.to_owned());
    match expected {
        Some(expected) => format!("{head}, expected {}", plain_expectation(expected)),
        None => head,
    }
}

/// What a deserializer expected, in JSON's words.
fn plain_expectation(expected: &str) -> String {
    let plain = match expected {
        "f32" | "f64" => "a number",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "u8" => "an integer from 0 to 255",
        "u16" => "an integer from 0 to 65535",
        "u32" => "an integer from 0 to 4294967295",
        "u64" | "u128" | "usize" => "a non-negative integer",
        "a sequence" => "an array",
        "a map" => "an object",
        "a borrowed string" => "a string",
        other if other.starts_with("struct ") => "an object",
        other => return other.to_owned(),
    };
    plain.to_owned()
}

/// Escapes one JSON-pointer reference token (`~` → `~0`, `/` → `~1`).
pub(crate) fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

type S = Option<String>;

const SPEC_FIELDS: &[Field] = &[
    req("format_version", check::<f32>),
    opt("timestamp", check::<S>),
    opt("operation_uuid", check::<S>),
    opt("features", check::<Vec<ComputeFeature>>),
    opt("swap_size_bytes", check::<Option<u64>>),
    opt("disk_quota_bytes", check::<Option<u64>>),
    opt("disable_lfc_resizing", check::<Option<bool>>),
    walked("cluster", true),
    walked("delta_operations", false),
    opt("skip_pg_catalog_updates", check::<bool>),
    opt("tenant_id", check::<Option<TenantId>>),
    opt("timeline_id", check::<Option<TimelineId>>),
    opt(
        "pageserver_connection_info",
        check::<Option<PageserverConnectionInfo>>,
    ),
    opt("pageserver_connstring", check::<S>),
    opt("shard_stripe_size", check::<Option<u32>>),
    opt("project_id", check::<S>),
    opt("branch_id", check::<S>),
    opt("endpoint_id", check::<S>),
    opt("safekeepers_generation", check::<Option<u32>>),
    opt("safekeeper_connstrings", check::<Vec<String>>),
    opt("mode", check::<ComputeMode>),
    opt("storage_auth_token", check::<S>),
    opt("remote_extensions", check::<Option<RemoteExtSpec>>),
    opt(
        "pgbouncer_settings",
        check::<Option<std::collections::BTreeMap<String, String>>>,
    ),
    opt("local_proxy_config", check::<Option<LocalProxySpec>>),
    opt("reconfigure_concurrency", check::<usize>),
    opt("drop_subscriptions_before_start", check::<bool>),
    opt("audit_log_level", check::<ComputeAudit>),
    opt("logs_export_host", check::<S>),
    opt("endpoint_storage_addr", check::<S>),
    opt("endpoint_storage_token", check::<S>),
    opt("autoprewarm", check::<bool>),
    opt(
        "offload_lfc_interval_seconds",
        check::<Option<std::num::NonZeroU64>>,
    ),
    opt("suspend_timeout_seconds", check::<Option<i64>>),
    opt(
        "startup_tracing_context",
        check::<Option<std::collections::BTreeMap<String, String>>>,
    ),
    opt("databricks_settings", check::<Option<Value>>),
];

const CLUSTER_FIELDS: &[Field] = &[
    opt("cluster_id", check::<S>),
    opt("name", check::<S>),
    opt("state", check::<S>),
    walked("roles", true),
    walked("databases", true),
    opt("postgresql_conf", check::<S>),
    walked("settings", false),
];

const ROLE_FIELDS: &[Field] = &[
    req("name", check::<String>),
    opt("encrypted_password", check::<S>),
    walked("options", false),
];

const DATABASE_FIELDS: &[Field] = &[
    req("name", check::<String>),
    req("owner", check::<String>),
    walked("options", false),
    // Derived fields upstream emits in `/dbs_and_roles`; never read from a spec, not unknown.
    opt("restrict_conn", check::<Value>),
    opt("invalid", check::<Value>),
];

const OPTION_FIELDS: &[Field] = &[
    req("name", check::<String>),
    opt("value", check::<S>),
    req("vartype", check::<String>),
];

const DELTA_FIELDS: &[Field] = &[
    req("action", check::<String>),
    req("name", check::<String>),
    opt("new_name", check::<S>),
];

const WRAPPER_FIELDS: &[Field] = &[walked("spec", true), walked("compute_ctl_config", true)];

const CTL_CONFIG_FIELDS: &[Field] = &[
    req("jwks", check::<crate::JwkSet>),
    opt("tls", check::<Option<crate::TlsConfig>>),
];

/// The known field names of each object kind, for the schema consistency test.
#[cfg(test)]
pub(crate) fn field_tables() -> Vec<(&'static str, Vec<&'static str>)> {
    let names = |fields: &[Field]| fields.iter().map(|f| f.name).collect::<Vec<_>>();
    vec![
        ("ComputeSpec", names(SPEC_FIELDS)),
        ("Cluster", names(CLUSTER_FIELDS)),
        ("Role", names(ROLE_FIELDS)),
        ("Database", names(DATABASE_FIELDS)),
        ("GenericOption", names(OPTION_FIELDS)),
        ("DeltaOp", names(DELTA_FIELDS)),
        ("ComputeConfig", names(WRAPPER_FIELDS)),
        ("ComputeCtlConfig", names(CTL_CONFIG_FIELDS)),
    ]
}

/// Walks a document's tree. `check_types`: also report missing fields and wrong types (done
/// only when typed parsing failed, so the common path stays cheap).
pub(crate) struct ShapeWalk<'d> {
    pub(crate) check_types: bool,
    pub(crate) diagnostics: &'d mut Vec<Diagnostic>,
}

impl ShapeWalk<'_> {
    /// The wrapper `{spec, compute_ctl_config}`.
    pub(crate) fn wrapper(&mut self, value: &Value) {
        if self.object(value, "", "document", WRAPPER_FIELDS)
            && let Some(config) = value.get("compute_ctl_config")
        {
            self.object(
                config,
                "/compute_ctl_config",
                "compute_ctl_config",
                CTL_CONFIG_FIELDS,
            );
        }
    }

    /// A ComputeSpec object at `pointer`.
    pub(crate) fn spec(&mut self, value: &Value, pointer: &str) {
        if !self.object(value, pointer, "spec", SPEC_FIELDS) {
            return;
        }
        if let Some(cluster) = value.get("cluster") {
            self.cluster(cluster, &format!("{pointer}/cluster"));
        }
        if let Some(ops) = value.get("delta_operations") {
            let pointer = format!("{pointer}/delta_operations");
            self.array(ops, &pointer, true, |walk, op, p| {
                walk.object(op, p, "delta operation", DELTA_FIELDS);
            });
        }
    }

    fn cluster(&mut self, value: &Value, pointer: &str) {
        if !self.object(value, pointer, "cluster", CLUSTER_FIELDS) {
            return;
        }
        if let Some(roles) = value.get("roles") {
            self.array(
                roles,
                &format!("{pointer}/roles"),
                false,
                |walk, role, p| {
                    if walk.object(role, p, "role", ROLE_FIELDS) {
                        walk.options(role, p);
                    }
                },
            );
        }
        if let Some(dbs) = value.get("databases") {
            self.array(
                dbs,
                &format!("{pointer}/databases"),
                false,
                |walk, db, p| {
                    if walk.object(db, p, "database", DATABASE_FIELDS) {
                        walk.options(db, p);
                    }
                },
            );
        }
        if let Some(settings) = value.get("settings") {
            self.array(
                settings,
                &format!("{pointer}/settings"),
                true,
                |walk, o, p| {
                    walk.object(o, p, "setting", OPTION_FIELDS);
                },
            );
        }
    }

    fn options(&mut self, owner: &Value, pointer: &str) {
        // `null` needs no pointer: skip it before formatting one.
        if let Some(options) = owner.get("options").filter(|o| !o.is_null()) {
            self.array(
                options,
                &format!("{pointer}/options"),
                true,
                |walk, o, p| {
                    walk.object(o, p, "option", OPTION_FIELDS);
                },
            );
        }
    }

    fn array(
        &mut self,
        value: &Value,
        pointer: &str,
        nullable: bool,
        mut each: impl FnMut(&mut Self, &Value, &str),
    ) {
        match value {
            Value::Array(items) => {
                // One buffer for every item's pointer: no allocation per item.
                let mut item_pointer = String::with_capacity(pointer.len() + 8);
                for (i, item) in items.iter().enumerate() {
                    item_pointer.clear();
                    item_pointer.push_str(pointer);
                    let _ = write!(item_pointer, "/{i}");
                    each(self, item, &item_pointer);
                }
            }
            Value::Null if nullable => {}
            other if self.check_types => self.diagnostics.push(Diagnostic::new(
                codes::INVALID_TYPE,
                Severity::Error,
                pointer.to_owned(),
                format!("expected an array, found {}", kind_of(other)),
            )),
            _ => {}
        }
    }

    /// Checks one object against its field table; returns whether it is an object.
    fn object(&mut self, value: &Value, pointer: &str, what: &str, fields: &[Field]) -> bool {
        let Value::Object(map) = value else {
            if self.check_types {
                self.diagnostics.push(Diagnostic::new(
                    codes::INVALID_TYPE,
                    Severity::Error,
                    pointer.to_owned(),
                    format!("expected a {what} object, found {}", kind_of(value)),
                ));
            }
            return false;
        };
        for (key, field_value) in map {
            match fields.iter().find(|f| f.name == key) {
                Some(field) => {
                    if let (true, Check::Type(check)) = (self.check_types, field.check)
                        && let Err((below, message)) = check(field_value)
                    {
                        self.diagnostics.push(Diagnostic::new(
                            type_error_code(field.name, &message),
                            Severity::Error,
                            format!("{pointer}/{}{below}", escape_pointer(key)),
                            message,
                        ));
                    }
                }
                None => self
                    .diagnostics
                    .push(unknown_field(pointer, key, what, fields)),
            }
        }
        if self.check_types {
            for field in fields.iter().filter(|f| f.required) {
                if !map.contains_key(field.name) {
                    self.diagnostics.push(Diagnostic::new(
                        codes::MISSING_FIELD,
                        Severity::Error,
                        pointer.to_owned(),
                        format!("{what} has no `{}` field, which is required", field.name),
                    ));
                }
            }
        }
        true
    }
}

/// Unknown fields remembered by a typed spec (for specs that did not come from text).
pub(crate) fn typed_unknown_fields(spec: &crate::ComputeSpec, out: &mut Vec<Diagnostic>) {
    let mut report = |pointer: &str, fields: &crate::UnknownFields, what: &str, table: &[Field]| {
        for key in fields.keys() {
            out.push(unknown_field(pointer, key, what, table));
        }
    };
    report("", &spec.unknown_fields, "spec", SPEC_FIELDS);
    report(
        "/cluster",
        &spec.cluster.unknown_fields,
        "cluster",
        CLUSTER_FIELDS,
    );
    for (i, role) in spec.cluster.roles.iter().enumerate() {
        report(
            &format!("/cluster/roles/{i}"),
            &role.unknown_fields,
            "role",
            ROLE_FIELDS,
        );
    }
    for (i, db) in spec.cluster.databases.iter().enumerate() {
        let pointer = format!("/cluster/databases/{i}");
        report(&pointer, &db.unknown_fields, "database", DATABASE_FIELDS);
    }
}

fn unknown_field(pointer: &str, key: &str, what: &str, fields: &[Field]) -> Diagnostic {
    let suggestion = fields
        .iter()
        .map(|f| (strsim::jaro_winkler(key, f.name), f.name))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name);
    let mut message = format!("unknown field `{key}` in {what}; it is ignored");
    if let Some(name) = suggestion {
        message.push_str(&format!(" (did you mean `{name}`?)"));
    }
    Diagnostic::new(
        codes::UNKNOWN_FIELD,
        Severity::Warning,
        format!("{pointer}/{}", escape_pointer(key)),
        message,
    )
}

fn type_error_code(field: &str, message: &str) -> &'static str {
    match field {
        "tenant_id" => codes::INVALID_TENANT_ID,
        "timeline_id" => codes::INVALID_TIMELINE_ID,
        "mode" if message.contains("invalid LSN") => codes::INVALID_LSN,
        _ => codes::INVALID_TYPE,
    }
}

/// "a string", "an array", … for messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod plain_message_tests {
    use super::plain_message;

    #[test]
    fn rust_type_names_become_json_words() {
        for (serde, plain) in [
            (
                "invalid type: string \"1.0\", expected f32",
                "invalid type: string \"1.0\", expected a number",
            ),
            (
                "invalid value: integer `-5`, expected u64",
                "invalid value: integer `-5`, expected a non-negative integer",
            ),
            (
                "invalid type: floating point `1.5`, expected i64",
                "invalid type: number `1.5`, expected an integer",
            ),
            (
                "invalid value: integer `70000`, expected u16",
                "invalid value: integer `70000`, expected an integer from 0 to 65535",
            ),
            (
                "invalid type: null, expected a sequence",
                "invalid type: null, expected an array",
            ),
            (
                "invalid type: map, expected a string",
                "invalid type: an object, expected a string",
            ),
            (
                "invalid type: sequence, expected struct GenericOption",
                "invalid type: an array, expected an object",
            ),
            (
                "unknown variant `Standby`, expected one of `Primary`, `Static`",
                "unknown variant `Standby`, expected one of `Primary`, `Static`",
            ),
            ("missing field `name`", "missing field `name`"),
            ("invalid LSN \"x\"", "invalid LSN \"x\""),
        ] {
            assert_eq!(plain_message(serde), plain, "{serde}");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// The field tables must list exactly the properties of the generated schema, so unknown
    /// field detection and the types cannot drift apart.
    #[test]
    fn field_tables_match_the_schema() {
        let schema = crate::json_schema();
        for (name, mut fields) in field_tables() {
            let mut props: Vec<&str> = schema["$defs"][name]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("no {name} in the schema"))
                .keys()
                .map(String::as_str)
                .collect();
            if name == "Database" {
                // Derived, output-only fields: tolerated on input, absent from the schema.
                props.extend(["restrict_conn", "invalid"]);
            }
            props.sort_unstable();
            fields.sort_unstable();
            assert_eq!(fields, props, "{name}");
        }
    }

    /// Each field check accepts exactly what typed parsing accepts, for a set of probe values,
    /// so the slow path finds every error the fast path hits.
    #[test]
    fn field_checks_agree_with_typed_parsing() {
        let probes = [
            serde_json::json!(null),
            serde_json::json!(0),
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!("x"),
            serde_json::json!(true),
            serde_json::json!([]),
            serde_json::json!(["x"]),
            serde_json::json!({}),
        ];
        let base =
            serde_json::json!({"format_version": 1.0, "cluster": {"roles": [], "databases": []}});
        for field in SPEC_FIELDS {
            let Check::Type(check) = field.check else {
                continue;
            };
            for probe in &probes {
                let mut doc = base.clone();
                doc[field.name] = probe.clone();
                let typed = crate::ComputeSpec::deserialize(&doc).is_ok();
                assert_eq!(check(probe).is_ok(), typed, "{} = {probe}", field.name);
            }
        }
        let base =
            serde_json::json!({"name": "r", "owner": "o", "vartype": "string", "action": "a"});
        for (fields, parse) in [
            (
                ROLE_FIELDS,
                (|v: &Value| crate::Role::deserialize(v).is_ok()) as fn(&Value) -> bool,
            ),
            (DATABASE_FIELDS, |v| crate::Database::deserialize(v).is_ok()),
            (OPTION_FIELDS, |v| {
                crate::GenericOption::deserialize(v).is_ok()
            }),
            (DELTA_FIELDS, |v| crate::DeltaOp::deserialize(v).is_ok()),
        ] {
            for field in fields {
                let Check::Type(check) = field.check else {
                    continue;
                };
                for probe in &probes {
                    let mut doc = base.clone();
                    doc[field.name] = probe.clone();
                    assert_eq!(
                        check(probe).is_ok(),
                        parse(&doc),
                        "{} = {probe}",
                        field.name
                    );
                }
            }
        }
    }

    #[test]
    fn suggests_near_misses_only() {
        let check = |key: &str, expect: &str| {
            let d = unknown_field("/cluster/roles/0", key, "role", ROLE_FIELDS);
            assert_eq!(d.message, expect);
        };
        check(
            "encrypted_pasword",
            "unknown field `encrypted_pasword` in role; it is ignored (did you mean `encrypted_password`?)",
        );
        check(
            "nme",
            "unknown field `nme` in role; it is ignored (did you mean `name`?)",
        );
        check(
            "superuser",
            "unknown field `superuser` in role; it is ignored",
        );
    }
}
