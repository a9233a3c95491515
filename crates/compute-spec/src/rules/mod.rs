//! The semantic rules over a typed [`ComputeSpec`]: names, owners, password hashes and the
//! option allow-lists (from [`crate::options`]) here; the admin path (what compute_ctl needs
//! to keep connecting), delta operations, settings and storage in the submodules. Each
//! finding has a stable code (see [`crate::validate::codes`]) and a JSON pointer below
//! `prefix` (`""` or `"/spec"`). Besides findings, [`check`] returns what it typed on the way
//! ([`Typed`]), so nothing is parsed twice.

mod admin;
mod delta;
mod not_acted_on;
mod settings;
mod storage;

pub(crate) use storage::resolve_storage;

use std::collections::HashMap;

use crate::options::{self as allow_list, DatabaseOption, OptionProblem, PasswordHash, TypedRole};
use crate::spec::{ComputeSpec, GenericOption};
use crate::validate::{Diagnostic, Severity, ValidationOptions, codes};
use crate::values::{self, HashProblem};

/// What the rules typed from a spec: one entry per role and per database, in spec order
/// (complete only when no error was found).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Typed {
    pub(crate) roles: Vec<TypedRole>,
    pub(crate) databases: Vec<Vec<DatabaseOption>>,
}

impl Typed {
    /// Whether there is one entry per role and per database of `spec`.
    pub(crate) fn matches(&self, spec: &ComputeSpec) -> bool {
        self.roles.len() == spec.cluster.roles.len()
            && self.databases.len() == spec.cluster.databases.len()
    }
}

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

    /// Checks a role or database name (`what`), its length and characters. The pointer is
    /// built only when there is something to report.
    fn identifier(&mut self, what: &str, name: &str, at: impl FnOnce() -> String) {
        let problem = if name.is_empty() {
            Some((codes::EMPTY_IDENTIFIER, format!("{what} name is empty")))
        } else if name.contains('\0') {
            Some((
                codes::IDENTIFIER_NUL,
                format!("{what} name contains a NUL character, which PostgreSQL cannot store"),
            ))
        } else if name.len() > values::MAX_IDENTIFIER_BYTES {
            Some((
                codes::IDENTIFIER_TOO_LONG,
                format!(
                    "{what} name {name:?} is {} bytes long; PostgreSQL truncates names to {} bytes",
                    name.len(),
                    values::MAX_IDENTIFIER_BYTES
                ),
            ))
        } else {
            None
        };
        if let Some((code, message)) = problem {
            self.error(code, &at(), message);
        }
    }

    /// Reports the options an allow-list refused; `at` is the pointer of the option list.
    fn option_problems(&mut self, problems: Vec<OptionProblem>, at: &str) {
        for p in problems {
            self.error(p.code, &format!("{at}/{}", p.index), p.message);
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

/// Runs every rule over `spec`, appending findings to `out`; returns the typed roles and
/// databases.
pub(crate) fn check(
    spec: &ComputeSpec,
    prefix: &str,
    options: &ValidationOptions,
    out: &mut Vec<Diagnostic>,
) -> Typed {
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
    let mut typed = Typed::default();
    let roles = check_roles(&mut r, spec, &mut typed.roles);
    check_databases(&mut r, spec, &roles, options, &mut typed.databases);
    admin::check_admin_path(&mut r, spec, options);
    delta::check_delta_operations(&mut r, spec, options);
    settings::check_settings(&mut r, spec);
    storage::check_storage(&mut r, spec);
    storage::check_config_fields(&mut r, spec);
    not_acted_on::check(&mut r, spec);
    typed
}

fn check_roles<'s>(
    r: &mut Rules<'_>,
    spec: &'s ComputeSpec,
    typed: &mut Vec<TypedRole>,
) -> HashMap<&'s str, usize> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(spec.cluster.roles.len());
    typed.reserve(spec.cluster.roles.len());
    for (i, role) in spec.cluster.roles.iter().enumerate() {
        let at = |suffix: &str| format!("/cluster/roles/{i}{suffix}");
        r.identifier("role", &role.name, || at("/name"));
        if let Some(first) = seen.insert(&role.name, i) {
            seen.insert(&role.name, first);
            r.error(
                codes::DUPLICATE_ROLE,
                &at("/name"),
                format!(
                    "role {:?} is declared twice (first at /cluster/roles/{first})",
                    role.name
                ),
            );
        }
        reserved_role_name(r, &role.name, &at("/name"));
        let password = role
            .encrypted_password
            .as_deref()
            .and_then(|hash| check_password(r, &role.name, hash, &at("/encrypted_password")));
        let option_list = role.options.as_deref().unwrap_or_default();
        check_options(r, option_list, || at("/options"));
        let (role_options, problems) = allow_list::role_options(&role.name, option_list);
        r.option_problems(problems, &at("/options"));
        typed.push(TypedRole {
            options: role_options,
            password,
        });
    }
    seen
}

