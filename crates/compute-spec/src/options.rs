//! The allow-lists of role and database options, and the typed values validation derives from
//! a role or database: spec [`GenericOption`]s become [`RoleOptions`] and [`DatabaseOption`]s,
//! `encrypted_password` becomes a [`PasswordHash`]. Consumers (the reconciler) render these
//! typed values; the option texts of the spec never reach SQL.
//!
//! Option names are matched case-insensitively, with `_` and spaces equivalent
//! (`CONNECTION LIMIT` = `connection_limit`). Anything not listed is refused with
//! [`codes::OPTION_NOT_ALLOWED`]; `SUPERUSER` and `PASSWORD` are refused on purpose (the
//! password comes from `encrypted_password`; superuser roles are not created from a spec).
//! An allowed option whose value cannot be understood is refused with
//! [`codes::BAD_OPTION_VALUE`].

use std::fmt;

use crate::spec::GenericOption;
use crate::validate::codes;
use crate::values::MAX_IDENTIFIER_BYTES;

/// `VALID UNTIL` of a role, as PostgreSQL stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValidUntil {
    /// A finite instant: microseconds since 1970-01-01 00:00:00 UTC.
    At(i64),
    /// `'infinity'`.
    Infinity,
    /// `'-infinity'`.
    NegativeInfinity,
}

/// The role attributes a spec role's options set; `None` (or empty) where no option says.
/// When an attribute is given twice, the later option wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleOptions {
    /// `LOGIN` / `NOLOGIN`.
    pub login: Option<bool>,
    /// `CREATEDB` / `NOCREATEDB`.
    pub createdb: Option<bool>,
    /// `CREATEROLE` / `NOCREATEROLE`.
    pub createrole: Option<bool>,
    /// `REPLICATION` / `NOREPLICATION`.
    pub replication: Option<bool>,
    /// `BYPASSRLS` / `NOBYPASSRLS`.
    pub bypassrls: Option<bool>,
    /// `INHERIT` / `NOINHERIT`.
    pub inherit: Option<bool>,
    /// `CONNECTION LIMIT`, at least -1 (no limit).
    pub connection_limit: Option<i32>,
    /// `VALID UNTIL`.
    pub valid_until: Option<ValidUntil>,
    /// `IN ROLE`: roles to be a member of, in option order (names PostgreSQL can store).
    pub in_roles: Vec<String>,
}

/// A database option a spec may set, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseOption {
    /// A string-valued creation option: `keyword` is one of `TEMPLATE`, `ENCODING`,
    /// `STRATEGY`, `LOCALE`, `LC_COLLATE`, `LC_CTYPE`, `ICU_LOCALE`, `LOCALE_PROVIDER`,
    /// `COLLATION_VERSION`, `TABLESPACE`; `value` is non-empty and has no NUL.
    Text {
        /// The upper-case keyword.
        keyword: &'static str,
        /// The value as given.
        value: String,
    },
    /// `ALLOW_CONNECTIONS`.
    AllowConnections(bool),
    /// `IS_TEMPLATE`.
    IsTemplate(bool),
    /// `CONNECTION LIMIT`, at least -1 (no limit).
    ConnectionLimit(i32),
}

/// A valid pre-hashed password in the form PostgreSQL stores it: `md5` + 32 lower-case hex
/// digits, or a SCRAM-SHA-256 verifier. A secret: `Debug` shows `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    stored: String,
}

impl PasswordHash {
    /// The stored form of a hash that passed validation (md5 with or without prefix, or SCRAM).
    pub(crate) fn from_valid(hash: &str) -> PasswordHash {
        if hash.starts_with("SCRAM-SHA-256$") {
            return PasswordHash {
                stored: hash.to_owned(),
            };
        }
        let hex = hash.strip_prefix("md5").unwrap_or(hash);
        PasswordHash {
            stored: format!("md5{}", hex.to_ascii_lowercase()),
        }
    }

