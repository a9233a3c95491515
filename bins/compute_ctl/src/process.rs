//! compute_ctl's children on top of `child-process` (which spawns, forwards output, kills and
//! reaps): Postgres programs run as the unprivileged Postgres user when compute_ctl is root,
//! from an absolute working directory; the postmaster, which gets an immediate shutdown
//! (SIGQUIT) rather than SIGKILL when its handle is dropped.
//!
//! Also readiness detection: [`ReadinessWatch`] follows `postmaster.pid` with inotify until its
//! status line says `ready` (no sleep loop).

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use child_process::{Child, Command};
use futures::StreamExt;
use inotify::{Inotify, WatchMask};
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

/// A user to run Postgres programs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

impl RunAs {
    /// Looks up `name` in the user database.
    pub(crate) fn lookup(name: &str) -> anyhow::Result<RunAs> {
        match child_process::RunAs::lookup(name)? {
            Some(user) => Ok(RunAs {
                uid: user.uid,
                gid: user.gid,
            }),
            None => anyhow::bail!(
                "user {name:?} does not exist: postgres cannot run as root, so create it \
                 (useradd --system postgres) or pass --pg-user"
            ),
        }
    }
}

impl From<RunAs> for child_process::RunAs {
    fn from(user: RunAs) -> child_process::RunAs {
        child_process::RunAs {
            uid: user.uid,
            gid: user.gid,
        }
    }
}

/// A command for `program`, run as `run_as` (if any) from `cwd`, with stdin closed and its
/// output forwarded to the log. Killed when its child is dropped.
pub(crate) fn command(program: impl AsRef<OsStr>, run_as: Option<RunAs>, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.run_as(run_as.map(Into::into)).current_dir(cwd);
    cmd
}

/// Runs a command to completion, forwarding its output to the log; `cancel` kills it. Errors
/// name the program, its exit status and its last output lines.
pub(crate) async fn run_to_completion(
    program: &'static str,
    mut cmd: Command,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    cmd.name(program).tail_lines(5);
    cmd.run(None, cancel).await?;
    Ok(())
}

/// The running postmaster.
#[derive(Debug)]
pub(crate) struct Postmaster {
    child: Child,
    /// Set once seen, even when waiting failed.
    exit: Option<ExitStatus>,
}

impl Postmaster {
    /// Spawns `cmd` (from [`command`]) and forwards its output. A postmaster still running when
    /// its handle goes away (an interrupted start) gets an immediate shutdown, which also stops
    /// its backends; SIGKILL would orphan them.
    pub(crate) fn spawn(mut cmd: Command) -> anyhow::Result<Postmaster> {
        cmd.name("postgres").on_drop(Signal::SIGQUIT);
        let child = cmd.spawn()?;
        tracing::info!(pid = child.pid(), "postgres started");
        Ok(Postmaster { child, exit: None })
    }

    /// After exit: the last FATAL/PANIC message postgres wrote (waits up to 1 s for its
    /// output to be read).
    pub(crate) async fn last_fatal(&mut self) -> Option<String> {
        self.child.captured(Duration::from_secs(1)).await.last_fatal
    }

    /// Process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Sends `signal` unless the postmaster already exited.
    pub(crate) fn signal(&self, signal: Signal) {
        if self.exit.is_none() {
            tracing::info!(pid = self.pid(), ?signal, "signalling postgres");
            self.child.signal(signal);
        }
    }

    /// Waits for exit (cancel-safe).
    pub(crate) async fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let status = self.child.wait().await;
        self.exited(status)
    }

    /// Immediate shutdown, then wait; killed after 10 s. A last resort on error paths.
    pub(crate) async fn stop_immediate(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        tracing::info!(pid = self.pid(), signal = ?Signal::SIGQUIT, "signalling postgres");
        let status = self
            .child
            .stop(Signal::SIGQUIT, Duration::from_secs(10))
            .await;
        self.exited(status)
    }

    fn exited(&mut self, status: Result<ExitStatus, child_process::Error>) -> ExitStatus {
        let status = status.unwrap_or_else(|e| {
            tracing::error!(error = %e, "wait for postgres");
            std::os::unix::process::ExitStatusExt::from_raw(1 << 8)
        });
        self.exit = Some(status);
        status
    }
}

/// The exit code compute_ctl returns for a postmaster exit status: its code, or 128 + the
/// signal number when it was killed by a signal.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    child_process::exit_code(status)
}

/// Why Postgres did not become ready.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ReadinessError {
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
pub(crate) struct ReadinessWatch {
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
    pub(crate) fn new(pgdata: &Path) -> Result<ReadinessWatch, ReadinessError> {
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
    pub(crate) async fn wait_ready(
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
pub(crate) fn is_ready(pidfile: &Path) -> bool {
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
