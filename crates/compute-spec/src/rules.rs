//! The semantic rules over a typed [`ComputeSpec`]: names, owners, delta operations, password
//! hashes, storage settings, GUC values. Each finding has a stable code (see
//! [`crate::validate::codes`]) and a JSON pointer below `prefix` (`""` or `"/spec"`).

use std::collections::{HashMap, HashSet};

use crate::spec::{
    ComputeSpec, DeltaAction, GenericOption, PageserverConnectionInfo, PageserverProtocol,
    PageserverShardConnectionInfo, PageserverShardInfo,
};
use crate::validate::{Diagnostic, Severity, StorageSettings, ValidationOptions, codes};
use crate::values::{self, HashProblem};
use crate::{TenantId, TimelineId};

struct Rules<'a> {
    prefix: &'a str,
    out: &'a mut Vec<Diagnostic>,
}

impl Rules<'_> {
    fn push(&mut self, code: &'static str, severity: Severity, at: &str, message: String) {
        self.out.push(Diagnostic::new(
            code,
            severity,
            format!("{}{at}", self.prefix),
            message,
        ));
    }

    fn error(&mut self, code: &'static str, at: &str, message: String) {
        self.push(code, Severity::Error, at, message);
    }

    fn warning(&mut self, code: &'static str, at: &str, message: String) {
        self.push(code, Severity::Warning, at, message);
    }

    /// Checks a role or database name (`what`), its length and characters.
    fn identifier(&mut self, what: &str, name: &str, at: &str) {
        if name.is_empty() {
            self.error(codes::EMPTY_IDENTIFIER, at, format!("{what} name is empty"));
        } else if name.contains('\0') {
            self.error(
                codes::IDENTIFIER_NUL,
                at,
                format!("{what} name contains a NUL character, which PostgreSQL cannot store"),
            );
        } else if name.len() > values::MAX_IDENTIFIER_BYTES {
            self.error(
                codes::IDENTIFIER_TOO_LONG,
                at,
                format!(
                    "{what} name {name:?} is {} bytes long; PostgreSQL truncates names to {} bytes",
                    name.len(),
                    values::MAX_IDENTIFIER_BYTES
                ),
            );
        }
    }

    /// Rejects characters that could start a new line in a config file.
    fn config_text(&mut self, what: &str, value: &str, at: &str) {
        if let Some((offset, c)) = values::injection_char(value) {
            self.error(
                codes::CONFIG_INJECTION,
                at,
                format!(
                    "{what} contains {} at byte {offset}; it could inject a line into a config file",
                    values::describe_char(c)
                ),
            );
        }
    }
}

/// Runs every rule over `spec`, appending findings to `out`.
pub(crate) fn check(
    spec: &ComputeSpec,
    prefix: &str,
    options: &ValidationOptions,
    out: &mut Vec<Diagnostic>,
) {
    let mut r = Rules { prefix, out };
    if spec.format_version != 1.0 {
        r.warning(
            codes::UNSUPPORTED_FORMAT_VERSION,
            "/format_version",
            format!(
                "format_version is {}; only 1.0 is known",
                spec.format_version
            ),
        );
    }
    for (i, feature) in spec.features.iter().enumerate() {
        if let crate::ComputeFeature::Unknown(name) = feature {
            r.warning(
                codes::UNKNOWN_FEATURE,
                &format!("/features/{i}"),
                format!(
                    "unknown feature flag {name:?}; it is ignored (known: activity_monitor_experimental, tls_experimental)"
                ),
            );
        }
    }
    let roles = check_roles(&mut r, spec);
    check_databases(&mut r, spec, &roles, options);
    check_delta_operations(&mut r, spec, options);
    check_settings(&mut r, spec);
    check_storage(&mut r, spec);
    check_config_fields(&mut r, spec);
}