    /// The text `pg_authid.rolpassword` holds for this password. A secret: never log it.
    pub fn expose_stored(&self) -> &str {
        &self.stored
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// What validation derived from one spec role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypedRole {
    /// Its options, typed.
    pub options: RoleOptions,
    /// Its `encrypted_password` in stored form; `None` for no password.
    pub password: Option<PasswordHash>,
}

/// An option refused by an allow-list: its index in the option list, code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OptionProblem {
    pub(crate) index: usize,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

const ROLE_OPTIONS_ALLOWED: &str = "LOGIN, NOLOGIN, CREATEDB, CREATEROLE, REPLICATION, \
     BYPASSRLS, INHERIT (and their NO forms), CONNECTION LIMIT, VALID UNTIL, IN ROLE";

const DATABASE_OPTIONS_ALLOWED: &str = "TEMPLATE, ENCODING, STRATEGY, LOCALE, LC_COLLATE, \
     LC_CTYPE, ICU_LOCALE, LOCALE_PROVIDER, COLLATION_VERSION, TABLESPACE, ALLOW_CONNECTIONS, \
     CONNECTION LIMIT, IS_TEMPLATE";

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

fn not_allowed(index: usize, opt: &GenericOption, object: &str, allowed: &str) -> OptionProblem {
    OptionProblem {
        index,
        code: codes::OPTION_NOT_ALLOWED,
        message: format!(
            "option {:?} of {object:?} is not allowed (allowed: {allowed})",
            opt.name
        ),
    }
}

fn bad_value(index: usize, opt: &GenericOption, object: &str, expected: &str) -> OptionProblem {
    OptionProblem {
        index,
        code: codes::BAD_OPTION_VALUE,
        message: format!("option {:?} of {object:?} needs {expected}", opt.name),
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

fn parse_connection_limit(value: Option<&str>) -> Option<i32> {
    value
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|n| *n >= -1)
}

/// Whether PostgreSQL can store `name` as given: not empty, at most 63 bytes, no NUL.
fn is_storable_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_IDENTIFIER_BYTES && !name.contains('\0')
}

fn is_simple_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The flag a `NAME`/`NONAME` option sets, or `None` when `name` is not a flag.
fn flag_field<'r>(typed: &'r mut RoleOptions, name: &str) -> Option<(&'r mut Option<bool>, bool)> {
    let (base, positive) = match name.strip_prefix("NO") {
        Some(base) => (base, false),
        _ => (name, true),
    };
    let field = match base {
        "LOGIN" => &mut typed.login,
        "CREATEDB" => &mut typed.createdb,
        "CREATEROLE" => &mut typed.createrole,
        "REPLICATION" => &mut typed.replication,
        "BYPASSRLS" => &mut typed.bypassrls,
        "INHERIT" => &mut typed.inherit,
        _ => return None,
    };
    Some((field, positive))
}

/// Types the options of role `role`, applying the allow-list; refused options are left out
/// of the result and reported.
pub(crate) fn role_options(
    role: &str,
    options: &[GenericOption],
) -> (RoleOptions, Vec<OptionProblem>) {
    let mut typed = RoleOptions::default();
    let mut problems = Vec::new();
    for (i, opt) in options.iter().enumerate() {
        let name = normalized(&opt.name);
        let value = opt.value.as_deref();
        if let Some((field, positive)) = flag_field(&mut typed, &name) {
            match parse_bool(value) {
                Some(b) => *field = Some(b == positive),
                None => problems.push(bad_value(i, opt, role, "true or false")),
            }
            continue;
        }
        match name.as_str() {
            "CONNECTION_LIMIT" => match parse_connection_limit(value) {
                Some(n) => typed.connection_limit = Some(n),
                None => problems.push(bad_value(i, opt, role, "an integer, -1 for no limit")),
            },
            "VALID_UNTIL" => match value.and_then(parse_valid_until) {
                Some(v) => typed.valid_until = Some(v),
                None => problems.push(bad_value(
                    i,
                    opt,
                    role,
                    "'infinity' or a timestamp YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][Z|+HH[:MM]]",
                )),
            },
            "IN_ROLE" => match value {
                Some(v) if is_storable_name(v) => typed.in_roles.push(v.to_owned()),
                _ => problems.push(bad_value(i, opt, role, "the name of a role")),
            },
            _ if name.starts_with("IN_ROLE_") && value.is_none() => {
                // Upstream's form: the whole clause in the name, e.g. `IN ROLE pg_monitor`.
                // Accepted only for plain lower-case names, which need no quoting rules.
                let list = opt.name.trim().get(7..).unwrap_or_default().trim();
                let names: Vec<&str> = list.split(',').map(str::trim).collect();
                if names.iter().all(|n| is_simple_ident(n)) {
                    typed.in_roles.extend(names.iter().map(|n| (*n).to_owned()));
                } else {
                    problems.push(bad_value(
                        i,
                        opt,
                        role,
                        "plain lower-case role names; use {\"name\":\"IN ROLE\",\"value\":NAME}",
                    ));
                }
            }
            _ => problems.push(not_allowed(i, opt, role, ROLE_OPTIONS_ALLOWED)),
        }
    }
    (typed, problems)
}

