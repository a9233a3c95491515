//! No child outlives its parent process: a test process that started children (async and
//! blocking; the async one as the unprivileged user when run as root, which shows the
//! parent-death signal is set after the user switch that would clear it, and from a thread
//! that is gone by then) is killed with SIGKILL, and its children die. The killed process is
//! this test binary again, run with an environment variable that makes the test play the
//! parent.

use std::path::Path;
use std::time::{Duration, Instant};

use child_process::{Command, RunAs};

const PARENT_ROLE: &str = "CHILD_PROCESS_TEST_PLAY_PARENT";

/// Whether `pid` is alive (a zombie is dead: it waits only to be reaped).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z")
        })
        .unwrap_or(false)
}

fn pg_user() -> Option<RunAs> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    RunAs::lookup("postgres").ok().flatten()
}

/// The parent's part: start the children, write their pids, wait to be killed.
fn play_parent(pid_file: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pids = runtime.block_on(async {
        // From a thread that exits right after: the children must not die with it.
        let async_child = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut cmd = Command::new("sleep");
                    cmd.arg("600").run_as(pg_user());
                    let child = cmd.spawn().unwrap();
                    let pid = child.pid();
                    std::mem::forget(child);
                    pid
                })
        })
        .join()
        .unwrap();
        let blocking = Command::new("sleep").arg("600").start_blocking().unwrap();
        let pid = blocking.pid();
        std::mem::forget(blocking);
        [async_child, pid]
    });
    std::fs::write(pid_file, format!("{} {}", pids[0], pids[1])).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn children_die_with_their_parent_even_by_sigkill() {
    if let Ok(pid_file) = std::env::var(PARENT_ROLE) {
        play_parent(Path::new(&pid_file));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "children_die_with_their_parent_even_by_sigkill",
            "--nocapture",
        ])
        .env(PARENT_ROLE, &pid_file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pids: Vec<i32> = loop {
        if let Some(pids) = std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|t| t.split_whitespace().count() == 2)
        {
            break pids
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
        }
        assert!(Instant::now() < deadline, "the parent wrote no pids");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The thread that started the first child has exited: the child lives on.
    std::thread::sleep(Duration::from_millis(200));
    assert!(pids.iter().all(|pid| alive(*pid)), "{pids:?}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(parent.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    parent.wait().unwrap();
    let killed = Instant::now();
    while pids.iter().any(|pid| alive(*pid)) && killed.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left: Vec<i32> = pids.iter().copied().filter(|pid| alive(*pid)).collect();
    for pid in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(left.is_empty(), "children outlived their parent: {left:?}");
}
