//! LSN leases of a Static compute: the pageserver keeps the data at a leased LSN from garbage
//! collection until the lease expires, so a compute pinned to an LSN renews its lease for as
//! long as it runs.
//!
//! This module owns the `lease lsn <tenant_shard_id> <timeline_id> <lsn> ` libpq command, sent
//! to every pageserver of every shard with the storage token as password (connection settings
//! from [`pageserver_config`]), its reply (`valid_until`, milliseconds since the epoch, NULL
//! when the LSN is below the GC cutoff), and the renewal loop [`keep_lease`]. The scheduling
//! (earliest expiry of the shards, when to renew, the backoff after a failure) is pure:
//! [`earliest`], [`renew_after`], [`RetryConfig::LSN_LEASE`].
//!
//! As upstream (`compute_tools/src/lsn_lease.rs`): the earliest expiry wins; a NULL answer from
//! any shard ends the renewals (the LSN is below the GC cutoff: no lease can be had); every
//! other failure is retried after 500 ms × 1.5ⁿ, at most 60 s; a granted lease is renewed after
//! max(remaining − 60 s, remaining / 2); a change of the pageserver connection info (a new
//! [`LeaseTarget`]) renews at once. Differences: each request is bounded
//! ([`LeaseConfig::request_timeout`]) and cancellable, a renewal is never scheduled sooner than
//! [`LeaseConfig::min_interval`], and there is no gRPC: a pageserver without a libpq URL is an
//! error.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use compute_spec::{ComputeMode, Lsn, PageserverConnectionInfo, TenantId, TimelineId};
use tokio::sync::watch;
use tokio_postgres::SimpleQueryMessage;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::pageserver::{AbortOnDrop, BasebackupError, first_addr, pageserver_config};
use crate::retry::RetryConfig;

/// What to lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Timeline.
    pub timeline_id: TimelineId,
    /// The Static compute's LSN.
    pub lsn: Lsn,
}

impl LeaseRequest {
    /// The command for one shard: `lease lsn <tenant_shard_id> <timeline_id> <lsn> ` (with
    /// upstream's trailing space), or `None` when `shard_index` is not 4 hex digits.
    pub fn command(&self, shard_index: &str) -> Option<String> {
        let tenant_shard_id = tenant_shard_id(self.tenant_id, shard_index)?;
        Some(format!(
            "lease lsn {tenant_shard_id} {} {} ",
            self.timeline_id, self.lsn
        ))
    }
}

/// The pageserver's name of a shard of `tenant`: the tenant id when unsharded (shard count 0),
/// else `<tenant>-<NN><CC>` (shard number and count, two lower-case hex digits each), from a
/// shard index of `pageserver_connection_info` (`NNCC`). `None` when the index is not 4 hex
/// digits.
pub fn tenant_shard_id(tenant: TenantId, shard_index: &str) -> Option<String> {
    if shard_index.len() != 4 {
        return None;
    }
    let number = u8::from_str_radix(shard_index.get(..2)?, 16).ok()?;
    let count = u8::from_str_radix(shard_index.get(2..)?, 16).ok()?;
    Some(match count {
        0 => tenant.to_string(),
        _ => format!("{tenant}-{number:02x}{count:02x}"),
    })
}

/// Where to lease: the pageservers of every shard and the storage token. compute_ctl replaces
/// it when `/configure` brings new connection info.
#[derive(Clone, PartialEq, Eq)]
pub struct LeaseTarget {
    /// The shards and their pageservers.
    pub pageserver: PageserverConnectionInfo,
    /// The storage token, sent as the password.
    pub auth_token: Option<String>,
}

impl std::fmt::Debug for LeaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseTarget")
            .field("pageserver", &self.pageserver)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Timing of the lease requests and renewals.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseConfig {
    /// Timeout of each connection (used unless the connection string sets one).
    pub connect_timeout: Duration,
    /// Bound of one request to one pageserver: connect, query, answer.
    pub request_timeout: Duration,
    /// Delays after failed rounds (its `attempts` is ignored: the renewals never give up on
    /// a failure).
    pub retry: RetryConfig,
    /// How long before the expiry to renew, unless half the remaining time is later.
    pub renew_margin: Duration,
    /// The shortest wait between two granted renewals (guards against a pageserver granting
    /// leases already expired).
    pub min_interval: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry: RetryConfig::LSN_LEASE,
            renew_margin: Duration::from_secs(60),
            min_interval: Duration::from_millis(100),
        }
    }
}

