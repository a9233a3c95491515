//! Reaping orphans: the duty of a process that is PID 1 (a container without an init) or a
//! child subreaper. Processes orphaned anywhere below it (a program started by postgres that
//! left a background job, say) become its children; when they exit they stay zombies until
//! it waits for them.
//!
//! The reaper must not steal the exit status of this crate's own children, which their
//! owners wait for by pid (Tokio's process driver, std's `wait`): a `waitpid(-1)` loop would
//! take it and the owner would see `ECHILD`. So it first *peeks* at an exited child
//! (`waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)`, which leaves it waitable) and reaps it only
//! if it is not in the registry of children started here (`spawner`). When the peek shows
//! one of ours (exited, its owner not there yet), it lists this process's children
//! (`/proc/self/task/*/children`) and reaps the exited strangers among them one by one. The
//! registry is locked meanwhile, so a child being started cannot be taken for a stranger.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::spawner;

/// How often a round runs without a SIGCHLD (one may be missed while an exited child of ours
/// hides the others from the peek).
const ROUND_INTERVAL: Duration = Duration::from_secs(1);

/// Whether this process is PID 1 of its PID namespace.
pub fn is_init() -> bool {
    nix::unistd::getpid().as_raw() == 1
}

/// Whether this process is a child subreaper (`PR_GET_CHILD_SUBREAPER`): set on itself, or by
/// a wrapper that set it and then `exec`ed this program (the setting survives `execve`).
pub fn is_subreaper() -> bool {
    nix::sys::prctl::get_child_subreaper().unwrap_or(false)
}

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`): orphans below it become
/// its children instead of PID 1's. Needed only to test the reaper outside a PID namespace.
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)?;
    Ok(())
}

/// Reaps every exited child that was not started by this crate; returns how many.
pub fn reap_orphans() -> usize {
    let registry = spawner::live();
    let mut reaped = 0;
    loop {
        let peek = waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        );
        let pid = match peek {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
            Ok(status) => match status.pid() {
                Some(pid) => pid,
                None => return reaped,
            },
        };
        if spawner::is_ours(&registry, pid.as_raw()) {
            let strangers = children()
                .into_iter()
                .filter(|pid| !spawner::is_ours(&registry, *pid));
            return reaped
                + strangers
                    .filter(|pid| reap_if_exited(Pid::from_raw(*pid)))
                    .count();
        }
        if reap_if_exited(pid) {
            reaped += 1;
        }
    }
}

/// Reaps `pid` if it has exited.
fn reap_if_exited(pid: Pid) -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
    matches!(
        waitid(Id::Pid(pid), flags),
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
    )
}

/// The children of every thread of this process (empty if `/proc` cannot tell).
fn children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Reaps orphans for as long as the runtime runs: a round at each SIGCHLD and every second.
/// Needs a Tokio runtime.
pub fn spawn() -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(ROUND_INTERVAL);
        let mut total = 0usize;
        loop {
            tokio::select! {
                _ = sigchld.recv() => {}
                _ = tick.tick() => {}
            }
            let reaped = reap_orphans();
            if reaped > 0 {
                total += reaped;
                tracing::debug!(reaped, total, "orphaned processes reaped");
            }
        }
    }))
}
