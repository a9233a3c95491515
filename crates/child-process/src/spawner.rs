//! The one thread that forks, and the registry of the children it started.
//!
//! Every child is armed with a parent-death signal (`PR_SET_PDEATHSIG`) so that it does not
//! outlive this process, even when the process is killed with SIGKILL. Linux sends that
//! signal when the *thread* that forked the child exits, not the process: a child forked from
//! one of Tokio's blocking-pool threads, which exit after ten idle seconds, would be killed
//! by mistake. So every fork happens on a dedicated spawner thread, started on first use and
//! never ending; callers send it the work and wait for the answer (a fork and exec: a few
//! milliseconds).
//!
//! The signal is set in the child after std switched its group and user (a credential change
//! clears it), just before `exec`. If this process died between the fork and that point, the
//! signal would never come, so the child then checks that its parent is still the process
//! that forked it and exits otherwise.
//!
//! The registry lists the pids of children started here and not yet reaped: the orphan
//! reaper (`reaper`) must leave those to their owners. It is locked while a child is forked
//! and registered, and while the reaper looks, so a child cannot exit unregistered.

use std::collections::HashSet;
use std::io;
use std::os::unix::process::CommandExt;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

type Job = Box<dyn FnOnce() + Send>;

/// The spawner thread's queue; `None` if the thread could not be created.
static SPAWNER: OnceLock<Option<Mutex<mpsc::Sender<Job>>>> = OnceLock::new();

/// Pids of children started here and not yet reaped.
static LIVE: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// The registry of live children, locked.
pub(crate) fn live() -> MutexGuard<'static, Option<HashSet<i32>>> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `pid` is a child started here and not yet reaped.
pub(crate) fn is_ours(registry: &Option<HashSet<i32>>, pid: i32) -> bool {
    registry.as_ref().is_some_and(|pids| pids.contains(&pid))
}

/// Forgets `pid` once its owner has reaped it.
pub(crate) fn forget(pid: u32) {
    if let Some(pids) = live().as_mut() {
        pids.remove(&(pid as i32));
    }
}

/// Runs `spawn` (which forks) on the spawner thread with the registry locked, and registers
/// the pid it returns.
pub(crate) fn spawn_registered<T: Send + 'static>(
    spawn: impl FnOnce() -> io::Result<T> + Send + 'static,
    pid_of: fn(&T) -> Option<u32>,
) -> io::Result<T> {
    on_spawner_thread(move || {
        let mut registry = live();
        let child = spawn()?;
        if let Some(pid) = pid_of(&child) {
            registry.get_or_insert_with(HashSet::new).insert(pid as i32);
        }
        Ok(child)
    })?
}

/// Runs `job` on the spawner thread and returns its result.
fn on_spawner_thread<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let queue = SPAWNER
        .get_or_init(start_thread)
        .as_ref()
        .ok_or_else(|| io::Error::other("the child spawner thread could not be started"))?;
    let (reply, answer) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = reply.send(job());
    });
    queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send(job)
        .map_err(|_| io::Error::other("the child spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the child spawner thread failed"))
}

fn start_thread() -> Option<Mutex<mpsc::Sender<Job>>> {
    let (queue, jobs) = mpsc::channel::<Job>();
    let started = std::thread::Builder::new()
        .name("child-spawner".into())
        .spawn(move || {
            for job in jobs {
                // A panicking job loses its answer (its caller gets an error), not the thread.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        });
    match started {
        Ok(_) => Some(Mutex::new(queue)),
        Err(e) => {
            tracing::error!(error = %e, "start the child spawner thread");
            None
        }
    }
}

/// Arms `cmd`'s child with `signal` as its parent-death signal (see the module doc).
#[expect(
    unsafe_code,
    reason = "std's pre_exec is the only hook that runs in the child between the user switch and exec"
)]
pub(crate) fn arm_parent_death_signal(cmd: &mut std::process::Command, signal: Signal) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes two system
    // calls (prctl, getppid); it allocates nothing and takes no lock. std runs it after
    // setgid/setuid, which would otherwise clear the signal.
    unsafe {
        cmd.pre_exec(move || arm_in_child(signal, parent));
    }
}

/// In the child: set the signal, then make sure the parent did not die before it was set.
fn arm_in_child(signal: Signal, parent: Pid) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(signal)?;
    if nix::unistd::getppid() != parent {
        return Err(nix::errno::Errno::ESRCH.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_one_long_lived_thread() {
        let name = || std::thread::current().name().map(str::to_owned);
        let first = on_spawner_thread(name).unwrap();
        let second = std::thread::spawn(move || on_spawner_thread(name).unwrap())
            .join()
            .unwrap();
        assert_eq!(first.as_deref(), Some("child-spawner"));
        assert_eq!(first, second);
        // A panicking job is an error for its caller; the thread goes on.
        let err = on_spawner_thread(|| panic!("job panics")).unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
        assert_eq!(on_spawner_thread(|| 2 + 2).unwrap(), 4);
    }
}
