//! The schema dump behind `GET /database_schema`: `pg_dump --schema-only` of one database,
//! from the directory of the postgres binary, streamed to the caller as it is written.
//!
//! The database is looked up in `pg_database` first (by exact name: unknown → not found, one
//! that refuses connections or was left invalid → conflict), then passed to `pg_dump` in
//! `PGDATABASE` (never on a command line, and no shell), with the host, port and user of
//! compute_ctl's `--connstr` (its password, if any, in `PGPASSWORD`) and its session guards in
//! `PGOPTIONS`. `pg_dump` runs as the Postgres user when compute_ctl is root. A dump of one
//! database holds no roles, so no password hash.
//!
//! Bounds: the first output must come within [`FIRST_OUTPUT_TIMEOUT`] (pg_dump waits at most
//! [`LOCK_WAIT_TIMEOUT`] for a table lock), the whole dump within [`DUMP_TIMEOUT`]. Dropping
//! the stream (a client that went away) kills and reaps `pg_dump`.

use pg_reconcile::SessionGuards;
use std::time::Duration;

use anyhow::Context as _;
use futures::Stream;
use tokio::io::AsyncReadExt;
use tokio::process::ChildStdout;

use crate::catalog_request::RequestError;
use crate::catalog_sessions::CatalogSessions;
use crate::cli::Options;
use crate::process::{self, RunAs};

/// How long `pg_dump` may take to write its first bytes.
pub(crate) const FIRST_OUTPUT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a whole dump may take.
pub(crate) const DUMP_TIMEOUT: Duration = Duration::from_secs(600);
/// `pg_dump --lock-wait-timeout`: a table locked by someone else fails the dump instead of
/// holding it forever.
pub(crate) const LOCK_WAIT_TIMEOUT: &str = "--lock-wait-timeout=30s";
/// How long a finished `pg_dump` may take to be reaped (its output closed).
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// Size of one chunk read from `pg_dump`.
const CHUNK: usize = 64 * 1024;

/// Starts a dump of `database`: answers once `pg_dump` has written its first bytes (or
/// failed), so that a failure is an error status rather than a broken body.
pub(crate) async fn dump(
    sessions: &CatalogSessions,
    opts: &Options,
    run_as: Option<RunAs>,
    guards: SessionGuards,
    database: &str,
) -> Result<SchemaStream, RequestError> {
    // The slot of the look-up's session stays taken by `pg_dump`'s connection.
    let slot = sessions
        .bounded(check_database(sessions, opts, guards, database))
        .await?;
    let mut child = pg_dump_command(opts, run_as, guards, database)
        .spawn()
        .map_err(|e| RequestError::Internal(e.into()))?;
    let mut stdout = child
        .take_stdout()
        .context("pg_dump has no standard output")
        .map_err(RequestError::Internal)?;
    let deadline = tokio::time::Instant::now() + DUMP_TIMEOUT;
    let first = tokio::time::timeout(FIRST_OUTPUT_TIMEOUT, read_chunk(&mut stdout)).await;
    match first {
        Ok(Ok(chunk)) if !chunk.is_empty() => Ok(SchemaStream {
            child: Some(child),
            stdout,
            first: Some(chunk),
            deadline,
            _slot: slot,
        }),
        Ok(Ok(_)) => Err(RequestError::Internal(failure(&mut child).await)),
        Ok(Err(e)) => Err(RequestError::Internal(
            anyhow::Error::new(e).context("read pg_dump's output"),
        )),
        Err(_) => Err(RequestError::Internal(anyhow::anyhow!(
            "pg_dump wrote nothing in {FIRST_OUTPUT_TIMEOUT:?} and was killed"
        ))),
    }
}

