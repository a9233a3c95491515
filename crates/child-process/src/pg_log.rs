//! The severity of a line PostgreSQL programs write, read from where they write it: right
//! after the server's `log_line_prefix` (`%m [%p] ` unless configured) or at the start of the
//! line, as `WORD:  `; or after a client program's name (`initdb: error: `). A severity word
//! anywhere else in the line (inside a logged statement, say) is text, not a severity: the
//! server indents the continuation lines of a message with a tab, so no text of a message
//! starts a line.
//!
//! [`PgLogFormat`] compiles a `log_line_prefix` into a matcher and classifies lines with it;
//! [`PgLogFormat::classifier`] makes it the [`LineClassifier`] of a [`crate::Command`].
//!
//! Escapes whose values are free text (`%a`, `%u`, `%d`, `%h`, `%r`, `%b`, `%i`, padded
//! escapes) match as little as they can: with such a prefix, an application name that itself
//! reads like `LOG:  ` can mislead the parse. The default prefix has none.

use tracing::Level;

use crate::output::{LineClass, LineClassifier};

/// PostgreSQL's default `log_line_prefix` (since version 10).
pub const DEFAULT_LOG_LINE_PREFIX: &str = "%m [%p] ";

/// How a PostgreSQL program's output is read: the server's line prefix, and the level of
/// lines that are neither a server message nor a client program's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgLogFormat {
    prefix: Vec<Piece>,
    other: Level,
}

/// One part of a compiled `log_line_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text written as is.
    Literal(String),
    /// One or more ASCII digits (`%p`, `%l`, `%x`, `%Q`).
    Digits,
    /// A time stamp: `%t` (seconds), `%m` (milliseconds), followed by a time zone name.
    Timestamp { millis: bool },
    /// Seconds since the epoch with milliseconds (`%n`).
    Epoch,
    /// One or more characters without a space (`%c`, `%e`, `%v`).
    Word,
    /// Any text, possibly empty (`%a`, `%u`, `%d`, …, and padded escapes).
    Text,
    /// `%q`: background processes stop the prefix here.
    SessionOnly,
}

/// The severity words of server messages, with the level each is logged at; `None`: a
/// follow-up of the previous message (its level is kept).
const SEVERITIES: &[(&str, Option<Level>)] = &[
    ("PANIC", Some(Level::ERROR)),
    ("FATAL", Some(Level::ERROR)),
    ("ERROR", Some(Level::WARN)),
    ("WARNING", Some(Level::WARN)),
    ("NOTICE", Some(Level::INFO)),
    ("INFO", Some(Level::INFO)),
    ("LOG", Some(Level::INFO)),
    ("DEBUG1", Some(Level::DEBUG)),
    ("DEBUG2", Some(Level::DEBUG)),
    ("DEBUG3", Some(Level::DEBUG)),
    ("DEBUG4", Some(Level::DEBUG)),
    ("DEBUG5", Some(Level::DEBUG)),
    ("DEBUG", Some(Level::DEBUG)),
    ("DETAIL", None),
    ("HINT", None),
    ("QUERY", None),
    ("CONTEXT", None),
    ("LOCATION", None),
    ("STATEMENT", None),
];

/// The severity words of client programs (`prog: error: text`, PostgreSQL 12 and later).
const CLIENT_SEVERITIES: &[(&str, Option<Level>)] = &[
    ("error", Some(Level::ERROR)),
    ("warning", Some(Level::WARN)),
    ("detail", None),
    ("hint", None),
];

impl Default for PgLogFormat {
    /// The default prefix; other lines at INFO.
    fn default() -> PgLogFormat {
        PgLogFormat::new(DEFAULT_LOG_LINE_PREFIX)
    }
}

impl PgLogFormat {
    /// Reads lines written with `log_line_prefix` (a value of that setting, e.g.
    /// [`DEFAULT_LOG_LINE_PREFIX`]); other lines are logged at INFO.
    pub fn new(log_line_prefix: &str) -> PgLogFormat {
        PgLogFormat {
            prefix: compile(log_line_prefix),
            other: Level::INFO,
        }
    }

