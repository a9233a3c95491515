//! A supervised child ([`Child`]): its output forwarded to the log, signalled only while it
//! is ours, stopped with a bounded wait, killed and reaped when its handle is dropped; and
//! [`Command::run`], a child run to completion under a timeout and a cancellation token.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::output::{self, Kept, SharedKept};
use crate::{Command, Error, StdoutMode};

/// How long [`Command::run`] waits for the output of a finished child: a grandchild could
/// keep its pipes open.
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// What a child wrote, as far as kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// Its standard output when captured ([`Command::capture_stdout`]), else empty.
    pub stdout: String,
    /// Its last forwarded output lines, oldest first.
    pub tail: Vec<String>,
    /// Its last `FATAL:`/`PANIC:` message, preceded by the message of the line before it
    /// (often the one that says what is wrong).
    pub last_fatal: Option<String>,
}

/// A running child. Dropping it while the child runs sends the [`Command::on_drop`] signal
/// and reaps the child in the background.
pub struct Child {
    name: Arc<str>,
    pid: Pid,
    /// `None` only once dropped.
    inner: Option<tokio::process::Child>,
    /// Set once reaped: after that the pid may belong to another process.
    exit: Option<ExitStatus>,
    on_drop: Signal,
    kept: SharedKept,
    readers: Vec<JoinHandle<()>>,
    /// Standard output with [`Command::stream_stdout`], until taken.
    stdout: Option<tokio::process::ChildStdout>,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("exit", &self.exit)
            .finish()
    }
}

impl Command {
    /// Starts the program with stdout and stderr forwarded to the log (stdout kept instead
    /// with [`Command::capture_stdout`]). Needs a Tokio runtime (without one: [`Error::Spawn`]).
    pub fn spawn(&self) -> Result<Child, Error> {
        let mut cmd = tokio::process::Command::from(self.std_command()?);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| self.spawn_error(std::io::Error::other(e)))?;
        // Forked on the spawner thread, registered with this runtime's process driver.
        let spawn = move || {
            let _runtime = runtime.enter();
            cmd.spawn()
        };
        let mut inner = crate::spawner::spawn_registered(spawn, tokio::process::Child::id)
            .map_err(|e| self.spawn_error(e))?;
        let raw = inner.id().unwrap_or_default();
        let name: Arc<str> = Arc::from(self.name.as_str());
        let kept = SharedKept::new(std::sync::Mutex::new(Kept {
            tail_lines: self.tail_lines,
            classifier: self.classifier.clone(),
            ..Kept::default()
        }));
        let mut readers = Vec::new();
        let mut stdout = inner.stdout.take();
        match (self.stdout, stdout.take()) {
            (StdoutMode::Forward, Some(out)) => {
                readers.push(output::forward_lines(name.clone(), raw, out, kept.clone()))
            }
            (StdoutMode::Capture, Some(out)) => readers.push(output::capture(out, kept.clone())),
            (StdoutMode::Stream, out) => stdout = out,
            (_, None) => {}
        }
        if let Some(err) = inner.stderr.take() {
            readers.push(output::forward_lines(name.clone(), raw, err, kept.clone()));
        }
        tracing::debug!(program = &*name, pid = raw, "started");
        Ok(Child {
            name,
            pid: Pid::from_raw(raw as i32),
            inner: Some(inner),
            exit: None,
            on_drop: self.on_drop,
            kept,
            readers,
            stdout,
        })
    }

    /// Runs the program to completion: its output is forwarded to the log; on `timeout` or
    /// `cancel` it is killed and reaped. A failure exit is an error naming the program, its
    /// exit status and its last output lines.
    pub async fn run(
        &self,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
    ) -> Result<Captured, Error> {
        enum End {
            Exited(Result<ExitStatus, Error>),
            TimedOut(Duration),
            Cancelled,
        }
        let mut child = self.spawn()?;
        drop(child.take_stdout());
        let deadline = async {
            match timeout {
                Some(timeout) => {
                    tokio::time::sleep(timeout).await;
                    timeout
                }
                None => std::future::pending().await,
            }
        };
        let end = tokio::select! {
            status = child.wait() => End::Exited(status),
            timeout = deadline => End::TimedOut(timeout),
            () = cancel.cancelled() => End::Cancelled,
        };
        if !matches!(end, End::Exited(_)) {
            let _ = child.kill().await;
        }
        let captured = child.captured(OUTPUT_GRACE).await;
        let program = self.name.clone();
        match end {
            End::Exited(Ok(status)) if status.success() => Ok(captured),
            End::Exited(Ok(status)) => Err(Error::Failed {
                program,
                status,
                tail: captured.tail,
            }),
            End::Exited(Err(e)) => Err(e),
            End::TimedOut(timeout) => Err(Error::TimedOut {
                program,
                timeout,
                tail: captured.tail,
            }),
            End::Cancelled => Err(Error::Cancelled {
                program,
                tail: captured.tail,
            }),
        }
    }
}

