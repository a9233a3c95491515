//! The one audited place that turns data into SQL, postgresql.conf or rsyslog config text.
//!
//! Every identifier, literal and config value that reaches PostgreSQL from a spec goes through
//! one of these functions; nothing else in the workspace builds SQL or config text from user
//! data by string formatting. Each function returns text that PostgreSQL reads back as exactly
//! the input, whatever the input contains (quotes, backslashes, `$`, `%`, newlines, unicode),
//! with one exception: PostgreSQL text cannot contain NUL, so spec validation rejects NUL and
//! these functions must never see it (checked in debug builds).
//!
//! This crate does not decide *what* to write (that is `pg-config` and `pg-reconcile`), only how
//! to spell a value safely.
//!
//! ```
//! use pg_quote::{quote_ident, quote_literal, quote_conf_value, dollar_quote};
//! assert_eq!(quote_ident(r#"my "role""#), r#""my ""role""""#);
//! assert_eq!(quote_literal("it's"), "'it''s'");
//! assert_eq!(quote_literal(r"a\b"), r"E'a\\b'");
//! assert_eq!(quote_conf_value(r"C:\x 'y'"), r"'C:\\x ''y'''");
//! assert_eq!(dollar_quote("$x$"), "$xx$$x$$xx$");
//! ```
#![warn(missing_docs)]

fn assert_no_nul(text: &str) {
    debug_assert!(
        !text.contains('\0'),
        "NUL must be rejected by spec validation"
    );
}

