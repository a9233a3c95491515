//! Pageserver client: fetch a basebackup over libpq (COPY OUT) and unpack it into PGDATA while
//! it arrives, with retries.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use compute_spec::{ComputeMode, Lsn, PageserverConnectionInfo, TenantId, TimelineId};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::retry::RetryConfig;
use crate::unpack::{Compression, UnpackError, UnpackOptions, unpack_archive_with};

/// What to fetch: the `basebackup` command's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasebackupRequest {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Timeline.
    pub timeline_id: TimelineId,
    /// LSN of the backup; [`Lsn::INVALID`] (`0/0`) asks for the latest.
    pub lsn: Lsn,
    /// Compute mode: sent in the connection options, and any non-primary mode adds `--replica`.
    pub mode: ComputeMode,
    /// Ask for a gzip-compressed stream (`--gzip`). The answer is decoded by its magic bytes
    /// whatever is asked.
    pub gzip: bool,
}

impl BasebackupRequest {
    /// The command text: `basebackup <tenant> <timeline> [<lsn>] [--gzip] [--replica]`.
    pub fn command(&self) -> String {
        let mut cmd = format!("basebackup {} {}", self.tenant_id, self.timeline_id);
        if !self.lsn.is_invalid() {
            cmd.push_str(&format!(" {}", self.lsn));
        }
        if self.gzip {
            cmd.push_str(" --gzip");
        }
        if !self.mode.is_primary() {
            cmd.push_str(" --replica");
        }
        cmd
    }
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct BasebackupConfig {
    /// Timeout of each connection attempt (used unless the connection string sets one).
    pub connect_timeout: Duration,
    /// Attempts and delays.
    pub retry: RetryConfig,
    /// Total time the retries may take: no wait and no new attempt goes past it (the attempt
    /// in flight is bounded by the connect and stall timeouts). Default 60 s, about what
    /// upstream's 10 retries 500 ms × 1.5ⁿ apart take.
    pub retry_deadline: Duration,
    /// Interval of the progress log lines during a transfer.
    pub progress_interval: Duration,
    /// How long the pageserver may send nothing (before the archive starts, or between two
    /// chunks) before the attempt fails as [`BasebackupError::Stalled`], which is retried.
    /// Default 120 s: longer than a pageserver's own wait for the requested LSN (60 s).
    pub stall_timeout: Duration,
    /// CopyData messages buffered between the network and the unpacking thread.
    pub buffered_messages: usize,
    /// When set, every unpacked entry is given to this uid and gid (compute_ctl runs as root,
    /// Postgres must not).
    pub owner: Option<(u32, u32)>,
}

impl Default for BasebackupConfig {
    fn default() -> Self {
        BasebackupConfig {
            connect_timeout: Duration::from_secs(10),
            retry: RetryConfig::BASEBACKUP,
            retry_deadline: Duration::from_secs(60),
            progress_interval: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(120),
            buffered_messages: 32,
            owner: None,
        }
    }
}

/// Measurements of a successful fetch (compute_ctl reports `pageserver_connect_micros`,
/// `basebackup_bytes` and `basebackup_ms` from them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasebackupStats {
    /// Time to connect and authenticate, in microseconds, of the successful attempt.
    pub connect_micros: u64,
    /// Bytes received (compressed size) in the successful attempt.
    pub bytes: u64,
    /// Wall time of the whole fetch, retries included.
    pub duration: Duration,
    /// Attempts made (1 when the first succeeded).
    pub attempts: u32,
    /// Compression of the stream, from its magic bytes.
    pub compression: Compression,
    /// Archive entries unpacked.
    pub entries: u64,
}

