//! Safekeeper sync: the `TIMELINE_STATUS` fast path over libpq, and the full
//! `<pgbin> --sync-safekeepers` child process.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::str::FromStr;
use std::time::{Duration, Instant};

use compute_spec::{Lsn, LsnParseError, TenantId, TimelineId};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::pageserver::ServerErrorKind;
use crate::retry::RetryConfig;

/// How to run `<pgbin> --sync-safekeepers`.
#[derive(Debug, Clone)]
pub struct SyncSafekeepersConfig {
    /// The `postgres` executable (absolute path).
    pub pgbin: PathBuf,
    /// The data directory; its `postgresql.conf` names the safekeepers. Passed as `PGDATA`.
    pub pgdata: PathBuf,
    /// Passed as `NEON_AUTH_TOKEN` when set.
    pub auth_token: Option<String>,
    /// Run the child as this uid and gid (Postgres programs refuse to run as root).
    pub run_as: Option<(u32, u32)>,
    /// The child is killed after this long, and the run is not retried.
    pub timeout: Duration,
}

/// Why `--sync-safekeepers` gave no LSN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The program could not be started.
    #[error("start {program} --sync-safekeepers")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Waiting for the child failed.
    #[error("wait for {program} --sync-safekeepers")]
    Wait {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The child exited with a failure.
    #[error("{program} --sync-safekeepers failed ({status}); stderr ends with:\n{stderr_tail}")]
    Failed {
        /// The program.
        program: PathBuf,
        /// Its exit status.
        status: ExitStatus,
        /// The last lines of its standard error.
        stderr_tail: String,
    },
    /// The child succeeded but did not print an LSN.
    #[error("{program} --sync-safekeepers printed {output:?}, not an LSN")]
    BadOutput {
        /// The program.
        program: PathBuf,
        /// Its standard output.
        output: String,
        /// The parse error.
        source: LsnParseError,
    },
    /// The child ran longer than the timeout and was killed.
    #[error(
        "{program} --sync-safekeepers timed out after {timeout:?}; stderr ends with:\n{stderr_tail}"
    )]
    Timeout {
        /// The program.
        program: PathBuf,
        /// The timeout.
        timeout: Duration,
        /// The last lines of its standard error.
        stderr_tail: String,
    },
    /// Cancelled; the child was killed and reaped.
    #[error("sync-safekeepers cancelled")]
    Cancelled,
}

impl SyncError {
    /// Whether running it again may succeed: a failed run. Not a run that hung for the whole
    /// timeout (another would most likely hang as long: retrying multiplies the wait), a
    /// missing program, a garbled output or a cancellation.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SyncError::Failed { .. })
    }
}

const STDERR_TAIL_LINES: usize = 20;

/// Runs `<pgbin> --sync-safekeepers` and returns the LSN it prints (`0/0` for a new
/// timeline). The child's standard error goes to the log; its last lines are kept for errors.
pub async fn sync_safekeepers(
    config: &SyncSafekeepersConfig,
    cancel: &CancellationToken,
) -> Result<Lsn, SyncError> {
    let program = config.pgbin.clone();
    let mut cmd = child_process::Command::new(&config.pgbin);
    cmd.arg("--sync-safekeepers")
        .env("PGDATA", &config.pgdata)
        .run_as(config.run_as.map(child_process::RunAs::from))
        .capture_stdout()
        .tail_lines(STDERR_TAIL_LINES);
    match &config.auth_token {
        Some(token) => cmd.env("NEON_AUTH_TOKEN", token),
        None => cmd.env_remove("NEON_AUTH_TOKEN"),
    };
    let output = cmd
        .run(Some(config.timeout), cancel)
        .await
        .map_err(|e| sync_error(program.clone(), config.timeout, e))?;
    Lsn::from_str(output.stdout.trim()).map_err(|source| SyncError::BadOutput {
        program,
        output: output.stdout,
        source,
    })
}