impl Child {
    /// Process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// The program's name in logs and errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status, once [`Child::wait`] has seen it.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit
    }

    /// Standard output of a child started with [`Command::stream_stdout`], once (`None`
    /// otherwise, and after the first call). Reading it to the end means the child closed it,
    /// usually by exiting: [`Child::wait`] then tells how it ended.
    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.stdout.take()
    }

    /// Sends `signal` unless the child has been reaped (its pid may be reused then).
    pub fn signal(&self, signal: Signal) {
        if self.exit.is_none()
            && let Err(e) = nix::sys::signal::kill(self.pid, signal)
        {
            tracing::debug!(program = &*self.name, pid = self.pid.as_raw(), ?signal, error = %e, "signal");
        }
    }

    /// Waits for the child to exit and reaps it. Cancel-safe; once exited, returns the same
    /// status again.
    pub async fn wait(&mut self) -> Result<ExitStatus, Error> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        let inner = self.inner.as_mut().expect("only None once dropped");
        let status = inner.wait().await.map_err(|source| Error::Wait {
            program: self.name.to_string(),
            error: source,
        })?;
        self.exit = Some(status);
        crate::spawner::forget(self.pid());
        Ok(status)
    }

    /// Sends `signal`, waits up to `grace` for the child to exit, then kills it with SIGKILL;
    /// returns once it is reaped.
    pub async fn stop(&mut self, signal: Signal, grace: Duration) -> Result<ExitStatus, Error> {
        self.signal(signal);
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(
                    program = &*self.name,
                    pid = self.pid.as_raw(),
                    ?signal,
                    "still running after {grace:?}; killing it"
                );
                self.kill().await
            }
        }
    }

    /// Kills the child with SIGKILL and reaps it.
    pub async fn kill(&mut self) -> Result<ExitStatus, Error> {
        self.signal(Signal::SIGKILL);
        self.wait().await
    }

    /// What the child wrote. Waits up to `bound` for its output to be read to the end (call
    /// it after the child exited; a grandchild may hold the pipes open).
    pub async fn captured(&mut self, bound: Duration) -> Captured {
        let readers = std::mem::take(&mut self.readers);
        let _ = tokio::time::timeout(bound, join_all(readers)).await;
        let kept = output::lock(&self.kept);
        Captured {
            stdout: String::from_utf8_lossy(&kept.stdout).into_owned(),
            tail: kept.tail.iter().cloned().collect(),
            last_fatal: kept.last_fatal.clone(),
        }
    }
}

/// Awaits every task (their results do not matter).
async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