/// A role name PostgreSQL reserves (`pg_*`, `public`, `none`) or reads as a keyword.
fn reserved_role_name(r: &mut Rules<'_>, name: &str, at: &str) {
    let why = if name.starts_with("pg_") {
        "PostgreSQL refuses to create roles named pg_*"
    } else if crate::validate::RESERVED_ROLE_NAMES.contains(&name) {
        "PostgreSQL refuses it, or SQL reads it as a keyword"
    } else {
        return;
    };
    r.error(
        codes::RESERVED_ROLE_NAME,
        at,
        format!("role name {name:?} is reserved: {why}"),
    );
}

/// Checks an `encrypted_password`; its stored form when it is usable.
fn check_password(r: &mut Rules<'_>, role: &str, hash: &str, at: &str) -> Option<PasswordHash> {
    match values::check_password_hash(hash) {
        Ok(()) => {}
        Err(HashProblem::Md5WithoutPrefix) => r.warning(
            codes::MD5_WITHOUT_PREFIX,
            at,
            format!(
                "password hash of role {role:?} is an md5 hash without the `md5` prefix; \
                 it never compares equal to the stored hash, so the password is reset \
                 on every reconciliation"
            ),
        ),
        Err(HashProblem::Invalid(why)) => {
            r.error(
                codes::INVALID_PASSWORD_HASH,
                at,
                format!("password hash of role {role:?} is malformed: {why}"),
            );
            return None;
        }
    }
    Some(PasswordHash::from_valid(hash))
}

fn check_databases(
    r: &mut Rules<'_>,
    spec: &ComputeSpec,
    roles: &HashMap<&str, usize>,
    options: &ValidationOptions,
    typed: &mut Vec<Vec<DatabaseOption>>,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    typed.reserve(spec.cluster.databases.len());
    for (i, db) in spec.cluster.databases.iter().enumerate() {
        let at = |suffix: &str| format!("/cluster/databases/{i}{suffix}");
        r.identifier("database", &db.name, || at("/name"));
        r.identifier("owner", &db.owner, || at("/owner"));
        if let Some(first) = seen.insert(&db.name, i) {
            seen.insert(&db.name, first);
            r.error(
                codes::DUPLICATE_DATABASE,
                &at("/name"),
                format!(
                    "database {:?} is declared twice (first at /cluster/databases/{first})",
                    db.name
                ),
            );
        }
        if !db.owner.is_empty()
            && !roles.contains_key(db.owner.as_str())
            && !options.provided_roles.contains(&db.owner)
        {
            let suggestion = roles
                .keys()
                .copied()
                .chain(options.provided_roles.iter().map(String::as_str))
                .map(|name| (strsim::jaro_winkler(&db.owner, name), name))
                .filter(|(score, _)| *score >= 0.85)
                .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
                .map(|(_, name)| format!(" (did you mean {name:?}?)"))
                .unwrap_or_default();
            r.error(
                codes::UNKNOWN_OWNER,
                &at("/owner"),
                format!(
                    "owner {:?} of database {:?} is neither a role of the spec nor a role the compute provides{suggestion}",
                    db.owner, db.name
                ),
            );
        }
        let option_list = db.options.as_deref().unwrap_or_default();
        check_options(r, option_list, || at("/options"));
        let (db_options, problems) = allow_list::database_options(&db.name, option_list);
        r.option_problems(problems, &at("/options"));
        typed.push(db_options);
    }
}

fn check_options(r: &mut Rules<'_>, options: &[GenericOption], at: impl Fn() -> String) {
    for (i, option) in options.iter().enumerate() {
        let at = at();
        r.config_text("option name", &option.name, &format!("{at}/{i}/name"));
        if let Some(value) = &option.value {
            r.config_text("option value", value, &format!("{at}/{i}/value"));
        }
    }
}