fn sync_error(program: PathBuf, timeout: Duration, e: child_process::Error) -> SyncError {
    use child_process::Error;
    match e {
        Error::Failed { status, tail, .. } => SyncError::Failed {
            program,
            status,
            stderr_tail: tail.join("\n"),
        },
        Error::TimedOut { tail, .. } => SyncError::Timeout {
            program,
            timeout,
            stderr_tail: tail.join("\n"),
        },
        Error::Cancelled { .. } => SyncError::Cancelled,
        Error::Wait { error, .. } => SyncError::Wait {
            program,
            source: error,
        },
        other => SyncError::Spawn {
            program,
            source: other.into(),
        },
    }
}

/// One safekeeper's answer to `TIMELINE_STATUS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineStatus {
    /// WAL flushed on this safekeeper.
    pub flush_lsn: Lsn,
    /// WAL known committed (acknowledged by a quorum).
    pub commit_lsn: Lsn,
}

/// Why one safekeeper gave no status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimelineStatusError {
    /// The address or options cannot be used.
    #[error("invalid safekeeper address {addr:?}: {reason}")]
    InvalidAddr {
        /// The `host:port`.
        addr: String,
        /// The parser's message.
        reason: String,
    },
    /// Connecting or querying failed.
    #[error("TIMELINE_STATUS on safekeeper {addr}")]
    Query {
        /// The `host:port`.
        addr: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// The safekeeper refused the token.
    #[error("safekeeper {addr} refused authentication: {message}")]
    Auth {
        /// The `host:port`.
        addr: String,
        /// The server's message.
        message: String,
    },
    /// No answer in time.
    #[error("TIMELINE_STATUS on safekeeper {addr}: no answer within {timeout:?}")]
    Timeout {
        /// The `host:port`.
        addr: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The answer has not the expected columns or values.
    #[error("TIMELINE_STATUS on safekeeper {addr}: bad reply: {reason}")]
    BadReply {
        /// The `host:port`.
        addr: String,
        /// What is wrong.
        reason: String,
    },
}

/// compute_ctl's per-safekeeper timeout of the fast path.
pub const FAST_PATH_TIMEOUT: Duration = Duration::from_millis(100);

/// Where and how to ask the safekeepers for their timeline status.
#[derive(Debug, Clone)]
pub struct FastPathConfig {
    /// Safekeepers as `host:port`.
    pub safekeepers: Vec<String>,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Timeline.
    pub timeline_id: TimelineId,
    /// Sent as the password when set.
    pub auth_token: Option<String>,
    /// Per-safekeeper timeout of connect plus query (compute_ctl: [`FAST_PATH_TIMEOUT`]).
    pub timeout: Duration,
}

/// Asks one safekeeper (`host:port`) for its timeline status: `Ok(None)` when it does not
/// know the timeline (no row).
pub async fn timeline_status(
    addr: &str,
    tenant_id: TenantId,
    timeline_id: TimelineId,
    auth_token: Option<&str>,
    timeout: Duration,
) -> Result<Option<TimelineStatus>, TimelineStatusError> {
    let mut config = tokio_postgres::Config::from_str(&format!("postgresql://no_user@{addr}"))
        .map_err(|e| TimelineStatusError::InvalidAddr {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?;
    config.options(format!(
        "-c timeline_id={timeline_id} tenant_id={tenant_id}"
    ));
    config.connect_timeout(timeout);
    if let Some(token) = auth_token {
        config.password(token);
    }
    let query_error = |source: tokio_postgres::Error| match source.as_db_error() {
        Some(db)
            if ServerErrorKind::classify(db.code().code(), db.message())
                == ServerErrorKind::Auth =>
        {
            TimelineStatusError::Auth {
                addr: addr.to_owned(),
                message: db.message().to_owned(),
            }
        }
        _ => TimelineStatusError::Query {
            addr: addr.to_owned(),
            source,
        },
    };
    let work = async {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(query_error)?;
        let connection = tokio::spawn(connection);
        let result = client
            .simple_query("TIMELINE_STATUS")
            .await
            .map_err(query_error);
        connection.abort();
        parse_timeline_status(addr, &result?)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| TimelineStatusError::Timeout {
            addr: addr.to_owned(),
            timeout,
        })?
}

fn parse_timeline_status(
    addr: &str,
    messages: &[tokio_postgres::SimpleQueryMessage],
) -> Result<Option<TimelineStatus>, TimelineStatusError> {
    let bad = |reason: String| TimelineStatusError::BadReply {
        addr: addr.to_owned(),
        reason,
    };
    let Some(row) = messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    }) else {
        return Ok(None);
    };
    let lsn = |column: &str| -> Result<Lsn, TimelineStatusError> {
        let text = row
            .try_get(column)
            .map_err(|e| bad(format!("column {column}: {e}")))?
            .ok_or_else(|| bad(format!("column {column} is null")))?;
        text.parse()
            .map_err(|e| bad(format!("column {column}: {e}")))
    };
    Ok(Some(TimelineStatus {
        flush_lsn: lsn("flush_lsn")?,
        commit_lsn: lsn("commit_lsn")?,
    }))
}

/// The LSN the safekeepers agree on, from the replies collected (pure). `total` is the number
/// of safekeepers; at least a quorum (`total / 2 + 1`) of replies is needed, every reply must
/// know the timeline, and all commit and flush LSNs must be one and the same LSN.
pub fn agreed_lsn(total: usize, replies: &[Option<TimelineStatus>]) -> Option<Lsn> {
    if total == 0 || replies.len() < total / 2 + 1 {
        return None;
    }
    let first = (*replies.first()?)?;
    let agreed = replies.iter().all(|r| {
        r.is_some_and(|s| s.commit_lsn == first.commit_lsn && s.flush_lsn == first.flush_lsn)
    });
    (agreed && first.commit_lsn == first.flush_lsn).then_some(first.commit_lsn)
}

/// The fast path: `TIMELINE_STATUS` to every safekeeper in parallel, stopping at a quorum of
/// answers or a quorum of failures. `Some(lsn)` when the safekeepers are known to be synced.
pub async fn check_safekeepers_synced(config: &FastPathConfig) -> Option<Lsn> {
    let total = config.safekeepers.len();
    if total == 0 {
        return None;
    }
    let quorum = total / 2 + 1;
    let mut pending: FuturesUnordered<_> = config
        .safekeepers
        .iter()
        .map(|addr| {
            timeline_status(
                addr,
                config.tenant_id,
                config.timeline_id,
                config.auth_token.as_deref(),
                config.timeout,
            )
        })
        .collect();
    let mut replies = Vec::new();
    let mut failures = 0;
    while let Some(reply) = pending.next().await {
        match reply {
            Ok(status) => replies.push(status),
            Err(e) => {
                info!("safekeeper fast path: {}", crate::Chain(&e));
                failures += 1;
            }
        }
        if replies.len() >= quorum || failures >= quorum {
            break;
        }
    }
    let lsn = agreed_lsn(total, &replies);
    if lsn.is_none() {
        info!(
            answers = replies.len(),
            failures, "safekeepers not known to be synced: {replies:?}"
        );
    }
    lsn
}

/// Which way the sync LSN was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMethod {
    /// The safekeepers agreed over `TIMELINE_STATUS`.
    FastPath,
    /// `--sync-safekeepers` ran.
    FullSync,
}