fn check_roles<'s>(r: &mut Rules<'_>, spec: &'s ComputeSpec) -> HashSet<&'s str> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, role) in spec.cluster.roles.iter().enumerate() {
        let at = format!("/cluster/roles/{i}");
        r.identifier("role", &role.name, &format!("{at}/name"));
        if let Some(first) = seen.insert(&role.name, i) {
            seen.insert(&role.name, first);
            r.error(
                codes::DUPLICATE_ROLE,
                &format!("{at}/name"),
                format!(
                    "role {:?} is declared twice (first at /cluster/roles/{first})",
                    role.name
                ),
            );
        }
        if role.name.starts_with("pg_") {
            r.error(
                codes::RESERVED_ROLE_NAME,
                &format!("{at}/name"),
                format!(
                    "role name {:?} is reserved: PostgreSQL refuses to create roles named pg_*",
                    role.name
                ),
            );
        }
        if let Some(hash) = &role.encrypted_password {
            match values::check_password_hash(hash) {
                Ok(()) => {}
                Err(HashProblem::Md5WithoutPrefix) => r.warning(
                    codes::MD5_WITHOUT_PREFIX,
                    &format!("{at}/encrypted_password"),
                    format!(
                        "password hash of role {:?} is an md5 hash without the `md5` prefix; \
                         it never compares equal to the stored hash, so the password is reset \
                         on every reconciliation",
                        role.name
                    ),
                ),
                Err(HashProblem::Invalid(why)) => r.error(
                    codes::INVALID_PASSWORD_HASH,
                    &format!("{at}/encrypted_password"),
                    format!("password hash of role {:?} is malformed: {why}", role.name),
                ),
            }
        }
        check_options(r, role.options.as_deref(), &format!("{at}/options"));
    }
    seen.into_keys().collect()
}

fn check_databases(
    r: &mut Rules<'_>,
    spec: &ComputeSpec,
    roles: &HashSet<&str>,
    options: &ValidationOptions,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, db) in spec.cluster.databases.iter().enumerate() {
        let at = format!("/cluster/databases/{i}");
        r.identifier("database", &db.name, &format!("{at}/name"));
        r.identifier("owner", &db.owner, &format!("{at}/owner"));
        if let Some(first) = seen.insert(&db.name, i) {
            seen.insert(&db.name, first);
            r.error(
                codes::DUPLICATE_DATABASE,
                &format!("{at}/name"),
                format!(
                    "database {:?} is declared twice (first at /cluster/databases/{first})",
                    db.name
                ),
            );
        }
        if !db.owner.is_empty()
            && !roles.contains(db.owner.as_str())
            && !options.provided_roles.contains(&db.owner)
        {
            let suggestion = roles
                .iter()
                .copied()
                .chain(options.provided_roles.iter().map(String::as_str))
                .map(|name| (strsim::jaro_winkler(&db.owner, name), name))
                .filter(|(score, _)| *score >= 0.85)
                .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
                .map(|(_, name)| format!(" (did you mean {name:?}?)"))
                .unwrap_or_default();
            r.error(
                codes::UNKNOWN_OWNER,
                &format!("{at}/owner"),
                format!(
                    "owner {:?} of database {:?} is neither a role of the spec nor a role the compute provides{suggestion}",
                    db.owner, db.name
                ),
            );
        }
        check_options(r, db.options.as_deref(), &format!("{at}/options"));
    }
}

fn check_options(r: &mut Rules<'_>, options: Option<&[GenericOption]>, at: &str) {
    for (i, option) in options.unwrap_or_default().iter().enumerate() {
        r.config_text("option name", &option.name, &format!("{at}/{i}/name"));
        if let Some(value) = &option.value {
            r.config_text("option value", value, &format!("{at}/{i}/value"));
        }
    }
}