/// The outcome of one round over every pageserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseGrant {
    /// Every pageserver granted a lease; the earliest expires then.
    Until(SystemTime),
    /// A pageserver answered NULL: the LSN is below its GC cutoff.
    Refused,
}

/// Why a round failed (retried by [`keep_lease`], except [`LeaseError::Cancelled`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The connection info lists no shard.
    #[error("no pageserver shard in pageserver_connection_info")]
    NoPageserver,
    /// A shard index is not 4 hex digits.
    #[error("invalid shard index {shard:?} in pageserver_connection_info")]
    InvalidShardIndex {
        /// The index.
        shard: String,
    },
    /// A pageserver of a shard has no libpq URL (gRPC is not spoken here).
    #[error("a pageserver of shard {shard} has no libpq_url")]
    NoLibpqUrl {
        /// The shard index.
        shard: String,
    },
    /// A connection string cannot be parsed (it is not echoed: it may hold a password).
    #[error("invalid pageserver connection string of shard {shard}: {reason}")]
    InvalidConnstr {
        /// The shard index.
        shard: String,
        /// The parser's message.
        reason: String,
    },
    /// Connecting or querying failed.
    #[error("lease lsn on pageserver {addr}")]
    Connection {
        /// `host:port` of the pageserver.
        addr: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// The pageserver answered with an error (a refused token, an unknown timeline, …).
    #[error("lease lsn on pageserver {addr} failed (SQLSTATE {code}): {message}")]
    Server {
        /// `host:port` of the pageserver.
        addr: String,
        /// SQLSTATE of the error.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The request took longer than [`LeaseConfig::request_timeout`].
    #[error("lease lsn on pageserver {addr}: no answer within {timeout:?}")]
    Timeout {
        /// `host:port` of the pageserver.
        addr: String,
        /// The bound.
        timeout: Duration,
    },
    /// The answer is not one text column `valid_until` holding milliseconds or NULL.
    #[error("lease lsn on pageserver {addr}: unexpected answer: {reason}")]
    BadReply {
        /// `host:port` of the pageserver.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Cancelled.
    #[error("lsn lease cancelled")]
    Cancelled,
}

/// The outcome of the shards' answers: the earliest expiry, or [`LeaseGrant::Refused`] when any
/// answer is NULL. `None` without answers.
pub fn earliest(answers: impl IntoIterator<Item = Option<SystemTime>>) -> Option<LeaseGrant> {
    let mut outcome = None;
    for answer in answers {
        outcome = Some(match (outcome, answer) {
            (_, None) | (Some(LeaseGrant::Refused), _) => LeaseGrant::Refused,
            (Some(LeaseGrant::Until(a)), Some(b)) => LeaseGrant::Until(a.min(b)),
            (None, Some(b)) => LeaseGrant::Until(b),
        });
    }
    outcome
}

/// How long to wait before renewing a lease valid until `valid_until`, seen at `now`: the
/// remaining time less [`LeaseConfig::renew_margin`], but at least half the remaining time and
/// at least [`LeaseConfig::min_interval`].
pub fn renew_after(valid_until: SystemTime, now: SystemTime, config: &LeaseConfig) -> Duration {
    let remaining = valid_until.duration_since(now).unwrap_or(Duration::ZERO);
    remaining
        .saturating_sub(config.renew_margin)
        .max(remaining / 2)
        .max(config.min_interval)
}

/// Asks every pageserver of every shard of `target` for a lease, one after the other; the
/// first failure ends the round.
pub async fn acquire_lease(
    target: &LeaseTarget,
    request: &LeaseRequest,
    config: &LeaseConfig,
    cancel: &CancellationToken,
) -> Result<LeaseGrant, LeaseError> {
    let mut answers = Vec::new();
    for (shard, info) in &target.pageserver.shards {
        let command = request
            .command(shard)
            .ok_or_else(|| LeaseError::InvalidShardIndex {
                shard: shard.clone(),
            })?;
        for pageserver in &info.pageservers {
            let connstr =
                pageserver
                    .libpq_url
                    .as_deref()
                    .ok_or_else(|| LeaseError::NoLibpqUrl {
                        shard: shard.clone(),
                    })?;
            let pg = pageserver_config(
                connstr,
                target.auth_token.as_deref(),
                ComputeMode::Static(request.lsn),
                config.connect_timeout,
            )
            .map_err(|e| LeaseError::InvalidConnstr {
                shard: shard.clone(),
                reason: match e {
                    BasebackupError::InvalidConnstr { reason } => reason,
                    other => other.to_string(),
                },
            })?;
            answers.push(lease_once(&pg, &command, config, cancel).await?);
        }
    }
    earliest(answers).ok_or(LeaseError::NoPageserver)
}

/// One request to one pageserver, bounded by the request timeout and cancellable.
async fn lease_once(
    pg: &tokio_postgres::Config,
    command: &str,
    config: &LeaseConfig,
    cancel: &CancellationToken,
) -> Result<Option<SystemTime>, LeaseError> {
    let addr = first_addr(pg);
    let failed = |source: tokio_postgres::Error| match source.as_db_error() {
        Some(db) => LeaseError::Server {
            addr: addr.clone(),
            code: db.code().code().to_owned(),
            message: db.message().to_owned(),
        },
        None => LeaseError::Connection {
            addr: addr.clone(),
            source,
        },
    };
    let request = async {
        let (client, connection) = pg.connect(tokio_postgres::NoTls).await.map_err(failed)?;
        let _connection = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let messages = client.simple_query(command).await.map_err(failed)?;
        valid_until(&messages).map_err(|reason| LeaseError::BadReply {
            addr: addr.clone(),
            reason,
        })
    };
    tokio::select! {
        _ = cancel.cancelled() => Err(LeaseError::Cancelled),
        answer = tokio::time::timeout(config.request_timeout, request) => match answer {
            Ok(answer) => answer,
            Err(_) => Err(LeaseError::Timeout {
                addr: addr.clone(),
                timeout: config.request_timeout,
            }),
        },
    }
}

/// The expiry in the first row's `valid_until` (milliseconds since the epoch), `None` for NULL.
fn valid_until(messages: &[SimpleQueryMessage]) -> Result<Option<SystemTime>, String> {
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or("no row")?;
    let Some(text) = row.try_get("valid_until").map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let millis =
        u64::from_str(text).map_err(|_| format!("valid_until {text:?} is not a number"))?;
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_millis(millis))
        .map(Some)
        .ok_or_else(|| format!("valid_until {millis} is out of range"))
}

/// How [`keep_lease`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    /// A pageserver refused the lease (NULL: the LSN is below its GC cutoff).
    Refused,
    /// `cancel` fired.
    Cancelled,
}

