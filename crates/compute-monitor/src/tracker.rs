//! The shared activity state: last activity (monotonic), its reason, and postgres downtime.
//! Written by the monitor task, read by compute_ctl's HTTP layer through
//! [`ActivityTracker::snapshot`].

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// Which kind of activity set [`ActivitySnapshot::last_active`] (a type of compute_ctl's
/// HTTP API, where `/status` reports it).
pub use compute_spec::api::ActivityReason;

/// What the HTTP layer shows: a consistent copy of the tracker's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivitySnapshot {
    /// When the compute was last active; `None` until the first activity. Serialized as an
    /// RFC 3339 string with microseconds and `Z` (see [`format_rfc3339`]).
    #[serde(serialize_with = "serialize_rfc3339")]
    pub last_active: Option<DateTime<Utc>>,
    /// Which activity set `last_active`.
    pub reason: Option<ActivityReason>,
    /// How long postgres has been unreachable right now, in milliseconds (0 when reachable).
    pub current_downtime_ms: u64,
    /// Total time postgres was unreachable, the current downtime included, in milliseconds.
    pub total_downtime_ms: u64,
    /// Number of successful activity checks so far.
    pub checks: u64,
}

impl ActivitySnapshot {
    /// `last_active` as RFC 3339 (see [`format_rfc3339`]).
    pub fn last_active_rfc3339(&self) -> Option<String> {
        self.last_active.map(format_rfc3339)
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2024-05-01T12:00:00.123456Z` (the precision of a
/// PostgreSQL timestamp; the same shape upstream produces for `last_active`).
pub fn format_rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn serialize_rfc3339<S: serde::Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.serialize_str(&format_rfc3339(*at)),
        None => serializer.serialize_none(),
    }
}

/// Shared activity state, usually held in an `Arc`. All methods take `&self` and never
/// block for long.
#[derive(Debug, Default)]
pub struct ActivityTracker {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    last_active: Option<DateTime<Utc>>,
    reason: Option<ActivityReason>,
    down_since: Option<Instant>,
    past_downtime: Duration,
    checks: u64,
}

impl ActivityTracker {
    /// A tracker with no activity and no downtime.
    pub fn new() -> ActivityTracker {
        ActivityTracker::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state stays consistent even if a holder panicked: every update is one assignment.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records activity at `at`. Monotonic: returns `false` and changes nothing when `at` is
    /// not later than the current `last_active`.
    pub fn record_activity(&self, at: DateTime<Utc>, reason: ActivityReason) -> bool {
        let mut inner = self.lock();
        if inner.last_active.is_some_and(|last| at <= last) {
            return false;
        }
        inner.last_active = Some(at);
        inner.reason = Some(reason);
        true
    }

    /// A check succeeded: postgres is reachable; ends the current downtime, if any. Returns the
    /// length of the downtime that ended.
    pub(crate) fn check_succeeded(&self) -> Option<Duration> {
        let mut inner = self.lock();
        inner.checks += 1;
        let since = inner.down_since.take()?;
        let down = since.elapsed();
        inner.past_downtime += down;
        Some(down)
    }

    /// A connection attempt or a check failed: postgres is unreachable from now on, unless it
    /// already was. Returns whether this starts a downtime.
    pub(crate) fn check_failed(&self) -> bool {
        let mut inner = self.lock();
        if inner.down_since.is_some() {
            return false;
        }
        inner.down_since = Some(Instant::now());
        true
    }

    /// A consistent copy of the state.
    pub fn snapshot(&self) -> ActivitySnapshot {
        let inner = self.lock();
        let current = inner.down_since.map(|s| s.elapsed()).unwrap_or_default();
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        ActivitySnapshot {
            last_active: inner.last_active,
            reason: inner.reason,
            current_downtime_ms: millis(current),
            total_downtime_ms: millis(inner.past_downtime + current),
            checks: inner.checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_with_reason() {
        let tracker = ActivityTracker::new();
        assert_eq!(tracker.snapshot().last_active, None);
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let steps = [
            ("2024-05-01T12:00:00.5Z", ActivityReason::IdleBackend, true),
            ("2024-05-01T12:00:00.5Z", ActivityReason::WalSender, false),
            ("2024-05-01T11:00:00Z", ActivityReason::ActiveBackend, false),
            ("2024-05-01T12:00:01Z", ActivityReason::Autovacuum, true),
        ];
        for (at, reason, moved) in steps {
            assert_eq!(tracker.record_activity(t(at), reason), moved, "{at}");
        }
        let snap = tracker.snapshot();
        assert_eq!(snap.last_active, Some(t("2024-05-01T12:00:01Z")));
        assert_eq!(snap.reason, Some(ActivityReason::Autovacuum));
        assert_eq!(
            snap.last_active_rfc3339().as_deref(),
            Some("2024-05-01T12:00:01.000000Z")
        );
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["last_active"], "2024-05-01T12:00:01.000000Z");
        assert_eq!(json["reason"], "autovacuum");
        let empty = serde_json::to_value(ActivityTracker::new().snapshot()).unwrap();
        assert_eq!(empty["last_active"], serde_json::Value::Null);
    }

    #[test]
    fn downtime_accumulates() {
        let tracker = ActivityTracker::new();
        assert!(tracker.check_succeeded().is_none());
        assert!(tracker.check_failed());
        assert!(!tracker.check_failed(), "already down");
        std::thread::sleep(Duration::from_millis(5));
        let during = tracker.snapshot();
        assert!(during.current_downtime_ms >= 5, "{during:?}");
        assert_eq!(during.total_downtime_ms, during.current_downtime_ms);
        let down = tracker.check_succeeded().unwrap();
        let after = tracker.snapshot();
        assert_eq!(after.current_downtime_ms, 0);
        assert_eq!(after.total_downtime_ms, down.as_millis() as u64);
        assert!(after.total_downtime_ms >= 5);
        assert_eq!(after.checks, 2);
    }
}
