//! Child processes of a compute: the one crate that starts programs. It owns building a
//! command (as an unprivileged user when we are root, from an absolute working directory,
//! stdin closed), forwarding the child's output line by line to the log, killing and reaping
//! a child whose handle is dropped, stopping with a signal and a bounded wait, and running a
//! program to completion under a timeout and a cancellation token.
//!
//! It does not decide *what* to run or what an exit means (compute_ctl's postmaster,
//! neon-clients' `--sync-safekeepers`, pg-binary's probes do), and it does not look at
//! `postmaster.pid`.
//!
//! - [`Command`]: the builder. Defaults: working directory `/`, stdin from `/dev/null`,
//!   environment inherited, a program path with a `/` made absolute.
//! - [`Command::spawn`] → [`Child`]: a supervised child. Its stdout and stderr are logged line
//!   by line under the target `postgres` (the `program` and `pid` fields tell children apart),
//!   at the level a [`LineClassifier`] gives ([`Command::classify_lines`]; by default
//!   [`pg_log`]'s reading of the severity PostgreSQL writes after its line prefix: ERROR for
//!   `FATAL`/`PANIC`, WARN for `ERROR`/`WARNING`, INFO otherwise); the last lines and the
//!   last fatal message are kept ([`Child::captured`]). Dropping a
//!   `Child` that still runs sends it [`Command::on_drop`]'s signal (SIGKILL unless told
//!   otherwise) and reaps it in the background; [`Child::stop`] signals, waits with a bound,
//!   then kills.
//! - [`Command::stream_stdout`]: standard output handed to the caller as a pipe
//!   ([`Child::take_stdout`]) to stream it elsewhere; the child is still killed and reaped
//!   when its handle is dropped (a client that goes away stops the program).
//! - [`Command::run`]: spawn and wait, killing and reaping on timeout or cancellation; errors
//!   name the program, the exit status and the last output lines.
//! - [`Command::output_blocking`] / [`Command::start_blocking`]: for synchronous callers, both
//!   outputs captured, killed and reaped on drop.
//!
//! When the user changes (root running a program as another user), std clears the
//! supplementary groups before `setuid`: the child has only the primary group it is given.
//!
//! No child outlives this process: every child is forked from one long-lived spawner thread
//! and armed with a parent-death signal (its [`Command::on_drop`] signal), so it is signalled
//! even when this process is killed with SIGKILL. The pids of live children are registered,
//! so that [`reaper`] (the duty of a PID 1) reaps only orphans and never steals a child's
//! exit status from its owner.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), child_process::Error> {
//! use std::time::Duration;
//! use child_process::Command;
//! use tokio_util::sync::CancellationToken;
//!
//! let mut cmd = Command::new("sh");
//! cmd.args(["-c", "echo hello; echo 'FATAL:  out of luck' >&2; exit 3"])
//!     .current_dir("/tmp");
//! let err = cmd
//!     .run(Some(Duration::from_secs(10)), &CancellationToken::new())
//!     .await
//!     .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "sh failed (exit status: 3): hello | FATAL:  out of luck"
//! );
//!
//! let out = Command::new("echo").arg("hi").output_blocking()?;
//! assert_eq!(out.stdout, b"hi\n");
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod blocking;
mod child;
mod output;
pub mod pg_log;
pub mod postmaster_pid;
pub mod reaper;
mod spawner;

use std::ffi::{OsStr, OsString};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

pub use blocking::BlockingChild;
pub use child::{Captured, Child};
pub use nix::sys::signal::Signal;
pub use output::{LineClass, LineClassifier};

/// The user and primary group to run a child as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Primary group id (the only group the child has).
    pub gid: u32,
}

impl RunAs {
    /// Looks up `name` in the user database: `None` if there is no such user.
    pub fn lookup(name: &str) -> Result<Option<RunAs>, Error> {
        let user = nix::unistd::User::from_name(name).map_err(|errno| Error::UserLookup {
            name: name.to_owned(),
            error: errno.into(),
        })?;
        Ok(user.map(|user| RunAs {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }))
    }
}

impl From<(u32, u32)> for RunAs {
    /// From `(uid, gid)`.
    fn from((uid, gid): (u32, u32)) -> RunAs {
        RunAs { uid, gid }
    }
}