/// Simulates the delta operations in order over the names they touch.
fn check_delta_operations(r: &mut Rules<'_>, spec: &ComputeSpec, options: &ValidationOptions) {
    let Some(ops) = &spec.delta_operations else {
        return;
    };
    let spec_roles: HashSet<&str> = spec.cluster.roles.iter().map(|x| x.name.as_str()).collect();
    let spec_dbs: HashSet<&str> = spec
        .cluster
        .databases
        .iter()
        .map(|x| x.name.as_str())
        .collect();
    // Per kind (role, database): name → index of the op that removed it / produced it.
    let mut gone: [HashMap<&str, usize>; 2] = Default::default();
    let mut produced: [HashMap<&str, usize>; 2] = Default::default();
    for (i, op) in ops.iter().enumerate() {
        let at = format!("/delta_operations/{i}");
        let Some(action) = op.kind() else {
            r.warning(
                codes::DELTA_UNKNOWN_ACTION,
                &format!("{at}/action"),
                format!(
                    "unknown delta action {:?}; compute_ctl ignores it (known: delete_role, rename_role, delete_db, rename_db)",
                    op.action
                ),
            );
            continue;
        };
        let (kind, what, declared) = match action {
            DeltaAction::DeleteRole | DeltaAction::RenameRole => (0, "role", &spec_roles),
            DeltaAction::DeleteDb | DeltaAction::RenameDb => (1, "database", &spec_dbs),
        };
        r.identifier(what, &op.name, &format!("{at}/name"));
        if kind == 0 && options.provided_roles.contains(&op.name) {
            r.error(
                codes::DELTA_PROVIDED_ROLE,
                &format!("{at}/name"),
                format!(
                    "role {:?} is provided by the compute itself; a delta operation must not delete or rename it",
                    op.name
                ),
            );
        }
        if let Some(&earlier) = gone[kind].get(op.name.as_str()) {
            r.error(
                codes::DELTA_CONFLICT,
                &format!("{at}/name"),
                format!(
                    "{what} {:?} no longer exists here: delta operation {earlier} already deleted or renamed it",
                    op.name
                ),
            );
        }
        match action {
            DeltaAction::DeleteRole | DeltaAction::DeleteDb => {
                if declared.contains(op.name.as_str()) {
                    r.warning(
                        codes::DELTA_DELETES_DECLARED,
                        &format!("{at}/name"),
                        format!(
                            "{what} {:?} is deleted, but the spec declares it: it is dropped and created again",
                            op.name
                        ),
                    );
                }
                if action == DeltaAction::DeleteRole {
                    for (j, db) in spec.cluster.databases.iter().enumerate() {
                        if db.owner == op.name {
                            r.error(
                                codes::DELETE_ROLE_OWNS_DATABASE,
                                &format!("{at}/name"),
                                format!(
                                    "role {:?} is deleted but owns database {:?} of the spec (/cluster/databases/{j})",
                                    op.name, db.name
                                ),
                            );
                        }
                    }
                }
                gone[kind].insert(&op.name, i);
                produced[kind].remove(op.name.as_str());
            }
            DeltaAction::RenameRole | DeltaAction::RenameDb => {
                let Some(new_name) = op.new_name.as_deref() else {
                    r.error(
                        codes::DELTA_MISSING_NEW_NAME,
                        &at,
                        format!("rename of {what} {:?} has no new_name", op.name),
                    );
                    continue;
                };
                let new_at = format!("{at}/new_name");
                r.identifier(what, new_name, &new_at);
                if new_name == op.name {
                    r.error(
                        codes::DELTA_RENAME_ONTO_EXISTING,
                        &new_at,
                        format!("{what} {:?} is renamed onto itself", op.name),
                    );
                } else if let Some(&earlier) = produced[kind].get(new_name) {
                    r.error(
                        codes::DELTA_RENAME_ONTO_EXISTING,
                        &new_at,
                        format!(
                            "{what} {:?} is renamed to {new_name:?}, which delta operation {earlier} already produced",
                            op.name
                        ),
                    );
                } else if declared.contains(op.name.as_str()) {
                    r.error(
                        codes::DELTA_RENAME_SOURCE_DECLARED,
                        &format!("{at}/name"),
                        format!(
                            "{what} {:?} is renamed to {new_name:?}, but the spec still declares {:?}: it would be created again",
                            op.name, op.name
                        ),
                    );
                }
                if !declared.contains(new_name) {
                    r.warning(
                        codes::DELTA_RENAME_TARGET_UNDECLARED,
                        &new_at,
                        format!(
                            "{what} {:?} is renamed to {new_name:?}, which the spec does not declare",
                            op.name
                        ),
                    );
                }
                gone[kind].insert(&op.name, i);
                gone[kind].remove(new_name);
                produced[kind].insert(new_name, i);
            }
        }
    }
}