/// Types one database option, or says why it is refused.
fn database_option(
    name: &str,
    value: Option<&str>,
) -> Result<DatabaseOption, Option<&'static str>> {
    if let Some(keyword) = TEXT_DB_OPTIONS.iter().find(|k| **k == name) {
        return match value {
            Some(v) if !v.is_empty() && !v.contains('\0') => Ok(DatabaseOption::Text {
                keyword,
                value: v.to_owned(),
            }),
            _ => Err(Some("a non-empty string")),
        };
    }
    let boolean = || {
        value
            .and_then(|v| parse_bool(Some(v)))
            .ok_or(Some("true or false"))
    };
    match name {
        "ALLOW_CONNECTIONS" => boolean().map(DatabaseOption::AllowConnections),
        "IS_TEMPLATE" => boolean().map(DatabaseOption::IsTemplate),
        "CONNECTION_LIMIT" => parse_connection_limit(value)
            .map(DatabaseOption::ConnectionLimit)
            .ok_or(Some("an integer, -1 for no limit")),
        _ => Err(None),
    }
}

/// Types the options of database `db`, applying the allow-list; refused options are left out
/// of the result and reported.
pub(crate) fn database_options(
    db: &str,
    options: &[GenericOption],
) -> (Vec<DatabaseOption>, Vec<OptionProblem>) {
    let mut typed = Vec::new();
    let mut problems = Vec::new();
    for (i, opt) in options.iter().enumerate() {
        match database_option(&normalized(&opt.name), opt.value.as_deref()) {
            Ok(option) => typed.push(option),
            Err(Some(expected)) => problems.push(bad_value(i, opt, db, expected)),
            Err(None) => problems.push(not_allowed(i, opt, db, DATABASE_OPTIONS_ALLOWED)),
        }
    }
    (typed, problems)
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

fn digits(s: &str, n: usize) -> Option<i64> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD` as days since 1970-01-01, if it is a real date.
fn parse_date(date: &str) -> Option<i64> {
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
    (1..=max_day).contains(&d).then(|| days_from_civil(y, m, d))
}

/// `HH:MM[:SS[.f{1,6}]]` as microseconds since midnight.
fn parse_clock(clock: &str) -> Option<i64> {
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
    Some(((h * 60 + mi) * 60 + s) * 1_000_000 + f)
}

/// `""`, `Z`, `UTC` or `±HH[[:]MM]` as minutes east of UTC.
fn parse_zone(zone: &str) -> Option<i64> {
    let zone = zone.trim_start();
    if matches!(zone, "" | "Z" | "z" | "UTC" | "utc") {
        return Some(0);
    }
    let sign = match zone.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let z = zone[1..].replace(':', "");
    if !z.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hh, mm) = match z.len() {
        2 => (digits(&z, 2)?, 0),
        4 => (digits(&z[..2], 2)?, digits(&z[2..], 2)?),
        _ => return None,
    };
    (hh <= 15 && mm <= 59).then_some(sign * (hh * 60 + mm))
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
    let mut micros = parse_date(date)? * 86_400_000_000;
    let mut zone = rest;
    if let Some(time) = rest.strip_prefix([' ', 'T']) {
        let end = time
            .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
            .unwrap_or(time.len());
        let (clock, after) = time.split_at(end);
        micros += parse_clock(clock)?;
        zone = after;
    }
    Some(ValidUntil::At(micros - parse_zone(zone)? * 60_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_until_forms() {
        let check = |input: &str, expect: Option<ValidUntil>| {
            assert_eq!(parse_valid_until(input), expect, "input {input:?}");
        };
        let day = 86_400_000_000_i64;
        let at = |days: i64, micros: i64| Some(ValidUntil::At(days * day + micros));
        let hour = 3_600_000_000_i64;
        check("infinity", Some(ValidUntil::Infinity));
        check(" -Infinity", Some(ValidUntil::NegativeInfinity));
        check("1970-01-01 00:00:01", at(0, 1_000_000));
        check("1970-01-02", at(1, 0));
        check("1970-01-02 03:04", at(1, 3 * hour + 4 * 60_000_000));
        check("1970-01-02T03:00:00Z", at(1, 3 * hour));
        check("1970-01-02 03:00:00.5+02", at(1, hour + 500_000));
        check("1970-01-02 00:30:00-01:30", at(1, 2 * hour));
        check("1969-12-31 23:59:59.999999", Some(ValidUntil::At(-1)));
        check("2024-02-29", at(19_782, 0));
        check("2023-02-29", None);
        check("2030-13-01", None);
        check("tomorrow", None);
        check("2030-01-02 25:00", None);
        check("2030-01-02 03:04:05.1234567", None);
        check("2030-01-02; DROP ROLE x", None);
        check("2030-01-02 03:04:05 PST", None);
        check("2030-01-02 03:04:05+1é1", None);
        check("2030-01-02 03:04:05+é1", None);
        check("2030-01-02é03:04", None);
        check("2030-01-0é", None);
    }

    #[test]
    fn role_options_never_panic_and_name_the_option() {
        let check = |name: &str, value: Option<&str>, expect: &str| {
            let opt = GenericOption {
                name: name.to_owned(),
                value: value.map(str::to_owned),
                vartype: "string".to_owned(),
            };
            let (typed, problems) = role_options("r", &[opt]);
            let got = match problems.first() {
                Some(p) => format!("{} {}", p.code, p.message),
                None => format!("{typed:?}"),
            };
            assert!(got.contains(expect), "{name:?}: {got}");
        };
        check("IN\u{3000}ROLE x", None, "plain lower-case role names");
        check(
            "IN ROLE pg_monitor, pg_signal_backend",
            None,
            "in_roles: [\"pg_monitor\", \"pg_signal_backend\"]",
        );
        check(
            "IN ROLE",
            Some(""),
            "bad-option-value option \"IN ROLE\" of \"r\" needs the name",
        );
        check("nologin", None, "login: Some(false)");
        check("LOGIN", Some("off"), "login: Some(false)");
        check("NOINHERIT", Some("false"), "inherit: Some(true)");
        check("LOGIN", Some("maybe"), "needs true or false");
        check("Connection_Limit", Some("3"), "connection_limit: Some(3)");
        check("CONNECTION LIMIT", Some("-2"), "needs an integer");
        check(
            "VALID UNTIL",
            Some("infinity"),
            "valid_until: Some(Infinity)",
        );
        check(
            "SUPERUSER",
            None,
            "option-not-allowed option \"SUPERUSER\" of \"r\" is not allowed",
        );
        check("NOSUPERUSER", None, "is not allowed");
        check("NOT", None, "is not allowed");
        check("NO LOGIN", None, "is not allowed");
        check("PASSWORD", Some("x"), "is not allowed");
        check("🐘", None, "is not allowed");
    }

    #[test]
    fn database_options_are_typed() {
        let check = |name: &str, value: Option<&str>, expect: &str| {
            let opt = GenericOption {
                name: name.to_owned(),
                value: value.map(str::to_owned),
                vartype: "string".to_owned(),
            };
            let (typed, problems) = database_options("d", &[opt]);
            let got = match problems.first() {
                Some(p) => format!("{} {}", p.code, p.message),
                None => format!("{typed:?}"),
            };
            assert_eq!(got, expect, "{name:?}");
        };
        check(
            "lc collate",
            Some("C"),
            r#"[Text { keyword: "LC_COLLATE", value: "C" }]"#,
        );
        check(
            "TEMPLATE",
            Some(""),
            r#"bad-option-value option "TEMPLATE" of "d" needs a non-empty string"#,
        );
        check(
            "allow_connections",
            Some("off"),
            "[AllowConnections(false)]",
        );
        check(
            "IS_TEMPLATE",
            None,
            r#"bad-option-value option "IS_TEMPLATE" of "d" needs true or false"#,
        );
        check("CONNECTION LIMIT", Some(" 7 "), "[ConnectionLimit(7)]");
        check(
            "OID",
            Some("1"),
            "option-not-allowed option \"OID\" of \"d\" is not allowed (allowed: TEMPLATE, \
             ENCODING, STRATEGY, LOCALE, LC_COLLATE, LC_CTYPE, ICU_LOCALE, LOCALE_PROVIDER, \
             COLLATION_VERSION, TABLESPACE, ALLOW_CONNECTIONS, CONNECTION LIMIT, IS_TEMPLATE)",
        );
    }

    #[test]
    fn password_hashes_in_stored_form() {
        let check = |input: &str, expect: &str| {
            assert_eq!(
                PasswordHash::from_valid(input).expose_stored(),
                expect,
                "{input}"
            );
        };
        let hex = "0123456789abcdef0123456789abcdef";
        check(hex, &format!("md5{hex}"));
        check(&format!("md5{hex}"), &format!("md5{hex}"));
        check(&format!("md5{}", hex.to_uppercase()), &format!("md5{hex}"));
        let scram = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$\
                     a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=:\
                     c3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3M=";
        check(scram, scram);
        assert_eq!(
            format!("{:?}", PasswordHash::from_valid(hex)),
            "PasswordHash(<redacted>)"
        );
    }
}
