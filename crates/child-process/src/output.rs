//! A child's output: each line logged at the level its [`LineClassifier`] gives it (by
//! default [`PgLogFormat::default`]: the severity PostgreSQL programs write), the last lines
//! and the last fatal message kept; or standard output captured.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::task::JoinHandle;
use tracing::Level;

use crate::pg_log::PgLogFormat;
use crate::{Command, STDOUT_LIMIT};

/// How one line of a child's output is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineClass {
    /// The level it is logged at.
    pub level: Level,
    /// A fatal message: kept as [`crate::Captured::last_fatal`].
    pub fatal: bool,
    /// The severity word the program wrote (`LOG`, `FATAL`, `error`), logged as the field
    /// `severity`.
    pub severity: Option<&'static str>,
    /// Where the message starts in the line (after a prefix and the severity word).
    pub message_start: usize,
}

type Classify = dyn Fn(&str, Option<&LineClass>) -> LineClass + Send + Sync;

/// Decides how each output line of a child is logged, given the class of the line before
/// it from the same stream. Set with [`Command::classify_lines`].
#[derive(Clone)]
pub struct LineClassifier(Arc<Classify>);

impl LineClassifier {
    /// A classifier from a function of the line and the previous line's class.
    pub fn new(
        classify: impl Fn(&str, Option<&LineClass>) -> LineClass + Send + Sync + 'static,
    ) -> LineClassifier {
        LineClassifier(Arc::new(classify))
    }

    /// The class of `line`.
    pub fn classify(&self, line: &str, previous: Option<&LineClass>) -> LineClass {
        let class = (self.0)(line, previous);
        LineClass {
            message_start: class.message_start.min(line.len()),
            ..class
        }
    }
}

impl Default for LineClassifier {
    /// PostgreSQL programs' output with the default `log_line_prefix`
    /// ([`PgLogFormat::default`]).
    fn default() -> LineClassifier {
        PgLogFormat::default().classifier()
    }
}

impl std::fmt::Debug for LineClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineClassifier")
    }
}

impl Command {
    /// How the child's output lines are logged and which are fatal (default
    /// [`LineClassifier::default`]).
    pub fn classify_lines(&mut self, classifier: LineClassifier) -> &mut Command {
        self.classifier = classifier;
        self
    }
}

/// What the readers of one child keep.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// The last forwarded lines, oldest first.
    pub(crate) tail: VecDeque<String>,
    /// How many lines `tail` holds at most.
    pub(crate) tail_lines: usize,
    /// The last FATAL/PANIC message, with the message of the line before it.
    pub(crate) last_fatal: Option<String>,
    /// Captured standard output (at most [`STDOUT_LIMIT`] bytes).
    pub(crate) stdout: Vec<u8>,
    /// How lines are logged.
    pub(crate) classifier: LineClassifier,
}

/// Shared between a child's handle and its reader tasks.
pub(crate) type SharedKept = Arc<Mutex<Kept>>;

pub(crate) fn lock(kept: &SharedKept) -> std::sync::MutexGuard<'_, Kept> {
    kept.lock().unwrap_or_else(|e| e.into_inner())
}

/// Logs each line of `stream` (until its end) and keeps the tail and the last FATAL/PANIC.
pub(crate) fn forward_lines<R>(
    program: Arc<str>,
    pid: u32,
    stream: R,
    kept: SharedKept,
) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let classifier = lock(&kept).classifier.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        let mut previous: Option<(String, LineClass)> = None;
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // Not UTF-8 is no reason to stop reading: the child would block on a full pipe.
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']).to_owned();
            let class = classifier.classify(&line, previous.as_ref().map(|(_, c)| c));
            log_line(&program, pid, &line, &class);
            // Only a program's message is context for a fatal line after it.
            let message = match class.severity {
                Some(_) => line[class.message_start..].to_owned(),
                None => String::new(),
            };
            lock(&kept).record(previous.as_ref().map(|(m, _)| m.as_str()), &line, &class);
            previous = Some((message, class));
        }
    })
}

/// Logs one line under the target `postgres` at its class's level.
fn log_line(program: &str, pid: u32, line: &str, class: &LineClass) {
    let severity = class.severity;
    match class.level {
        Level::ERROR => tracing::error!(target: "postgres", program, pid, severity, "{line}"),
        Level::WARN => tracing::warn!(target: "postgres", program, pid, severity, "{line}"),
        Level::INFO => tracing::info!(target: "postgres", program, pid, severity, "{line}"),
        Level::DEBUG => tracing::debug!(target: "postgres", program, pid, severity, "{line}"),
        Level::TRACE => tracing::trace!(target: "postgres", program, pid, severity, "{line}"),
    }
}

/// Keeps the first [`STDOUT_LIMIT`] bytes of `stream`, reading (and dropping) the rest so
/// the child never blocks on a full pipe.
pub(crate) fn capture<R>(stream: R, kept: SharedKept) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = stream;
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut kept = lock(&kept);
                    let room = STDOUT_LIMIT.saturating_sub(kept.stdout.len());
                    kept.stdout.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
    })
}

impl Kept {
    /// Keeps `line` in the tail and, when fatal, its message (after the message of the line
    /// before it, `previous`) as the last fatal message.
    fn record(&mut self, previous: Option<&str>, line: &str, class: &LineClass) {
        if class.fatal {
            // The fatal line is often a summary ("configuration file contains errors"); the
            // line before it says what is wrong.
            let message = &line[class.message_start..];
            self.last_fatal = Some(
                format!("{} {}", previous.unwrap_or(""), message.trim())
                    .trim()
                    .to_owned(),
            );
        }
        if self.tail_lines == 0 {
            return;
        }
        if self.tail.len() == self.tail_lines {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records `lines` with a tail of `tail_lines`; checks the tail and the last FATAL.
    fn check(lines: &[&str], tail_lines: usize, tail: &[&str], fatal: Option<&str>) {
        let mut kept = Kept {
            tail_lines,
            ..Kept::default()
        };
        let classifier = LineClassifier::default();
        let mut previous: Option<(String, LineClass)> = None;
        for line in lines {
            let class = classifier.classify(line, previous.as_ref().map(|(_, c)| c));
            kept.record(previous.as_ref().map(|(m, _)| m.as_str()), line, &class);
            let message = class.severity.map_or("", |_| &line[class.message_start..]);
            previous = Some((message.to_owned(), class));
        }
        assert_eq!(kept.tail, tail, "{lines:?}");
        assert_eq!(kept.last_fatal.as_deref(), fatal, "{lines:?}");
    }

    #[test]
    fn keeps_tail_and_last_fatal() {
        check(&["a", "b", "c"], 2, &["b", "c"], None);
        let config_error = [
            "LOG:  starting",
            "LOG:  parameter \"x\" is bad",
            "FATAL:  configuration file contains errors",
        ];
        check(
            &config_error,
            5,
            &config_error,
            Some("parameter \"x\" is bad configuration file contains errors"),
        );
        check(
            &["FATAL:  first", "PANIC:  second", "after"],
            0,
            &[],
            Some("first second"),
        );
        check(
            &["plain", "ERROR:  not fatal"],
            1,
            &["ERROR:  not fatal"],
            None,
        );
        // The severity is read after the prefix, not anywhere in the line.
        check(
            &[
                "2026-12-03 10:21:40.178 GMT [7] LOG:  statement: select 'FATAL:  just a string'",
                "chatter",
                "2026-12-03 10:21:40.179 GMT [7] FATAL:  could not bind",
            ],
            0,
            &[],
            Some("could not bind"),
        );
    }
}
