//! The allow-lists of role and database options: spec `GenericOption`s are parsed into typed
//! values here and rendered by us, never pasted into SQL.
//!
//! Option names are matched case-insensitively, with `_` and spaces equivalent
//! (`CONNECTION LIMIT` = `connection_limit`). Anything not listed is refused with
//! [`PlanProblem::UnknownOption`]; `SUPERUSER` and `PASSWORD` are refused on purpose (the
//! password comes from `encrypted_password`; superuser roles are not created from a spec).

use compute_spec::GenericOption;

use crate::catalog::ValidUntil;
use crate::error::PlanProblem;

/// Role attributes a spec may set, after defaults and options are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleAttributes {
    pub(crate) inherit: bool,
    pub(crate) createrole: bool,
    pub(crate) createdb: bool,
    pub(crate) login: bool,
    pub(crate) replication: bool,
    pub(crate) bypassrls: bool,
    pub(crate) connection_limit: i32,
    /// `None`: not managed (PostgreSQL cannot set it back to NULL).
    pub(crate) valid_until: Option<ValidUntil>,
    /// Extra memberships from `IN ROLE` options.
    pub(crate) in_roles: Vec<String>,
}

impl RoleAttributes {
    /// What upstream gives a spec role: `INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION LOGIN`.
    pub(crate) fn spec_defaults() -> RoleAttributes {
        RoleAttributes {
            inherit: true,
            createrole: true,
            createdb: true,
            login: true,
            replication: true,
            bypassrls: true,
            connection_limit: -1,
            valid_until: None,
            in_roles: Vec::new(),
        }
    }

    /// What upstream gives a role that logs in through local_proxy JWKS: `LOGIN` only.
    pub(crate) fn plain_login() -> RoleAttributes {
        RoleAttributes {
            inherit: true,
            createrole: false,
            createdb: false,
            login: true,
            replication: false,
            bypassrls: false,
            connection_limit: -1,
            valid_until: None,
            in_roles: Vec::new(),
        }
    }
}

fn normalized(name: &str) -> String {
    name.split(|c: char| c.is_whitespace() || c == '_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
        .to_ascii_uppercase()
}

fn parse_bool(value: Option<&str>) -> Option<bool> {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => Some(true),
        Some(v) => match v.as_str() {
            "true" | "on" | "yes" | "1" | "t" => Some(true),
            "false" | "off" | "no" | "0" | "f" => Some(false),
            _ => None,
        },
    }
}

/// Why `name` cannot be a PostgreSQL role or database name as given, if it cannot: empty,
/// longer than 63 bytes (PostgreSQL would silently truncate it, so it would never compare
/// equal), or containing NUL.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 63 {
        Some("is longer than 63 bytes")
    } else if name.contains('\0') {
        Some("contains NUL")
    } else {
        None
    }
}