/// Keeps the lease of `request` alive until a pageserver refuses it or `cancel` fires: a
/// round over every pageserver of the current target, then a wait ([`renew_after`] after a
/// grant, the backoff of [`LeaseConfig::retry`] after a failure) cut short when `target`
/// changes. Logs each renewal (INFO) and failure (WARN).
pub async fn keep_lease(
    request: LeaseRequest,
    mut target: watch::Receiver<LeaseTarget>,
    config: &LeaseConfig,
    cancel: &CancellationToken,
) -> LeaseEnd {
    let mut failures = 0u32;
    loop {
        let current = target.borrow_and_update().clone();
        let wait = match acquire_lease(&current, &request, config, cancel).await {
            Ok(LeaseGrant::Until(valid_until)) => {
                failures = 0;
                let wait = renew_after(valid_until, SystemTime::now(), config);
                info!(
                    valid_until_ms = millis_since_epoch(valid_until),
                    renew_in_ms = wait.as_millis() as u64,
                    "lsn lease acquired"
                );
                wait
            }
            Ok(LeaseGrant::Refused) => {
                warn!(
                    lsn = %request.lsn,
                    "lsn lease refused: the LSN is behind the pageserver's GC cutoff; no more renewals"
                );
                return LeaseEnd::Refused;
            }
            Err(LeaseError::Cancelled) => return LeaseEnd::Cancelled,
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = config.retry.delay_before(failures.saturating_add(1));
                warn!(
                    attempt = failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "lsn lease failed: {}",
                    crate::Chain(&e)
                );
                delay
            }
        };
        if !wait_or_new_target(wait, &mut target, cancel).await {
            return LeaseEnd::Cancelled;
        }
    }
}

