//! The monitor task: polls postgres every interval, records activity into an
//! [`ActivityTracker`], reconnects with backoff, and stops on cancellation.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, Statement};
use tokio_util::sync::CancellationToken;

use crate::ActivityTracker;
use crate::observation::{OBSERVATION_QUERY, Observation, SessionCounters, decide};

/// `application_name` of the monitor's connection, visible in `pg_stat_activity`.
pub const MONITOR_APPLICATION_NAME: &str = "compute_ctl:activity_monitor";

/// How the monitor runs.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// How to connect (compute_ctl's `--connstr`, as a superuser; preferably to the `postgres`
    /// database). The application name is set to [`MONITOR_APPLICATION_NAME`].
    pub connection: tokio_postgres::Config,
    /// Time between checks. Default 500 ms, as upstream.
    pub interval: Duration,
    /// Users whose sessions are not activity: compute_ctl's own role(s). Default: the
    /// connection's user.
    pub excluded_users: Vec<String>,
    /// Also count changes of the `pg_stat_database` session counters (`sessions`,
    /// `active_time`) as activity; catches connections shorter than the interval. Upstream's
    /// feature flag `activity_monitor_experimental`. Default off.
    pub database_counters: bool,
    /// Longest wait between reconnection attempts (the wait starts at `interval` and doubles).
    /// Default 5 s.
    pub max_backoff: Duration,
    /// Longest time a connection attempt or a check may take before it counts as failed.
    /// Default 10 s.
    pub check_timeout: Duration,
}

impl MonitorConfig {
    /// Defaults for `connection`; its user is the one excluded user.
    pub fn new(connection: tokio_postgres::Config) -> MonitorConfig {
        let excluded_users = connection
            .get_user()
            .map(str::to_owned)
            .into_iter()
            .collect();
        MonitorConfig {
            connection,
            interval: Duration::from_millis(500),
            excluded_users,
            database_counters: false,
            max_backoff: Duration::from_secs(5),
            check_timeout: Duration::from_secs(10),
        }
    }
}

/// Starts [`run`] on the current tokio runtime.
pub fn spawn(
    config: MonitorConfig,
    tracker: Arc<ActivityTracker>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(config, tracker, cancel))
}

/// One connection and what belongs to it.
struct Session {
    client: Client,
    statement: Statement,
    counters: Option<SessionCounters>,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// Polls until `cancel` fires. Never panics and never gives up: a failed connection or check
/// starts a downtime in `tracker` and is retried with backoff; the last activity is kept.
///
/// Start it once the compute is Running (upstream waits for that too), so that compute_ctl's
/// own connections during configuration are not counted.
pub async fn run(config: MonitorConfig, tracker: Arc<ActivityTracker>, cancel: CancellationToken) {
    let mut connection = config.connection.clone();
    connection.application_name(MONITOR_APPLICATION_NAME);
    let mut session: Option<Session> = None;
    let mut backoff = config.interval;
    loop {
        let check = check_once(&connection, &config, &mut session);
        // Cancellation first: a check that fails because postgres is being stopped after the
        // token was cancelled is no failure to report.
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            result = tokio::time::timeout(config.check_timeout, check) => result,
        };
        // A poll that began just before the token was cancelled can still see postgres close
        // the connection: once cancelled, no failure is reported.
        if result.as_ref().map_or(true, Result::is_err) && cancel.is_cancelled() {
            return;
        }
        let wait = match result {
            Ok(Ok(activity)) => {
                if let Some(down) = tracker.check_succeeded() {
                    tracing::info!(
                        downtime_ms = down.as_millis() as u64,
                        "activity monitor reached postgres again"
                    );
                }
                if let Some((at, reason)) = activity {
                    tracker.record_activity(at, reason);
                }
                backoff = config.interval;
                config.interval
            }
            Ok(Err(error)) => {
                if tracker.check_failed() {
                    tracing::warn!(%error, "activity monitor cannot reach postgres, retrying");
                }
                session = None;
                next_backoff(&mut backoff, config.max_backoff)
            }
            Err(_elapsed) => {
                if tracker.check_failed() {
                    tracing::warn!(
                        timeout_ms = config.check_timeout.as_millis() as u64,
                        "activity check timed out, reconnecting"
                    );
                }
                session = None;
                next_backoff(&mut backoff, config.max_backoff)
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn next_backoff(backoff: &mut Duration, max: Duration) -> Duration {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(max);
    wait
}

/// Connects if needed, then runs one observation and decides.
async fn check_once(
    connection: &tokio_postgres::Config,
    config: &MonitorConfig,
    session: &mut Option<Session>,
) -> Result<Option<(chrono::DateTime<chrono::Utc>, crate::ActivityReason)>, tokio_postgres::Error> {
    if session.as_ref().is_some_and(|s| s.client.is_closed()) {
        *session = None;
    }
    let session = match session {
        Some(session) => session,
        None => session.insert(connect(connection).await?),
    };
    let row = session
        .client
        .query_one(&session.statement, &[&config.excluded_users])
        .await?;
    let observation = Observation::from_row(&row)?;
    let previous = session.counters.replace(observation.counters);
    let previous = if config.database_counters {
        previous
    } else {
        None
    };
    Ok(decide(&observation, previous))
}

async fn connect(config: &tokio_postgres::Config) -> Result<Session, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let connection = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "activity monitor connection ended");
        }
    });
    let statement = client.prepare(OBSERVATION_QUERY).await?;
    Ok(Session {
        client,
        statement,
        counters: None,
        connection,
    })
}
