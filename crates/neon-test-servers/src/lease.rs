//! The test pageserver's `lease lsn` command: parsed as the pageserver parses it, answered with
//! its reply shape (one text column `valid_until`, the expiry in milliseconds since the epoch,
//! NULL when the LSN is below the GC cutoff), with faults (an error, or no answer at all), and
//! every lease request recorded for tests.

use std::io;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use compute_spec::{Lsn, TenantId, TimelineId};

use crate::wire::Conn;

/// A fault to inject in `lease lsn` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseFault {
    /// Answer with an ErrorResponse.
    Error,
    /// Never answer (the connection stays open until the client leaves).
    Stall,
}

impl FromStr for LeaseFault {
    type Err = String;

    /// `error` or `stall`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "error" => Ok(LeaseFault::Error),
            "stall" => Ok(LeaseFault::Stall),
            _ => Err(format!("unknown lease fault {s:?} (error, stall)")),
        }
    }
}

/// How `lease lsn` is answered; can be changed while the server runs
/// ([`crate::TestPageserver::set_lease_settings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Length of a granted lease (the pageserver's `lsn_lease_length`, 10 minutes by default).
    pub length: Duration,
    /// Leases of LSNs below this are refused with NULL, as the pageserver refuses an LSN below
    /// its GC cutoff.
    pub gc_cutoff: Option<Lsn>,
    /// A fault instead of the answer.
    pub fault: Option<LeaseFault>,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            length: DEFAULT_LEASE_LENGTH,
            gc_cutoff: None,
            fault: None,
        }
    }
}

/// The pageserver's default `lsn_lease_length`.
pub const DEFAULT_LEASE_LENGTH: Duration = Duration::from_secs(10 * 60);

/// What a lease request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// A lease until this time (sent in milliseconds since the epoch).
    Granted(SystemTime),
    /// NULL: the LSN is below the GC cutoff.
    Null,
    /// An ErrorResponse with this message.
    Error(String),
    /// No answer (the stall fault).
    Stalled,
}

/// One `lease lsn` request received (the token is not kept, only whether it matched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The query text as received.
    pub query: String,
    /// The tenant shard id as sent: the tenant id, then `-NNCC` (shard number and count in
    /// hex) unless unsharded.
    pub tenant_shard_id: String,
    /// The timeline id as sent.
    pub timeline_id: String,
    /// The LSN as sent.
    pub lsn: String,
    /// Whether the connection's password matched the token (`None` without authentication).
    pub password_ok: Option<bool>,
    /// The answer.
    pub answer: LeaseAnswer,
    /// When it was received.
    pub at: SystemTime,
}

/// The parsed `lease lsn` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseCommand {
    /// Tenant.
    pub tenant: TenantId,
    /// Shard number and count, `None` for the unsharded form (a bare tenant id).
    pub shard: Option<(u8, u8)>,
    /// Timeline.
    pub timeline: TimelineId,
    /// LSN to lease.
    pub lsn: Lsn,
}

/// Whether `query` is a `lease …` command (the pageserver dispatches on the first word).
pub fn is_lease(query: &str) -> bool {
    query
        .split_whitespace()
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("lease"))
}

/// Parses `lease lsn <tenant_shard_id> <timeline_id> <lsn>` as the pageserver does
/// (surrounding whitespace ignored); the error is the message to send.
pub fn parse_lease(query: &str) -> Result<LeaseCommand, String> {
    let words: Vec<&str> = query.split_whitespace().collect();
    match words.as_slice() {
        [lease, lsn, args @ ..]
            if lease.eq_ignore_ascii_case("lease") && lsn.eq_ignore_ascii_case("lsn") =>
        {
            let [tenant_shard, timeline, lsn] = args else {
                return Err(format!(
                    "invalid number of parameters for lease lsn command: {}",
                    args.join(" ")
                ));
            };
            let (tenant, shard) = parse_tenant_shard_id(tenant_shard)
                .ok_or_else(|| format!("Failed to parse tenant id from {tenant_shard}"))?;
            let timeline = timeline
                .parse()
                .map_err(|_| format!("Failed to parse timeline id from {timeline}"))?;
            let lsn = lsn
                .parse()
                .map_err(|_| format!("Failed to parse lsn from {lsn}"))?;
            Ok(LeaseCommand {
                tenant,
                shard,
                timeline,
                lsn,
            })
        }
        _ => Err(format!("invalid lease command: {query}")),
    }
}

/// `<tenant>` (32 hex digits) or `<tenant>-<NN><CC>`.
fn parse_tenant_shard_id(text: &str) -> Option<(TenantId, Option<(u8, u8)>)> {
    match text.split_once('-') {
        None if text.len() == 32 => Some((text.parse().ok()?, None)),
        Some((tenant, shard)) if tenant.len() == 32 && shard.len() == 4 => {
            let number = u8::from_str_radix(shard.get(..2)?, 16).ok()?;
            let count = u8::from_str_radix(shard.get(2..)?, 16).ok()?;
            Some((tenant.parse().ok()?, Some((number, count))))
        }
        _ => None,
    }
}

