//! compute_ctl as a container's main process, end to end through the real binary: no process
//! of the compute outlives compute_ctl killed with SIGKILL in any phase, and the next start on
//! the same data directory succeeds (issue 10 item 1); as PID 1 of a PID namespace it reaps
//! orphans without taking its own children's exit status (item 2); two SIGTERMs end it within
//! a bound in every start phase whatever postgres does (issue 14 item 3); a postmaster killed
//! under a running compute leaves `failed` on `/status` for the linger time (issue 14 item 7).
//!
//! Each test prints its figures (`figures:` lines; `cargo test -- --nocapture` shows them).

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::{Args, Ctl, TENANT, TIMELINE, eventually, processes_mentioning, read_pid_file};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

/// How long the processes of a compute may outlive compute_ctl.
const GONE_WITHIN: Duration = Duration::from_secs(2);

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Proc {
    pid: i32,
    start: u64,
}

/// (state, ppid, start time) from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state (field 3), ppid (4), ..., starttime (22).
    Some((
        fields.first()?.chars().next()?,
        fields.get(1)?.parse().ok()?,
        fields.get(19)?.parse().ok()?,
    ))
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// Every process below `root` (not `root` itself).
fn descendants(root: i32) -> Vec<Proc> {
    let table: Vec<(i32, i32, u64)> = all_pids()
        .into_iter()
        .filter_map(|pid| stat(pid).map(|(_, ppid, start)| (pid, ppid, start)))
        .collect();
    let mut below = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for &(pid, ppid, start) in &table {
            if ppid == parent {
                below.push(Proc { pid, start });
                parents.push(pid);
            }
        }
    }
    below
}

/// Alive (a zombie only waits to be reaped) and still the same process.
fn alive(p: Proc) -> bool {
    stat(p.pid).is_some_and(|(state, _, start)| state != 'Z' && start == p.start)
}

fn describe(p: Proc) -> String {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default();
    format!(
        "{}: {}",
        p.pid,
        String::from_utf8_lossy(&cmdline).replace('\0', " ")
    )
}

/// The zombies whose parent is `parent`.
fn zombie_children(parent: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|pid| stat(*pid).is_some_and(|(state, ppid, _)| state == 'Z' && ppid == parent))
        .collect()
}

/// The `sleep` orphans `parent` adopted (the storm's background jobs): pid and state of each.
fn adopted_sleeps(parent: i32) -> Vec<(i32, char)> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .filter_map(|pid| stat(pid).map(|(state, ppid, _)| (pid, state, ppid)))
        .filter(|(_, _, ppid)| *ppid == parent)
        .map(|(pid, state, _)| (pid, state))
        .collect()
}

/// What a SIGKILL of compute_ctl left.
struct Aftermath {
    /// Processes below compute_ctl just before.
    before: usize,
    /// Processes of the compute still alive after [`GONE_WITHIN`].
    left: Vec<String>,
    /// How long until the last one was gone.
    gone_after: Duration,
}