/// Whether a value is an ALL_CAPS template placeholder such as `TENANT_ID`.
fn is_placeholder(value: &str) -> bool {
    value.len() >= 2
        && value.starts_with(|c: char| c.is_ascii_uppercase())
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn check_settings(r: &mut Rules<'_>, spec: &ComputeSpec) {
    let settings = spec.cluster.settings.as_deref().unwrap_or_default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, s) in settings.iter().enumerate() {
        let at = format!("/cluster/settings/{i}");
        if !values::is_guc_name(&s.name) {
            r.error(
                codes::INVALID_SETTING_NAME,
                &format!("{at}/name"),
                format!(
                    "{:?} is not a setting name: letters, digits and underscores, in parts separated by dots",
                    s.name
                ),
            );
        }
        let Some(value) = &s.value else {
            r.error(
                codes::MISSING_VALUE,
                &at,
                format!("setting {:?} has no value", s.name),
            );
            continue;
        };
        let value_at = format!("{at}/value");
        r.config_text(&format!("value of setting {:?}", s.name), value, &value_at);
        let (ok, expected) = match s.vartype.as_str() {
            "bool" => (
                values::is_pg_bool(value),
                "a boolean (on/off, true/false, yes/no, 1/0)",
            ),
            "integer" => (
                values::is_pg_integer(value),
                "an integer, optionally with a unit such as 32MB or 5s",
            ),
            "real" => (values::is_pg_real(value), "a number"),
            "enum" => (!value.trim().is_empty(), "a non-empty enum value"),
            "string" => (true, ""),
            other => {
                r.warning(
                    codes::UNKNOWN_VARTYPE,
                    &format!("{at}/vartype"),
                    format!(
                        "unknown vartype {other:?} of setting {:?} (known: bool, integer, real, enum, string); the value is written unquoted",
                        s.name
                    ),
                );
                (true, "")
            }
        };
        if !ok {
            let shown = if is_secret_setting(&s.name) {
                "<hidden>".to_owned()
            } else {
                format!("{value:?}")
            };
            r.error(
                codes::VARTYPE_MISMATCH,
                &value_at,
                format!(
                    "value {shown} of setting {:?} is not {expected}, as its vartype {:?} requires",
                    s.name, s.vartype
                ),
            );
        }
        let key = s.name.to_ascii_lowercase();
        match seen.get(&key) {
            None => {
                seen.insert(key, i);
            }
            Some(&first) => {
                let same = settings[first].value == s.value;
                if STORAGE_GUCS.contains(&key.as_str()) && !same {
                    r.error(
                        codes::CONFLICTING_STORAGE_SETTING,
                        &value_at,
                        format!(
                            "storage setting {:?} is given twice with different values (first at /cluster/settings/{first})",
                            s.name
                        ),
                    );
                } else {
                    r.warning(
                        codes::DUPLICATE_SETTING,
                        &format!("{at}/name"),
                        format!(
                            "setting {:?} is given twice (first at /cluster/settings/{first}){}",
                            s.name,
                            if same { "" } else { "; the last value wins" }
                        ),
                    );
                }
            }
        }
    }
}

const STORAGE_GUCS: &[&str] = &[
    "neon.tenant_id",
    "neon.timeline_id",
    "neon.pageserver_connstring",
    "neon.safekeepers",
    "neon.stripe_size",
];

fn is_secret_setting(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("token") || n.contains("password") || n.contains("secret")
}

/// Index and value of the first setting named `name`.
fn setting<'a>(spec: &'a ComputeSpec, name: &str) -> Option<(usize, &'a str)> {
    spec.cluster
        .settings
        .as_ref()?
        .iter()
        .enumerate()
        .find(|(_, o)| o.name == name)
        .and_then(|(i, o)| Some((i, o.value.as_deref()?)))
}

