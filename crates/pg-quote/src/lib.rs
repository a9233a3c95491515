//! The one audited place that turns data into SQL, postgresql.conf, pgbouncer.ini or rsyslog
//! config text.
//!
//! Every identifier, literal and config value that reaches PostgreSQL from a spec goes through
//! one of these functions; nothing else in the workspace builds SQL or config text from user
//! data by string formatting. Each function returns text that PostgreSQL reads back as exactly
//! the input, whatever the input contains (quotes, backslashes, `$`, `%`, newlines, unicode),
//! with one exception: PostgreSQL text cannot contain NUL, so spec validation rejects NUL and
//! these functions must never see it (checked in debug builds).
//!
//! pgbouncer's ini parser has no quoting at all, so [`pgbouncer_ini_line`] cannot escape: it
//! checks that the key and value come back exactly as given and refuses them otherwise.
//!
//! This crate does not decide *what* to write (that is `pg-config` and `pg-reconcile`), only how
//! to spell a value safely.
//!
//! ```
//! use pg_quote::{quote_ident, quote_literal, quote_conf_value, dollar_quote, pgbouncer_ini_line};
//! assert_eq!(quote_ident(r#"my "role""#), r#""my ""role""""#);
//! assert_eq!(quote_literal("it's"), "'it''s'");
//! assert_eq!(quote_literal(r"a\b"), r"E'a\\b'");
//! assert_eq!(quote_conf_value(r"C:\x 'y'"), r"'C:\\x ''y'''");
//! assert_eq!(dollar_quote("$x$"), "$xx$$x$$xx$");
//! assert_eq!(pgbouncer_ini_line("max_client_conn", "100").unwrap(), "max_client_conn = 100");
//! assert!(pgbouncer_ini_line("max_client_conn", "100\nauth_type = trust").is_err());
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

/// Why a key or value cannot be written into pgbouncer.ini so that pgbouncer reads it back as
/// given. pgbouncer's ini parser (libusual's `cfparser.c`) has no quoting or escapes: a key is
/// a run of ASCII letters, digits and `_ . - *`; a value is the rest of the line after `=`,
/// without the blanks that follow `=` and without trailing whitespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IniError {
    /// The key is empty.
    #[error("the key is empty")]
    EmptyKey,
    /// The key has a character pgbouncer does not read as part of a key.
    #[error("the key has {found:?} at byte {offset}; a key is ASCII letters, digits and `_ . - *`")]
    KeyCharacter {
        /// Byte offset of the character.
        offset: usize,
        /// The character.
        found: char,
    },
    /// The value has a character that ends the line (newline) or the file (NUL).
    #[error("the value has {found:?} at byte {offset}, which would end the line")]
    LineEnd {
        /// Byte offset of the character.
        offset: usize,
        /// The character.
        found: char,
    },
    /// The value starts with a blank or ends with whitespace, which pgbouncer strips.
    #[error("the value starts or ends with whitespace, which pgbouncer strips")]
    EdgeWhitespace,
}

/// Whether pgbouncer's parser reads `c` as part of a key.
fn is_ini_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*')
}