fn is_simple_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Applies the options of role `role` (at JSON pointer `pointer`) on top of `attrs`.
pub(crate) fn apply_role_options(
    role: &str,
    pointer: &str,
    options: &[GenericOption],
    attrs: &mut RoleAttributes,
    problems: &mut Vec<PlanProblem>,
) {
    for (i, opt) in options.iter().enumerate() {
        let at = format!("{pointer}/options/{i}");
        let bad = |expected: &str| PlanProblem::BadOptionValue {
            object: role.to_owned(),
            pointer: at.clone(),
            option: opt.name.clone(),
            expected: expected.to_owned(),
        };
        let name = normalized(&opt.name);
        let flag = |positive: bool| parse_bool(opt.value.as_deref()).map(|b| b == positive);
        let value = opt.value.as_deref();
        match name.as_str() {
            "LOGIN" | "NOLOGIN" => match flag(name == "LOGIN") {
                Some(b) => attrs.login = b,
                None => problems.push(bad("true or false")),
            },
            "CREATEDB" | "NOCREATEDB" => match flag(name == "CREATEDB") {
                Some(b) => attrs.createdb = b,
                None => problems.push(bad("true or false")),
            },
            "CREATEROLE" | "NOCREATEROLE" => match flag(name == "CREATEROLE") {
                Some(b) => attrs.createrole = b,
                None => problems.push(bad("true or false")),
            },
            "REPLICATION" | "NOREPLICATION" => match flag(name == "REPLICATION") {
                Some(b) => attrs.replication = b,
                None => problems.push(bad("true or false")),
            },
            "BYPASSRLS" | "NOBYPASSRLS" => match flag(name == "BYPASSRLS") {
                Some(b) => attrs.bypassrls = b,
                None => problems.push(bad("true or false")),
            },
            "INHERIT" | "NOINHERIT" => match flag(name == "INHERIT") {
                Some(b) => attrs.inherit = b,
                None => problems.push(bad("true or false")),
            },
            "CONNECTION_LIMIT" => match value.and_then(|v| v.trim().parse::<i32>().ok()) {
                Some(n) if n >= -1 => attrs.connection_limit = n,
                _ => problems.push(bad("an integer, -1 for no limit")),
            },
            "VALID_UNTIL" => match value.and_then(parse_valid_until) {
                Some(v) => attrs.valid_until = Some(v),
                None => problems.push(bad(
                    "'infinity' or a timestamp YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][Z|+HH[:MM]]",
                )),
            },
            "IN_ROLE" => match value {
                Some(v) if name_problem(v).is_none() => attrs.in_roles.push(v.to_owned()),
                _ => problems.push(bad("the name of a role")),
            },
            _ if name.starts_with("IN_ROLE_") && value.is_none() => {
                // Upstream's form: the whole clause in the name, e.g. `IN ROLE pg_monitor`.
                // Accepted only for plain lower-case names, which need no quoting rules.
                let list = opt.name.trim().get(7..).unwrap_or_default().trim();
                let names: Vec<&str> = list.split(',').map(str::trim).collect();
                if names.iter().all(|n| is_simple_ident(n)) {
                    attrs.in_roles.extend(names.iter().map(|n| (*n).to_owned()));
                } else {
                    problems.push(bad(
                        "plain lower-case role names; use {\"name\":\"IN ROLE\",\"value\":NAME}",
                    ));
                }
            }
            _ => problems.push(PlanProblem::UnknownOption {
                object: role.to_owned(),
                pointer: at,
                option: opt.name.clone(),
                allowed: "LOGIN, NOLOGIN, CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS, INHERIT \
                          (and their NO forms), CONNECTION LIMIT, VALID UNTIL, IN ROLE",
            }),
        }
    }
}

/// A database option a spec may set, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DatabaseOption {
    /// A string-valued creation option (`TEMPLATE`, `ENCODING`, `LOCALE`, …): keyword and value.
    Text(&'static str, String),
    /// `ALLOW_CONNECTIONS`.
    AllowConnections(bool),
    /// `IS_TEMPLATE`.
    IsTemplate(bool),
    /// `CONNECTION LIMIT`.
    ConnectionLimit(i32),
}

const TEXT_DB_OPTIONS: &[&str] = &[
    "TEMPLATE",
    "ENCODING",
    "STRATEGY",
    "LOCALE",
    "LC_COLLATE",
    "LC_CTYPE",
    "ICU_LOCALE",
    "LOCALE_PROVIDER",
    "COLLATION_VERSION",
    "TABLESPACE",
];

