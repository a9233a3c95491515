//! pgbouncer.ini: the spec's `pgbouncer_settings` written into the `[pgbouncer]` section of an
//! existing file (pure: text in, text out).
//!
//! The file is read the way pgbouncer 1.18 reads it (libusual's `cfparser.c`): a line is a
//! comment when it starts with `#` or `;`, a section header when it starts with `[`, an
//! `%include` directive, or `key = value`, where the key is a run of ASCII letters, digits and
//! `_ . - *`, compared case-sensitively. Every key line of a `[pgbouncer]` section whose key
//! is set is replaced; a key set but absent is added after the last key line of the last
//! `[pgbouncer]` section (pgbouncer resets its settings at each `[pgbouncer]` header, so only
//! the last section's lines count for a key that is not repeated). Everything else — other
//! sections, comments, blank lines, line endings — is kept byte for byte. Keys and values are
//! spelled by `pg_quote::pgbouncer_ini_line`, which refuses what pgbouncer cannot read back.

use pg_quote::{IniError, pgbouncer_ini_line};

/// The section pgbouncer's own settings live in.
pub const PGBOUNCER_SECTION: &str = "pgbouncer";

/// Why the settings could not be written into the file. Nothing is rendered in either case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PgbouncerIniError {
    /// The file has no `[pgbouncer]` section (upstream panics here).
    #[error("the file has no [pgbouncer] section")]
    MissingSection,
    /// A key or its value cannot be written so that pgbouncer reads it back.
    #[error("pgbouncer setting {key:?}: {error}")]
    Setting {
        /// The setting's key.
        key: String,
        /// What is wrong with it (in the message, not a `source`: printed once in a chain).
        error: IniError,
    },
}

/// How pgbouncer reads one line of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IniLine<'a> {
    /// `[name]`.
    Section(&'a str),
    /// `key = …`.
    Key(&'a str),
    /// A comment, a blank line, an `%include`, or what pgbouncer would refuse anyway.
    Other,
}

fn classify(line: &str) -> IniLine<'_> {
    let text = line.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\u{b}');
    if let Some(rest) = text.strip_prefix('[') {
        return match rest.find([']', '\n']) {
            Some(end) if rest[end..].starts_with(']') => IniLine::Section(&rest[..end]),
            _ => IniLine::Other,
        };
    }
    let key_len = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*')))
        .unwrap_or(text.len());
    let after = text[key_len..].trim_start_matches([' ', '\t']);
    if key_len > 0 && after.starts_with('=') {
        IniLine::Key(&text[..key_len])
    } else {
        IniLine::Other
    }
}

/// `ini` with `settings` written into its `[pgbouncer]` section (see the module doc). Later
/// duplicates of a key in `settings` win. Fails, rendering nothing, when the section is missing
/// or a key or value cannot be represented.
pub fn update_pgbouncer_ini<K, V>(
    ini: &str,
    settings: impl IntoIterator<Item = (K, V)>,
) -> Result<String, PgbouncerIniError>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut rendered: Vec<(String, String)> = Vec::new();
    for (key, value) in settings {
        let key = key.as_ref();
        let line = pgbouncer_ini_line(key, value.as_ref()).map_err(|source| {
            PgbouncerIniError::Setting {
                key: key.to_owned(),
                error: source,
            }
        })?;
        rendered.retain(|(k, _)| k != key);
        rendered.push((key.to_owned(), line));
    }
    let lines: Vec<&str> = ini.split_inclusive('\n').collect();
    let mut in_section = false;
    let mut insert_after = None;
    let mut present = Vec::new();
    let mut out_lines: Vec<String> = Vec::with_capacity(lines.len() + rendered.len());
    for (i, line) in lines.iter().enumerate() {
        match classify(line) {
            IniLine::Section(name) => {
                in_section = name == PGBOUNCER_SECTION;
                if in_section {
                    insert_after = Some(i);
                }
            }
            IniLine::Key(key) if in_section => {
                insert_after = Some(i);
                if let Some((_, new)) = rendered.iter().find(|(k, _)| k == key) {
                    present.push(key);
                    out_lines.push(format!("{new}{}", line_ending(line)));
                    continue;
                }
            }
            _ => {}
        }
        out_lines.push((*line).to_owned());
    }
    let at = insert_after.ok_or(PgbouncerIniError::MissingSection)?;
    let added: Vec<String> = rendered
        .iter()
        .filter(|(key, _)| !present.contains(&key.as_str()))
        .map(|(_, line)| format!("{line}\n"))
        .collect();
    if !out_lines[at].ends_with('\n') {
        out_lines[at].push('\n');
    }
    out_lines.splice(at + 1..at + 1, added);
    Ok(out_lines.concat())
}