    /// The level of lines that are neither server nor client program messages (initdb's
    /// progress chatter, say).
    pub fn other_lines(mut self, level: Level) -> PgLogFormat {
        self.other = level;
        self
    }

    /// This format as a [`LineClassifier`].
    pub fn classifier(self) -> LineClassifier {
        LineClassifier::new(move |line, previous| self.classify(line, previous))
    }

    /// How `line` is logged, given the class of the line before it (for follow-up lines:
    /// `DETAIL:`, `HINT:`, … and continuation lines, which start with a tab).
    pub fn classify(&self, line: &str, previous: Option<&LineClass>) -> LineClass {
        let inherited = |message_start| LineClass {
            level: previous.map_or(self.other, |p| p.level),
            fatal: false,
            severity: None,
            message_start,
        };
        if let Some((word, level, start)) = self.server_severity(line) {
            let message = &line[start..];
            return match level {
                None => LineClass {
                    severity: Some(word),
                    ..inherited(start)
                },
                Some(_) if word == "FATAL" && is_administrator_termination(message) => LineClass {
                    level: Level::INFO,
                    fatal: false,
                    severity: Some(word),
                    message_start: start,
                },
                Some(level) => LineClass {
                    level,
                    fatal: matches!(word, "FATAL" | "PANIC"),
                    severity: Some(word),
                    message_start: start,
                },
            };
        }
        if let Some((word, level, start)) = client_severity(line) {
            return match level {
                None => LineClass {
                    severity: Some(word),
                    ..inherited(start)
                },
                Some(level) => LineClass {
                    level,
                    fatal: level == Level::ERROR,
                    severity: Some(word),
                    message_start: start,
                },
            };
        }
        if line.starts_with('\t') {
            return inherited(0);
        }
        LineClass {
            level: self.other,
            fatal: false,
            severity: None,
            message_start: 0,
        }
    }

    /// The severity word right after the prefix (or at the start of the line: what a server
    /// writes before it read its configuration), its level and where the message starts.
    fn server_severity(&self, line: &str) -> Option<(&'static str, Option<Level>, usize)> {
        let mut found = None;
        match_pieces(&self.prefix, line, 0, &mut { MATCH_BUDGET }, &mut |at| {
            found = severity_at(line, at, SEVERITIES, ":  ");
            found.is_some()
        });
        found.or_else(|| severity_at(line, 0, SEVERITIES, ":  "))
    }
}

/// The FATAL messages that end one client session on purpose, logged at INFO: `terminating
/// connection due to administrator command` and its siblings for autovacuum and replication
/// workers (SQLSTATE 57P01: the server is shut down, or the backend terminated by an
/// administrator), and `canceling authentication due to timeout` (what a backend still
/// waiting for its client's startup packet writes when the server shuts down, or when the
/// client is slower than `authentication_timeout`: the client's problem). Neither is a failure
/// of the compute.
fn is_administrator_termination(message: &str) -> bool {
    (message.starts_with("terminating ") && message.ends_with(" due to administrator command"))
        || message == "canceling authentication due to timeout"
}

/// `prog: error: text`: a client program's message, the program name without spaces.
fn client_severity(line: &str) -> Option<(&'static str, Option<Level>, usize)> {
    let colon = line.find(": ")?;
    if colon == 0 || line[..colon].contains(char::is_whitespace) {
        return None;
    }
    severity_at(line, colon + 2, CLIENT_SEVERITIES, ": ")
}

