//! Child processes: the one place that spawns programs. Children run as the unprivileged
//! Postgres user when compute_ctl is root, from an absolute working directory, with their
//! output forwarded line by line to compute_ctl's log, and are killed on drop.
//!
//! Also readiness detection: [`ReadinessWatch`] follows `postmaster.pid` with inotify until its
//! status line says `ready` (no sleep loop).

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use inotify::{Inotify, WatchMask};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// A user to run Postgres programs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

impl RunAs {
    /// Looks up `name` in the user database.
    pub fn lookup(name: &str) -> anyhow::Result<RunAs> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Ok(RunAs {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            }),
            Ok(None) => anyhow::bail!(
                "user {name:?} does not exist: postgres cannot run as root, so create it \
                 (useradd --system postgres) or pass --pg-user"
            ),
            Err(e) => anyhow::bail!("look up user {name:?}: {e}"),
        }
    }
}

/// A command for `program`, run as `run_as` (if any) from `cwd`, with stdin closed and stdout
/// and stderr piped. Killed when dropped.
pub fn command(program: impl AsRef<OsStr>, run_as: Option<RunAs>, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    if let Some(user) = run_as {
        // std drops supplementary groups before setuid when it changes the user as root.
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd.current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Forwards each line of `stream` to the log under `target`, with a level guessed from the
/// Postgres severity word. Ends at end of stream.
pub fn forward_lines<R>(program: &'static str, pid: u32, stream: R) -> tokio::task::JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    forward_lines_keeping_fatal(program, pid, stream, None)
}

/// The last `FATAL`/`PANIC` line a program wrote, for error messages.
pub type LastFatal = Arc<Mutex<Option<String>>>;

fn forward_lines_keeping_fatal<R>(
    program: &'static str,
    pid: u32,
    stream: R,
    last_fatal: Option<LastFatal>,
) -> tokio::task::JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        let mut previous = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if ["PANIC:", "FATAL:"].iter().any(|w| line.contains(w)) {
                if let Some(keep) = &last_fatal {
                    // The FATAL line is often a summary ("configuration file contains
                    // errors"); the line before it says what is wrong.
                    *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(
                        format!("{} {}", message(&previous), message(&line))
                            .trim()
                            .to_owned(),
                    );
                }
                tracing::error!(target: "postgres", program, pid, "{line}");
            } else if ["ERROR:", "WARNING:"].iter().any(|w| line.contains(w)) {
                tracing::warn!(target: "postgres", program, pid, "{line}");
            } else {
                tracing::info!(target: "postgres", program, pid, "{line}");
            }
            previous = line;
        }
    })
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

/// Runs a command to completion, forwarding its output to the log. Errors name the program,
/// its exit status and its last output lines.
pub async fn run_to_completion(program: &'static str, mut cmd: Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("run {program}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines() {
        tracing::info!(target: "postgres", program, "{line}");
    }
    if !out.status.success() {
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::bail!("{program} failed ({}): {}", out.status, tail.join(" | "));
    }
    Ok(())
}

/// The running postmaster.
#[derive(Debug)]
pub struct Postmaster {
    child: Child,
    pid: Pid,
    exit: Option<ExitStatus>,
    last_fatal: LastFatal,
    log_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Postmaster {
    /// Spawns `cmd` (from [`command`]) and forwards its output.
    pub fn spawn(mut cmd: Command) -> anyhow::Result<Postmaster> {
        let mut child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("spawn postgres: {e}"))?;
        let raw = child.id().unwrap_or_default();
        let last_fatal = LastFatal::default();
        let mut log_tasks = Vec::new();
        if let Some(out) = child.stdout.take() {
            log_tasks.push(forward_lines_keeping_fatal(
                "postgres",
                raw,
                out,
                Some(last_fatal.clone()),
            ));
        }
        if let Some(err) = child.stderr.take() {
            log_tasks.push(forward_lines_keeping_fatal(
                "postgres",
                raw,
                err,
                Some(last_fatal.clone()),
            ));
        }
        tracing::info!(pid = raw, "postgres started");
        Ok(Postmaster {
            child,
            pid: Pid::from_raw(raw as i32),
            exit: None,
            last_fatal,
            log_tasks,
        })
    }

    /// After exit: the last FATAL/PANIC message postgres wrote (waits up to 1 s for its
    /// output to be read).
    pub async fn last_fatal(&mut self) -> Option<String> {
        for task in self.log_tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        self.last_fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Sends `signal` unless the postmaster already exited.
    pub fn signal(&self, signal: Signal) {
        if self.exit.is_none() {
            tracing::info!(pid = self.pid.as_raw(), ?signal, "signalling postgres");
            let _ = nix::sys::signal::kill(self.pid, signal);
        }
    }

    /// Waits for exit (cancel-safe).
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let status = match self.child.wait().await {
            Ok(status) => status,
            Err(e) => {
                tracing::error!(error = %e, "wait for postgres");
                std::os::unix::process::ExitStatusExt::from_raw(1 << 8)
            }
        };
        self.exit = Some(status);
        status
    }

    /// Immediate shutdown, then wait; a last resort on error paths.
    pub async fn stop_immediate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGQUIT);
        match tokio::time::timeout(Duration::from_secs(10), self.wait()).await {
            Ok(status) => status,
            Err(_) => {
                self.signal(Signal::SIGKILL);
                self.wait().await
            }
        }
    }
}