/// SIGKILLs compute_ctl and waits for the processes that were below it, and any mentioning
/// its data directory, to be gone.
async fn sigkill(ctl: &mut Ctl) -> Aftermath {
    let below = descendants(ctl.pid().as_raw());
    kill(ctl.pid(), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    ctl.wait_exit(Duration::from_secs(10)).await;
    let pgdata = ctl.pgdata.display().to_string();
    let remaining = || {
        let mut left: Vec<String> = below
            .iter()
            .copied()
            .filter(|p| alive(*p))
            .map(describe)
            .collect();
        left.extend(processes_mentioning(&pgdata));
        left.sort();
        left.dedup();
        left
    };
    let gone = eventually(GONE_WITHIN, || async {
        remaining().is_empty().then_some(())
    })
    .await;
    let gone_after = killed.elapsed();
    let left = if gone.is_some() {
        Vec::new()
    } else {
        remaining()
    };
    for p in below.iter().filter(|p| alive(**p)) {
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
    }
    Aftermath {
        before: below.len(),
        left,
        gone_after,
    }
}

/// A standalone spec with `databases` databases (each one a `CREATE DATABASE`: a reconcile
/// that takes a while).
fn standalone_spec(databases: usize) -> String {
    let dbs: Vec<_> = (0..databases)
        .map(|i| json!({"name": format!("db{i}"), "owner": "cloud_admin"}))
        .collect();
    json!({
        "format_version": 1.0,
        "cluster": {
            "roles": [],
            "databases": dbs,
            "settings": [
                {"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"},
                {"name": "fsync", "value": "off", "vartype": "bool"}
            ]
        }
    })
    .to_string()
}

const SAFEKEEPER_LSN: &str = "0/16B3748";

fn storage_spec(pageserver: &str, safekeeper: &str) -> String {
    json!({
        "safekeeper_connstrings": [safekeeper],
        "format_version": 1.0,
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "pageserver_connstring": pageserver,
        "storage_auth_token": "storage-token",
        "cluster": {
            "roles": [],
            "databases": [],
            "settings": [{"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"}]
        }
    })
    .to_string()
}

async fn pageserver(fault: Option<neon_test_servers::Fault>) -> neon_test_servers::TestPageserver {
    let mut config = harness::pageserver_config("compute-ctl-tests", "storage-token").await;
    config.fault = fault;
    neon_test_servers::TestPageserver::start(config)
        .await
        .unwrap()
}

/// A safekeeper; with `synced`, commit and flush LSNs agree (the fast path gives the LSN),
/// else the full `--sync-safekeepers` runs.
async fn safekeeper(synced: bool) -> neon_test_servers::TestSafekeeper {
    let mut config = neon_test_servers::SafekeeperConfig::new(
        TENANT.parse().unwrap(),
        TIMELINE.parse().unwrap(),
        SAFEKEEPER_LSN.parse().unwrap(),
    );
    if !synced {
        config.commit_lsn = "0/16B0000".parse().unwrap();
    }
    config.token = Some("storage-token".into());
    neon_test_servers::TestSafekeeper::start(config)
        .await
        .unwrap()
}

/// Which programs of a stand-in bin directory hang: they write their pid to `NAME.pid` in
/// the directory, ignore SIGINT, SIGTERM and SIGQUIT, and sleep (only SIGKILL ends them).
#[derive(Default, Clone, Copy)]
struct Hangs {
    initdb: bool,
    sync_safekeepers: bool,
    postgres: bool,
}

/// A bin directory of the real PostgreSQL 15 where the programs `hangs` names hang (and
/// `postgres --sync-safekeepers` otherwise prints the safekeeper's LSN); returns its
/// `postgres`, for `-b`.
fn stand_in_bindir(dir: &Path, hangs: Hangs) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let real = test_postgres::pg_bin_dir();
    let hang = |name: &str| {
        format!(
            "trap '' INT TERM QUIT; echo $$ > {}/{name}.pid; exec sleep 600\n",
            dir.display()
        )
    };
    let script = |body: String| format!("#!/bin/sh\n{body}");
    let write = |name: &str, text: String| {
        std::fs::write(bin.join(name), text).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    std::os::unix::fs::symlink(real.join("pg_ctl"), bin.join("pg_ctl")).unwrap();
    if hangs.initdb {
        write("initdb", script(hang("initdb")));
    } else {
        std::os::unix::fs::symlink(real.join("initdb"), bin.join("initdb")).unwrap();
    }
    // `--sync-safekeepers` hangs, or answers the safekeeper's LSN at once (when the fast path
    // is too slow on a loaded machine).
    let sync = if hangs.sync_safekeepers {
        hang("sync")
    } else {
        format!("echo {SAFEKEEPER_LSN}; exit 0\n")
    };
    let mut postgres = format!("if [ \"$1\" = --sync-safekeepers ]; then {sync}fi\n");
    if hangs.postgres {
        postgres += &hang("postgres");
    } else {
        postgres += &format!("exec {} \"$@\"\n", real.join("postgres").display());
    }
    write("postgres", script(postgres));
    test_postgres::chown_to_pg_user(dir).unwrap();
    bin.join("postgres")
}

/// The phases a start goes through, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Initdb,
    SyncSafekeepers,
    Basebackup,
    StartingPostgres,
    Reconcile,
    Running,
}