/// Why a basebackup could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BasebackupError {
    /// The connection string cannot be parsed (it is not echoed: it may hold a password).
    #[error("invalid pageserver connection string: {reason}")]
    InvalidConnstr {
        /// The parser's message.
        reason: String,
    },
    /// The spec names no pageserver with a libpq address for shard 0.
    #[error("no libpq pageserver address for shard 0 in pageserver_connection_info")]
    NoPageserver,
    /// Connecting failed (refused, timed out, closed during startup).
    #[error("connect to pageserver {addr}")]
    Connect {
        /// `host:port` of the pageserver.
        addr: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// Connecting timed out.
    #[error("connect to pageserver {addr}: timed out after {timeout:?}")]
    ConnectTimeout {
        /// `host:port` of the pageserver.
        addr: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The pageserver refused the token.
    #[error("pageserver {addr} refused authentication (SQLSTATE {code}): {message}")]
    Auth {
        /// `host:port` of the pageserver.
        addr: String,
        /// SQLSTATE of the error.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The pageserver does not know the tenant or timeline.
    #[error("pageserver has no timeline {tenant_id}/{timeline_id} (SQLSTATE {code}): {message}")]
    NotFound {
        /// Tenant asked for.
        tenant_id: TenantId,
        /// Timeline asked for.
        timeline_id: TimelineId,
        /// SQLSTATE of the error.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The pageserver sent an error before, during or after the data.
    #[error(
        "pageserver error in basebackup at LSN {lsn} after {bytes} bytes (SQLSTATE {code}): {message}"
    )]
    Server {
        /// LSN asked for.
        lsn: Lsn,
        /// Bytes received before the error.
        bytes: u64,
        /// SQLSTATE of the error.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The connection failed during the transfer.
    #[error("basebackup stream from {addr} broken after {bytes} bytes")]
    Stream {
        /// `host:port` of the pageserver.
        addr: String,
        /// Bytes received before the failure.
        bytes: u64,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// The pageserver sent nothing for `after` (a stalled stream or a request never
    /// answered).
    #[error("pageserver {addr} sent nothing for {after:?} after {bytes} bytes of the basebackup")]
    Stalled {
        /// `host:port` of the pageserver.
        addr: String,
        /// Bytes received before the stall.
        bytes: u64,
        /// The stall timeout.
        after: Duration,
    },
    /// The archive could not be unpacked (refused entry, corrupt data, disk error).
    #[error("unpack basebackup into {pgdata}")]
    Unpack {
        /// The data directory.
        pgdata: PathBuf,
        /// What went wrong.
        source: UnpackError,
    },
    /// Emptying or reading PGDATA failed.
    #[error("prepare data directory {path}")]
    Pgdata {
        /// The path involved.
        path: PathBuf,
        /// The filesystem error.
        source: io::Error,
    },
    /// The fetch was cancelled.
    #[error("basebackup cancelled")]
    Cancelled,
}

impl BasebackupError {
    /// Whether another attempt may succeed. Retried: what the network or the pageserver's
    /// state explains (refused, reset or timed-out connections, a stalled stream, an error the
    /// pageserver sends before any data, e.g. while it waits for the LSN or shuts down).
    /// Not retried: what another attempt would repeat (a refused token, an unknown tenant or
    /// timeline, an archive that is corrupt or holds a refused entry, an error the pageserver
    /// sends once the data flowed, a disk error in PGDATA, bad configuration).
    pub fn is_retryable(&self) -> bool {
        match self {
            BasebackupError::Connect { .. }
            | BasebackupError::ConnectTimeout { .. }
            | BasebackupError::Stream { .. }
            | BasebackupError::Stalled { .. } => true,
            BasebackupError::Server { bytes, code, .. } => *bytes == 0 || transient_sqlstate(code),
            BasebackupError::Unpack { .. }
            | BasebackupError::InvalidConnstr { .. }
            | BasebackupError::NoPageserver
            | BasebackupError::Auth { .. }
            | BasebackupError::NotFound { .. }
            | BasebackupError::Pgdata { .. }
            | BasebackupError::Cancelled => false,
        }
    }
}

/// SQLSTATEs of a server that is going away or overloaded (classes 08, 53 and 57): worth
/// another attempt whenever they come.
fn transient_sqlstate(code: &str) -> bool {
    ["08", "53", "57"]
        .iter()
        .any(|class| code.starts_with(class))
}

/// The kind of an error sent by a pageserver or safekeeper, from its SQLSTATE and message.
/// The real services send SQLSTATE `XX000` with a message starting `Unauthorized:` or
/// `Not found:`; PostgreSQL-style codes (class `28`, `42704`) are recognised too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerErrorKind {
    /// Authentication or authorization failed.
    Auth,
    /// The tenant or timeline does not exist.
    NotFound,
    /// Anything else.
    Other,
}

impl ServerErrorKind {
    /// Classifies an ErrorResponse.
    pub fn classify(code: &str, message: &str) -> ServerErrorKind {
        if code.starts_with("28") || message.starts_with("Unauthorized") {
            ServerErrorKind::Auth
        } else if code == "42704" || message.starts_with("Not found") {
            ServerErrorKind::NotFound
        } else {
            ServerErrorKind::Other
        }
    }
}

/// The libpq connection string of shard 0: the shard whose index (`NNCC`, number then count in
/// hex) has number 0, first pageserver with a libpq URL.
pub fn shard0_connstr(info: &PageserverConnectionInfo) -> Result<&str, BasebackupError> {
    info.shards
        .iter()
        .find(|(index, _)| index.get(..2).and_then(|n| u8::from_str_radix(n, 16).ok()) == Some(0))
        .and_then(|(_, shard)| {
            shard
                .pageservers
                .iter()
                .find_map(|p| p.libpq_url.as_deref())
        })
        .ok_or(BasebackupError::NoPageserver)
}

/// Builds the connection settings: `connstr` (URL or key=value form), the token as password
/// (overriding one in `connstr`), `application_name=compute_ctl` and the option
/// `-c neon.compute_mode=<mode>` (after any options of the connection string).
pub fn pageserver_config(
    connstr: &str,
    auth_token: Option<&str>,
    mode: ComputeMode,
    connect_timeout: Duration,
) -> Result<tokio_postgres::Config, BasebackupError> {
    let mut config =
        tokio_postgres::Config::from_str(connstr).map_err(|e| BasebackupError::InvalidConnstr {
            reason: e.to_string(),
        })?;
    if config.get_hosts().is_empty() {
        return Err(BasebackupError::InvalidConnstr {
            reason: "no host".to_owned(),
        });
    }
    if let Some(token) = auth_token {
        config.password(token);
    }
    if config.get_user().is_none() {
        config.user("no_user");
    }
    config.application_name("compute_ctl");
    let mode_option = format!("-c neon.compute_mode={}", mode.as_guc_value());
    let options = match config.get_options() {
        Some(existing) if !existing.trim().is_empty() => format!("{existing} {mode_option}"),
        _ => mode_option,
    };
    config.options(&options);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout);
    }
    Ok(config)
}

