//! pgbouncer beside the compute, as upstream runs it: the spec's `pgbouncer_settings` written
//! into the `[pgbouncer]` section of its ini file (the text is `pg_config::update_pgbouncer_ini`'s)
//! and applied with `RELOAD` on its admin console, in the background once postgres has started
//! and at each `/configure`. With TLS (`compute_ctl_config.tls`), upstream's three client TLS
//! settings are added to the spec's: its key and certificate files, `client_tls_sslmode =
//! allow`. Failures are logged and counted (`compute_ctl_service_config_failed_total`),
//! never fatal, as upstream's. With `--pgbouncer`, also the pgbouncer process: started on the
//! ini file (written first) as the Postgres user once the spec is known, and stopped with the
//! compute (SIGTERM, pgbouncer's immediate shutdown, then SIGKILL; SIGKILL if compute_ctl goes
//! away first). An exit of its own is logged and counted; it is not restarted.
//!
//! Unlike upstream, the ini is written before the admin console is reached (upstream writes
//! nothing when pgbouncer does not answer), so a pgbouncer started later reads the settings;
//! and the admin password (`$PGBOUNCER_PASSWORD`) is never logged.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use child_process::Child;
use compute_spec::{TlsConfig, ValidatedSpec};
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::PgbouncerOptions;
use crate::process::{self, RunAs};
use crate::startup::StartContext;
use crate::state::Compute;
use crate::tls::TlsSettings;

/// Key-value pairs in the spec's order.
type Settings = Vec<(String, String)>;

/// Connection attempts to the admin console, 1 s apart (upstream: the first and 3 retries).
const CONNECT_ATTEMPTS: u32 = 4;
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Bound of one connection to the admin console, and of `RELOAD`.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long pgbouncer may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The pgbouncer work of one compute: the tuner task and, with `--pgbouncer`, the process.
/// Dropping it stops both (in the background); [`Pgbouncer::stop`] waits for them.
#[derive(Debug)]
pub(crate) struct Pgbouncer {
    wanted: watch::Sender<Option<Settings>>,
    tls: Option<TlsConfig>,
    cancel: CancellationToken,
    tuner: Option<JoinHandle<()>>,
    process: Option<JoinHandle<()>>,
}

/// Hands a new spec's settings to the tuner (the newest wins). Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct PgbouncerHandle {
    wanted: watch::Sender<Option<Settings>>,
    tls: Option<TlsConfig>,
}

impl PgbouncerHandle {
    /// Applies `spec`'s `pgbouncer_settings`, if it has any, in the background.
    pub(crate) fn apply(&self, spec: &ValidatedSpec) {
        if let Some(settings) = settings_of(spec, self.tls.as_ref()) {
            self.wanted.send_replace(Some(settings));
        }
    }
}

/// The settings to write: none without `pgbouncer_settings` (as upstream); with TLS, the
/// client TLS files and `client_tls_sslmode = allow` after the spec's (theirs win, as
/// upstream's inserts).
fn settings_of(spec: &ValidatedSpec, tls: Option<&TlsConfig>) -> Option<Settings> {
    let mut settings: Settings = spec
        .spec()
        .pgbouncer_settings
        .clone()?
        .into_iter()
        .collect();
    if let Some(tls) = tls {
        for (key, value) in [
            ("client_tls_cert_file", tls.cert_path.as_str()),
            ("client_tls_key_file", tls.key_path.as_str()),
            ("client_tls_sslmode", "allow"),
        ] {
            settings.retain(|(k, _)| k != key);
            settings.push((key.to_owned(), value.to_owned()));
        }
    }
    Some(settings)
}