impl Drop for Child {
    /// A child still running gets the `on_drop` signal and is reaped by a background task
    /// (by Tokio's orphan reaper when no runtime is left).
    fn drop(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        if self.exit.is_some() {
            return;
        }
        let pid = self.pid();
        if matches!(inner.try_wait(), Ok(Some(_))) {
            crate::spawner::forget(pid);
            return;
        }
        tracing::info!(program = &*self.name, pid, signal = ?self.on_drop, "stopping a child whose handle was dropped");
        self.signal(self.on_drop);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if inner.wait().await.is_ok() {
                    crate::spawner::forget(pid);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;

    /// A `sh -c` command that sets up `traps`, writes its pid (`$$`, kept by `exec`) to a
    /// file, then runs `script`.
    fn sh_with(traps: &str, script: &str, dir: &Path) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            &format!("{traps} echo $$ > {}/pid; {script}", dir.display()),
        ]);
        cmd
    }

    fn sh(script: &str, dir: &Path) -> Command {
        sh_with("", script, dir)
    }

    fn pid_of(dir: &Path) -> i32 {
        for _ in 0..500 {
            if let Some(pid) = std::fs::read_to_string(dir.join("pid"))
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return pid;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no pid written");
    }

    /// Whether the process is gone, reaped included (a zombie still has `/proc/<pid>`).
    async fn gone_soon(pid: i32) -> bool {
        for _ in 0..500 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[derive(Clone, Default)]
    struct LogBuffer(Arc<Mutex<Vec<u8>>>);

    impl Write for LogBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn output_is_forwarded_and_kept() {
        let log = LogBuffer::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo out; echo 'LOG:  bad line' >&2; printf 'FATAL:  stop\\n' >&2; printf '\\377x\\n'",
        ])
        .name("tester");
        let captured = cmd.run(None, &CancellationToken::new()).await.unwrap();
        assert_eq!(captured.stdout, "");
        assert_eq!(captured.last_fatal.as_deref(), Some("bad line stop"));
        assert_eq!(captured.tail.len(), 4, "{captured:?}");
        let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        for expected in [
            "INFO postgres: out program=\"tester\"",
            "ERROR postgres: FATAL:  stop program=\"tester\"",
            "INFO postgres: \u{fffd}x",
        ] {
            assert!(log.contains(expected), "{expected:?} not in\n{log}");
        }

        cmd.capture_stdout();
        let captured = cmd.run(None, &CancellationToken::new()).await.unwrap();
        assert_eq!(captured.stdout, "out\n\u{fffd}x\n");
        assert_eq!(captured.tail, ["LOG:  bad line", "FATAL:  stop"]);
    }

    #[tokio::test]
    async fn streamed_stdout_is_the_callers_and_dropping_still_kills() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = sh(
            "printf 'a\\0b'; echo 'ERROR:  oops' >&2; exit 2",
            dir.path(),
        );
        cmd.stream_stdout();
        let mut child = cmd.spawn().unwrap();
        let mut out = Vec::new();
        let mut stdout = child.take_stdout().unwrap();
        stdout.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"a\0b");
        assert!(child.take_stdout().is_none(), "only once");
        assert_eq!(crate::exit_code(child.wait().await.unwrap()), 2);
        let captured = child.captured(Duration::from_secs(5)).await;
        assert_eq!(
            (captured.stdout.as_str(), &captured.tail[..]),
            ("", &["ERROR:  oops".to_owned()][..])
        );

        // A reader that goes away: dropping the child kills it although its stdout is open.
        std::fs::remove_file(dir.path().join("pid")).unwrap();
        let mut cmd = sh("echo first; exec sleep 600", dir.path());
        cmd.stream_stdout();
        let mut child = cmd.spawn().unwrap();
        let mut stdout = child.take_stdout().unwrap();
        let mut first = [0u8; 6];
        stdout.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"first\n");
        let pid = pid_of(dir.path());
        drop(child);
        assert!(gone_soon(pid).await);
        drop(stdout);

        // `run` closes a streamed stdout unread: the child is not stuck on a full pipe.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "head -c 1000000 /dev/zero; exit 0"])
            .stream_stdout();
        let run = cmd
            .run(Some(Duration::from_secs(10)), &CancellationToken::new())
            .await;
        assert!(!matches!(run, Err(Error::TimedOut { .. })), "{run:?}");
        assert!(
            Command::new("true")
                .spawn()
                .unwrap()
                .take_stdout()
                .is_none()
        );
    }

    #[tokio::test]
    async fn exit_statuses_and_errors() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one; echo two >&2; exit 3"])
            .tail_lines(1);
        let err = cmd.run(None, &CancellationToken::new()).await.unwrap_err();
        let Error::Failed { status, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(crate::exit_code(*status), 3);
        assert_eq!(err.to_string(), "sh failed (exit status: 3): two");

        let err = Command::new("/nonexistent/program")
            .run(None, &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
        assert!(err.to_string().starts_with("start program: "), "{err}");
        assert_eq!(
            std::io::Error::from(err).kind(),
            std::io::ErrorKind::NotFound
        );
    }

    #[tokio::test]
    async fn timeout_and_cancel_kill_and_reap() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = sh("echo started; exec sleep 600", dir.path());
        let started = Instant::now();
        let err = cmd
            .run(Some(Duration::from_millis(300)), &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TimedOut { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "sh timed out after 300ms and was killed: started"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(gone_soon(pid_of(dir.path())).await);

        std::fs::remove_file(dir.path().join("pid")).unwrap();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            trigger.cancel();
        });
        let err = cmd.run(None, &cancel).await.unwrap_err();
        assert!(matches!(err, Error::Cancelled { .. }), "{err}");
        assert!(gone_soon(pid_of(dir.path())).await);
    }

    #[tokio::test]
    async fn dropped_children_are_killed_and_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let child = sh("exec sleep 600", dir.path()).spawn().unwrap();
        let pid = pid_of(dir.path());
        assert_eq!(child.pid() as i32, pid);
        drop(child);
        assert!(gone_soon(pid).await);

        // A gentler signal on drop: the child may clean up first.
        std::fs::remove_file(dir.path().join("pid")).unwrap();
        let mut cmd = sh_with(
            &format!(
                "trap 'echo bye > {}/bye; exit 0' QUIT;",
                dir.path().display()
            ),
            "while :; do sleep 0.05; done",
            dir.path(),
        );
        cmd.on_drop(Signal::SIGQUIT);
        let child = cmd.spawn().unwrap();
        let pid = pid_of(dir.path());
        drop(child);
        assert!(gone_soon(pid).await);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("bye")).unwrap(),
            "bye\n"
        );
    }

    #[tokio::test]
    async fn stop_signals_then_kills() {
        // (traps, script, signal, exit code)
        let cases = [
            ("", "exec sleep 600", Signal::SIGTERM, 128 + 15),
            (
                "trap '' TERM;",
                "while :; do sleep 0.05; done",
                Signal::SIGTERM,
                128 + 9,
            ),
            (
                "trap 'exit 7' TERM;",
                "while :; do sleep 0.05; done",
                Signal::SIGTERM,
                7,
            ),
        ];
        for (traps, script, signal, code) in cases {
            let dir = tempfile::tempdir().unwrap();
            let mut child = sh_with(traps, script, dir.path()).spawn().unwrap();
            let pid = pid_of(dir.path());
            let status = child
                .stop(signal, Duration::from_millis(300))
                .await
                .unwrap();
            assert_eq!(crate::exit_code(status), code, "{traps} {script}");
            assert_eq!(child.exit_status(), Some(status));
            assert_eq!(child.wait().await.unwrap(), status, "waits again");
            assert!(gone_soon(pid).await, "{script}");
        }
    }
}
