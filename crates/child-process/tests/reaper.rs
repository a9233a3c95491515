//! The orphan reaper, in a test process made a child subreaper (its own process: the
//! subreaper attribute is process-wide): orphans that exited are reaped, the exit status of
//! this crate's own children is left to their owners, even when one of them exited first and
//! hides the orphans from the peek.

use std::time::{Duration, Instant};

use child_process::{Command, reaper};
use tokio_util::sync::CancellationToken;

/// (pid, state, ppid) of every process.
fn processes() -> Vec<(i32, String, i32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        found.push((pid, fields[0].to_owned(), fields[1].parse().unwrap_or(0)));
    }
    found
}

fn zombie_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    processes()
        .into_iter()
        .filter(|(_, state, ppid)| state == "Z" && *ppid == me)
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Starts `count` orphans (`sleep` in a background subshell) that exit after 100 ms.
async fn orphans(count: usize) {
    let script = "(sleep 0.1 &) ; ".repeat(count) + "true";
    Command::new("sh")
        .args(["-c", &script])
        .run(Some(Duration::from_secs(10)), &CancellationToken::new())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn orphans_are_reaped_and_our_children_keep_their_status() {
    reaper::become_subreaper().unwrap();
    assert!(reaper::is_subreaper());
    assert!(!reaper::is_init());

    // One of ours exits first and is not waited for yet: the peek sees it first.
    let mut ours = Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
    let our_pid = ours.pid() as i32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !zombie_children().contains(&our_pid) {
        assert!(Instant::now() < deadline, "our child never exited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    orphans(5).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while zombie_children().len() < 6 {
        assert!(
            Instant::now() < deadline,
            "orphans did not exit: {:?}",
            zombie_children()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(reaper::reap_orphans(), 5);
    assert_eq!(zombie_children(), [our_pid]);
    let status = ours.wait().await.unwrap();
    assert_eq!(child_process::exit_code(status), 7);

    // The reaper task, while children of ours start and finish: all get their status.
    let task = reaper::spawn().unwrap();
    for round in 0..10 {
        orphans(3).await;
        let code = format!("exit {round}");
        let status = Command::new("sh")
            .args(["-c", &code])
            .spawn()
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(child_process::exit_code(status), round);
        let out = Command::new("sh")
            .args(["-c", "(sleep 0.05 &) ; echo done"])
            .output_blocking()
            .unwrap();
        assert_eq!(out.stdout, b"done\n");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !zombie_children().is_empty() {
        assert!(
            Instant::now() < deadline,
            "zombies left: {:?}",
            zombie_children()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}