/// `host:port` of the first host of a config, for messages.
pub(crate) fn first_addr(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "?".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Fetches the basebackup described by `request` from the pageserver at `connstr` and unpacks
/// it into `pgdata`, retrying as `config.retry` says.
///
/// `pgdata` must exist. The top-level entries it holds when the call starts (for instance the
/// `postgresql.conf` written before sync-safekeepers: a basebackup does not ship one) are the
/// caller's; before every attempt, and after a final failure, every other entry is removed, so
/// a retry never unpacks over a partial archive and a failed fetch leaves no partial data
/// directory behind.
pub async fn fetch_basebackup(
    connstr: &str,
    auth_token: Option<&str>,
    request: &BasebackupRequest,
    pgdata: &Path,
    config: &BasebackupConfig,
    cancel: &CancellationToken,
) -> Result<BasebackupStats, BasebackupError> {
    let started = Instant::now();
    let pg_config = pageserver_config(connstr, auth_token, request.mode, config.connect_timeout)?;
    let callers_entries = top_level_entries(pgdata)?;
    let mut attempt = 1;
    loop {
        remove_new_entries(pgdata, &callers_entries)?;
        let result = fetch_once(&pg_config, request, pgdata, config, cancel).await;
        match result {
            Ok(once) => {
                let stats = BasebackupStats {
                    connect_micros: once.connect_micros,
                    bytes: once.bytes,
                    duration: started.elapsed(),
                    attempts: attempt,
                    compression: once.compression,
                    entries: once.entries,
                };
                info!(
                    bytes = stats.bytes,
                    connect_micros = stats.connect_micros,
                    duration_ms = stats.duration.as_millis() as u64,
                    attempts = stats.attempts,
                    compression = ?stats.compression,
                    "basebackup unpacked"
                );
                return Ok(stats);
            }
            Err(e)
                if e.is_retryable()
                    && attempt < config.retry.attempts
                    && started.elapsed() + config.retry.delay_before(attempt + 1)
                        < config.retry_deadline =>
            {
                let delay = config.retry.delay_before(attempt + 1);
                warn!(
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "basebackup failed, retrying: {}",
                    crate::Chain(&e)
                );
                tokio::select! {
                    _ = cancel.cancelled() => {
                        let _ = remove_new_entries(pgdata, &callers_entries);
                        return Err(BasebackupError::Cancelled);
                    }
                    _ = tokio::time::sleep(delay) => {}
                }
                attempt += 1;
            }
            Err(e) => {
                if e.is_retryable() {
                    warn!(
                        attempts = attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        deadline_ms = config.retry_deadline.as_millis() as u64,
                        "basebackup: no attempt left within the retry limits"
                    );
                }
                if let Err(clean) = remove_new_entries(pgdata, &callers_entries) {
                    warn!(
                        "could not clean {} after a failed basebackup: {clean}",
                        pgdata.display()
                    );
                }
                return Err(e);
            }
        }
    }
}

struct OnceStats {
    connect_micros: u64,
    bytes: u64,
    compression: Compression,
    entries: u64,
}

async fn fetch_once(
    pg_config: &tokio_postgres::Config,
    request: &BasebackupRequest,
    pgdata: &Path,
    config: &BasebackupConfig,
    cancel: &CancellationToken,
) -> Result<OnceStats, BasebackupError> {
    let addr = first_addr(pg_config);
    let (client, connection, connect_micros) =
        connect(pg_config, request, config, cancel, &addr).await?;
    let _abort = AbortOnDrop(connection);

    let command = request.command();
    let stalled = |bytes| BasebackupError::Stalled {
        addr: addr.clone(),
        bytes,
        after: config.stall_timeout,
    };
    let stream = tokio::select! {
        _ = cancel.cancelled() => return Err(BasebackupError::Cancelled),
        r = tokio::time::timeout(config.stall_timeout, client.copy_out(command.as_str())) => {
            r.map_err(|_| stalled(0))?
        }
    };
    let stream = stream.map_err(|e| {
        classify_db_error(&e, 0, &addr, request).unwrap_or(BasebackupError::Stream {
            addr: addr.clone(),
            bytes: 0,
            source: e,
        })
    })?;

    let (tx, rx) = mpsc::channel::<Bytes>(config.buffered_messages.max(1));
    let unpacker = spawn_unpacker(rx, pgdata, config.owner);
    let pumped = pump(stream, tx, config, cancel).await;
    // Always wait for the unpacking thread: nothing may write into PGDATA after we return.
    let unpacked = unpacker.await;
    let bytes = match pumped {
        Pumped::Cancelled => return Err(BasebackupError::Cancelled),
        Pumped::Stalled { bytes } => return Err(stalled(bytes)),
        Pumped::Failed { bytes, error } => {
            return Err(classify_db_error(&error, bytes, &addr, request).unwrap_or(
                BasebackupError::Stream {
                    addr,
                    bytes,
                    source: error,
                },
            ));
        }
        Pumped::Done { bytes } => bytes,
    };
    let unpacked = match unpacked {
        Ok(r) => r,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    };
    let stats = unpacked.map_err(|source| BasebackupError::Unpack {
        pgdata: pgdata.to_owned(),
        source,
    })?;
    Ok(OnceStats {
        connect_micros,
        bytes,
        compression: stats.compression.unwrap_or(Compression::None),
        entries: stats.entries,
    })
}

/// The error a server message (SQLSTATE and text) stands for: a refused token, an unknown
/// tenant or timeline, or another server error after `bytes` bytes. `None` when `e` is not a
/// server message.
fn classify_db_error(
    e: &tokio_postgres::Error,
    bytes: u64,
    addr: &str,
    request: &BasebackupRequest,
) -> Option<BasebackupError> {
    let db = e.as_db_error()?;
    let (code, message) = (db.code().code().to_owned(), db.message().to_owned());
    Some(match ServerErrorKind::classify(&code, &message) {
        ServerErrorKind::Auth => BasebackupError::Auth {
            addr: addr.to_owned(),
            code,
            message,
        },
        ServerErrorKind::NotFound => BasebackupError::NotFound {
            tenant_id: request.tenant_id,
            timeline_id: request.timeline_id,
            code,
            message,
        },
        ServerErrorKind::Other => BasebackupError::Server {
            lsn: request.lsn,
            bytes,
            code,
            message,
        },
    })
}

/// Whether the driver gave up because the server asked for a password and none was
/// configured: a deterministic failure, not worth a retry (tokio-postgres reports it as a
/// configuration error, `password missing`, not as a server message).
fn asks_for_password(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none()
        && std::error::Error::source(e).is_some_and(|cause| cause.to_string() == "password missing")
}

/// Connects within the connect timeout (cancellable); returns the client, its connection task
/// and how long the connection took in microseconds.
async fn connect(
    pg_config: &tokio_postgres::Config,
    request: &BasebackupRequest,
    config: &BasebackupConfig,
    cancel: &CancellationToken,
    addr: &str,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>, u64), BasebackupError> {
    let connect_started = Instant::now();
    let timeout = pg_config
        .get_connect_timeout()
        .copied()
        .unwrap_or(config.connect_timeout);
    let connected = tokio::select! {
        _ = cancel.cancelled() => return Err(BasebackupError::Cancelled),
        r = tokio::time::timeout(timeout, pg_config.connect(tokio_postgres::NoTls)) => r,
    };
    let (client, connection) = match connected {
        Err(_) => {
            return Err(BasebackupError::ConnectTimeout {
                addr: addr.to_owned(),
                timeout,
            });
        }
        Ok(Err(e)) if pg_config.get_password().is_none() && asks_for_password(&e) => {
            return Err(BasebackupError::Auth {
                addr: addr.to_owned(),
                code: "28P01".to_owned(),
                message:
                    "the pageserver asks for a password and the spec has no storage_auth_token"
                        .to_owned(),
            });
        }
        Ok(Err(e)) => {
            return Err(classify_db_error(&e, 0, addr, request).unwrap_or(
                BasebackupError::Connect {
                    addr: addr.to_owned(),
                    source: e,
                },
            ));
        }
        Ok(Ok(pair)) => pair,
    };
    let connect_micros = connect_started.elapsed().as_micros() as u64;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, connection, connect_micros))
}