/// Result of [`sync_safekeepers_fast_then_full`]; compute_ctl records
/// `sync_sk_check_ms` from `check_duration` and `sync_safekeepers_ms` from `sync_duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SafekeeperSync {
    /// The LSN to fetch the basebackup at.
    pub lsn: Lsn,
    /// How it was obtained.
    pub method: SyncMethod,
    /// Time spent in the fast path check (zero when there are no safekeepers to ask).
    pub check_duration: Duration,
    /// Time the full sync took, when it ran.
    pub sync_duration: Option<Duration>,
}

/// Runs [`sync_safekeepers`] until it succeeds, retrying failures and timeouts as `retry`
/// says (compute_ctl: [`RetryConfig::SYNC_SAFEKEEPERS`]).
pub async fn sync_safekeepers_with_retries(
    config: &SyncSafekeepersConfig,
    retry: &RetryConfig,
    cancel: &CancellationToken,
) -> Result<Lsn, SyncError> {
    let mut attempt = 1;
    loop {
        match sync_safekeepers(config, cancel).await {
            Ok(lsn) => return Ok(lsn),
            Err(e) if e.is_retryable() && attempt < retry.attempts => {
                let delay = retry.delay_before(attempt + 1);
                warn!(
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "sync-safekeepers failed, retrying: {}",
                    crate::Chain(&e)
                );
                tokio::select! {
                    _ = cancel.cancelled() => return Err(SyncError::Cancelled),
                    _ = tokio::time::sleep(delay) => {}
                }
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Tries the fast path, and runs the full `--sync-safekeepers` once when it does not give an
/// LSN. Same as [`sync_safekeepers_fast_then_full_with_retries`] with [`RetryConfig::NONE`].
pub async fn sync_safekeepers_fast_then_full(
    fast: &FastPathConfig,
    full: &SyncSafekeepersConfig,
    cancel: &CancellationToken,
) -> Result<SafekeeperSync, SyncError> {
    sync_safekeepers_fast_then_full_with_retries(fast, full, &RetryConfig::NONE, cancel).await
}

/// Tries the fast path, and runs the full `--sync-safekeepers` (retried as `retry` says) when
/// it does not give an LSN. `sync_duration` covers all the attempts.
pub async fn sync_safekeepers_fast_then_full_with_retries(
    fast: &FastPathConfig,
    full: &SyncSafekeepersConfig,
    retry: &RetryConfig,
    cancel: &CancellationToken,
) -> Result<SafekeeperSync, SyncError> {
    let check_started = Instant::now();
    let fast_lsn = tokio::select! {
        lsn = check_safekeepers_synced(fast) => lsn,
        _ = cancel.cancelled() => return Err(SyncError::Cancelled),
    };
    let check_duration = check_started.elapsed();
    if let Some(lsn) = fast_lsn {
        info!(%lsn, check_ms = check_duration.as_millis() as u64, "safekeepers synced (fast path)");
        return Ok(SafekeeperSync {
            lsn,
            method: SyncMethod::FastPath,
            check_duration,
            sync_duration: None,
        });
    }
    let sync_started = Instant::now();
    let lsn = sync_safekeepers_with_retries(full, retry, cancel)
        .await
        .inspect_err(|e| warn!("{}", crate::Chain(e)))?;
    let sync_duration = sync_started.elapsed();
    info!(%lsn, sync_ms = sync_duration.as_millis() as u64, "safekeepers synced (full sync)");
    Ok(SafekeeperSync {
        lsn,
        method: SyncMethod::FullSync,
        check_duration,
        sync_duration: Some(sync_duration),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_and_agreement() {
        let s = |flush: u64, commit: u64| {
            Some(TimelineStatus {
                flush_lsn: Lsn(flush),
                commit_lsn: Lsn(commit),
            })
        };
        let check = |total: usize, replies: &[Option<TimelineStatus>], expect: Option<u64>| {
            assert_eq!(
                agreed_lsn(total, replies),
                expect.map(Lsn),
                "{total} {replies:?}"
            );
        };
        check(3, &[s(10, 10), s(10, 10)], Some(10));
        check(3, &[s(10, 10), s(10, 10), s(10, 10)], Some(10));
        check(3, &[s(10, 10)], None); // no quorum
        check(3, &[s(10, 10), s(11, 11)], None); // disagree
        check(3, &[s(11, 10), s(11, 10)], None); // commit != flush
        check(3, &[s(10, 10), None], None); // a safekeeper lacks the timeline
        check(1, &[s(7, 7)], Some(7));
        check(4, &[s(7, 7), s(7, 7)], None); // quorum of 4 is 3
        check(0, &[], None);
    }
}