/// A compute held in `phase`: its compute_ctl, the storage stand-ins it talks to, the
/// scratch directory of its stand-in programs.
struct Held {
    ctl: Ctl,
    _storage: Option<(
        neon_test_servers::TestPageserver,
        neon_test_servers::TestSafekeeper,
    )>,
    _scratch: tempfile::TempDir,
    /// Processes stopped (SIGSTOP) to hold the phase: continue them when done.
    stopped: Vec<Proc>,
}

/// Starts a compute and returns once it is in `phase`. With `hang`, the phase's program
/// hangs for good (ignoring every signal but SIGKILL) or, for the reconcile, the postmaster
/// and its children are stopped; without, the phase is caught while it runs (a real initdb,
/// a reconcile of 40 databases).
async fn hold_in(phase: Phase, hang: bool) -> Held {
    let scratch = tempfile::tempdir().unwrap();
    let hangs = Hangs {
        initdb: hang && phase == Phase::Initdb,
        sync_safekeepers: phase == Phase::SyncSafekeepers,
        postgres: hang && phase == Phase::StartingPostgres,
    };
    let pgbin = stand_in_bindir(scratch.path(), hangs);
    let mut extra = vec!["-b".to_owned(), pgbin.display().to_string()];
    let storage = match phase {
        Phase::SyncSafekeepers | Phase::Basebackup => {
            let stall = neon_test_servers::Fault::Slow(Duration::from_secs(600));
            let ps = pageserver((phase == Phase::Basebackup).then_some(stall)).await;
            let sk = safekeeper(phase == Phase::Basebackup).await;
            extra.extend(["-s".to_owned(), storage_spec(&ps.connstr(), &sk.addr())]);
            Some((ps, sk))
        }
        Phase::Reconcile => {
            extra.extend(["-s".to_owned(), standalone_spec(40)]);
            None
        }
        _ => {
            extra.extend(["-s".to_owned(), standalone_spec(0)]);
            None
        }
    };
    let mut ctl = Ctl::start(Args {
        extra,
        ..Args::default()
    });
    let mut stopped = Vec::new();
    match phase {
        Phase::Initdb if hang => {
            read_pid_file(&scratch.path().join("initdb.pid")).await;
        }
        Phase::Initdb => {
            let pgdata = ctl.pgdata.display().to_string();
            let seen = eventually(Duration::from_secs(30), || async {
                processes_mentioning(&pgdata)
                    .iter()
                    .any(|p| p.contains("initdb"))
                    .then_some(())
            })
            .await;
            assert!(seen.is_some(), "initdb never ran:\n{}", ctl.log());
        }
        Phase::SyncSafekeepers => {
            read_pid_file(&scratch.path().join("sync.pid")).await;
        }
        Phase::Basebackup => {
            let (ps, _) = storage.as_ref().unwrap();
            let asked = eventually(Duration::from_secs(30), || async {
                ps.records()
                    .iter()
                    .any(|r| r.queries.iter().any(|q| q.contains("basebackup")))
                    .then_some(())
            })
            .await;
            assert!(asked.is_some(), "no basebackup asked:\n{}", ctl.log());
        }
        Phase::StartingPostgres => {
            read_pid_file(&scratch.path().join("postgres.pid")).await;
        }
        Phase::Reconcile => {
            ctl.wait_log("postgres is ready").await;
            if hang {
                let postmaster = ctl.postmaster_pid();
                let start = stat(postmaster).unwrap().2;
                stopped.push(Proc {
                    pid: postmaster,
                    start,
                });
                kill(Pid::from_raw(postmaster), Signal::SIGSTOP).unwrap();
                for p in descendants(postmaster) {
                    if kill(Pid::from_raw(p.pid), Signal::SIGSTOP).is_ok() {
                        stopped.push(p);
                    }
                }
            }
        }
        Phase::Running => {
            ctl.wait_status("running").await;
        }
    }
    assert_eq!(
        ctl.child.try_wait().unwrap(),
        None,
        "compute_ctl ended in {phase:?}:\n{}",
        ctl.log()
    );
    Held {
        ctl,
        _storage: storage,
        _scratch: scratch,
        stopped,
    }
}