impl Pgbouncer {
    /// Starts the pgbouncer work for `spec`: with `--pgbouncer`, writes the ini and starts the
    /// process; then the tuner applies the settings (write, `RELOAD`) in the background.
    pub(crate) fn start(ctx: &StartContext, spec: &ValidatedSpec) -> Pgbouncer {
        let opts = ctx.opts.pgbouncer.clone();
        let tls = ctx.tls.as_ref().map(TlsSettings::files);
        let settings = settings_of(spec, tls.as_ref());
        let cancel = CancellationToken::new();
        let process = opts.binary.as_deref().and_then(|binary| {
            if let Some(settings) = &settings
                && let Err(e) = write_ini(&opts.ini, settings)
            {
                failed(&ctx.compute, "write", &e);
            }
            let child = spawn(binary, &opts.ini, ctx.run_as)
                .inspect_err(|e| failed(&ctx.compute, "start", e))
                .ok()?;
            Some(tokio::spawn(supervise(
                child,
                cancel.clone(),
                ctx.compute.clone(),
            )))
        });
        let (wanted, mut rx) = watch::channel(settings);
        // A pgbouncer started here has read the file; another one needs a RELOAD.
        if process.is_none() {
            rx.mark_changed();
        }
        let tuner = tokio::spawn(tune(opts, rx, cancel.clone(), ctx.compute.clone()));
        Pgbouncer {
            wanted,
            tls,
            cancel,
            tuner: Some(tuner),
            process,
        }
    }

    /// The handle `/configure` uses.
    pub(crate) fn handle(&self) -> PgbouncerHandle {
        PgbouncerHandle {
            wanted: self.wanted.clone(),
            tls: self.tls.clone(),
        }
    }

