//! All I/O of the crate: connecting, observing the catalog, and running a plan.
//!
//! Each phase runs on one connection to its database with every statement sent before any
//! answer is awaited (tokio-postgres pipelines requests that are in flight together), so a
//! phase costs one round trip (two with passwords, below). Each statement is its own simple-protocol `Query` message and so
//! its own implicit transaction: `CREATE DATABASE` and `DROP DATABASE` are allowed, and one
//! failing statement does not undo or block the others.
//!
//! A phase with a statement that carries a password first sets, at session level,
//! `log_statement = 'none'`, `log_min_error_statement = 'panic'` and
//! `log_min_duration_statement = -1`, and awaits that (PostgreSQL decides to log a simple query
//! when it parses it, so the settings must be in force before the password is sent, and must be
//! known to have succeeded). It then pipelines the phase's statements and a final `RESET` of the
//! three settings. Such a phase costs two round trips, and none of its statements is logged by
//! the server (they are in the plan, which the caller logs redacted). `SET LOCAL` inside a
//! transaction per statement was measured slower (three messages and six statements per role)
//! and is no safer.
//!
//! `neon.forward_ddl = off` is set in the startup packet of every connection (options
//! `-c neon.forward_ddl=off`): with the neon extension it stops DDL forwarding to the control
//! plane; on vanilla PostgreSQL it defines a harmless placeholder setting. It costs no round
//! trip.
//!
//! Note: tokio-postgres logs every statement text at `debug` level through the `log` crate;
//! keep the `tokio_postgres` target at `info` or above, or password hashes reach the log.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use compute_spec::ValidatedSpec;
use futures::future::MaybeDone;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

use crate::catalog::{CATALOG_QUERY, Catalog, parse_catalog};
use crate::error::{OperationError, ReconcileError};
use crate::plan::{Operation, PhaseKind, Plan, PlanOptions, plan};

/// Counts round trips and connections, for benchmarks and reports.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    round_trips: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

impl Counters {
    /// Request/response exchanges awaited so far (one per phase or catalog query; connection
    /// start-up not included).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Connections opened so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    fn round_trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }
}

/// Startup options that undo per-database and per-role settings (`ALTER DATABASE … SET`,
/// `ALTER ROLE … SET`) that would break reconciliation: a `role` that would run the statements
/// as another, unprivileged role (`none` is the session user), `default_transaction_read_only`,
/// a small `statement_timeout`, and a `search_path` placing other schemas before `pg_catalog`.
/// Options sent by the client take precedence over those settings, whatever their order.
pub const SESSION_GUARDS: &str = "-c role=none -c default_transaction_read_only=off \
                                  -c statement_timeout=0 -c search_path=pg_catalog";