fn check_storage(r: &mut Rules<'_>, spec: &ComputeSpec) {
    // Tenant and timeline GUCs: placeholders warn, malformed values fail, conflicts fail.
    fn id_guc<T: std::str::FromStr + PartialEq + std::fmt::Display>(
        r: &mut Rules<'_>,
        spec: &ComputeSpec,
        guc: &str,
        top: Option<T>,
        top_field: &str,
        code: &'static str,
    ) {
        let Some((i, value)) = setting(spec, guc) else {
            return;
        };
        let at = format!("/cluster/settings/{i}/value");
        match value.parse::<T>() {
            Ok(parsed) => {
                if let Some(top) = top.filter(|t| *t != parsed) {
                    r.error(
                        codes::CONFLICTING_STORAGE_SETTING,
                        &at,
                        format!("{guc} is {parsed}, but {top_field} is {top}"),
                    );
                }
            }
            Err(_) if is_placeholder(value) => r.warning(
                codes::PLACEHOLDER_VALUE,
                &at,
                format!(
                    "{guc} is the template placeholder {value:?}; substitute a real value before use"
                ),
            ),
            Err(_) => r.error(
                code,
                &at,
                format!("{guc} {value:?} is not 32 hexadecimal digits"),
            ),
        }
    }
    id_guc::<TenantId>(
        r,
        spec,
        "neon.tenant_id",
        spec.tenant_id,
        "tenant_id",
        codes::INVALID_TENANT_ID,
    );
    id_guc::<TimelineId>(
        r,
        spec,
        "neon.timeline_id",
        spec.timeline_id,
        "timeline_id",
        codes::INVALID_TIMELINE_ID,
    );

    if let (Some(top), Some((i, guc))) = (
        spec.pageserver_connstring.as_deref(),
        setting(spec, "neon.pageserver_connstring"),
    ) {
        if top.trim() != guc.trim() {
            r.error(
                codes::CONFLICTING_STORAGE_SETTING,
                &format!("/cluster/settings/{i}/value"),
                "neon.pageserver_connstring differs from pageserver_connstring".to_owned(),
            );
        }
    }
    if let (Some(top), Some((i, guc))) = (spec.shard_stripe_size, setting(spec, "neon.stripe_size"))
    {
        if guc.trim().parse::<u32>().ok() != Some(top) {
            r.error(
                codes::CONFLICTING_STORAGE_SETTING,
                &format!("/cluster/settings/{i}/value"),
                format!("neon.stripe_size is {guc:?}, but shard_stripe_size is {top}"),
            );
        }
    }

    // Safekeepers: duplicates, and conflicts between the list and the GUC.
    let guc = setting(spec, "neon.safekeepers");
    let guc_list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if !spec.safekeeper_connstrings.is_empty() {
        let mut seen = HashSet::new();
        for (i, sk) in spec.safekeeper_connstrings.iter().enumerate() {
            let at = format!("/safekeeper_connstrings/{i}");
            r.config_text("safekeeper address", sk, &at);
            check_safekeeper_address(r, sk, &at);
            if !seen.insert(sk.trim()) && spec.mode.is_primary() {
                r.error(
                    codes::DUPLICATE_SAFEKEEPER,
                    &format!("/safekeeper_connstrings/{i}"),
                    format!("duplicate entry in safekeeper_connstrings: {sk:?}"),
                );
            }
        }
        if let Some((i, value)) = guc {
            if guc_list(value) != spec.safekeeper_connstrings {
                r.error(
                    codes::CONFLICTING_STORAGE_SETTING,
                    &format!("/cluster/settings/{i}/value"),
                    "neon.safekeepers differs from safekeeper_connstrings".to_owned(),
                );
            }
        }
    } else if let Some((i, value)) = guc.filter(|_| spec.mode.is_primary()) {
        let mut seen = HashSet::new();
        for sk in guc_list(value) {
            check_safekeeper_address(r, &sk, &format!("/cluster/settings/{i}/value"));
            if !seen.insert(sk.clone()) {
                r.error(
                    codes::DUPLICATE_SAFEKEEPER,
                    &format!("/cluster/settings/{i}/value"),
                    format!("duplicate entry in neon.safekeepers: {sk:?}"),
                );
            }
        }
    }

    let storage = resolve_storage(spec);
    if spec.mode.is_primary() && storage.pageserver.is_some() && storage.safekeepers.is_empty() {
        r.error(
            codes::PRIMARY_WITHOUT_SAFEKEEPERS,
            "",
            "a Primary with a pageserver needs safekeepers: set safekeeper_connstrings or the neon.safekeepers setting".to_owned(),
        );
    }
    if let Some(ps) = &storage.pageserver {
        if ps.shard_count > 1 && ps.stripe_size.is_none() {
            r.error(
                codes::MISSING_STRIPE_SIZE,
                if spec.pageserver_connection_info.is_some() {
                    "/pageserver_connection_info"
                } else {
                    ""
                },
                format!(
                    "{} pageserver shards need a stripe size (shard_stripe_size or neon.stripe_size)",
                    ps.shard_count
                ),
            );
        }
    }
}

