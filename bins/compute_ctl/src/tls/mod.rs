//! Postgres's TLS files, from `compute_ctl_config.tls` (`{key_path, cert_path}`): the start
//! waits (bounded by `--tls-wait-timeout`, cancellable) until the key and certificate are
//! readable and are a pair; they are copied into PGDATA as `server.key` (mode 0600) and
//! `server.crt`, each written atomically and owned by the Postgres user; and while the
//! postmaster runs a watcher polls both files (`--tls-watch-interval`) and, when they change,
//! installs the new pair and reloads postgres — never a restart. A pair that is unreadable or
//! does not match is not installed: postgres keeps serving the current certificate and the
//! problem is logged once. `postgresql.conf`'s `ssl` lines are `pg-config`'s
//! (`ConfigOptions::tls`); the key check is in [`pair`].

mod pair;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pg_config::{FileOptions, SERVER_CRT, SERVER_KEY};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub(crate) use pair::TlsPair;

use crate::startup::{self, StartContext};

/// Where the TLS files are, and how compute_ctl waits for them and watches them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// The private key (PEM).
    pub(crate) key_path: PathBuf,
    /// The certificate, then any chain (PEM).
    pub(crate) cert_path: PathBuf,
    /// How long the start waits for a usable pair.
    pub(crate) wait: Duration,
    /// Time between two looks at the files while postgres runs.
    pub(crate) watch_interval: Duration,
}

impl TlsSettings {
    /// The files as `compute_ctl_config.tls` names them, for the services that are given them
    /// (pgbouncer's `client_tls_*`, local_proxy's `tls`).
    pub(crate) fn files(&self) -> compute_spec::TlsConfig {
        compute_spec::TlsConfig {
            key_path: self.key_path.to_string_lossy().into_owned(),
            cert_path: self.cert_path.to_string_lossy().into_owned(),
        }
    }
}

/// Time between two looks at the files while the start waits for them.
const WAIT_POLL: Duration = Duration::from_millis(250);

impl TlsSettings {
    /// Reads both files and checks that the key is the certificate's. Errors name the path.
    fn usable_pair(&self) -> anyhow::Result<TlsPair> {
        let pair = self.read_pair()?;
        self.check(&pair)?;
        Ok(pair)
    }

    fn check(&self, pair: &TlsPair) -> anyhow::Result<()> {
        pair.check().with_context(|| {
            format!(
                "check {} against {}",
                self.key_path.display(),
                self.cert_path.display()
            )
        })
    }

    /// compute_ctl never depends on its working directory: the paths must be absolute.
    fn check_paths(&self) -> anyhow::Result<()> {
        for path in [&self.key_path, &self.cert_path] {
            if !path.is_absolute() {
                bail!(
                    "compute_ctl_config.tls: {:?} is not an absolute path",
                    path.display()
                );
            }
        }
        Ok(())
    }

    fn read_pair(&self) -> anyhow::Result<TlsPair> {
        let read =
            |path: &Path| std::fs::read(path).with_context(|| format!("read {}", path.display()));
        Ok(TlsPair {
            key: read(&self.key_path)?,
            cert: read(&self.cert_path)?,
        })
    }
}

/// Waits until the key and certificate are readable and match, for at most `settings.wait`;
/// `cancel` ends the wait. Writes nothing: a start that fails here has changed nothing.
pub(crate) async fn wait_for_pair(
    settings: &TlsSettings,
    cancel: &CancellationToken,
) -> anyhow::Result<TlsPair> {
    settings.check_paths()?;
    let started = Instant::now();
    let deadline = started + settings.wait;
    let mut said_waiting = false;
    loop {
        let look = settings.clone();
        let attempt = tokio::task::spawn_blocking(move || look.usable_pair())
            .await
            .context("join the TLS file check")?;
        let error = match attempt {
            Ok(pair) => {
                tracing::info!(
                    ms = started.elapsed().as_millis() as u64,
                    "TLS key and certificate found"
                );
                return Ok(pair);
            }
            Err(error) => error,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(error.context(format!(
                "the TLS key and certificate of compute_ctl_config.tls were not usable within {}",
                humantime::format_duration(settings.wait)
            )));
        }
        if !said_waiting {
            tracing::info!(
                error = format!("{error:#}"),
                limit = %humantime::format_duration(settings.wait),
                "waiting for the TLS key and certificate"
            );
            said_waiting = true;
        }
        tokio::select! {
            () = tokio::time::sleep(WAIT_POLL.min(deadline - now)) => {}
            () = cancel.cancelled() => bail!("start cancelled while waiting for the TLS files"),
        }
    }
}

/// Copies `pair` into `pgdata` as `server.key` and `server.crt`, mode 0600 (postgres refuses
/// a key others can read), owned by `owner`; each file is replaced atomically.
pub(crate) fn install(
    pgdata: &Path,
    pair: &TlsPair,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    let options = FileOptions { mode: 0o600, owner };
    for (name, contents) in [(SERVER_KEY, &pair.key), (SERVER_CRT, &pair.cert)] {
        pg_config::write_file_atomically(&pgdata.join(name), contents, &options)
            .with_context(|| format!("install {name}"))?;
    }
    Ok(())
}

/// The pair currently in PGDATA, if both files are readable.
fn installed_pair(pgdata: &Path) -> Option<TlsPair> {
    Some(TlsPair {
        key: std::fs::read(pgdata.join(SERVER_KEY)).ok()?,
        cert: std::fs::read(pgdata.join(SERVER_CRT)).ok()?,
    })
}

