//! One observation of postgres' activity views (fetched in one round trip) and the pure
//! decision of what activity it shows.

use chrono::{DateTime, Utc};

use crate::ActivityReason;

/// The query behind an observation (`Observation`), run once per check (exported as
/// [`crate::OBSERVATION_QUERY`] for benchmarks). `$1` is the list of excluded user names. The
/// monitor's own backend is excluded by `pg_backend_pid()`; the `pg_stat_database` counters
/// leave out `postgres`, the templates and the monitor's own database, where its own sessions
/// would count. `statement_timestamp()` is "now" on the server's clock, the clock of
/// `state_change`, and earlier than any state change the statement did not see.
pub const OBSERVATION_QUERY: &str = "\
SELECT statement_timestamp() AS now,
  (SELECT count(*) FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
      AND usename::text <> ALL($1::text[]) AND state <> 'idle') AS busy_backends,
  (SELECT max(state_change) FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
      AND usename::text <> ALL($1::text[]) AND state = 'idle') AS last_idle_change,
  (SELECT count(*) FROM pg_stat_replication
    WHERE application_name IS DISTINCT FROM 'walproposer') AS wal_senders,
  (SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL) AS subscriptions,
  (SELECT count(*) FROM pg_stat_activity
    WHERE backend_type = 'autovacuum worker') AS autovacuum_workers,
  (SELECT coalesce(sum(sessions), 0)::int8 FROM pg_stat_database
    WHERE datname NOT IN ('postgres', 'template0', 'template1', current_database()))
    AS sessions,
  (SELECT coalesce(sum(active_time), 0)::float8 FROM pg_stat_database
    WHERE datname NOT IN ('postgres', 'template0', 'template1', current_database()))
    AS active_time";

/// Sums of `pg_stat_database` counters over the user databases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SessionCounters {
    pub(crate) sessions: i64,
    pub(crate) active_time: f64,
}

/// What one run of [`OBSERVATION_QUERY`] returned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observation {
    pub(crate) now: DateTime<Utc>,
    pub(crate) busy_backends: i64,
    pub(crate) last_idle_change: Option<DateTime<Utc>>,
    pub(crate) wal_senders: i64,
    pub(crate) subscriptions: i64,
    pub(crate) autovacuum_workers: i64,
    pub(crate) counters: SessionCounters,
}

impl Observation {
    pub(crate) fn from_row(
        row: &tokio_postgres::Row,
    ) -> Result<Observation, tokio_postgres::Error> {
        Ok(Observation {
            now: row.try_get("now")?,
            busy_backends: row.try_get("busy_backends")?,
            last_idle_change: row.try_get("last_idle_change")?,
            wal_senders: row.try_get("wal_senders")?,
            subscriptions: row.try_get("subscriptions")?,
            autovacuum_workers: row.try_get("autovacuum_workers")?,
            counters: SessionCounters {
                sessions: row.try_get("sessions")?,
                active_time: row.try_get("active_time")?,
            },
        })
    }
}

/// The activity an observation shows, in upstream's order of checks: changed database counters
/// (only when `previous_counters` is given, i.e. the feature is on and this is not the first
/// observation on a connection), a busy client backend, then — when no backend is busy — WAL
/// senders, subscriptions and autovacuum workers (all "active now"), and finally the latest
/// state change of an idle backend. `None`: nothing to record.
pub(crate) fn decide(
    observation: &Observation,
    previous_counters: Option<SessionCounters>,
) -> Option<(DateTime<Utc>, ActivityReason)> {
    let now = observation.now;
    if previous_counters.is_some_and(|previous| previous != observation.counters) {
        return Some((now, ActivityReason::DatabaseCounters));
    }
    let active_now = [
        (observation.busy_backends, ActivityReason::ActiveBackend),
        (observation.wal_senders, ActivityReason::WalSender),
        (observation.subscriptions, ActivityReason::Subscription),
        (observation.autovacuum_workers, ActivityReason::Autovacuum),
    ];
    if let Some((_, reason)) = active_now.iter().find(|(count, _)| *count > 0) {
        return Some((now, *reason));
    }
    observation
        .last_idle_change
        .map(|at| (at, ActivityReason::IdleBackend))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_in_order() {
        let now: DateTime<Utc> = "2024-05-01T12:00:00Z".parse().unwrap();
        let idle: DateTime<Utc> = "2024-05-01T11:59:00Z".parse().unwrap();
        let quiet = Observation {
            now,
            busy_backends: 0,
            last_idle_change: None,
            wal_senders: 0,
            subscriptions: 0,
            autovacuum_workers: 0,
            counters: SessionCounters {
                sessions: 3,
                active_time: 1.5,
            },
        };
        let check = |change: &dyn Fn(&mut Observation),
                     previous: Option<SessionCounters>,
                     expect: Option<(DateTime<Utc>, ActivityReason)>| {
            let mut observation = quiet.clone();
            change(&mut observation);
            assert_eq!(decide(&observation, previous), expect, "{observation:?}");
        };
        use ActivityReason::*;
        check(&|_| {}, None, None);
        check(&|_| {}, Some(quiet.counters), None);
        check(
            &|o| o.last_idle_change = Some(idle),
            None,
            Some((idle, IdleBackend)),
        );
        check(
            &|o| {
                o.last_idle_change = Some(idle);
                o.busy_backends = 1;
                o.wal_senders = 1;
            },
            None,
            Some((now, ActiveBackend)),
        );
        check(&|o| o.wal_senders = 2, None, Some((now, WalSender)));
        check(&|o| o.subscriptions = 1, None, Some((now, Subscription)));
        check(&|o| o.autovacuum_workers = 1, None, Some((now, Autovacuum)));
        let fewer = SessionCounters {
            sessions: 2,
            active_time: 1.5,
        };
        check(
            &|o| o.busy_backends = 1,
            Some(fewer),
            Some((now, DatabaseCounters)),
        );
        let shorter = SessionCounters {
            sessions: 3,
            active_time: 1.0,
        };
        check(&|_| {}, Some(shorter), Some((now, DatabaseCounters)));
    }
}
