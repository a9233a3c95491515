//! The vm-informant sidecar: if its executable exists it is started, restarted 5 s after each
//! exit, and stopped (SIGTERM, then killed) when the token is cancelled.

use std::path::PathBuf;
use std::time::Duration;

use child_process::{Command, Signal};
use tokio_util::sync::CancellationToken;

/// Delay before restarting an exited vm-informant.
pub(crate) const RESTART_DELAY: Duration = Duration::from_secs(5);

/// How long a stopping vm-informant has after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Starts the supervision task if `path` is an existing file; `None` otherwise.
pub(crate) fn spawn(
    path: PathBuf,
    cancel: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !path.is_file() {
        tracing::debug!(path = %path.display(), "no vm-informant");
        return None;
    }
    Some(tokio::spawn(supervise(path, cancel, RESTART_DELAY)))
}

/// Runs `path` until `cancel`, restarting it `restart_delay` after every exit.
pub(crate) async fn supervise(path: PathBuf, cancel: CancellationToken, restart_delay: Duration) {
    let mut cmd = Command::new(&path);
    cmd.name("vm-informant");
    loop {
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "start vm-informant");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(restart_delay) => continue,
                }
            }
        };
        let pid = child.pid();
        tracing::info!(pid, "vm-informant started");
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(pid, status = ?status, "vm-informant exited; restarting in {restart_delay:?}");
            }
            () = cancel.cancelled() => {
                let _ = child.stop(Signal::SIGTERM, STOP_GRACE).await;
                tracing::info!(pid, "vm-informant stopped");
                return;
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(restart_delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn restarts_after_exit_and_stops_on_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let script = dir.path().join("informant.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho run >> {}\nexit 0\n", count.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(supervise(script, cancel.clone(), Duration::from_millis(20)));
        let mut runs = 0;
        for _ in 0..200 {
            runs = std::fs::read_to_string(&count)
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if runs >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(runs >= 3, "restarted {runs} times");
        cancel.cancel();
        task.await.unwrap();
        assert!(spawn(dir.path().join("missing"), CancellationToken::new()).is_none());
    }
}