/// An open connection to one database, with its counters.
pub struct Session {
    client: Client,
    database: String,
    counters: Counters,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    /// Connects to `database` with `base` (its own dbname is replaced), without TLS, setting
    /// `application_name`, [`SESSION_GUARDS`] (before `base`'s own options, which may override
    /// them) and `neon.forward_ddl = off`.
    pub async fn connect(
        base: &Config,
        database: &str,
        counters: &Counters,
    ) -> Result<Session, ReconcileError> {
        let mut config = base.clone();
        config.dbname(database);
        if config.get_application_name().is_none() {
            config.application_name("compute_ctl:apply_config");
        }
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{SESSION_GUARDS} {o} -c neon.forward_ddl=off"),
            _ => format!("{SESSION_GUARDS} -c neon.forward_ddl=off"),
        };
        config.options(&options);
        let (client, connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|source| ReconcileError::Connect {
                    database: database.to_owned(),
                    source,
                })?;
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "reconcile connection ended");
            }
        });
        Ok(Session {
            client,
            database: database.to_owned(),
            counters: counters.clone(),
            task,
        })
    }

    /// The database this session is connected to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The client, for callers that need more than this crate offers.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads the catalog in one round trip, inside a `READ ONLY` transaction.
    pub async fn observe(&self) -> Result<Catalog, ReconcileError> {
        let messages = self
            .client
            .simple_query(CATALOG_QUERY)
            .await
            .map_err(|source| ReconcileError::Observe {
                database: self.database.clone(),
                source,
            })?;
        self.counters.round_trip();
        // Result sets are separated by CommandComplete; the first one ends `BEGIN`, the last
        // one `COMMIT`.
        let mut sets: Vec<Vec<&tokio_postgres::SimpleQueryRow>> = vec![Vec::new()];
        for m in &messages {
            match m {
                SimpleQueryMessage::Row(row) => sets.last_mut().expect("never empty").push(row),
                SimpleQueryMessage::CommandComplete(_) => sets.push(Vec::new()),
                _ => {}
            }
        }
        let sets = sets
            .get(1..sets.len().saturating_sub(2))
            .unwrap_or_default();
        parse_catalog(sets).map_err(ReconcileError::CatalogFormat)
    }

    /// Runs `operations` pipelined: all are sent, then all answers awaited (one round trip; two
    /// when a statement carries a password, see the module docs). Returns one result per
    /// operation, in order.
    pub async fn run(&self, operations: &[Operation]) -> Vec<Result<(), OperationError>> {
        if operations.is_empty() {
            return Vec::new();
        }
        let secret = operations.iter().any(|op| op.statement.has_secret());
        if secret {
            // Awaited before anything else is sent: if it failed, the statements after it
            // would be logged.
            let quiet = self.client.simple_query(QUIET).await;
            self.counters.round_trip();
            if let Err(e) = quiet {
                return operations
                    .iter()
                    .map(|op| Err(OperationError::from_pg(op.object.to_string(), &e)))
                    .collect();
            }
        }
        let mut futures: Vec<BoxedFuture<'_, Result<(), OperationError>>> = operations
            .iter()
            .map(|op| {
                Box::pin(async move {
                    self.client
                        .simple_query(op.statement.expose_sql())
                        .await
                        .map(drop)
                        .map_err(|e| OperationError::from_pg(op.object.to_string(), &e))
                }) as BoxedFuture<'_, _>
            })
            .collect();
        if secret {
            futures.push(Box::pin(async move {
                if let Err(e) = self.client.simple_query(UNQUIET).await {
                    tracing::warn!(error = %e, "reconcile: cannot restore statement logging");
                }
                Ok(())
            }));
        }
        let mut results = join_in_send_order(futures).await;
        results.truncate(operations.len());
        self.counters.round_trip();
        results
    }
}

/// Session settings under which no statement text reaches the server log: not as a logged
/// statement, not as the statement of an error, not as a slow statement.
const QUIET: &str = "SET log_statement = 'none'; SET log_min_error_statement = 'panic'; \
     SET log_min_duration_statement = -1";

/// Back to the server's configuration.
const UNQUIET: &str =
    "RESET log_statement; RESET log_min_error_statement; RESET log_min_duration_statement";

type BoxedFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Polls every future once in order (each sends its request on first poll, so requests leave
/// in operation order), then awaits them all together. `join_all` alone does not promise the
/// order of first polls for long lists.
async fn join_in_send_order<'a, T: Send + 'a>(futures: Vec<BoxedFuture<'a, T>>) -> Vec<T> {
    let mut slots: Vec<Pin<Box<MaybeDone<BoxedFuture<'a, T>>>>> = futures
        .into_iter()
        .map(|f| Box::pin(futures::future::maybe_done(f)))
        .collect();
    std::future::poll_fn(|cx| {
        for slot in &mut slots {
            let _ = slot.as_mut().poll(cx);
        }
        std::task::Poll::Ready(())
    })
    .await;
    futures::future::join_all(slots.iter_mut().map(|s| s.as_mut())).await;
    slots
        .iter_mut()
        .map(|s| s.as_mut().take_output().expect("joined"))
        .collect()
}

/// What happened to one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The statement succeeded.
    Ok,
    /// The statement failed (or its connection could not be opened).
    Failed(OperationError),
    /// Not run, because an earlier phase failed.
    NotRun,
}

/// How long one phase took (connection included when it opened one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseTiming {
    /// The phase.
    pub kind: PhaseKind,
    /// Its database.
    pub database: String,
    /// Number of operations.
    pub operations: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// The result of applying a plan: one [`Outcome`] per operation, in plan order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// One outcome per operation of [`Plan::operations`], in the same order.
    pub outcomes: Vec<Outcome>,
    /// One entry per phase that ran.
    pub timings: Vec<PhaseTiming>,
}

impl ApplyReport {
    /// Whether every operation succeeded.
    pub fn is_success(&self) -> bool {
        self.outcomes.iter().all(|o| *o == Outcome::Ok)
    }

    /// The errors, in plan order.
    pub fn errors(&self) -> impl Iterator<Item = &OperationError> {
        self.outcomes.iter().filter_map(|o| match o {
            Outcome::Failed(e) => Some(e),
            _ => None,
        })
    }

    /// Whether every failure may go away by running again (false when there is none).
    pub fn is_retryable(&self) -> bool {
        let mut errors = self.errors().peekable();
        errors.peek().is_some() && errors.all(OperationError::is_retryable)
    }
}