/// Waits `wait`, less if the target changes (then logged); `false` when cancelled.
async fn wait_or_new_target(
    wait: Duration,
    target: &mut watch::Receiver<LeaseTarget>,
    cancel: &CancellationToken,
) -> bool {
    let changed = async {
        match target.changed().await {
            Ok(()) => info!("pageserver connection info changed: renewing the lsn lease now"),
            // No more changes can come: wait the full time.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
        () = changed => true,
    }
}

fn millis_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
    const TIMELINE: &str = "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d";

    #[test]
    fn commands_name_the_shard_as_the_pageserver_does() {
        let request = LeaseRequest {
            tenant_id: TENANT.parse().unwrap(),
            timeline_id: TIMELINE.parse().unwrap(),
            lsn: "1/16B3748".parse().unwrap(),
        };
        let check = |index: &str, expect: Option<&str>| {
            assert_eq!(request.command(index).as_deref(), expect, "{index}");
        };
        check(
            "0000",
            Some(&format!("lease lsn {TENANT} {TIMELINE} 1/16B3748 ")),
        );
        check(
            "0104",
            Some(&format!("lease lsn {TENANT}-0104 {TIMELINE} 1/16B3748 ")),
        );
        check(
            "0A0B",
            Some(&format!("lease lsn {TENANT}-0a0b {TIMELINE} 1/16B3748 ")),
        );
        check("01", None);
        check("zz01", None);
        check("0€", None);
    }

    #[test]
    fn earliest_expiry_wins_and_null_refuses() {
        let at = |s: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let until = |s: u64| Some(LeaseGrant::Until(at(s).unwrap()));
        assert_eq!(earliest([]), None);
        assert_eq!(earliest([at(5)]), until(5));
        assert_eq!(earliest([at(9), at(5), at(7)]), until(5));
        assert_eq!(earliest([at(9), None, at(7)]), Some(LeaseGrant::Refused));
        assert_eq!(earliest([None, at(7)]), Some(LeaseGrant::Refused));
    }

    #[test]
    fn renewal_times() {
        let config = LeaseConfig::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let check = |remaining_ms: i64, expect_ms: u128| {
            let valid_until = if remaining_ms >= 0 {
                now + Duration::from_millis(remaining_ms as u64)
            } else {
                now - Duration::from_millis(remaining_ms.unsigned_abs())
            };
            let got = renew_after(valid_until, now, &config).as_millis();
            assert_eq!(got, expect_ms, "{remaining_ms} ms remaining");
        };
        // The pageserver's default 10 min: renew a minute before the end.
        check(600_000, 540_000);
        // Short leases: half way.
        check(100_000, 50_000);
        check(120_000, 60_000);
        check(2_000, 1_000);
        // Never sooner than the minimum, even for an expired lease.
        check(100, 100);
        check(-5_000, 100);
    }

    #[test]
    fn failures_back_off_as_upstream() {
        let r = LeaseConfig::default().retry;
        let ms: Vec<u128> = (2..=6).map(|a| r.delay_before(a).as_millis()).collect();
        assert_eq!(ms, [500, 750, 1125, 1687, 2531]);
        assert_eq!(r.delay_before(100), Duration::from_secs(60));
        assert_eq!(r.delay_before(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn the_token_is_not_debug_printed() {
        let target = LeaseTarget {
            pageserver: PageserverConnectionInfo {
                shard_count: 0,
                stripe_size: None,
                shards: Default::default(),
                prefer_protocol: Default::default(),
            },
            auth_token: Some("secret-token".into()),
        };
        let printed = format!("{target:?}");
        assert!(!printed.contains("secret-token"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }
}