fn line_ending(line: &str) -> &'static str {
    if line.ends_with("\r\n") {
        "\r\n"
    } else if line.ends_with('\n') {
        "\n"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    fn check(ini: &str, settings: &[(&str, &str)], expect: Expect) {
        let out = match update_pgbouncer_ini(ini, settings.iter().copied()) {
            Ok(text) => text,
            Err(e) => format!("error: {e}"),
        };
        expect.assert_eq(&out);
    }

    const DEBIAN_LIKE: &str = "\
;; a comment
[databases]
* = host=127.0.0.1 port=5432
max_client_conn = 1

[pgbouncer]
listen_port = 6432
; max_client_conn = 100
  default_pool_size=20
pool_mode = session

[users]
bob = pool_mode=transaction
";

    #[test]
    fn replaces_adds_and_keeps_everything_else() {
        check(
            DEBIAN_LIKE,
            &[
                ("max_client_conn", "500"),
                ("default_pool_size", "64"),
                ("pool_mode", "transaction"),
                ("server_reset_query", "#DISCARD 'ALL'; x"),
            ],
            expect![[r#"
                ;; a comment
                [databases]
                * = host=127.0.0.1 port=5432
                max_client_conn = 1

                [pgbouncer]
                listen_port = 6432
                ; max_client_conn = 100
                default_pool_size = 64
                pool_mode = transaction
                max_client_conn = 500
                server_reset_query = #DISCARD 'ALL'; x

                [users]
                bob = pool_mode=transaction
            "#]],
        );
    }

    #[test]
    fn edge_cases() {
        check(
            "[pgbouncer]",
            &[("a", "1"), ("a", "2")],
            expect![[r#"
                [pgbouncer]
                a = 2
            "#]],
        );
        check(
            "[pgbouncer]\r\nlisten_port = 1\r\n[pgbouncer]\r\nx = 1\r\n",
            &[("listen_port", "2"), ("y", "3")],
            expect!["[pgbouncer]\r\nlisten_port = 2\r\n[pgbouncer]\r\nx = 1\r\ny = 3\n"],
        );
        check(
            "[databases]\npgbouncer = host=x\n",
            &[("a", "1")],
            expect!["error: the file has no [pgbouncer] section"],
        );
        check(
            "[PgBouncer]\n",
            &[("a", "1")],
            expect!["error: the file has no [pgbouncer] section"],
        );
        check(
            "[pgbouncer]\n",
            &[("ok", "1"), ("max_client_conn", "100\nauth_type = trust")],
            expect![[
                r#"error: pgbouncer setting "max_client_conn": the value has '\n' at byte 3, which would end the line"#
            ]],
        );
        check(
            "[pgbouncer]\n",
            &[("%include /etc/passwd", "")],
            expect![[
                r#"error: pgbouncer setting "%include /etc/passwd": the key has '%' at byte 0; a key is ASCII letters, digits and `_ . - *`"#
            ]],
        );
        check("[pgbouncer]\n", &[], expect!["[pgbouncer]\n"]);
    }
}