impl Drop for Postmaster {
    /// A postmaster still running when its handle goes away (an interrupted start) gets an
    /// immediate shutdown, which also stops its backends; SIGKILL would orphan them.
    fn drop(&mut self) {
        if self.exit.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            self.signal(Signal::SIGQUIT);
        }
    }
}

/// The exit code compute_ctl returns for a postmaster exit status: its code, or 128 + the
/// signal number when it was killed by a signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Why Postgres did not become ready.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadinessError {
    /// It exited first.
    #[error("postgres exited before it was ready ({status})")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
    },
    /// It took too long.
    #[error("postgres was not ready after {timeout:?} (postmaster.pid in {pgdata})")]
    Timeout {
        /// The limit.
        timeout: Duration,
        /// The data directory.
        pgdata: PathBuf,
    },
    /// inotify failed.
    #[error("watch {pgdata}: {source}")]
    Watch {
        /// The data directory.
        pgdata: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// An inotify watch on a data directory, created *before* Postgres starts so no write of
/// `postmaster.pid` is missed.
pub struct ReadinessWatch {
    pgdata: PathBuf,
    events: inotify::EventStream<Vec<u8>>,
}

impl std::fmt::Debug for ReadinessWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadinessWatch")
            .field("pgdata", &self.pgdata)
            .finish()
    }
}

impl ReadinessWatch {
    /// Watches `pgdata` for creation and writes of files in it.
    pub fn new(pgdata: &Path) -> Result<ReadinessWatch, ReadinessError> {
        let watch_err = |source| ReadinessError::Watch {
            pgdata: pgdata.to_owned(),
            source,
        };
        let inotify = Inotify::init().map_err(watch_err)?;
        inotify
            .watches()
            .add(
                pgdata,
                WatchMask::CREATE
                    | WatchMask::MODIFY
                    | WatchMask::CLOSE_WRITE
                    | WatchMask::MOVED_TO,
            )
            .map_err(watch_err)?;
        let events = inotify
            .into_event_stream(vec![0u8; 4096])
            .map_err(watch_err)?;
        Ok(ReadinessWatch {
            pgdata: pgdata.to_owned(),
            events,
        })
    }

    /// Waits until `postmaster.pid`'s status line is `ready`, `exited` resolves, or `timeout`.
    pub async fn wait_ready(
        &mut self,
        exited: impl Future<Output = ExitStatus>,
        timeout: Duration,
    ) -> Result<(), ReadinessError> {
        let pidfile = self.pgdata.join("postmaster.pid");
        let deadline = tokio::time::Instant::now() + timeout;
        let mut exited = std::pin::pin!(exited);
        loop {
            if is_ready(&pidfile) {
                return Ok(());
            }
            tokio::select! {
                event = self.events.next() => {
                    if event.is_none() {
                        return Err(ReadinessError::Watch {
                            pgdata: self.pgdata.clone(),
                            source: std::io::Error::other("inotify stream ended"),
                        });
                    }
                }
                status = &mut exited => return Err(ReadinessError::Exited { status }),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(ReadinessError::Timeout { timeout, pgdata: self.pgdata.clone() });
                }
            }
        }
    }
}

/// Whether the status line (the 8th, last while running) of `postmaster.pid` is `ready`.
pub fn is_ready(pidfile: &Path) -> bool {
    std::fs::read_to_string(pidfile).is_ok_and(|text| pidfile_says_ready(&text))
}

fn pidfile_says_ready(text: &str) -> bool {
    text.lines()
        .nth(7)
        .is_some_and(|status| status.trim() == "ready")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfile_status_line() {
        let starting = "123\n/pg\n1700000000\n5432\n/tmp\nlocalhost\n  1234 5\nstarting\n";
        let ready = starting.replace("starting", "ready   ");
        assert!(!pidfile_says_ready(starting));
        assert!(pidfile_says_ready(&ready));
        assert!(!pidfile_says_ready("123\n/pg\n"));
        assert!(!pidfile_says_ready(
            &starting.replace("starting", "stopping")
        ));
    }

    #[tokio::test]
    async fn readiness_follows_writes_and_exits() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = ReadinessWatch::new(dir.path()).unwrap();
        let pidfile = dir.path().join("postmaster.pid");
        let writer = {
            let pidfile = pidfile.clone();
            tokio::spawn(async move {
                std::fs::write(&pidfile, "1\n/d\n0\n5432\n/tmp\n*\n 1 2\nstarting\n").unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                std::fs::write(&pidfile, "1\n/d\n0\n5432\n/tmp\n*\n 1 2\nready   \n").unwrap();
            })
        };
        watch
            .wait_ready(std::future::pending(), Duration::from_secs(10))
            .await
            .unwrap();
        writer.await.unwrap();

        std::fs::remove_file(&pidfile).unwrap();
        let exited = async { std::os::unix::process::ExitStatusExt::from_raw(3 << 8) };
        let err = watch
            .wait_ready(exited, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("exit status: 3"), "{err}");
        let err = watch
            .wait_ready(std::future::pending(), Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(err, ReadinessError::Timeout { .. }), "{err}");
    }
}