/// A safekeeper is `host:port` (IPv6 hosts in brackets), port 1..=65535.
fn check_safekeeper_address(r: &mut Rules<'_>, address: &str, at: &str) {
    let address = address.trim();
    let ok = address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !ok {
        r.error(
            codes::INVALID_SAFEKEEPER_ADDRESS,
            at,
            format!("safekeeper address {address:?} is not host:port"),
        );
    }
}

/// Free-text fields that end up in config files or environment variables.
fn check_config_fields(r: &mut Rules<'_>, spec: &ComputeSpec) {
    let fields = [
        ("pageserver_connstring", &spec.pageserver_connstring),
        ("project_id", &spec.project_id),
        ("branch_id", &spec.branch_id),
        ("endpoint_id", &spec.endpoint_id),
        ("storage_auth_token", &spec.storage_auth_token),
        ("logs_export_host", &spec.logs_export_host),
        ("endpoint_storage_addr", &spec.endpoint_storage_addr),
        ("endpoint_storage_token", &spec.endpoint_storage_token),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            r.config_text(name, value, &format!("/{name}"));
        }
    }
    for (key, value) in spec.pgbouncer_settings.iter().flatten() {
        let at = format!("/pgbouncer_settings/{}", crate::shape::escape_pointer(key));
        r.config_text("pgbouncer setting name", key, &at);
        r.config_text(&format!("pgbouncer setting {key:?}"), value, &at);
    }
}

/// Storage settings in upstream's order: top-level fields first, then the `neon.*` GUCs.
pub(crate) fn resolve_storage(spec: &ComputeSpec) -> StorageSettings {
    let value = |name: &str| setting(spec, name).map(|(_, v)| v);
    let tenant_id = spec
        .tenant_id
        .or_else(|| value("neon.tenant_id").and_then(|v| v.parse().ok()));
    let timeline_id = spec
        .timeline_id
        .or_else(|| value("neon.timeline_id").and_then(|v| v.parse().ok()));
    let legacy = spec
        .pageserver_connstring
        .as_deref()
        .or_else(|| value("neon.pageserver_connstring"));
    let pageserver = spec.pageserver_connection_info.clone().or_else(|| {
        let connstrs: Vec<&str> = legacy?.split(',').map(str::trim).collect();
        let count = if connstrs.len() == 1 {
            0
        } else {
            u8::try_from(connstrs.len()).unwrap_or(u8::MAX)
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
                .or_else(|| value("neon.stripe_size").and_then(|v| v.trim().parse().ok())),
            shards,
            prefer_protocol: PageserverProtocol::Libpq,
        })
    });
    let safekeepers = if !spec.safekeeper_connstrings.is_empty() {
        spec.safekeeper_connstrings.clone()
    } else if spec.mode.is_primary() {
        value("neon.safekeepers")
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