/// What to answer to a well-formed command for the served tenant and timeline.
pub(crate) fn decide(cmd: &LeaseCommand, settings: &LeaseSettings, now: SystemTime) -> LeaseAnswer {
    match settings.fault {
        Some(LeaseFault::Error) => {
            return LeaseAnswer::Error(format!(
                "error obtaining lsn lease for {}: injected fault",
                cmd.lsn
            ));
        }
        Some(LeaseFault::Stall) => return LeaseAnswer::Stalled,
        None => {}
    }
    if settings.gc_cutoff.is_some_and(|cutoff| cmd.lsn < cutoff) {
        return LeaseAnswer::Null;
    }
    LeaseAnswer::Granted(now + settings.length)
}

/// Sends `answer` (not ReadyForQuery): RowDescription (`valid_until`, text), DataRow,
/// CommandComplete `SELECT 1`, as the pageserver; or an ErrorResponse. A stalled answer waits
/// until the client leaves and returns `false` (the connection is over).
pub(crate) async fn send(conn: &mut Conn, answer: &LeaseAnswer) -> io::Result<bool> {
    let millis = |t: &SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string()
    };
    match answer {
        LeaseAnswer::Granted(valid_until) => {
            conn.row_description(&["valid_until"])?;
            conn.data_row_nullable(&[Some(&millis(valid_until))])?;
            conn.command_complete("SELECT 1")?;
        }
        LeaseAnswer::Null => {
            conn.row_description(&["valid_until"])?;
            conn.data_row_nullable(&[None])?;
            conn.command_complete("SELECT 1")?;
        }
        LeaseAnswer::Error(message) => conn.error("XX000", message)?,
        LeaseAnswer::Stalled => {
            conn.wait_until_closed().await?;
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
    const TIMELINE: &str = "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d";

    #[test]
    fn parses_commands_like_the_pageserver() {
        let check = |q: &str, expect: &str| {
            let got = match parse_lease(q) {
                Ok(c) => format!("shard={:?} lsn={}", c.shard, c.lsn),
                Err(e) => e,
            };
            assert_eq!(got, expect, "{q}");
        };
        check(
            &format!("lease lsn {TENANT} {TIMELINE} 0/16B3748 "),
            "shard=None lsn=0/16B3748",
        );
        check(
            &format!("LEASE LSN {TENANT}-0104 {TIMELINE} 1/A"),
            "shard=Some((1, 4)) lsn=1/A",
        );
        check(
            &format!("lease lsn {TENANT}-01 {TIMELINE} 1/A"),
            &format!("Failed to parse tenant id from {TENANT}-01"),
        );
        check(
            &format!("lease lsn {TENANT} {TIMELINE}"),
            &format!("invalid number of parameters for lease lsn command: {TENANT} {TIMELINE}"),
        );
        check(
            &format!("lease lsn {TENANT} nope 1/A"),
            "Failed to parse timeline id from nope",
        );
        check(
            &format!("lease lsn {TENANT} {TIMELINE} 1A"),
            "Failed to parse lsn from 1A",
        );
        check("lease foo", "invalid lease command: lease foo");
        assert!(is_lease("Lease lsn"));
        assert!(!is_lease("basebackup x y"));
    }

    #[test]
    fn answers_by_settings() {
        let cmd = parse_lease(&format!("lease lsn {TENANT} {TIMELINE} 0/100")).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let check = |settings: LeaseSettings, expect: LeaseAnswer| {
            assert_eq!(decide(&cmd, &settings, now), expect, "{settings:?}");
        };
        check(
            LeaseSettings::default(),
            LeaseAnswer::Granted(now + Duration::from_secs(600)),
        );
        let below = LeaseSettings {
            gc_cutoff: Some(Lsn(0x101)),
            ..LeaseSettings::default()
        };
        check(below, LeaseAnswer::Null);
        let at_cutoff = LeaseSettings {
            gc_cutoff: Some(Lsn(0x100)),
            length: Duration::from_secs(1),
            ..LeaseSettings::default()
        };
        check(
            at_cutoff,
            LeaseAnswer::Granted(now + Duration::from_secs(1)),
        );
        let stall = LeaseSettings {
            fault: Some(LeaseFault::Stall),
            ..LeaseSettings::default()
        };
        check(stall, LeaseAnswer::Stalled);
        assert_eq!("error".parse(), Ok(LeaseFault::Error));
        assert!("nope".parse::<LeaseFault>().is_err());
    }
}
