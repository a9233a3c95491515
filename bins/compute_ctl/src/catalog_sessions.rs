//! The one budget of PostgreSQL sessions the catalog routes share (`/dbs_and_roles`,
//! `/check_writability`, `/insights`, `/database_schema`, `/grants`, `/extensions`): at most
//! [`CatalogLimits::max_sessions`] at a time, a request waiting at most
//! [`CatalogLimits::queue_timeout`] for its turn (then [`SessionError::Busy`], answered 429
//! with `Retry-After`), a bounded connect, and `statement_timeout` and `lock_timeout` on every
//! statement, so that a request storm never takes the users' connection slots and a hung
//! postgres is an answer (503) within a bound rather than a hang. Sessions are not kept
//! between requests: each holds a slot of the budget while it lives.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;

use crate::catalog;

/// The limits of the catalog routes' sessions (`--catalog-*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CatalogLimits {
    /// Sessions open at once, all routes together.
    pub(crate) max_sessions: usize,
    /// How long a request waits for a session slot.
    pub(crate) queue_timeout: Duration,
    /// `statement_timeout` of the sessions; the connect is bounded by it too, and
    /// `lock_timeout` is half of it.
    pub(crate) statement_timeout: Duration,
}

impl CatalogLimits {
    /// The limits of the `--catalog-*` flags.
    pub(crate) fn from_options(opts: &crate::cli::Options) -> CatalogLimits {
        let flags = &opts.http_limits;
        CatalogLimits {
            max_sessions: flags.catalog_max_sessions as usize,
            queue_timeout: flags.catalog_queue_timeout,
            statement_timeout: flags.catalog_statement_timeout,
        }
    }

    /// The whole bound of one request's work on its session: a few statements, each within
    /// `statement_timeout`, plus the connect.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.statement_timeout * 3
    }

    /// The startup options that bound the session's statements.
    fn options(&self) -> String {
        format!(
            "-c statement_timeout={} -c lock_timeout={}",
            self.statement_timeout.as_millis().max(1),
            (self.statement_timeout / 2).as_millis().max(1)
        )
    }
}

/// Why no session could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// Every slot stayed taken for the whole queue wait.
    #[error(
        "too many catalog requests: all {max} sessions stayed busy for {waited:?}; retry later"
    )]
    Busy {
        /// The number of slots.
        max: usize,
        /// How long the request waited.
        waited: Duration,
    },
    /// Postgres did not give a session in time, or could not be reached.
    #[error("postgres is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// Postgres answered the connect with an error (an unknown database, …).
    #[error("{0:#}")]
    Refused(anyhow::Error),
}

/// The shared budget.
#[derive(Debug)]
pub(crate) struct CatalogSessions {
    permits: Arc<Semaphore>,
    limits: CatalogLimits,
}

/// How long a closed session's connection may take to end before its slot is given back
/// anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A session of the budget: a client, and its slot until the session is closed (dropped) and
/// its connection has ended, so that a slot never stands for two backends.
#[derive(Debug)]
pub(crate) struct CatalogSession {
    /// `Some` until dropped.
    client: Option<Client>,
    connection: Option<tokio::task::JoinHandle<()>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Deref for CatalogSession {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect("only None once dropped")
    }
}

impl CatalogSession {
    /// Closes the session but keeps its slot, for work that makes its own connection
    /// (`pg_dump`).
    pub(crate) async fn into_slot(mut self) -> Option<OwnedSemaphorePermit> {
        drop(self.client.take());
        if let Some(connection) = self.connection.take() {
            let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
        }
        self.permit.take()
    }
}

impl Drop for CatalogSession {
    fn drop(&mut self) {
        drop(self.client.take());
        let (Some(connection), Some(permit)) = (self.connection.take(), self.permit.take()) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
                drop(permit);
            });
        }
    }
}

impl CatalogSessions {
    /// A budget of `limits.max_sessions` (at least 1).
    pub(crate) fn new(limits: CatalogLimits) -> CatalogSessions {
        CatalogSessions {
            permits: Arc::new(Semaphore::new(limits.max_sessions.max(1))),
            limits,
        }
    }

    /// Waits for a slot (at most the queue timeout), then connects as an admin session
    /// (`catalog::connect`'s guards) to `dbname` (`None`: the connection string's), its
    /// statements bounded.
    pub(crate) async fn open(
        &self,
        pg: &tokio_postgres::Config,
        guards: pg_reconcile::SessionGuards,
        dbname: Option<&str>,
    ) -> Result<CatalogSession, SessionError> {
        let permit = self.slot().await?;
        let (client, connection) = catalog::connect_bounded(
            pg,
            guards,
            dbname,
            self.limits.statement_timeout,
            &self.limits.options(),
        )
        .await
        .map_err(|e| {
            let answered = e
                .downcast_ref::<tokio_postgres::Error>()
                .is_some_and(|e| e.as_db_error().is_some());
            if answered {
                SessionError::Refused(e)
            } else {
                SessionError::Unavailable(e)
            }
        })?;
        Ok(CatalogSession {
            client: Some(client),
            connection: Some(connection),
            permit: Some(permit),
        })
    }

    async fn slot(&self) -> Result<OwnedSemaphorePermit, SessionError> {
        let wait = self.limits.queue_timeout;
        match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed.
            Ok(Err(_)) | Err(_) => Err(SessionError::Busy {
                max: self.limits.max_sessions.max(1),
                waited: wait,
            }),
        }
    }

    /// Runs `work` (a request's use of its session) within [`CatalogLimits::request_timeout`]:
    /// a backend that stopped answering mid-statement is [`SessionError::Unavailable`] too.
    pub(crate) async fn bounded<T, E>(
        &self,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        E: From<SessionError>,
    {
        let limit = self.limits.request_timeout();
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(E::from(SessionError::Unavailable(anyhow::anyhow!(
                "no answer within {limit:?}"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, queue_ms: u64) -> CatalogLimits {
        CatalogLimits {
            max_sessions: max,
            queue_timeout: Duration::from_millis(queue_ms),
            statement_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn options_bound_statements_and_locks() {
        assert_eq!(
            limits(4, 1).options(),
            "-c statement_timeout=10000 -c lock_timeout=5000"
        );
        assert_eq!(limits(4, 1).request_timeout(), Duration::from_secs(30));
    }

    /// With every slot taken, a request waits the queue timeout and is refused as busy; a
    /// slot given back is taken by the next one.
    #[tokio::test]
    async fn a_full_budget_refuses_after_the_queue_wait() {
        let sessions = CatalogSessions::new(limits(2, 200));
        let first = sessions.slot().await.unwrap();
        let _second = sessions.slot().await.unwrap();
        let started = std::time::Instant::now();
        let refused = sessions.slot().await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(
            matches!(refused, SessionError::Busy { max: 2, .. }),
            "{refused}"
        );
        let waiting = tokio::spawn(async move {
            let sessions = sessions;
            sessions.slot().await.map(drop)
        });
        drop(first);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn work_past_the_bound_is_unavailable() {
        let sessions = CatalogSessions::new(CatalogLimits {
            statement_timeout: Duration::from_millis(50),
            ..limits(1, 10)
        });
        let result: Result<(), SessionError> = sessions
            .bounded(async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            })
            .await;
        assert!(
            matches!(result, Err(SessionError::Unavailable(_))),
            "{result:?}"
        );
    }
}