/// Why a child could not be run, or did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user database could not be read.
    #[error("look up user {name:?}: {error}")]
    UserLookup {
        /// The user name.
        name: String,
        /// The OS error (in the message, not a `source`: printed once in a chain).
        error: std::io::Error,
    },
    /// The working directory is relative.
    #[error("run {program}: working directory {} is not absolute", dir.display())]
    RelativeDirectory {
        /// The program's name.
        program: String,
        /// The directory given.
        dir: PathBuf,
    },
    /// The program could not be started.
    #[error("start {program}: {error}")]
    Spawn {
        /// The program's name.
        program: String,
        /// The OS error (in the message, not a `source`: printed once in a chain).
        error: std::io::Error,
    },
    /// Waiting for the child failed.
    #[error("wait for {program}: {error}")]
    Wait {
        /// The program's name.
        program: String,
        /// The OS error (in the message, not a `source`: printed once in a chain).
        error: std::io::Error,
    },
    /// The child exited with a failure.
    #[error("{program} failed ({status}): {}", tail.join(" | "))]
    Failed {
        /// The program's name.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its last forwarded output lines.
        tail: Vec<String>,
    },
    /// The child ran longer than the timeout; it was killed and reaped.
    #[error("{program} timed out after {timeout:?} and was killed: {}", tail.join(" | "))]
    TimedOut {
        /// The program's name.
        program: String,
        /// The timeout.
        timeout: Duration,
        /// Its last forwarded output lines.
        tail: Vec<String>,
    },
    /// The run was cancelled; the child was killed and reaped.
    #[error("{program} cancelled and killed")]
    Cancelled {
        /// The program's name.
        program: String,
        /// Its last forwarded output lines.
        tail: Vec<String>,
    },
}

impl From<Error> for std::io::Error {
    /// The OS error of a failed start or wait; any other error wrapped as
    /// [`std::io::ErrorKind::Other`].
    fn from(e: Error) -> std::io::Error {
        match e {
            Error::UserLookup { error, .. }
            | Error::Spawn { error, .. }
            | Error::Wait { error, .. } => error,
            other => std::io::Error::other(other),
        }
    }
}

/// How a child's standard output is handled by [`Command::spawn`] and [`Command::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StdoutMode {
    /// Logged line by line, like stderr.
    Forward,
    /// Kept (up to [`STDOUT_LIMIT`]) for [`Captured::stdout`], not logged.
    Capture,
    /// Handed to the caller ([`Child::take_stdout`]), neither logged nor kept.
    Stream,
}

/// How much captured standard output is kept; the rest is read and dropped.
pub const STDOUT_LIMIT: usize = 64 * 1024;

/// How many output lines are kept for errors unless [`Command::tail_lines`] says otherwise.
pub const DEFAULT_TAIL_LINES: usize = 20;

#[derive(Debug, Clone)]
enum EnvChange {
    Set(OsString, OsString),
    Remove(OsString),
    Clear,
}

/// A program to run, and how. Cheap to clone; can be spawned more than once.
#[derive(Debug, Clone)]
pub struct Command {
    program: PathBuf,
    name: String,
    args: Vec<OsString>,
    env: Vec<EnvChange>,
    dir: PathBuf,
    run_as: Option<RunAs>,
    stdout: StdoutMode,
    tail_lines: usize,
    on_drop: Signal,
    classifier: LineClassifier,
}