/// Runs `plan`, phase by phase, connecting with `base` (dbname replaced per phase). `system`,
/// when given, is reused for phases on its database. Stops after the first phase with a
/// failure: later phases depend on earlier ones; their operations are reported
/// [`Outcome::NotRun`], and the next run plans them again from the catalog.
pub async fn apply(
    plan: &Plan,
    base: &Config,
    system: Option<&Session>,
    counters: &Counters,
) -> ApplyReport {
    let mut outcomes = Vec::with_capacity(plan.operation_count());
    let mut own: Option<Session> = None;
    let mut failed = false;
    let mut timings = Vec::new();
    for phase in &plan.phases {
        let start = Instant::now();
        if failed {
            outcomes.extend(phase.operations.iter().map(|_| Outcome::NotRun));
            continue;
        }
        if system.is_none_or(|s| s.database != phase.database)
            && own.as_ref().is_none_or(|s| s.database != phase.database)
        {
            own = None;
            match Session::connect(base, &phase.database, counters).await {
                Ok(s) => own = Some(s),
                Err(e) => {
                    let retryable = e.is_retryable();
                    tracing::warn!(database = %phase.database, error = %e, "reconcile: cannot connect");
                    outcomes.extend(phase.operations.iter().map(|op| {
                        Outcome::Failed(OperationError {
                            object: op.object.to_string(),
                            sqlstate: None,
                            message: e.to_string(),
                            retryable,
                        })
                    }));
                    failed = true;
                    continue;
                }
            }
        }
        let session = match system {
            Some(s) if s.database == phase.database => s,
            _ => own.as_ref().expect("connected above"),
        };
        for result in session.run(&phase.operations).await {
            match result {
                Ok(()) => outcomes.push(Outcome::Ok),
                Err(e) => {
                    failed = true;
                    outcomes.push(Outcome::Failed(e));
                }
            }
        }
        if failed {
            let errors: Vec<String> = outcomes
                .iter()
                .filter_map(|o| match o {
                    Outcome::Failed(e) => Some(e.to_string()),
                    _ => None,
                })
                .collect();
            tracing::warn!(phase = phase.kind.name(), database = %phase.database, ?errors, "reconcile phase failed");
        }
        tracing::info!(
            phase = phase.kind.name(),
            database = %phase.database,
            operations = phase.operations.len(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            "reconcile phase done"
        );
        timings.push(PhaseTiming {
            kind: phase.kind,
            database: phase.database.clone(),
            operations: phase.operations.len(),
            elapsed: start.elapsed(),
        });
    }
    ApplyReport { outcomes, timings }
}

/// What [`reconcile`] did.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// The plan that was applied.
    pub plan: Plan,
    /// The outcome of each operation.
    pub report: ApplyReport,
}

/// Connects to the system database, observes, plans and applies: the entry point for
/// compute_ctl. Fails without changing anything when the spec cannot be planned.
pub async fn reconcile(
    spec: &ValidatedSpec,
    options: &PlanOptions,
    base: &Config,
    counters: &Counters,
) -> Result<Reconciled, ReconcileError> {
    let session = Session::connect(base, &options.system_database, counters).await?;
    let catalog = session.observe().await?;
    let plan = plan(spec, &catalog, options)?;
    let report = apply(&plan, base, Some(&session), counters).await;
    Ok(Reconciled { plan, report })
}

/// Connects to the system database, observes inside a `READ ONLY` transaction and plans, without
/// changing anything: the entry point for `spec-check --plan --connstr URL`. `connstr` is a
/// libpq URL or key=value string.
pub async fn plan_read_only(
    spec: &ValidatedSpec,
    options: &PlanOptions,
    connstr: &str,
) -> Result<Plan, ReconcileError> {
    let mut base: Config = connstr.parse().map_err(|source| ReconcileError::Connect {
        database: options.system_database.clone(),
        source,
    })?;
    // Belt and braces: the whole session is read-only, not only the observing transaction.
    let read_only = match base.get_options() {
        Some(o) if !o.is_empty() => format!("{o} -c default_transaction_read_only=on"),
        _ => "-c default_transaction_read_only=on".to_owned(),
    };
    base.options(&read_only);
    let database = base
        .get_dbname()
        .map(str::to_owned)
        .unwrap_or_else(|| options.system_database.clone());
    let counters = Counters::default();
    let session = Session::connect(&base, &database, &counters).await?;
    let catalog = session.observe().await?;
    Ok(plan(spec, &catalog, options)?)
}