/// Unpacks what arrives on `rx` into `pgdata` on a blocking thread, each entry given to
/// `owner` as it is created.
fn spawn_unpacker(
    rx: mpsc::Receiver<Bytes>,
    pgdata: &Path,
    owner: Option<(u32, u32)>,
) -> tokio::task::JoinHandle<Result<crate::unpack::UnpackStats, UnpackError>> {
    let dest = pgdata.to_owned();
    tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        unpack_archive_with(reader, &dest, &UnpackOptions { owner })
    })
}

/// How the transfer of the COPY stream to the unpacker ended.
enum Pumped {
    /// The stream ended (or the unpacker stopped early: its error is reported by the caller).
    Done { bytes: u64 },
    /// The stream failed after `bytes` bytes.
    Failed {
        bytes: u64,
        error: tokio_postgres::Error,
    },
    /// Nothing came for the stall timeout after `bytes` bytes.
    Stalled { bytes: u64 },
    /// Cancelled.
    Cancelled,
}

/// Moves the COPY stream's chunks to the unpacker, logging progress now and then.
async fn pump(
    stream: tokio_postgres::CopyOutStream,
    tx: mpsc::Sender<Bytes>,
    config: &BasebackupConfig,
    cancel: &CancellationToken,
) -> Pumped {
    let mut stream = std::pin::pin!(stream);
    let mut bytes = 0u64;
    let transfer_started = Instant::now();
    let mut next_progress = transfer_started + config.progress_interval;
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return Pumped::Cancelled,
            next = tokio::time::timeout(config.stall_timeout, stream.next()) => next,
        };
        let Ok(next) = next else {
            return Pumped::Stalled { bytes };
        };
        match next {
            Some(Ok(chunk)) => {
                bytes += chunk.len() as u64;
                if tx.send(chunk).await.is_err() {
                    return Pumped::Done { bytes };
                }
                if Instant::now() >= next_progress {
                    let secs = transfer_started.elapsed().as_secs_f64();
                    info!(
                        bytes,
                        mib_per_sec = format!("{:.1}", bytes as f64 / secs / (1 << 20) as f64),
                        "basebackup in progress"
                    );
                    next_progress += config.progress_interval;
                }
            }
            Some(Err(error)) => return Pumped::Failed { bytes, error },
            None => return Pumped::Done { bytes },
        }
    }
}