/// Parses the options of database `db` (at JSON pointer `pointer`).
pub(crate) fn parse_database_options(
    db: &str,
    pointer: &str,
    options: &[GenericOption],
    problems: &mut Vec<PlanProblem>,
) -> Vec<DatabaseOption> {
    let mut out = Vec::new();
    for (i, opt) in options.iter().enumerate() {
        let at = format!("{pointer}/options/{i}");
        let bad = |expected: &str| PlanProblem::BadOptionValue {
            object: db.to_owned(),
            pointer: at.clone(),
            option: opt.name.clone(),
            expected: expected.to_owned(),
        };
        let name = normalized(&opt.name);
        let value = opt.value.as_deref();
        if let Some(keyword) = TEXT_DB_OPTIONS.iter().find(|k| **k == name) {
            match value {
                Some(v) if !v.is_empty() && !v.contains('\0') => {
                    out.push(DatabaseOption::Text(keyword, v.to_owned()))
                }
                _ => problems.push(bad("a non-empty string")),
            }
            continue;
        }
        match name.as_str() {
            "ALLOW_CONNECTIONS" => match value.and_then(|v| parse_bool(Some(v))) {
                Some(b) => out.push(DatabaseOption::AllowConnections(b)),
                None => problems.push(bad("true or false")),
            },
            "IS_TEMPLATE" => match value.and_then(|v| parse_bool(Some(v))) {
                Some(b) => out.push(DatabaseOption::IsTemplate(b)),
                None => problems.push(bad("true or false")),
            },
            "CONNECTION_LIMIT" => match value.and_then(|v| v.trim().parse::<i32>().ok()) {
                Some(n) if n >= -1 => out.push(DatabaseOption::ConnectionLimit(n)),
                _ => problems.push(bad("an integer, -1 for no limit")),
            },
            _ => problems.push(PlanProblem::UnknownOption {
                object: db.to_owned(),
                pointer: at,
                option: opt.name.clone(),
                allowed: "TEMPLATE, ENCODING, STRATEGY, LOCALE, LC_COLLATE, LC_CTYPE, ICU_LOCALE, \
                          LOCALE_PROVIDER, COLLATION_VERSION, TABLESPACE, ALLOW_CONNECTIONS, \
                          CONNECTION LIMIT, IS_TEMPLATE",
            }),
        }
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn digits(s: &str, n: usize) -> Option<i64> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parses `infinity`, `-infinity` or `YYYY-MM-DD[( |T)HH:MM[:SS[.f{1,6}]]][Z|UTC|±HH[[:]MM]]`.
/// A timestamp without a zone is taken as UTC.
pub(crate) fn parse_valid_until(text: &str) -> Option<ValidUntil> {
    let t = text.trim();
    match t.to_ascii_lowercase().as_str() {
        "infinity" => return Some(ValidUntil::Infinity),
        "-infinity" => return Some(ValidUntil::NegativeInfinity),
        _ => {}
    }
    if t.len() < 10 || !t.is_char_boundary(10) {
        return None;
    }
    let (date, rest) = t.split_at(10);
    let mut parts = date.split('-');
    let (y, m, d) = (
        digits(parts.next()?, 4)?,
        digits(parts.next()?, 2)?,
        digits(parts.next()?, 2)?,
    );
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let max_day = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if d < 1 || d > max_day {
        return None;
    }
    let mut micros = days_from_civil(y, m, d) * 86_400_000_000;
    let mut rest = rest;
    if let Some(time) = rest.strip_prefix([' ', 'T']) {
        let end = time
            .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
            .unwrap_or(time.len());
        let (clock, zone) = time.split_at(end);
        let (hms, frac) = match clock.split_once('.') {
            Some((a, f)) if (1..=6).contains(&f.len()) => (a, Some(f)),
            Some(_) => return None,
            None => (clock, None),
        };
        let mut fields = hms.split(':');
        let h = digits(fields.next()?, 2)?;
        let mi = digits(fields.next()?, 2)?;
        let s = match fields.next() {
            Some(s) => digits(s, 2)?,
            None if frac.is_none() => 0,
            None => return None,
        };
        if fields.next().is_some() || h > 23 || mi > 59 || s > 59 {
            return None;
        }
        let f = match frac {
            Some(f) => digits(f, f.len())? * 10_i64.pow(6 - f.len() as u32),
            None => 0,
        };
        micros += ((h * 60 + mi) * 60 + s) * 1_000_000 + f;
        rest = zone;
    }
    let rest = rest.trim_start();
    let offset_minutes = match rest {
        "" | "Z" | "z" | "UTC" | "utc" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let z = rest[1..].replace(':', "");
            if !z.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let (hh, mm) = match z.len() {
                2 => (digits(&z, 2)?, 0),
                4 => (digits(&z[..2], 2)?, digits(&z[2..], 2)?),
                _ => return None,
            };
            if hh > 15 || mm > 59 {
                return None;
            }
            sign * (hh * 60 + mm)
        }
    };
    Some(ValidUntil::At(micros - offset_minutes * 60_000_000))
}

/// The SQL literal text of a `VALID UNTIL` value, unambiguous whatever the session's
/// `DateStyle` and `TimeZone`: ISO, with an explicit `+00` zone.
pub(crate) fn render_valid_until(v: ValidUntil) -> String {
    match v {
        ValidUntil::Infinity => "infinity".to_owned(),
        ValidUntil::NegativeInfinity => "-infinity".to_owned(),
        ValidUntil::At(us) => {
            let days = us.div_euclid(86_400_000_000);
            let rem = us.rem_euclid(86_400_000_000);
            let (y, m, d) = civil_from_days(days);
            let secs = rem / 1_000_000;
            let frac = rem % 1_000_000;
            format!(
                "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{frac:06}+00",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            )
        }
    }
}

/// Problems with a spec's role and database options that do not depend on the cluster's
/// state — options off the allow-list and values that cannot be rendered — i.e. what
/// [`crate::plan`] refuses on any catalog. `spec-check` and compute_ctl's `/configure` call it
/// so that such a spec is rejected before anything runs.
///
/// Pointers are relative to the spec object (prefix them with `/spec` for a wrapper document).
pub fn check_options(spec: &compute_spec::ComputeSpec) -> Vec<PlanProblem> {
    let mut problems = Vec::new();
    let cluster = &spec.cluster;
    for (i, role) in cluster.roles.iter().enumerate() {
        let mut attrs = RoleAttributes::spec_defaults();
        let options = role.options.as_deref().unwrap_or_default();
        let pointer = format!("/cluster/roles/{i}");
        apply_role_options(&role.name, &pointer, options, &mut attrs, &mut problems);
    }
    for (i, db) in cluster.databases.iter().enumerate() {
        let options = db.options.as_deref().unwrap_or_default();
        let pointer = format!("/cluster/databases/{i}");
        parse_database_options(&db.name, &pointer, options, &mut problems);
    }
    problems
}

/// Diagnostic code: a role or database option that the allow-list refuses.
pub const OPTION_NOT_ALLOWED: &str = "option-not-allowed";
/// Diagnostic code: an allowed option whose value cannot be rendered.
pub const BAD_OPTION_VALUE: &str = "bad-option-value";

/// [`check_options`] as located-spec diagnostics (errors), with pointers prefixed by
/// `spec_pointer` (`""` for a bare spec, `"/spec"` for a wrapper), for `spec-check` and for
/// compute_ctl's acceptance of a spec. Fill in line:column with
/// [`compute_spec::locate_diagnostics`].
pub fn option_diagnostics(
    spec: &compute_spec::ComputeSpec,
    spec_pointer: &str,
) -> Vec<compute_spec::Diagnostic> {
    check_options(spec)
        .iter()
        .map(|problem| {
            let code = match problem {
                PlanProblem::UnknownOption { .. } => OPTION_NOT_ALLOWED,
                _ => BAD_OPTION_VALUE,
            };
            let message = problem.to_string();
            // The problem's text starts with its pointer; a diagnostic carries it apart.
            let message = message
                .strip_prefix(&format!("{}: ", problem.pointer()))
                .unwrap_or(&message)
                .to_owned();
            let pointer = format!("{spec_pointer}{}", problem.pointer());
            compute_spec::Diagnostic::new(code, compute_spec::Severity::Error, pointer, message)
        })
        .collect()
}

/// compute-spec's [`validate_json`](compute_spec::validate_json) of a document, plus
/// [`option_diagnostics`] located in the text: every finding that a spec meant for this
/// reconciler can have before it meets a database. `spec-check` reports these;
/// compute_ctl accepts a spec only through
/// [`Validation::into_validated`](compute_spec::Validation::into_validated) of them.
pub fn validate_for_reconcile(
    text: &str,
    options: &compute_spec::ValidationOptions,
) -> compute_spec::Validation {
    let mut validation = compute_spec::validate_json(text, options);
    if let Some(spec) = &validation.spec {
        let extra = option_diagnostics(spec, validation.spec_pointer);
        if !extra.is_empty() {
            validation.report.diagnostics.extend(extra);
            compute_spec::locate_diagnostics(text, &mut validation.report.diagnostics);
        }
    }
    validation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_until_forms() {
        let check = |input: &str, expect: Option<&str>| {
            let got = parse_valid_until(input).map(render_valid_until);
            assert_eq!(got.as_deref(), expect, "input {input:?}");
        };
        check("infinity", Some("infinity"));
        check("2030-01-02", Some("2030-01-02 00:00:00.000000+00"));
        check("2030-01-02 03:04", Some("2030-01-02 03:04:00.000000+00"));
        check(
            "2030-01-02T03:04:05Z",
            Some("2030-01-02 03:04:05.000000+00"),
        );
        check(
            "2030-01-02 03:04:05.5+02",
            Some("2030-01-02 01:04:05.500000+00"),
        );
        check(
            "2030-01-02 00:30:00-01:30",
            Some("2030-01-02 02:00:00.000000+00"),
        );
        check(
            "1969-12-31 23:59:59.999999",
            Some("1969-12-31 23:59:59.999999+00"),
        );
        check("2024-02-29", Some("2024-02-29 00:00:00.000000+00"));
        check("2023-02-29", None);
        check("2030-13-01", None);
        check("tomorrow", None);
        check("2030-01-02 25:00", None);
        check("2030-01-02; DROP ROLE x", None);
        check("2030-01-02 03:04:05 PST", None);
        check("2030-01-02 03:04:05+1é1", None);
        check("2030-01-02 03:04:05+é1", None);
        check("2030-01-02é03:04", None);
        check("2030-01-0é", None);
        assert_eq!(
            parse_valid_until("1970-01-01 00:00:01"),
            Some(ValidUntil::At(1_000_000))
        );
    }

    #[test]
    fn role_options_never_panic_and_name_the_option() {
        let check = |name: &str, value: Option<&str>, expect: &str| {
            let mut attrs = RoleAttributes::spec_defaults();
            let mut problems = Vec::new();
            let opt = GenericOption {
                name: name.to_owned(),
                value: value.map(str::to_owned),
                vartype: "string".to_owned(),
            };
            apply_role_options("r", "/p", &[opt], &mut attrs, &mut problems);
            let got = match problems.first() {
                Some(p) => p.to_string(),
                None => format!("{attrs:?}"),
            };
            assert!(got.contains(expect), "{name:?}: {got}");
        };
        check("IN\u{3000}ROLE x", None, "plain lower-case role names");
        check(
            "IN ROLE pg_monitor, pg_signal_backend",
            None,
            "in_roles: [\"pg_monitor\", \"pg_signal_backend\"]",
        );
        check("nologin", None, "login: false");
        check("LOGIN", Some("off"), "login: false");
        check("LOGIN", Some("maybe"), "needs true or false");
        check("Connection_Limit", Some("3"), "connection_limit: 3");
        check("CONNECTION LIMIT", Some("-2"), "needs an integer");
        check("SUPERUSER", None, "is not allowed");
        check("PASSWORD", Some("x"), "is not allowed");
        check("🐘", None, "is not allowed");
    }
}