/// Starts the renewal watcher; it ends when `cancel` fires or a shutdown is requested.
pub(crate) fn spawn_watcher(
    ctx: StartContext,
    settings: TlsSettings,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let task = async move {
        let mut shutdown = ctx.compute.subscribe_shutdown();
        let mut watch = Watch::default();
        loop {
            tokio::select! {
                () = tokio::time::sleep(settings.watch_interval) => {}
                () = cancel.cancelled() => return,
                _ = shutdown.wait_for(Option::is_some) => return,
            }
            tokio::select! {
                () = watch.tick(&ctx, &settings) => {}
                () = cancel.cancelled() => return,
            }
        }
    };
    tokio::spawn(task.in_current_span())
}

/// The watcher's memory between two looks.
#[derive(Debug, Default)]
struct Watch {
    /// A new pair is in PGDATA but postgres has not been reloaded yet.
    reload_pending: bool,
    /// The last problem logged, so that it is said once, not at every look.
    last_problem: Option<String>,
}

impl Watch {
    async fn tick(&mut self, ctx: &StartContext, settings: &TlsSettings) {
        match self.renew(ctx, settings).await {
            Ok(()) => self.last_problem = None,
            Err(problem) => {
                let text = format!("{problem:#}");
                if self.last_problem.as_ref() != Some(&text) {
                    tracing::warn!(
                        error = text,
                        "TLS renewal not applied: postgres keeps serving its current certificate"
                    );
                    self.last_problem = Some(text);
                }
            }
        }
    }

    /// Installs the files if they changed and are a pair, then reloads postgres.
    async fn renew(&mut self, ctx: &StartContext, settings: &TlsSettings) -> anyhow::Result<()> {
        let (look, pgdata, owner) = (settings.clone(), ctx.opts.pgdata.clone(), ctx.owner());
        let installed = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
            let source = look.read_pair()?;
            let current = installed_pair(&pgdata).map(|p| p.digest());
            if current == Some(source.digest()) {
                return Ok(false);
            }
            look.check(&source)?;
            install(&pgdata, &source, owner)?;
            Ok(true)
        })
        .await
        .context("join the TLS file check")??;
        if installed {
            tracing::info!("renewed TLS key and certificate installed");
            self.reload_pending = true;
        }
        if self.reload_pending {
            startup::reload(ctx)
                .await
                .context("reload postgres for the renewed TLS files")?;
            self.reload_pending = false;
            tracing::info!("postgres reloaded: new connections get the renewed certificate");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    fn settings(key: PathBuf, cert: PathBuf, wait: Duration) -> TlsSettings {
        TlsSettings {
            key_path: key,
            cert_path: cert,
            wait,
            watch_interval: Duration::from_secs(60),
        }
    }

    async fn wait(settings: &TlsSettings, cancel: &CancellationToken) -> (Duration, String) {
        let t = Instant::now();
        let result = wait_for_pair(settings, cancel).await;
        let text = match result {
            Ok(pair) => format!("ok {:?}", pair.digest()),
            Err(e) => format!("{e:#}"),
        };
        (t.elapsed(), text)
    }

    #[tokio::test]
    async fn the_wait_is_bounded_cancellable_and_names_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        let cert = fixture("p256.crt");
        let cancel = CancellationToken::new();

        let found = settings(fixture("p256-sec1.key"), cert.clone(), Duration::ZERO);
        assert!(wait(&found, &cancel).await.1.starts_with("ok "));

        let relative = settings("tls.key".into(), cert.clone(), Duration::from_secs(60));
        let (took, error) = wait(&relative, &cancel).await;
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert!(
            error.contains("\"tls.key\" is not an absolute path"),
            "{error}"
        );

        let bound = Duration::from_millis(600);
        let (took, error) = wait(&settings(missing.clone(), cert.clone(), bound), &cancel).await;
        assert!(took >= bound && took < bound * 4, "{took:?}");
        assert!(error.contains("within 600ms"), "{error}");
        assert!(
            error.contains(&format!("read {}", missing.display())),
            "{error}"
        );

        let other = settings(fixture("p256-other.key"), cert.clone(), bound);
        let error = wait(&other, &cancel).await.1;
        assert!(
            error.ends_with("the private key does not match the certificate"),
            "{error}"
        );

        let long = settings(missing, cert, Duration::from_secs(60));
        let canceller = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            canceller.cancel();
        });
        let (took, error) = wait(&long, &cancel).await;
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(error.contains("cancelled"), "{error}");
    }

    #[test]
    fn install_replaces_both_files_with_mode_0600() {
        let pgdata = tempfile::tempdir().unwrap();
        let read = |name: &str| std::fs::read(fixture(name)).unwrap();
        let first = TlsPair {
            key: read("p256-pkcs8.key"),
            cert: read("p256.crt"),
        };
        std::fs::write(pgdata.path().join(SERVER_KEY), "old").unwrap();
        install(pgdata.path(), &first, None).unwrap();
        assert_eq!(installed_pair(pgdata.path()), Some(first.clone()));
        let second = TlsPair {
            key: read("rsa-pkcs1.key"),
            cert: read("rsa.crt"),
        };
        install(pgdata.path(), &second, None).unwrap();
        assert_eq!(installed_pair(pgdata.path()), Some(second));
        for name in [SERVER_KEY, SERVER_CRT] {
            let meta = std::fs::metadata(pgdata.path().join(name)).unwrap();
            assert_eq!(meta.mode() & 0o777, 0o600, "{name}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(pgdata.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != SERVER_KEY && n != SERVER_CRT)
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
