//! Readiness of a postmaster: [`ReadinessWatch`] follows `postmaster.pid` in a data directory
//! with inotify until its status line says `ready` (no sleep loop), the postmaster exits, or a
//! timeout passes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use futures::StreamExt;
use inotify::{Inotify, WatchMask};

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
    #[error("watch {pgdata}: {error}")]
    Watch {
        /// The data directory.
        pgdata: PathBuf,
        /// The OS error (in the message, not a `source`: printed once in a chain).
        error: std::io::Error,
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
            error: source,
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
                            error: std::io::Error::other("inotify stream ended"),
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