    /// Stops the tuner and the process started here, and waits for both (bounded).
    pub(crate) async fn stop(mut self) {
        self.cancel.cancel();
        for task in [self.tuner.take(), self.process.take()]
            .into_iter()
            .flatten()
        {
            let _ = task.await;
        }
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn failed(compute: &Compute, step: &str, error: &anyhow::Error) {
    tracing::error!(step, error = format!("{error:#}"), "pgbouncer");
    compute.metrics.count_service_failure("pgbouncer", step);
}

fn spawn(binary: &Path, ini: &Path, run_as: Option<RunAs>) -> anyhow::Result<Child> {
    let dir = ini.parent().unwrap_or(Path::new("/"));
    let mut cmd = process::command(binary, run_as, dir);
    cmd.name("pgbouncer").arg(ini);
    let child = cmd.spawn().context("start pgbouncer")?;
    tracing::info!(pid = child.pid(), ini = %ini.display(), "pgbouncer started");
    Ok(child)
}

/// Waits for the process until `cancel`, then stops it. An exit before that is an error
/// (logged and counted): it is not restarted.
async fn supervise(mut child: Child, cancel: CancellationToken, compute: Arc<Compute>) {
    tokio::select! {
        status = child.wait() => {
            let error = match status {
                Ok(status) => anyhow::anyhow!("pgbouncer exited ({status}); it is not restarted"),
                Err(e) => anyhow::Error::new(e).context("wait for pgbouncer"),
            };
            failed(&compute, "exit", &error);
        }
        () = cancel.cancelled() => match child.stop(Signal::SIGTERM, STOP_GRACE).await {
            Ok(status) => tracing::info!(%status, "pgbouncer stopped"),
            Err(e) => tracing::warn!(error = %e, "stop pgbouncer"),
        },
    }
}

/// Applies each new set of settings (the newest when several arrive during one apply) until
/// `cancel`.
async fn tune(
    opts: PgbouncerOptions,
    mut wanted: watch::Receiver<Option<Settings>>,
    cancel: CancellationToken,
    compute: Arc<Compute>,
) {
    loop {
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { return },
            () = cancel.cancelled() => return,
        }
        let Some(settings) = wanted.borrow_and_update().clone() else {
            continue;
        };
        tokio::select! {
            () = apply(&opts, settings, &compute) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Writes the ini, then `RELOAD`s pgbouncer.
async fn apply(opts: &PgbouncerOptions, settings: Settings, compute: &Compute) {
    let ini = opts.ini.clone();
    let written = tokio::task::spawn_blocking(move || write_ini(&ini, &settings))
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("join the write task: {e}")));
    if let Err(e) = written {
        return failed(compute, "write", &e);
    }
    match reload(&opts.admin).await {
        Ok(()) => tracing::info!(ini = %opts.ini.display(), "pgbouncer settings applied"),
        Err(e) => failed(compute, "reload", &e),
    }
}

/// Rewrites the ini file with `settings` in its `[pgbouncer]` section, atomically, keeping its
/// mode and (when root) its owner; unchanged content is not rewritten.
fn write_ini(path: &Path, settings: &Settings) -> anyhow::Result<()> {
    let context = || format!("update {}", path.display());
    let text = std::fs::read_to_string(path).with_context(context)?;
    let meta = std::fs::metadata(path).with_context(context)?;
    let updated = pg_config::update_pgbouncer_ini(&text, settings.iter().map(|(k, v)| (k, v)))
        .with_context(context)?;
    if updated == text {
        return Ok(());
    }
    let options = pg_config::FileOptions {
        mode: meta.mode() & 0o7777,
        owner: nix::unistd::Uid::effective()
            .is_root()
            .then(|| (meta.uid(), meta.gid())),
    };
    pg_config::write_file_atomically(path, updated.as_bytes(), &options).with_context(context)
}

/// Connects to the admin console (a few attempts: pgbouncer may not listen yet) and sends
/// `RELOAD` once.
async fn reload(admin: &tokio_postgres::Config) -> anyhow::Result<()> {
    let mut attempt = 1;
    let client = loop {
        match connect(admin).await {
            Ok(client) => break client,
            Err(e) if attempt < CONNECT_ATTEMPTS => {
                tracing::warn!(attempt, error = format!("{e:#}"), "pgbouncer admin console");
                tokio::time::sleep(RETRY_DELAY).await;
                attempt += 1;
            }
            Err(e) => return Err(e.context(format!("{attempt} attempts"))),
        }
    };
    tokio::time::timeout(ADMIN_TIMEOUT, client.simple_query("RELOAD"))
        .await
        .context("RELOAD: no answer in time")?
        .context("RELOAD")?;
    Ok(())
}

async fn connect(admin: &tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio::time::timeout(ADMIN_TIMEOUT, admin.connect(tokio_postgres::NoTls))
            .await
            .context("connect to the admin console: no answer in time")?
            .context("connect to the admin console")?;
    // The connection ends when the client is dropped.
    tokio::spawn(connection);
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_the_spec_s_plus_client_tls_when_configured() {
        let spec = |settings: &str| {
            ValidatedSpec::from_json(&format!(
                r#"{{"format_version": 1.0, "cluster": {{"roles": [], "databases": []}}
                    {settings}}}"#
            ))
            .unwrap()
        };
        let tls = TlsConfig {
            key_path: "/tls/key".into(),
            cert_path: "/tls/cert".into(),
        };
        assert_eq!(settings_of(&spec(""), Some(&tls)), None);
        let with = spec(
            r#", "pgbouncer_settings": {"pool_mode": "transaction", "client_tls_sslmode": "require"}"#,
        );
        let pairs = |list: &[(&str, &str)]| -> Settings {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        // (The order of the spec's keys is compute-spec's to keep; only membership is checked.)
        let mut plain = settings_of(&with, None).unwrap();
        plain.sort();
        assert_eq!(
            plain,
            pairs(&[
                ("client_tls_sslmode", "require"),
                ("pool_mode", "transaction")
            ])
        );
        assert_eq!(
            settings_of(&with, Some(&tls)),
            Some(pairs(&[
                ("pool_mode", "transaction"),
                ("client_tls_cert_file", "/tls/cert"),
                ("client_tls_key_file", "/tls/key"),
                ("client_tls_sslmode", "allow"),
            ]))
        );
    }
}