/// Appends `'value'` with `'` and `\` doubled: the escaping shared by SQL escape-string
/// literals and postgresql.conf values.
fn push_single_quoted(out: &mut String, value: &str) {
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// An SQL identifier: always double-quoted, `"` doubled. Case and every character are kept.
pub fn quote_ident(name: &str) -> String {
    assert_no_nul(name);
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// An SQL string literal: `'…'` with `'` doubled; when the text has a backslash, the
/// escape-string form `E'…'` with `\` doubled, so the result is read the same whatever
/// `standard_conforming_strings` is.
pub fn quote_literal(value: &str) -> String {
    assert_no_nul(value);
    let backslash = value.contains('\\');
    let mut out = String::with_capacity(value.len() + 3);
    if backslash {
        out.push('E');
    }
    push_single_quoted(&mut out, value);
    out
}

/// A postgresql.conf value: `'…'` with `'` and `\` doubled. Newlines cannot be represented in a
/// postgresql.conf value (the parser ends the line); spec validation rejects them.
pub fn quote_conf_value(value: &str) -> String {
    assert_no_nul(value);
    debug_assert!(
        !value.contains(['\n', '\r']),
        "newlines must be rejected by spec validation"
    );
    let mut out = String::with_capacity(value.len() + 2);
    push_single_quoted(&mut out, value);
    out
}

/// An rsyslog RainerScript string constant in an expression (`set $.x = …;`,
/// `if … == …`): `"…"` with `\`, `"` and `$` escaped by a backslash (rsyslog refuses a bare
/// `$` there), which its config lexer reads back as the input. `None` when the value has a
/// control character (a newline, a tab, NUL…), which compute_ctl never writes into an rsyslog
/// config; the caller reports it.
///
/// ```
/// assert_eq!(pg_quote::quote_rsyslog_string(r#"a "b" \c $x"#).unwrap(), r#""a \"b\" \\c \$x""#);
/// assert_eq!(pg_quote::quote_rsyslog_string("a\nb"), None);
/// ```
pub fn quote_rsyslog_string(value: &str) -> Option<String> {
    quote_rsyslog(value, &['"', '\\', '$'])
}

/// An rsyslog object parameter value (`input(File=…)`, `action(target=…)`): `"…"` with `\`
/// and `"` escaped by a backslash; `$` stays bare (rsyslog refuses `\$` there). `None` for a
/// control character, as [`quote_rsyslog_string`].
///
/// ```
/// assert_eq!(pg_quote::quote_rsyslog_param(r#"/a "b" \c $x"#).unwrap(), r#""/a \"b\" \\c $x""#);
/// ```
pub fn quote_rsyslog_param(value: &str) -> Option<String> {
    quote_rsyslog(value, &['"', '\\'])
}

fn quote_rsyslog(value: &str, escaped: &[char]) -> Option<String> {
    if value.chars().any(char::is_control) {
        return None;
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if escaped.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

/// A dollar-quoted string `$tag$body$tag$` whose tag (`x`, `xx`, …: the shortest run of `x`
/// that does not occur in the body) cannot end the string early. Used for PL/pgSQL `DO` bodies
/// and for values placed inside them.
pub fn dollar_quote(body: &str) -> String {
    assert_no_nul(body);
    let tag = dollar_tag(body);
    format!("${tag}${body}${tag}$")
}

/// The tag [`dollar_quote`] would use for `body`.
pub fn dollar_tag(body: &str) -> String {
    let mut tag = String::from("x");
    while body.contains(&format!("${tag}$")) || body.ends_with(&format!("${tag}")) {
        tag.push('x');
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's catalog-test names, plus forms that stress each quoting rule.
    fn hostile() -> Vec<String> {
        let mut names = test_postgres::hostile_names();
        for extra in ["$x$xx$x$", "\\", "back\\slash'quote", "line\nbreak", ""] {
            names.push(extra.to_owned());
        }
        names
    }

    #[test]
    fn spelled_forms() {
        let check = |f: fn(&str) -> String, input: &str, expect: &str| {
            assert_eq!(f(input), expect, "input {input:?}");
        };
        check(quote_ident, "name", "\"name\"");
        check(quote_ident, "MyRole", "\"MyRole\"");
        check(quote_ident, "a\"b", "\"a\"\"b\"");
        check(quote_literal, "test", "'test'");
        check(quote_literal, "test'", "'test'''");
        check(quote_literal, "test\\'", "E'test\\\\'''");
        check(quote_conf_value, "here's a \\", "'here''s a \\\\'");
        check(dollar_quote, "name", "$x$name$x$");
        let rsyslog = |v: &str| quote_rsyslog_string(v).unwrap_or_else(|| "None".to_owned());
        check(rsyslog, "ep-1", "\"ep-1\"");
        check(rsyslog, "a\"b", "\"a\\\"b\"");
        check(rsyslog, "$x$ \\", "\"\\$x\\$ \\\\\"");
        check(rsyslog, "' `echo` %msg%", "\"' `echo` %msg%\"");
        check(rsyslog, "line\nbreak", "None");
        check(rsyslog, "tab\t", "None");
        let param = |v: &str| quote_rsyslog_param(v).unwrap_or_else(|| "None".to_owned());
        check(param, "/a\"b $x \\", "\"/a\\\"b $x \\\\\"");
        check(param, "nul\0", "None");
        check(dollar_quote, "x", "$x$x$x$");
        check(dollar_quote, "$x$", "$xx$$x$$xx$");
        check(dollar_quote, "$x", "$xx$$x$xx$");
        check(dollar_quote, "$x$xx$x$", "$xxx$$x$xx$x$$xxx$");
    }

    /// The real server reads every quoted form back as the input.
    #[test]
    fn postgres_reads_back_every_hostile_value() {
        let pg = test_postgres::TestPostgres::start().unwrap();
        for name in &hostile() {
            let sql = format!(
                "select {lit} = {dollar}, (select {lit}) = (select {lit2}), \
                 quote_ident({lit}) = {ident_lit}",
                lit = quote_literal(name),
                lit2 = quote_literal(name),
                dollar = dollar_quote(name),
                ident_lit = quote_literal(&quote_ident(name)),
            );
            let out = pg.psql("postgres", &sql).unwrap();
            // quote_ident() on the server only quotes when needed; ours always quotes.
            assert!(out.starts_with("t|t|"), "{name:?}: {out}");
            if name.is_empty() {
                continue; // "" is not a valid identifier
            }
            let sql = format!(
                "create temp table {t} ({c} text); insert into {t} values ({v}); \
                 select count(*) from {t} where {c} = {v} and {v} = (select relname::text from \
                 pg_class where relname = {v})",
                t = quote_ident(name),
                c = quote_ident(name),
                v = quote_literal(name),
            );
            let out = pg.psql("postgres", &sql).unwrap();
            assert_eq!(out.trim(), "1", "{name:?}");
        }
    }
}