/// The database exists under exactly this name and accepts connections; returns the slot of
/// the session that looked.
async fn check_database(
    sessions: &CatalogSessions,
    opts: &Options,
    guards: SessionGuards,
    database: &str,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, RequestError> {
    crate::catalog_request::check_text("database", database)?;
    let client = sessions.open(&opts.pg_config, guards, None).await?;
    let row = client
        .query_opt(
            "SELECT datallowconn, datconnlimit = -2 FROM pg_catalog.pg_database \
             WHERE datname::text = $1",
            &[&database],
        )
        .await
        .context("look up the database")
        .map_err(RequestError::Internal)?;
    match row.map(|r| (r.get::<_, bool>(0), r.get::<_, bool>(1))) {
        None => Err(RequestError::NotFound(format!(
            "database {database:?} does not exist"
        ))),
        Some((_, true)) => Err(RequestError::Conflict(format!(
            "database {database:?} is invalid (an interrupted DROP DATABASE)"
        ))),
        Some((false, _)) => Err(RequestError::Conflict(format!(
            "database {database:?} does not allow connections"
        ))),
        Some((true, false)) => Ok(client.into_slot().await),
    }
}

/// `pg_dump --schema-only` with the connection of `--connstr` and `PGDATABASE=database`.
fn pg_dump_command(
    opts: &Options,
    run_as: Option<RunAs>,
    guards: SessionGuards,
    database: &str,
) -> child_process::Command {
    let pg = &opts.pg_config;
    let mut cmd = process::command(opts.pg_bin_dir.join("pg_dump"), run_as, "/".as_ref());
    cmd.name("pg_dump")
        .stream_stdout()
        .tail_lines(5)
        .args(["--schema-only", "--no-password", LOCK_WAIT_TIMEOUT])
        .env("PGDATABASE", database);
    match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => {
            cmd.arg("--host").arg(host);
        }
        Some(tokio_postgres::config::Host::Unix(dir)) => {
            cmd.arg("--host").arg(dir);
        }
        None => {}
    }
    if let Some(port) = pg.get_ports().first() {
        cmd.arg("--port").arg(port.to_string());
    }
    if let Some(user) = pg.get_user() {
        cmd.arg("--username").arg(user);
    }
    if let Some(password) = pg.get_password() {
        use std::os::unix::ffi::OsStrExt;
        cmd.env("PGPASSWORD", std::ffi::OsStr::from_bytes(password));
    }
    // The admin session's guards (a per-database `SET role` must not change who dumps, …);
    // the connstr's options still win.
    cmd.env("PGOPTIONS", guards.options(pg.get_options()));
    cmd
}

async fn read_chunk(stdout: &mut ChildStdout) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(CHUNK);
    stdout.read_buf(&mut buf).await?;
    Ok(buf)
}

/// Why a `pg_dump` whose output ended early failed: its exit status and last lines.
async fn failure(child: &mut child_process::Child) -> anyhow::Error {
    let status = tokio::time::timeout(EXIT_GRACE, child.wait()).await;
    let captured = child.captured(EXIT_GRACE).await;
    let lines = captured.tail.join(" | ");
    match status {
        Ok(Ok(status)) if !status.success() => {
            anyhow::anyhow!("pg_dump failed ({status}): {lines}")
        }
        Ok(Ok(_)) => anyhow::anyhow!("pg_dump wrote nothing: {lines}"),
        Ok(Err(e)) => anyhow::Error::new(e).context("wait for pg_dump"),
        Err(_) => anyhow::anyhow!("pg_dump closed its output but did not exit"),
    }
}

/// The dump as it is written: chunks of `pg_dump`'s output, then an error if it failed or
/// ran out of time. Owns `pg_dump`: dropping the stream kills and reaps it.
pub(crate) struct SchemaStream {
    child: Option<child_process::Child>,
    stdout: ChildStdout,
    first: Option<Vec<u8>>,
    deadline: tokio::time::Instant,
    /// The catalog session slot `pg_dump`'s connection counts against.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::fmt::Debug for SchemaStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaStream")
            .field("child", &self.child)
            .finish()
    }
}

impl SchemaStream {
    /// The chunks as a stream (for an HTTP body); dropping it drops `self`.
    pub(crate) fn into_stream(self) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send {
        futures::stream::unfold(self, |mut dump| async move {
            let item = dump.next_chunk().await?;
            Some((item, dump))
        })
    }

    /// The next chunk, `None` at a clean end.
    async fn next_chunk(&mut self) -> Option<std::io::Result<Vec<u8>>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        let child = self.child.as_mut()?;
        let read = tokio::time::timeout_at(self.deadline, read_chunk(&mut self.stdout)).await;
        let outcome = match read {
            Ok(Ok(chunk)) if !chunk.is_empty() => return Some(Ok(chunk)),
            Ok(Ok(_)) => match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                Ok(Ok(status)) if status.success() => None,
                _ => Some(Err(std::io::Error::other(failure(child).await.to_string()))),
            },
            Ok(Err(e)) => Some(Err(e)),
            Err(_) => Some(Err(std::io::Error::other(format!(
                "pg_dump ran longer than {DUMP_TIMEOUT:?} and was killed"
            )))),
        };
        if let Some(Err(e)) = &outcome {
            tracing::warn!(error = %e, "schema dump cut short");
        }
        // Dropping the child kills and reaps it if it still runs.
        self.child = None;
        outcome
    }
}
