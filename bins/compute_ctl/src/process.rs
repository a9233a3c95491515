//! compute_ctl's children on top of `child-process` (which spawns, forwards output, kills and
//! reaps): Postgres programs run as the unprivileged Postgres user when compute_ctl is root,
//! from an absolute working directory; the postmaster, which gets an immediate shutdown
//! (SIGQUIT) rather than SIGKILL when its handle is dropped; the orphan reaper of a
//! compute_ctl that is PID 1.
//!
//! No child outlives compute_ctl, even killed by SIGKILL: `child-process` arms each with a
//! parent-death signal. The postmaster's is SIGQUIT, as on drop: its immediate shutdown
//! SIGQUITs every backend at once (one busy in a long query included; stragglers get SIGKILL
//! after 5 s), then removes `postmaster.pid` and its shared-memory segment, so the next start
//! finds the directory free. SIGKILL would be the one signal nothing can ignore, but it
//! leaves the backends to notice on their own: idle ones do at once, one busy in a query only
//! when the query ends (measured: a 300-million-row count ran on for 35 s, keeping the
//! segment attached). The price of SIGQUIT: a postmaster that is stopped (SIGSTOP) when
//! compute_ctl is killed keeps it pending until continued. Every other child gets SIGKILL.
//!
//! As PID 1 (a container without an init), or as a child subreaper (its launcher set
//! `PR_SET_CHILD_SUBREAPER` and then `exec`ed it), compute_ctl reaps the orphans reparented to
//! it (`child_process::reaper`), leaving its own children's exit status to their owners. It
//! does not make itself a child subreaper: then the process above it (systemd, tini,
//! docker's `--init`, the kubelet's pause container) reaps, and orphans of postgres's programs
//! go where the host expects them.
//!
//! Readiness detection is `child_process::postmaster_pid` (re-exported here).

use std::ffi::OsStr;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use child_process::pg_log::{DEFAULT_LOG_LINE_PREFIX, PgLogFormat};
pub(crate) use child_process::postmaster_pid::ReadinessWatch;
use child_process::{Child, Command, LineClassifier};
use compute_spec::ValidatedSpec;
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

/// How the postmaster's output is read: the severity after the `log_line_prefix` the spec sets
/// (its settings win over its `postgresql_conf` text, as in the rendered file), else
/// PostgreSQL's default. A prefix changed later by `/configure` is not followed: lines then
/// log at INFO.
pub(crate) fn server_output(spec: &ValidatedSpec) -> LineClassifier {
    let cluster = &spec.spec().cluster;
    let from_settings = cluster
        .settings
        .iter()
        .flatten()
        .filter(|s| s.name == "log_line_prefix")
        .filter_map(|s| s.value.clone())
        .next_back();
    let from_conf = || {
        cluster
            .postgresql_conf
            .as_deref()
            .map(pg_config::parse_conf)
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.name == "log_line_prefix")
            .map(|l| l.value)
            .next_back()
    };
    let prefix = from_settings.or_else(from_conf);
    PgLogFormat::new(prefix.as_deref().unwrap_or(DEFAULT_LOG_LINE_PREFIX)).classifier()
}

/// How a program that reports progress (initdb) is read: its errors and warnings at their
/// level, the rest at DEBUG.
pub(crate) fn chatter_output() -> LineClassifier {
    PgLogFormat::default()
        .other_lines(tracing::Level::DEBUG)
        .classifier()
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

    /// Immediate shutdown, then wait; killed with SIGKILL after `grace`. A last resort on
    /// error paths and interrupted starts.
    pub(crate) async fn stop_immediate(&mut self, grace: Duration) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        tracing::info!(pid = self.pid(), signal = ?Signal::SIGQUIT, "signalling postgres");
        let status = self.child.stop(Signal::SIGQUIT, grace).await;
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

/// When orphans become compute_ctl's children (it is PID 1, or a child subreaper because its
/// launcher set `PR_SET_CHILD_SUBREAPER` before `exec`): reaps them for as long as the runtime
/// runs (see the module doc). Otherwise nothing.
pub(crate) fn reap_orphans_if_adopted() -> Option<tokio::task::JoinHandle<()>> {
    let role = if child_process::reaper::is_init() {
        "PID 1"
    } else if child_process::reaper::is_subreaper() {
        "a child subreaper"
    } else {
        return None;
    };
    match child_process::reaper::spawn() {
        Ok(task) => {
            tracing::info!("running as {role}: orphaned processes are reaped");
            Some(task)
        }
        Err(e) => {
            tracing::warn!(error = %e, "running as {role} but cannot reap orphans");
            None
        }
    }
}

/// The exit code compute_ctl returns for a postmaster exit status: its code, or 128 + the
/// signal number when it was killed by a signal.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    child_process::exit_code(status)
}