/// The word of `words` at byte `at` of `line`, followed by `separator`.
fn severity_at(
    line: &str,
    at: usize,
    words: &[(&'static str, Option<Level>)],
    separator: &str,
) -> Option<(&'static str, Option<Level>, usize)> {
    let rest = line.get(at..)?;
    words.iter().find_map(|(word, level)| {
        let after = rest.strip_prefix(word)?.strip_prefix(separator)?;
        Some((*word, *level, line.len() - after.len()))
    })
}

/// The longest value a free-text escape is matched with (names are at most 63 bytes, a host
/// name 255).
const MAX_TEXT: usize = 256;

/// How many steps matching one line may take: a prefix with several free-text escapes could
/// otherwise try every split of a long line.
const MATCH_BUDGET: u32 = 4096;

/// Calls `done` with each position where `pieces` can end when matched from `at`, until it
/// returns true; returns whether it did. Gives up (false) when `budget` runs out.
fn match_pieces(
    pieces: &[Piece],
    line: &str,
    at: usize,
    budget: &mut u32,
    done: &mut dyn FnMut(usize) -> bool,
) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let Some((piece, rest)) = pieces.split_first() else {
        return done(at);
    };
    let tail = &line[at..];
    let mut any_end = |ends: std::ops::RangeInclusive<usize>, budget: &mut u32| {
        ends.filter(|end| line.is_char_boundary(*end))
            .any(|end| match_pieces(rest, line, end, budget, done))
    };
    match piece {
        Piece::Literal(text) => {
            tail.starts_with(text.as_str())
                && match_pieces(rest, line, at + text.len(), budget, done)
        }
        Piece::SessionOnly => match_pieces(rest, line, at, budget, done) || done(at),
        Piece::Text => any_end(at..=line.len().min(at + MAX_TEXT), budget),
        Piece::Word => {
            let word = tail.find(' ').unwrap_or(tail.len()).min(MAX_TEXT);
            any_end(at + 1..=at + word, budget)
        }
        fixed => {
            let len = match fixed {
                Piece::Digits => digits(tail),
                Piece::Epoch => epoch_len(tail),
                Piece::Timestamp { millis } => timestamp_len(tail, *millis),
                _ => 0,
            };
            len > 0 && match_pieces(rest, line, at + len, budget, done)
        }
    }
}

fn digits(text: &str) -> usize {
    text.bytes().take_while(u8::is_ascii_digit).count()
}

/// `1700000000.123`.
fn epoch_len(text: &str) -> usize {
    let whole = digits(text);
    match text[whole..].strip_prefix('.') {
        Some(frac) if whole > 0 && digits(frac) == 3 => whole + 4,
        _ => 0,
    }
}

/// `2024-01-02 03:04:05[.678] ZONE`: date, time, then a zone name up to the next space.
fn timestamp_len(text: &str, millis: bool) -> usize {
    let shape: &[u8] = if millis {
        b"dddd-dd-dd dd:dd:dd.ddd "
    } else {
        b"dddd-dd-dd dd:dd:dd "
    };
    let bytes = text.as_bytes();
    if bytes.len() < shape.len() {
        return 0;
    }
    let fits = shape.iter().zip(bytes).all(|(want, got)| match want {
        b'd' => got.is_ascii_digit(),
        other => other == got,
    });
    if !fits {
        return 0;
    }
    let zone = text[shape.len()..]
        .find(' ')
        .unwrap_or(text.len() - shape.len());
    if zone == 0 { 0 } else { shape.len() + zone }
}

/// The pieces of a `log_line_prefix`.
fn compile(prefix: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = prefix.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        let mut padded = false;
        while let Some(&p) = chars.peek() {
            if p == '-' || p.is_ascii_digit() {
                padded = true;
                chars.next();
            } else {
                break;
            }
        }
        let Some(escape) = chars.next() else {
            break;
        };
        if escape == '%' {
            literal.push('%');
            continue;
        }
        let piece = match escape {
            _ if padded => Piece::Text,
            'p' | 'l' | 'x' | 'Q' => Piece::Digits,
            'm' => Piece::Timestamp { millis: true },
            't' => Piece::Timestamp { millis: false },
            'n' => Piece::Epoch,
            'c' | 'e' | 'v' => Piece::Word,
            'q' => Piece::SessionOnly,
            // `%P` (a parallel worker's leader) is empty for other processes; `%L` is
            // PostgreSQL 16's local address.
            'a' | 'u' | 'd' | 'r' | 'h' | 'b' | 'i' | 's' | 'P' | 'L' => Piece::Text,
            // Unknown escapes print nothing.
            _ => continue,
        };
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(piece);
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Classifies `lines` in order with `format`; checks each line's level, severity word and
    /// message.
    fn check(format: &PgLogFormat, lines: &[(&str, Level, Option<&str>, &str)]) {
        let mut previous: Option<LineClass> = None;
        for (line, level, severity, message) in lines {
            let class = format.classify(line, previous.as_ref());
            assert_eq!(
                (class.level, class.severity, &line[class.message_start..]),
                (*level, *severity, *message),
                "{line:?}"
            );
            previous = Some(class);
        }
    }

    const TS: &str = "2026-12-03 10:21:40.178 GMT [16242] ";

    #[test]
    fn severity_comes_from_after_the_default_prefix() {
        let l = |rest: &str| format!("{TS}{rest}");
        let lines = [
            l("LOG:  statement: select 'FATAL:  just a string'"),
            l("FATAL:  password authentication failed"),
            l("DETAIL:  Connection matched line 1"),
            l("ERROR:  relation \"t\" does not exist"),
            l("STATEMENT:  select * from t"),
            "\tcontinued with PANIC:  in it".to_owned(),
            l("WARNING:  you were warned"),
            l("PANIC:  could not write"),
            l("DEBUG3:  detail"),
            l("FATAL:  terminating connection due to administrator command"),
            l("FATAL:  terminating autovacuum process due to administrator command"),
            l("FATAL:  canceling authentication due to timeout"),
            "[16242] FATAL:  no time stamp".to_owned(),
            "select 'ERROR:  outside any prefix'".to_owned(),
            format!("{TS} LOG:  extra space"),
            l("LOG: one space"),
            l("FEHLER:  übersetzt"),
            String::new(),
        ];
        use Level as L;
        let want = [
            (
                L::INFO,
                Some("LOG"),
                "statement: select 'FATAL:  just a string'",
            ),
            (L::ERROR, Some("FATAL"), "password authentication failed"),
            (L::ERROR, Some("DETAIL"), "Connection matched line 1"),
            (L::WARN, Some("ERROR"), "relation \"t\" does not exist"),
            (L::WARN, Some("STATEMENT"), "select * from t"),
            (L::WARN, None, "\tcontinued with PANIC:  in it"),
            (L::WARN, Some("WARNING"), "you were warned"),
            (L::ERROR, Some("PANIC"), "could not write"),
            (L::DEBUG, Some("DEBUG3"), "detail"),
            (
                L::INFO,
                Some("FATAL"),
                "terminating connection due to administrator command",
            ),
            (
                L::INFO,
                Some("FATAL"),
                "terminating autovacuum process due to administrator command",
            ),
            (
                L::INFO,
                Some("FATAL"),
                "canceling authentication due to timeout",
            ),
            (L::INFO, None, ""),
            (L::INFO, None, ""),
            (L::INFO, None, ""),
            (L::INFO, None, ""),
            (L::INFO, None, ""),
            (L::INFO, None, ""),
        ];
        let cases: Vec<_> = lines
            .iter()
            .zip(want)
            .map(|(line, (level, severity, message))| {
                // An unclassified line is its own message.
                let message = if message.is_empty() {
                    line.as_str()
                } else {
                    message
                };
                (line.as_str(), level, severity, message)
            })
            .collect();
        check(&PgLogFormat::default(), &cases);
    }

    #[test]
    fn fatal_lines_are_marked_fatal() {
        let format = PgLogFormat::default();
        let fatal = |line: &str| format.classify(line, None).fatal;
        assert!(fatal(&format!("{TS}FATAL:  could not bind")));
        assert!(fatal(&format!("{TS}PANIC:  out of disk")));
        assert!(fatal("initdb: error: directory exists"));
        assert!(!fatal(&format!("{TS}LOG:  a FATAL:  in text")));
        assert!(!fatal(&format!(
            "{TS}FATAL:  terminating connection due to administrator command"
        )));
        assert!(!fatal(&format!("{TS}ERROR:  statement failed")));
    }

    #[test]
    fn client_programs_and_chatter() {
        let format = PgLogFormat::default().other_lines(Level::DEBUG);
        check(
            &format,
            &[
                (
                    "creating subdirectories ... ok",
                    Level::DEBUG,
                    None,
                    "creating subdirectories ... ok",
                ),
                (
                    "initdb: error: directory \"/x\" exists but is not empty",
                    Level::ERROR,
                    Some("error"),
                    "directory \"/x\" exists but is not empty",
                ),
                (
                    "initdb: hint: remove it",
                    Level::ERROR,
                    Some("hint"),
                    "remove it",
                ),
                (
                    "initdb: warning: enabling \"trust\"",
                    Level::WARN,
                    Some("warning"),
                    "enabling \"trust\"",
                ),
                (
                    "Success. You can now start: error: not a program",
                    Level::DEBUG,
                    None,
                    "Success. You can now start: error: not a program",
                ),
                (
                    ": error: no program",
                    Level::DEBUG,
                    None,
                    ": error: no program",
                ),
            ],
        );
    }

    #[test]
    fn configured_prefixes() {
        let check_one = |prefix: &str, line: &str, want: Option<(&str, &str)>| {
            let class = PgLogFormat::new(prefix).classify(line, None);
            let got = class.severity.map(|s| (s, &line[class.message_start..]));
            assert_eq!(got, want, "{prefix:?} {line:?}");
        };
        check_one("", "LOG:  bare", Some(("LOG", "bare")));
        check_one("", "x LOG:  bare", None);
        check_one(
            "%t [%p]: ",
            "2026-12-03 10:21:40 UTC [7]: ERROR:  e",
            Some(("ERROR", "e")),
        );
        check_one(
            "%n|%e|%c ",
            "1700000000.123|57P01|65f1.3e FATAL:  t",
            Some(("FATAL", "t")),
        );
        check_one(
            "%m %q%u@%d ",
            "2026-12-03 10:21:40.178 +03 LOG:  bg",
            Some(("LOG", "bg")),
        );
        check_one(
            "%m %q%u@%d ",
            "2026-12-03 10:21:40.178 +03 alice@app WARNING:  w",
            Some(("WARNING", "w")),
        );
        check_one(
            "%a: ",
            "psql: LOG:  statement: LOG:  x",
            Some(("LOG", "statement: LOG:  x")),
        );
        check_one("%-10u|", "bob       |HINT:  h", Some(("HINT", "h")));
        check_one("100%% %p ", "100% 12 LOG:  pct", Some(("LOG", "pct")));
        check_one("100%% %p ", "100 12 LOG:  pct", None);
        check_one("%m ", "2026-12-03 10:21:40 GMT LOG:  no millis", None);
        check_one("%p ", "12x LOG:  not digits", None);
        check_one(
            "[%p]%P ",
            "[12] LOG:  no leader",
            Some(("LOG", "no leader")),
        );
        check_one("[%p]%P ", "[12]7 LOG:  a leader", Some(("LOG", "a leader")));
        check_one(
            "%Z%p ",
            "12 LOG:  unknown escape prints nothing",
            Some(("LOG", "unknown escape prints nothing")),
        );
        check_one("%", "LOG:  lone percent", Some(("LOG", "lone percent")));
        // A long line with a prefix of many free-text escapes: bounded work, no match.
        let long = format!("{} LOG:  x", "a b ".repeat(100_000));
        check_one("%a %u %d %h %r %b ", &long, None);
        // Multi-byte text in a free-text escape.
        check_one("%a ", "привет LOG:  hi", Some(("LOG", "hi")));
    }
}
