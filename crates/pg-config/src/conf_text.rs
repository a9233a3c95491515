//! Reading postgresql.conf text written by others (`cluster.postgresql_conf`): its
//! `name = value` lines and library lists. Pure; lenient where PostgreSQL itself will report.

/// One `name = value` line of a postgresql.conf text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfLine {
    /// Line number, from 1.
    pub line: usize,
    /// Setting name as written.
    pub name: String,
    /// Value, unquoted.
    pub value: String,
}

/// Parses postgresql.conf text: `name [=] value [# comment]`, values bare or single-quoted
/// (`''` and backslash escapes). Lines that do not parse are skipped: PostgreSQL itself
/// reports them when it reads the file. Lines are numbered as [`str::lines`] does.
///
/// ```
/// let lines = pg_config::parse_conf("# c\nwork_mem = 4MB # per sort\nx 'it''s'\n");
/// assert_eq!((lines[0].line, &*lines[0].name, &*lines[0].value), (2, "work_mem", "4MB"));
/// assert_eq!((lines[1].line, &*lines[1].name, &*lines[1].value), (3, "x", "it's"));
/// ```
pub fn parse_conf(text: &str) -> Vec<ConfLine> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let name_len = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(line.len());
        if name_len == 0 {
            continue; // blank, comment, or garbage
        }
        let (name, rest) = line.split_at(name_len);
        let rest = rest.trim_start();
        let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('\'') {
            let mut value = String::new();
            let mut chars = quoted.chars().peekable();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\'' if chars.peek() == Some(&'\'') => {
                        chars.next();
                        value.push('\'');
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
            if !closed {
                continue;
            }
            value
        } else {
            rest.split(|c: char| c.is_whitespace() || c == '#')
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        out.push(ConfLine {
            line: i + 1,
            name: name.to_owned(),
            value,
        });
    }
    out
}

/// The entries of a library list such as `shared_preload_libraries`, as written (trimmed,
/// quotes kept): split at every comma, empty entries left out.
pub(crate) fn library_list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// The library named by one [`library_list_items`] entry: without its double quotes.
pub(crate) fn library_name(item: &str) -> &str {
    item.trim_matches('"').trim()
}

/// Splits a `shared_preload_libraries` value into its entries (comma-separated, optionally
/// double-quoted).
///
/// ```
/// assert_eq!(pg_config::preload_entries(" neon, \"pg_stat_statements\""), ["neon", "pg_stat_statements"]);
/// ```
pub fn preload_entries(value: &str) -> Vec<String> {
    library_list_items(value)
        .map(library_name)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conf_text() {
        let text = "# comment\n\nwork_mem = 4MB # per sort\n  search_path='\"$user\", public'\n\
                    listen_addresses '*'\napplication_name = 'it''s'\nbroken = 'unterminated\n";
        let lines = parse_conf(text);
        let got: Vec<(usize, &str, &str)> = lines
            .iter()
            .map(|l| (l.line, l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (3, "work_mem", "4MB"),
                (4, "search_path", "\"$user\", public"),
                (5, "listen_addresses", "*"),
                (6, "application_name", "it's"),
            ]
        );
    }

    #[test]
    fn splits_preload_entries() {
        assert_eq!(
            preload_entries(" neon, \"pg_stat_statements\" ,,$libdir/auto_explain"),
            ["neon", "pg_stat_statements", "$libdir/auto_explain"]
        );
        assert_eq!(preload_entries("\"\" , \" \""), Vec::<String>::new());
    }
}
