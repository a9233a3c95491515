//! A child's output: each line logged with a level from its Postgres severity word, the last
//! lines and the last FATAL/PANIC message kept; or standard output captured.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::task::JoinHandle;

use crate::STDOUT_LIMIT;

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
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        let mut previous = String::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // Not UTF-8 is no reason to stop reading: the child would block on a full pipe.
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']).to_owned();
            let program = &*program;
            match Severity::of(&line) {
                Severity::Fatal => tracing::error!(target: "postgres", program, pid, "{line}"),
                Severity::Warning => tracing::warn!(target: "postgres", program, pid, "{line}"),
                Severity::Info => tracing::info!(target: "postgres", program, pid, "{line}"),
            }
            lock(&kept).record(&previous, &line);
            previous = line;
        }
    })
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
    fn record(&mut self, previous: &str, line: &str) {
        if Severity::of(line) == Severity::Fatal {
            // The FATAL line is often a summary ("configuration file contains errors"); the
            // line before it says what is wrong.
            self.last_fatal = Some(
                format!("{} {}", message(previous), message(line))
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

/// The log level of a line, from the Postgres severity word in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    /// `PANIC:` or `FATAL:`.
    Fatal,
    /// `ERROR:` or `WARNING:`.
    Warning,
    /// Anything else.
    Info,
}

impl Severity {
    fn of(line: &str) -> Severity {
        if ["PANIC:", "FATAL:"].iter().any(|w| line.contains(w)) {
            Severity::Fatal
        } else if ["ERROR:", "WARNING:"].iter().any(|w| line.contains(w)) {
            Severity::Warning
        } else {
            Severity::Info
        }
    }
}

/// The text after the severity word of a Postgres log line (`... LOG:  text` → `text`).
fn message(line: &str) -> &str {
    [
        "PANIC:", "FATAL:", "ERROR:", "WARNING:", "LOG:", "DETAIL:", "HINT:",
    ]
    .iter()
    .find_map(|w| line.split_once(w).map(|(_, rest)| rest.trim()))
    .unwrap_or("")
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
        let mut previous = "";
        for line in lines {
            kept.record(previous, line);
            previous = line;
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
    }
}