/// The line `key = value` of a pgbouncer.ini section, which pgbouncer 1.18 reads back as
/// exactly `key` and `value`; an error when it cannot (see [`IniError`]). The line has no
/// newline. Keys are case-sensitive to pgbouncer; whether the key is a setting it knows is not
/// checked here (pgbouncer refuses to load a file with an unknown key).
pub fn pgbouncer_ini_line(key: &str, value: &str) -> Result<String, IniError> {
    if key.is_empty() {
        return Err(IniError::EmptyKey);
    }
    if let Some((offset, found)) = key.char_indices().find(|&(_, c)| !is_ini_key_char(c)) {
        return Err(IniError::KeyCharacter { offset, found });
    }
    if let Some((offset, found)) = value
        .char_indices()
        .find(|&(_, c)| matches!(c, '\n' | '\0'))
    {
        return Err(IniError::LineEnd { offset, found });
    }
    // The parser skips ' ' and '\t' after `=`, and drops trailing C `isspace` characters.
    let leading = value.starts_with([' ', '\t']);
    let trailing = value.ends_with([' ', '\t', '\n', '\u{b}', '\u{c}', '\r']);
    if leading || trailing {
        return Err(IniError::EdgeWhitespace);
    }
    Ok(format!("{key} = {value}"))
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

    /// How pgbouncer 1.18's parser (libusual `parse_ini_file`) reads one key line: the key is
    /// the run of key characters, then blanks, `=`, blanks; the value runs to the newline,
    /// trailing whitespace dropped. The real binary reads the same lines in
    /// `crates/pg-config/tests/pgbouncer_reads_back.rs`.
    fn read_ini_line(line: &str) -> (String, String) {
        let key: String = line.chars().take_while(|&c| is_ini_key_char(c)).collect();
        let rest = line[key.len()..].trim_start_matches([' ', '\t']);
        let rest = rest.strip_prefix('=').expect("an = after the key");
        let value = rest.trim_start_matches([' ', '\t']);
        let value = value.split('\n').next().unwrap();
        let value = value.trim_end_matches([' ', '\t', '\n', '\u{b}', '\u{c}', '\r']);
        (key, value.to_owned())
    }

    #[test]
    fn pgbouncer_lines_read_back_or_are_refused() {
        for value in hostile() {
            match pgbouncer_ini_line("server_reset_query", &value) {
                Ok(line) => {
                    assert!(!line.contains('\n'), "{value:?}: {line:?}");
                    let read = read_ini_line(&line);
                    assert_eq!(read, ("server_reset_query".to_owned(), value.clone()));
                }
                Err(e) => assert!(
                    value.contains('\n') || value.trim() != value,
                    "{value:?} refused: {e}"
                ),
            }
            // A hostile name is never a key: only the key characters pass.
            let as_key = pgbouncer_ini_line(&value, "1");
            let plain = !value.is_empty() && value.chars().all(is_ini_key_char);
            assert_eq!(as_key.is_ok(), plain, "{value:?}: {as_key:?}");
        }
        let check = |key: &str, value: &str, expect: Result<&str, IniError>| {
            assert_eq!(
                pgbouncer_ini_line(key, value),
                expect.map(str::to_owned),
                "{key:?} = {value:?}"
            );
        };
        check("pool_mode", "transaction", Ok("pool_mode = transaction"));
        check("auth_query", "", Ok("auth_query = "));
        check("x", "#not; a comment [x]", Ok("x = #not; a comment [x]"));
        check("x", "'quoted' \"too\"", Ok("x = 'quoted' \"too\""));
        check("*", "a=b", Ok("* = a=b"));
        check("", "1", Err(IniError::EmptyKey));
        check(
            "a b",
            "1",
            Err(IniError::KeyCharacter {
                offset: 1,
                found: ' ',
            }),
        );
        check(
            "%include",
            "/etc/x",
            Err(IniError::KeyCharacter {
                offset: 0,
                found: '%',
            }),
        );
        check(
            "[x]",
            "1",
            Err(IniError::KeyCharacter {
                offset: 0,
                found: '[',
            }),
        );
        check(
            "x",
            "1\nauth_type = trust",
            Err(IniError::LineEnd {
                offset: 1,
                found: '\n',
            }),
        );
        check(
            "x",
            "a\0b",
            Err(IniError::LineEnd {
                offset: 1,
                found: '\0',
            }),
        );
        check("x", " 1", Err(IniError::EdgeWhitespace));
        check("x", "\t1", Err(IniError::EdgeWhitespace));
        check("x", "1\r", Err(IniError::EdgeWhitespace));
        check("x", "1 ", Err(IniError::EdgeWhitespace));
        check("x", "a\tb c", Ok("x = a\tb c"));
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
