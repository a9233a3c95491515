//! The statement texts the phases send, built from typed values: every name and value goes
//! through `pg-quote`; keywords and numbers are the only other text.

use compute_spec::ValidUntil;
use pg_quote::{dollar_quote, quote_ident, quote_literal};

use super::desired::RoleAttributes;
use crate::catalog::RoleInfo;

/// `PASSWORD '…'` (the real clause and its redacted form), or `PASSWORD NULL`.
pub(super) fn password_clause(password: Option<&str>) -> (String, String) {
    match password {
        Some(p) => (
            format!("PASSWORD {}", quote_literal(p)),
            "PASSWORD '<redacted>'".to_owned(),
        ),
        None => ("PASSWORD NULL".to_owned(), "PASSWORD NULL".to_owned()),
    }
}

fn flag(on: bool, name: &str) -> String {
    if on {
        name.to_owned()
    } else {
        format!("NO{name}")
    }
}

/// Attribute clauses of `attrs` that differ from `current` (all of them when `current` is
/// `None`), with the names of what differs.
pub(super) fn attribute_clauses(
    attrs: &RoleAttributes<'_>,
    current: Option<&RoleInfo>,
) -> (Vec<String>, Vec<&'static str>) {
    let mut clauses = Vec::new();
    let mut differs = Vec::new();
    let flags: [(bool, Option<bool>, &str, &'static str); 6] = [
        (
            attrs.inherit,
            current.map(|c| c.inherit),
            "INHERIT",
            "inherit",
        ),
        (
            attrs.createrole,
            current.map(|c| c.createrole),
            "CREATEROLE",
            "createrole",
        ),
        (
            attrs.createdb,
            current.map(|c| c.createdb),
            "CREATEDB",
            "createdb",
        ),
        (
            attrs.bypassrls,
            current.map(|c| c.bypassrls),
            "BYPASSRLS",
            "bypassrls",
        ),
        (
            attrs.replication,
            current.map(|c| c.replication),
            "REPLICATION",
            "replication",
        ),
        (attrs.login, current.map(|c| c.login), "LOGIN", "login"),
    ];
    for (want, have, keyword, what) in flags {
        if have != Some(want) {
            clauses.push(flag(want, keyword));
            differs.push(what);
        }
    }
    let limit_differs = match current {
        Some(c) => c.connection_limit != attrs.connection_limit,
        None => attrs.connection_limit != -1,
    };
    if limit_differs {
        clauses.push(format!("CONNECTION LIMIT {}", attrs.connection_limit));
        differs.push("connection limit");
    }
    if let Some(v) = attrs.valid_until
        && current.and_then(|c| c.valid_until) != Some(v)
    {
        clauses.push(format!(
            "VALID UNTIL {}",
            quote_literal(&render_valid_until(v))
        ));
        differs.push("valid until");
    }
    (clauses, differs)
}

/// `a, b, c` as quoted identifiers.
pub(super) fn ident_list<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names
        .into_iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `alter: a, b differ` / `alter: a differs`.
pub(super) fn differ_reason(differs: &[&str]) -> String {
    format!(
        "alter: {} differ{}",
        differs.join(", "),
        if differs.len() == 1 { "s" } else { "" }
    )
}

/// The `DO` block that revokes every privilege granted to `role` by a grantor other than the
/// object's owner (which `DROP OWNED` does not revoke), on relations, schemas and routines of
/// the current database, and on databases when `databases` is set. The role name reaches the
/// body only as a literal, and the body is dollar-quoted.
pub(super) fn revoke_foreign_grants(role: &str, databases: bool) -> String {
    let database_branch = if databases {
        "\n          UNION ALL SELECT 'DATABASE', pg_catalog.quote_ident(d.datname), d.datdba, \
         x.grantor, x.grantee\n            FROM pg_catalog.pg_database d, \
         pg_catalog.aclexplode(d.datacl) x"
    } else {
        ""
    };
    let body = format!(
        "
DECLARE
  target_name text := {lit};
  target oid := (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = target_name);
  g record;
BEGIN
  FOR g IN
    SELECT DISTINCT k.kind, k.obj, r.rolname AS grantor
      FROM (SELECT 'TABLE' AS kind, c.oid::pg_catalog.regclass::text AS obj,
                   c.relowner AS owner, x.grantor, x.grantee
              FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x
          UNION ALL SELECT 'SCHEMA', pg_catalog.quote_ident(n.nspname), n.nspowner,
                   x.grantor, x.grantee
              FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) x
          UNION ALL SELECT 'ROUTINE', p.oid::pg_catalog.regprocedure::text, p.proowner,
                   x.grantor, x.grantee
              FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) x{database_branch}) k
      JOIN pg_catalog.pg_roles r ON r.oid = k.grantor
     WHERE k.grantee = target AND k.grantor <> k.owner
  LOOP
    EXECUTE pg_catalog.format('SET LOCAL ROLE %I', g.grantor);
    EXECUTE pg_catalog.format('REVOKE ALL ON %s %s FROM %I CASCADE', g.kind, g.obj, target_name);
  END LOOP;
  RESET ROLE;
END
",
        lit = quote_literal(role)
    );
    format!("DO {}", dollar_quote(&body))
}

/// The date of a day number since 1970-01-01 (proleptic Gregorian).
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

/// The literal text of a `VALID UNTIL` value, unambiguous whatever the session's `DateStyle`
/// and `TimeZone`: ISO, with an explicit `+00` zone.
pub(super) fn render_valid_until(v: ValidUntil) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_until_renders_in_utc() {
        let check = |input: ValidUntil, expect: &str| {
            assert_eq!(render_valid_until(input), expect, "{input:?}");
        };
        check(ValidUntil::Infinity, "infinity");
        check(ValidUntil::NegativeInfinity, "-infinity");
        check(ValidUntil::At(0), "1970-01-01 00:00:00.000000+00");
        check(ValidUntil::At(-1), "1969-12-31 23:59:59.999999+00");
        check(
            ValidUntil::At(1_893_546_245_000_000),
            "2030-01-02 01:04:05.000000+00",
        );
        check(
            ValidUntil::At(19_782 * 86_400_000_000 + 500_000),
            "2024-02-29 00:00:00.500000+00",
        );
    }

    #[test]
    fn revocation_block_quotes_the_role_once() {
        let check = |role: &str, databases: bool, expect: &[&str]| {
            let sql = revoke_foreign_grants(role, databases);
            for part in expect {
                assert!(sql.contains(part), "{part:?} not in {sql}");
            }
            assert_eq!(sql.contains("'DATABASE'"), databases, "{sql}");
        };
        check("gone", true, &["DO $x$", "target_name text := 'gone';"]);
        check("it's $x$", false, &["target_name text := 'it''s $x$';"]);
    }
}