/// The step a phase ends with in the log (its absence shows the phase was not over).
fn phase_done_line(phase: Phase) -> Option<&'static str> {
    match phase {
        Phase::Initdb => Some("phase=Initdb"),
        Phase::SyncSafekeepers => Some("safekeepers synced"),
        Phase::Basebackup => Some("basebackup unpacked"),
        Phase::StartingPostgres => Some("postgres is ready"),
        Phase::Reconcile => Some("catalog reconciled"),
        Phase::Running => None,
    }
}

/// Busy sessions on a running compute: one idle, one sleeping, one counting (a backend busy
/// in a query, which notices a dead postmaster only when the query ends).
async fn busy_sessions(ctl: &Ctl) -> tokio_postgres::Client {
    for query in [
        "SELECT pg_sleep(600)",
        "SELECT count(*) FROM generate_series(1, 10000000000)",
    ] {
        let client = ctl.pg("postgres").await;
        tokio::spawn(async move {
            let _ = client.simple_query(query).await;
        });
    }
    let idle = ctl.pg("postgres").await;
    // Each query reaches its backend.
    tokio::time::sleep(Duration::from_millis(500)).await;
    idle
}

/// A second start on the data directory of a killed one: it runs, then stops cleanly.
async fn next_start_succeeds(pgdata: &Path) {
    let mut ctl = Ctl::start(Args {
        extra: vec!["-s".into(), standalone_spec(0)],
        pgdata: Some(pgdata.to_owned()),
        ..Args::default()
    });
    ctl.wait_status("running").await;
    kill(ctl.pid(), Signal::SIGTERM).unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "{}", ctl.log());
}