impl Command {
    /// Runs `program`: a bare name is looked up in `PATH`, a path with a `/` is made absolute.
    /// Its name in logs and errors is the file name of `program` (see [`Command::name`]).
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        let program = Path::new(program.as_ref());
        let name = program
            .file_name()
            .unwrap_or(program.as_os_str())
            .to_string_lossy()
            .into_owned();
        let program = if program.components().count() > 1 {
            std::path::absolute(program).unwrap_or_else(|_| program.to_owned())
        } else {
            program.to_owned()
        };
        Command {
            program,
            name,
            args: Vec::new(),
            env: Vec::new(),
            dir: PathBuf::from("/"),
            run_as: None,
            stdout: StdoutMode::Forward,
            tail_lines: DEFAULT_TAIL_LINES,
            on_drop: Signal::SIGKILL,
            classifier: LineClassifier::default(),
        }
    }

    /// The program's name in logs and errors.
    pub fn name(&mut self, name: impl Into<String>) -> &mut Command {
        self.name = name.into();
        self
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.env.push(EnvChange::Set(
            key.as_ref().to_owned(),
            value.as_ref().to_owned(),
        ));
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.env.push(EnvChange::Remove(key.as_ref().to_owned()));
        self
    }

    /// Starts from an empty environment (variables set after this are kept).
    pub fn env_clear(&mut self) -> &mut Command {
        self.env.push(EnvChange::Clear);
        self
    }

    /// The working directory (default `/`); it must be absolute, or spawning fails.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.dir = dir.as_ref().to_owned();
        self
    }

    /// Runs the child as `user` (needs root), with only its primary group.
    pub fn run_as(&mut self, user: Option<RunAs>) -> &mut Command {
        self.run_as = user;
        self
    }

    /// Keeps standard output for [`Captured::stdout`] instead of logging it.
    pub fn capture_stdout(&mut self) -> &mut Command {
        self.stdout = StdoutMode::Capture;
        self
    }

    /// Hands standard output to the caller instead of logging it: [`Child::take_stdout`]
    /// returns the pipe, to be read as a stream (a `pg_dump` answered over HTTP as it runs).
    /// The caller must keep reading it: a child writing into a full pipe blocks. Standard error
    /// is still logged and its last lines kept; dropping the [`Child`] still kills and reaps
    /// it. [`Command::run`] closes the pipe unread (the child gets `SIGPIPE` if it writes).
    pub fn stream_stdout(&mut self) -> &mut Command {
        self.stdout = StdoutMode::Stream;
        self
    }

    /// How many of the last output lines are kept for errors (default
    /// [`DEFAULT_TAIL_LINES`]).
    pub fn tail_lines(&mut self, lines: usize) -> &mut Command {
        self.tail_lines = lines;
        self
    }

    /// The signal a still-running [`Child`] gets when its handle is dropped, and when this
    /// process dies, even by SIGKILL (its parent-death signal): default SIGKILL; a postmaster
    /// wants SIGQUIT, its immediate shutdown, which also stops its backends at once.
    pub fn on_drop(&mut self, signal: Signal) -> &mut Command {
        self.on_drop = signal;
        self
    }

    /// The program (absolute if it was given as a path).
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The program's name in logs and errors.
    pub fn program_name(&self) -> &str {
        &self.name
    }

    /// The std command: program, arguments, environment, directory, user, stdin closed.
    fn std_command(&self) -> Result<std::process::Command, Error> {
        if !self.dir.is_absolute() {
            return Err(Error::RelativeDirectory {
                program: self.name.clone(),
                dir: self.dir.clone(),
            });
        }
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        for change in &self.env {
            match change {
                EnvChange::Set(k, v) => cmd.env(k, v),
                EnvChange::Remove(k) => cmd.env_remove(k),
                EnvChange::Clear => cmd.env_clear(),
            };
        }
        if let Some(user) = self.run_as {
            // std calls setgroups(0, NULL) before setuid when root changes the user, so the
            // child keeps none of root's supplementary groups.
            cmd.uid(user.uid).gid(user.gid);
        }
        spawner::arm_parent_death_signal(&mut cmd, self.on_drop);
        Ok(cmd)
    }

    fn spawn_error(&self, source: std::io::Error) -> Error {
        Error::Spawn {
            program: self.name.clone(),
            error: source,
        }
    }
}

/// The exit code for an exit status: its code, or 128 + the signal number when the process
/// was killed by a signal (as a shell reports it).
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        // (raw wait status, exit code)
        let cases = [(0, 0), (3 << 8, 3), (9, 137), (15, 143)];
        for (raw, code) in cases {
            assert_eq!(exit_code(ExitStatus::from_raw(raw)), code, "{raw}");
        }
    }

    #[test]
    fn program_paths_and_names() {
        let check = |program: &str, path: &str, name: &str| {
            let cmd = Command::new(program);
            assert_eq!(cmd.program(), Path::new(path), "{program}");
            assert_eq!(cmd.program_name(), name, "{program}");
        };
        check("sh", "sh", "sh");
        check("/bin/sh", "/bin/sh", "sh");
        let cwd = std::env::current_dir().unwrap();
        check(
            "bin/initdb",
            &cwd.join("bin/initdb").display().to_string(),
            "initdb",
        );
    }

    #[test]
    fn relative_working_directories_are_refused() {
        let mut cmd = Command::new("true");
        cmd.current_dir("relative");
        let err = cmd.output_blocking().unwrap_err();
        assert!(matches!(err, Error::RelativeDirectory { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "run true: working directory relative is not absolute"
        );
    }

    #[test]
    fn environment_changes_apply_in_order() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo \"$A-$B-${HOME:-none}\""])
            .env("A", "gone")
            .env_clear()
            .env("A", "a")
            .env("B", "b")
            .env_remove("B");
        let out = cmd.output_blocking().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a--none\n");
    }

    #[test]
    fn run_as_drops_supplementary_groups() {
        let root = nix::unistd::Uid::effective().is_root();
        let user = RunAs::lookup("postgres").unwrap();
        let (true, Some(user)) = (root, user) else {
            // Changing user needs root and an unprivileged user; without them the property
            // cannot be observed here (CI runs as root with `postgres`).
            return;
        };
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "id -u; id -G"]).run_as(Some(user));
        let out = cmd.output_blocking().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{}\n{}\n", user.uid, user.gid)
        );
        assert_eq!(RunAs::lookup("no-such-user-here").unwrap(), None);
    }
}
