//! local_proxy, Neon's JWT-checking proxy beside the compute (not started by compute_ctl): its
//! `config.json` written from the spec's `local_proxy_config` (pretty JSON, as upstream), then
//! SIGHUP to the process whose pid is in its `pid` file, only while that process holds the
//! file's lock (`flock`, as the proxy's pid file is claimed), so a stale pid is never
//! signalled. At start a failure fails the start (upstream's `apply_config`); at `/configure`
//! it is logged and counted (`compute_ctl_service_config_failed_total`), as upstream's
//! background task.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use compute_spec::{LocalProxySpec, TlsConfig, ValidatedSpec};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::state::Compute;

/// The config file in local_proxy's directory.
pub(crate) const CONFIG_FILE: &str = "config.json";
/// The pid file in local_proxy's directory.
pub(crate) const PID_FILE: &str = "pid";

/// What was done to the running proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notified {
    /// It held its pid file: it got SIGHUP.
    Signalled(i32),
    /// No pid file, or nobody holds its lock: it reads the file when it starts.
    NotRunning,
}

/// The config file: the spec's config, pretty-printed, with `tls` replaced as upstream does:
/// by compute_ctl's TLS files (`compute_ctl_config.tls`, which this build applies without the
/// `tls_experimental` feature upstream needs), else none.
pub(crate) fn render(config: &LocalProxySpec, tls: Option<TlsConfig>) -> String {
    let config = LocalProxySpec {
        tls,
        ..config.clone()
    };
    serde_json::to_string_pretty(&config).expect("a LocalProxySpec always serialises")
}

/// At start: configures local_proxy if the spec has `local_proxy_config`; `tls` is
/// compute_ctl's TLS files.
pub(crate) fn apply_at_start(
    dir: &Path,
    spec: &ValidatedSpec,
    tls: Option<TlsConfig>,
) -> anyhow::Result<()> {
    let Some(config) = &spec.spec().local_proxy_config else {
        return Ok(());
    };
    let notified = configure(dir, config, tls).context("configure local_proxy")?;
    tracing::info!(?notified, "local_proxy configured");
    Ok(())
}

/// At `/configure`: as at start, a failure logged and counted instead of returned.
pub(crate) fn apply_at_reconfigure(
    dir: &Path,
    spec: &ValidatedSpec,
    tls: Option<TlsConfig>,
    compute: &Compute,
) {
    if let Err(e) = apply_at_start(dir, spec, tls) {
        tracing::error!(error = format!("{e:#}"), "local_proxy");
        compute
            .metrics
            .count_service_failure("local_proxy", "configure");
    }
}

/// Writes `dir/config.json` atomically, then signals the proxy if it runs.
pub(crate) fn configure(
    dir: &Path,
    config: &LocalProxySpec,
    tls: Option<TlsConfig>,
) -> anyhow::Result<Notified> {
    let path = dir.join(CONFIG_FILE);
    let options = pg_config::FileOptions {
        mode: 0o644,
        owner: None,
    };
    pg_config::write_file_atomically(&path, render(config, tls).as_bytes(), &options)
        .with_context(|| format!("write {}", path.display()))?;
    notify(&dir.join(PID_FILE))
}

/// SIGHUP to the pid in `pid_file` if a process holds the file's lock.
fn notify(pid_file: &Path) -> anyhow::Result<Notified> {
    let context = || format!("read {}", pid_file.display());
    let file = match std::fs::File::open(pid_file) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Notified::NotRunning),
        Err(e) => return Err(e).with_context(context),
    };
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        // Nobody holds it; the lock is released when `_ours` is dropped.
        Ok(_ours) => return Ok(Notified::NotRunning),
        Err((file, Errno::EWOULDBLOCK)) => file,
        Err((_, errno)) => return Err(errno).with_context(context),
    };
    let mut text = String::new();
    file.read_to_string(&mut text).with_context(context)?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .with_context(|| format!("{}: {:?} is not a pid", pid_file.display(), text.trim()))?;
    nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGHUP)
        .with_context(|| format!("send SIGHUP to local_proxy (pid {pid})"))?;
    Ok(Notified::Signalled(pid))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec_config() -> LocalProxySpec {
        serde_json::from_str(
            r#"{"jwks": [{"id": "1", "role_names": ["a", "b\"c"], "jwks_url": "https://x/.well-known/jwks.json",
                          "provider_name": "p", "jwt_audience": "aud"}],
                "tls": {"key_path": "/k", "cert_path": "/c"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn config_is_the_spec_pretty_with_compute_ctl_tls() {
        let config = spec_config();
        let text = render(&config, None);
        let back: LocalProxySpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back.jwks, config.jwks);
        assert_eq!(back.tls, None);
        assert!(text.contains("\n  \"jwks\": [\n"), "{text}");
        let tls = TlsConfig {
            key_path: "/tls/key".into(),
            cert_path: "/tls/cert".into(),
        };
        let back: LocalProxySpec =
            serde_json::from_str(&render(&config, Some(tls.clone()))).unwrap();
        assert_eq!(back.tls, Some(tls));
    }

    /// A pid file nobody holds (a stale pid of a live process) gets no signal; a missing one
    /// neither; the config is written either way.
    #[tokio::test]
    async fn unlocked_or_missing_pid_file_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = spec_config();
        assert_eq!(
            configure(dir.path(), &config, None).unwrap(),
            Notified::NotRunning
        );
        // A live process that SIGHUP would kill, named in a pid file nobody locks.
        let mut sleeper = child_process::Command::new("sleep");
        sleeper.arg("30");
        let mut sleeper = sleeper.spawn().unwrap();
        std::fs::write(dir.path().join(PID_FILE), sleeper.pid().to_string()).unwrap();
        assert_eq!(
            configure(dir.path(), &config, None).unwrap(),
            Notified::NotRunning
        );
        let still_running = tokio::time::timeout(Duration::from_millis(300), sleeper.wait()).await;
        assert!(still_running.is_err(), "the unlocked pid was signalled");
        let written = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
        assert_eq!(written, render(&config, None));
        // A directory that does not exist: a located error.
        let err = configure(&dir.path().join("missing"), &config, None).unwrap_err();
        assert!(format!("{err:#}").contains("config.json"), "{err:#}");
    }
}