async fn sigkill_in(phase: Phase) {
    let mut held = hold_in(phase, false).await;
    let _idle = match phase {
        Phase::Running => Some(busy_sessions(&held.ctl).await),
        _ => None,
    };
    // Not ready until running, alive throughout.
    let ready = if phase == Phase::Running { 200 } else { 503 };
    for (probe, expect) in [("/healthz", 200), ("/readyz", ready)] {
        let (code, body) = held.ctl.request("GET", probe, "", None).await;
        assert_eq!(code, expect, "{phase:?} {probe}: {body}");
    }
    let after = sigkill(&mut held.ctl).await;
    let log = held.ctl.log();
    println!(
        "figures: SIGKILL in {phase:?}: {} processes below compute_ctl, {} left after {:?}, all gone after {:?}",
        after.before,
        after.left.len(),
        GONE_WITHIN,
        after.gone_after
    );
    if let Some(line) = phase_done_line(phase) {
        assert!(
            !log.contains(line),
            "{phase:?} was over before the kill:\n{log}"
        );
    }
    assert!(
        after.left.is_empty(),
        "{phase:?}: left after {GONE_WITHIN:?}: {:#?}\n{log}",
        after.left
    );
    let pgdata = held.ctl.pgdata.clone();
    // The next start keeps the directory of the first.
    let _keep = std::mem::replace(&mut held.ctl.dir, tempfile::tempdir().unwrap());
    next_start_succeeds(&pgdata).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_initdb_leaves_nothing() {
    sigkill_in(Phase::Initdb).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_sync_safekeepers_leaves_nothing() {
    sigkill_in(Phase::SyncSafekeepers).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_basebackup_leaves_nothing() {
    sigkill_in(Phase::Basebackup).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_reconcile_leaves_nothing() {
    sigkill_in(Phase::Reconcile).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_running_with_busy_backends_leaves_nothing() {
    sigkill_in(Phase::Running).await;
}

/// Issue 14 item 3: in every start phase, with the phase's program hanging for good and
/// ignoring every signal but SIGKILL (the reconcile: the postmaster and its children
/// stopped), two SIGTERMs end compute_ctl within a bound, with exit code 0, and nothing of
/// the compute is left.
#[tokio::test(flavor = "multi_thread")]
async fn two_sigterms_end_every_start_phase_within_a_bound() {
    const BOUND: Duration = Duration::from_secs(10);
    for phase in [
        Phase::Initdb,
        Phase::SyncSafekeepers,
        Phase::Basebackup,
        Phase::StartingPostgres,
        Phase::Reconcile,
    ] {
        let mut held = hold_in(phase, true).await;
        let below = descendants(held.ctl.pid().as_raw());
        let asked = Instant::now();
        kill(held.ctl.pid(), Signal::SIGTERM).unwrap();
        held.ctl.wait_log("termination signal received").await;
        kill(held.ctl.pid(), Signal::SIGTERM).unwrap();
        let exit = held.ctl.wait_exit(Duration::from_secs(60)).await;
        let took = asked.elapsed();
        // What was stopped to hold the phase can go on (and find its postmaster gone).
        for p in held.stopped.iter().filter(|p| alive(**p)) {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGCONT);
        }
        let left = eventually(GONE_WITHIN, || async {
            let left: Vec<String> = below
                .iter()
                .copied()
                .filter(|p| alive(*p))
                .map(describe)
                .collect();
            left.is_empty().then_some(())
        })
        .await;
        let log = held.ctl.log();
        println!("figures: two SIGTERMs in {phase:?}: compute_ctl exited after {took:?}");
        if let Some(line) = phase_done_line(phase) {
            assert!(
                !log.contains(line),
                "{phase:?} was over before the signals:\n{log}"
            );
        }
        assert!(took < BOUND, "{phase:?}: {took:?}\n{log}");
        assert_eq!(exit.code(), Some(0), "{phase:?}\n{log}");
        let still: Vec<String> = below
            .iter()
            .copied()
            .filter(|p| alive(*p))
            .map(describe)
            .collect();
        assert!(left.is_some(), "{phase:?}: left {still:#?}\n{log}");
    }
}

/// The pid of the only child of `parent` (compute_ctl under `unshare --fork`).
async fn only_child(parent: i32) -> i32 {
    let child = eventually(Duration::from_secs(10), || async {
        let text =
            std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
        text.split_whitespace().next()?.parse().ok()
    })
    .await;
    child.expect("unshare started no child")
}

/// Issue 10 item 2: compute_ctl as PID 1 of a PID namespace reaps the orphans postgres's
/// programs leave (20 `COPY … TO PROGRAM` with a background job each), while its own children
/// keep their exit status (a `/configure` during the storm runs `pg_ctl reload`, whose
/// success is checked; the postmaster's exit after SIGTERM is seen), and exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn as_pid_1_orphans_are_reaped_and_exit_codes_kept() {
    let wrapper = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
    orphans_are_reaped_and_exit_codes_kept(&wrapper, "PID 1").await;
}

/// The same duty when compute_ctl is not PID 1 but a child subreaper: its launcher set
/// `PR_SET_CHILD_SUBREAPER` and `exec`ed it (the setting survives `execve`), so the orphans
/// below it become its children and would stay zombies unless it reaps them.
#[tokio::test(flavor = "multi_thread")]
async fn as_a_child_subreaper_orphans_are_reaped_and_exit_codes_kept() {
    // PR_SET_CHILD_SUBREAPER is 36 (linux/prctl.h).
    let launcher = "import ctypes, os, sys\n\
        assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0\n\
        os.execv(sys.argv[1], sys.argv[1:])";
    orphans_are_reaped_and_exit_codes_kept(&["python3", "-c", launcher], "a child subreaper").await;
}

/// Runs a compute under `wrapper` (which makes compute_ctl `role`, as its log says), makes 20
/// orphans and checks that none stays a zombie of compute_ctl, that its own children keep
/// their exit status, and that it exits 0 after SIGTERM.
async fn orphans_are_reaped_and_exit_codes_kept(wrapper: &[&str], role: &str) {
    let mut ctl = Ctl::start(Args {
        extra: vec!["-s".into(), standalone_spec(0)],
        wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
        ..Args::default()
    });
    let init = if role == "PID 1" {
        only_child(ctl.pid().as_raw()).await
    } else {
        ctl.pid().as_raw()
    };
    ctl.wait_status("running").await;
    ctl.wait_log(&format!("running as {role}: orphaned processes are reaped"))
        .await;

    let client = ctl.pg("postgres").await;
    let storm = tokio::spawn(async move {
        for _ in 0..20 {
            client
                // The program reads its input first: exiting before postgres wrote is an
                // EPIPE for the COPY.
                .batch_execute("COPY (SELECT 1) TO PROGRAM 'cat >/dev/null; (sleep 30 &) ; true'")
                .await
                .unwrap();
        }
    });
    let spec: serde_json::Value = serde_json::from_str(&standalone_spec(1)).unwrap();
    let body = json!({"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}}).to_string();
    let (code, answer) = ctl.request("POST", "/configure", &body, None).await;
    assert_eq!(code, 200, "{answer}\n{}", ctl.log());
    storm.await.unwrap();
    // Every orphan was adopted by compute_ctl (else the check below would prove nothing);
    // then they are ended, and the reaper (run at each SIGCHLD) must take every one.
    let adopted = eventually(Duration::from_secs(10), || async {
        let sleeps = adopted_sleeps(init);
        (sleeps.len() == 20).then_some(sleeps)
    })
    .await;
    let adopted = adopted.unwrap_or_else(|| {
        panic!(
            "{} of 20 orphans adopted by compute_ctl\n{}",
            adopted_sleeps(init).len(),
            ctl.log()
        )
    });
    for (pid, _) in adopted {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let zombies = eventually(Duration::from_secs(10), || async {
        (adopted_sleeps(init).is_empty() && zombie_children(init).is_empty()).then_some(())
    })
    .await;
    let left = zombie_children(init);
    println!(
        "figures: {role}: 20 orphans made, {} zombies left",
        left.len()
    );
    assert!(zombies.is_some(), "zombies left: {left:?}\n{}", ctl.log());
    assert_eq!(ctl.get_json("/status").await["status"], "running");

    kill(Pid::from_raw(init), Signal::SIGTERM).unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(30)).await;
    let log = ctl.log();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(log.contains("postgres stopped"), "{log}");
    assert!(!log.contains("wait for postgres"), "{log}");
}

/// Issue 14 item 7: a postmaster killed under a running compute leaves `failed` (with the
/// signal) on `/status` for the linger time, then compute_ctl exits 128 + 9; a SIGTERM
/// during the linger ends it at once, with the same code.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_postmaster_is_failed_for_the_linger_then_exit_137() {
    for (linger, cut_short) in [("2s", false), ("120s", true)] {
        let mut ctl = Ctl::start(Args {
            extra: vec![
                "-s".into(),
                standalone_spec(0),
                "--linger".into(),
                linger.into(),
            ],
            ..Args::default()
        });
        ctl.wait_status("running").await;
        let killed = Instant::now();
        kill(Pid::from_raw(ctl.postmaster_pid()), Signal::SIGKILL).unwrap();
        let status = ctl.wait_status("failed").await;
        let error = status["error"].as_str().unwrap_or_default();
        assert!(error.contains("signal: 9"), "{status}");
        if cut_short {
            kill(ctl.pid(), Signal::SIGTERM).unwrap();
        }
        let exit = ctl.wait_exit(Duration::from_secs(30)).await;
        let took = killed.elapsed();
        println!(
            "figures: killed postmaster, --linger {linger}, SIGTERM: {cut_short}: exit after {took:?}"
        );
        assert_eq!(exit.code(), Some(128 + 9), "{}", ctl.log());
        if cut_short {
            assert!(took < Duration::from_secs(20), "{took:?}");
        } else {
            assert!(took >= Duration::from_secs(2), "{took:?}");
        }
    }
}