/// Aborts the task when dropped (a connection task must not outlive its client).
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Blocking [`Read`] over the chunks sent by the network task; end of file when the sender
/// is dropped.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

fn top_level_entries(pgdata: &Path) -> Result<HashSet<OsString>, BasebackupError> {
    let err = |source| BasebackupError::Pgdata {
        path: pgdata.to_owned(),
        source,
    };
    std::fs::read_dir(pgdata)
        .map_err(err)?
        .map(|e| e.map(|e| e.file_name()).map_err(err))
        .collect()
}

fn remove_new_entries(pgdata: &Path, keep: &HashSet<OsString>) -> Result<(), BasebackupError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| BasebackupError::Pgdata { path, source }
    };
    for entry in std::fs::read_dir(pgdata).map_err(err(pgdata))? {
        let entry = entry.map_err(err(pgdata))?;
        if keep.contains(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(err(&path))?;
        if meta.is_dir() {
            std::fs::remove_dir_all(&path).map_err(err(&path))?;
        } else {
            std::fs::remove_file(&path).map_err(err(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_spec::{PageserverProtocol, PageserverShardConnectionInfo, PageserverShardInfo};
    use expect_test::expect;

    const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
    const TIMELINE: &str = "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d";

    #[test]
    fn command_text() {
        let check = |lsn: &str, mode: ComputeMode, gzip: bool, expect: expect_test::Expect| {
            let req = BasebackupRequest {
                tenant_id: TENANT.parse().unwrap(),
                timeline_id: TIMELINE.parse().unwrap(),
                lsn: lsn.parse().unwrap(),
                mode,
                gzip,
            };
            expect.assert_eq(&req.command());
        };
        check(
            "0/0",
            ComputeMode::Primary,
            false,
            expect!["basebackup b0554b632bd4d547a63b86c3630317e8 a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d"],
        );
        check(
            "0/16B3748",
            ComputeMode::Primary,
            true,
            expect![
                "basebackup b0554b632bd4d547a63b86c3630317e8 a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d 0/16B3748 --gzip"
            ],
        );
        check(
            "0/0",
            ComputeMode::Replica,
            true,
            expect![
                "basebackup b0554b632bd4d547a63b86c3630317e8 a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d --gzip --replica"
            ],
        );
        check(
            "1/A",
            ComputeMode::Static("1/A".parse().unwrap()),
            false,
            expect![
                "basebackup b0554b632bd4d547a63b86c3630317e8 a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d 1/A --replica"
            ],
        );
    }

    #[test]
    fn connection_settings() {
        let check = |connstr: &str, token: Option<&str>, expect: expect_test::Expect| {
            let got = match pageserver_config(
                connstr,
                token,
                ComputeMode::Primary,
                Duration::from_secs(3),
            ) {
                Ok(c) => format!(
                    "addr={} user={:?} password={:?} app={:?} options={:?} timeout={:?}",
                    first_addr(&c),
                    c.get_user(),
                    c.get_password().map(String::from_utf8_lossy),
                    c.get_application_name(),
                    c.get_options(),
                    c.get_connect_timeout(),
                ),
                Err(e) => e.to_string(),
            };
            expect.assert_eq(&got);
        };
        check(
            "postgresql://no_user:secret@pageserver:6400",
            Some("tok"),
            expect![[
                r#"addr=pageserver:6400 user=Some("no_user") password=Some("tok") app=Some("compute_ctl") options=Some("-c neon.compute_mode=primary") timeout=Some(3s)"#
            ]],
        );
        check(
            "host=127.0.0.1 port=6401 options='-c x=1' connect_timeout=5",
            None,
            expect![[
                r#"addr=127.0.0.1:6401 user=Some("no_user") password=None app=Some("compute_ctl") options=Some("-c x=1 -c neon.compute_mode=primary") timeout=Some(5s)"#
            ]],
        );
        check(
            "postgresql://no_user:secret@pageserver:6400",
            None,
            expect![[
                r#"addr=pageserver:6400 user=Some("no_user") password=Some("secret") app=Some("compute_ctl") options=Some("-c neon.compute_mode=primary") timeout=Some(3s)"#
            ]],
        );
        check(
            "port=6400",
            None,
            expect!["invalid pageserver connection string: no host"],
        );
    }

    /// What is retried, and each error's chain printed once: a wrapped error is the source,
    /// never repeated in the message.
    #[test]
    fn classification_and_chains() {
        let denied = || io::Error::from_raw_os_error(13);
        let server = |bytes: u64, code: &str| BasebackupError::Server {
            lsn: Lsn(0x16B3748),
            bytes,
            code: code.to_owned(),
            message: "boom".to_owned(),
        };
        let check = |err: BasebackupError, retryable: bool, expect: expect_test::Expect| {
            assert_eq!(err.is_retryable(), retryable, "{err}");
            expect.assert_eq(&crate::Chain(&err).to_string());
        };
        check(
            BasebackupError::Unpack {
                pgdata: "/pgdata".into(),
                source: UnpackError::Write {
                    entry: "base/1".to_owned(),
                    source: denied(),
                },
            },
            false,
            expect![[
                r#"unpack basebackup into /pgdata: unpack entry "base/1": Permission denied (os error 13)"#
            ]],
        );
        check(
            BasebackupError::Pgdata {
                path: "/pgdata".into(),
                source: denied(),
            },
            false,
            expect!["prepare data directory /pgdata: Permission denied (os error 13)"],
        );
        check(
            BasebackupError::Unpack {
                pgdata: "/pgdata".into(),
                source: UnpackError::Corrupt {
                    compression: Compression::Gzip,
                    bytes_in: 1024,
                    source: io::Error::new(io::ErrorKind::InvalidData, "invalid gzip header"),
                },
            },
            false,
            expect![
                "unpack basebackup into /pgdata: corrupt Gzip basebackup stream after 1024 bytes: invalid gzip header"
            ],
        );
        check(
            server(0, "XX000"),
            true,
            expect![
                "pageserver error in basebackup at LSN 0/16B3748 after 0 bytes (SQLSTATE XX000): boom"
            ],
        );
        check(
            server(4096, "XX000"),
            false,
            expect![
                "pageserver error in basebackup at LSN 0/16B3748 after 4096 bytes (SQLSTATE XX000): boom"
            ],
        );
        check(
            server(4096, "57P01"),
            true,
            expect![
                "pageserver error in basebackup at LSN 0/16B3748 after 4096 bytes (SQLSTATE 57P01): boom"
            ],
        );
    }

    #[test]
    fn server_error_kinds() {
        let check = |code: &str, message: &str, expect: ServerErrorKind| {
            assert_eq!(
                ServerErrorKind::classify(code, message),
                expect,
                "{code} {message}"
            );
        };
        check(
            "28P01",
            "password authentication failed",
            ServerErrorKind::Auth,
        );
        check("28000", "no pg_hba.conf entry", ServerErrorKind::Auth);
        check(
            "XX000",
            "Unauthorized: malformed jwt token",
            ServerErrorKind::Auth,
        );
        check(
            "XX000",
            "Not found: tenant 01 not found",
            ServerErrorKind::NotFound,
        );
        check(
            "42704",
            "timeline does not exist",
            ServerErrorKind::NotFound,
        );
        check("XX000", "invalid basebackup lsn", ServerErrorKind::Other);
        check("57P01", "terminating connection", ServerErrorKind::Other);
    }

    #[test]
    fn shard_zero() {
        let shard = |url: Option<&str>| PageserverShardInfo {
            pageservers: vec![PageserverShardConnectionInfo {
                id: Some(1),
                libpq_url: url.map(str::to_owned),
                grpc_url: None,
            }],
        };
        let mut info = PageserverConnectionInfo {
            shard_count: 2,
            stripe_size: None,
            shards: [
                ("0102".to_owned(), shard(Some("postgresql://b"))),
                ("0002".to_owned(), shard(Some("postgresql://a"))),
            ]
            .into_iter()
            .collect(),
            prefer_protocol: PageserverProtocol::Libpq,
        };
        assert_eq!(shard0_connstr(&info).unwrap(), "postgresql://a");
        info.shards.insert("0002".to_owned(), shard(None));
        assert!(matches!(
            shard0_connstr(&info),
            Err(BasebackupError::NoPageserver)
        ));
    }
}
