//! Children for synchronous callers (pg-binary's probes, spec-check): both outputs captured,
//! nothing logged, the child killed and reaped if its handle is dropped before it was waited
//! for. No timeout: these callers run programs that stop by themselves.

use std::process::{Output, Stdio};

use crate::{Command, Error};

/// A child started by [`Command::start_blocking`].
#[derive(Debug)]
pub struct BlockingChild {
    name: String,
    /// `None` once waited for.
    inner: Option<std::process::Child>,
}

impl Command {
    /// Starts the program with stdout and stderr captured, without blocking; several can run
    /// at once. Collect with [`BlockingChild::wait_with_output`].
    pub fn start_blocking(&self) -> Result<BlockingChild, Error> {
        let mut cmd = self.std_command()?;
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = crate::spawner::spawn_registered(move || cmd.spawn(), |c| Some(c.id()))
            .map_err(|e| self.spawn_error(e))?;
        Ok(BlockingChild {
            name: self.name.clone(),
            inner: Some(child),
        })
    }

    /// Runs the program to completion, blocking, and returns its status and both outputs
    /// (whether it succeeded or not).
    pub fn output_blocking(&self) -> Result<Output, Error> {
        self.start_blocking()?.wait_with_output()
    }
}

impl BlockingChild {
    /// Process id.
    pub fn pid(&self) -> u32 {
        self.inner.as_ref().map_or(0, std::process::Child::id)
    }

    /// Reads both outputs to their end and waits for the child to exit.
    pub fn wait_with_output(mut self) -> Result<Output, Error> {
        let child = self.inner.take().expect("only None once waited for");
        let pid = child.id();
        let output = child.wait_with_output().map_err(|source| Error::Wait {
            program: self.name.clone(),
            error: source,
        })?;
        crate::spawner::forget(pid);
        Ok(output)
    }
}

impl Drop for BlockingChild {
    /// Kills and reaps a child that was not waited for.
    fn drop(&mut self) {
        if let Some(mut child) = self.inner.take() {
            let _ = child.kill();
            if child.wait().is_ok() {
                crate::spawner::forget(child.id());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    #[test]
    fn captures_both_outputs_and_the_status() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 4"]);
        let out = cmd.output_blocking().unwrap();
        assert_eq!(
            (out.status.code(), &out.stdout[..], &out.stderr[..]),
            (Some(4), &b"out\n"[..], &b"err\n"[..])
        );
        // Several at once.
        let children: Vec<BlockingChild> = (0..3).map(|_| cmd.start_blocking().unwrap()).collect();
        for child in children {
            assert_eq!(child.wait_with_output().unwrap().stdout, b"out\n");
        }
    }

    #[test]
    fn dropped_children_are_killed_and_reaped() {
        let child = Command::new("sleep").arg("600").start_blocking().unwrap();
        let pid = child.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(child);
        std::thread::sleep(Duration::from_millis(10));
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
