//! All I/O of the crate: connecting, observing the catalog, and running a plan.
//!
//! Each phase runs on one connection to its database with every statement sent before any
//! answer is awaited (tokio-postgres pipelines requests that are in flight together), so a
//! phase costs one round trip (two with passwords, below). A phase whose operations on
//! different objects are independent ([`Dependencies::SameObject`](crate::Dependencies), the
//! creation of databases) is spread over up to four sessions within the [`Connector`]'s
//! budget, each running one object's chain at a time (see `run_phase`). Each statement is its own simple-protocol `Query` message and so
//! its own implicit transaction: `CREATE DATABASE` and `DROP DATABASE` are allowed, and one
//! failing statement does not undo or block the others.
//!
//! A phase with a statement that carries a password first sets, at session level,
//! `log_statement = 'none'`, `log_min_error_statement = 'panic'`,
//! `log_min_duration_statement = -1`, `pgaudit.log = 'none'`, `pg_stat_statements.track =
//! 'none'` and `track_activities = off`, and awaits that (PostgreSQL decides to log a simple query
//! when it parses it, so the settings must be in force before the password is sent, and must be
//! known to have succeeded). It then pipelines the phase's statements and a final `RESET` of the
//! six settings. Such a phase costs two round trips, and none of its statements is logged by
//! the server (they are in the plan, which the caller logs redacted). `SET LOCAL` inside a
//! transaction per statement was measured slower (three messages and six statements per role)
//! and is no safer.
//!
//! Observation ([`observe_cluster`]) is one round trip on the system database (catalog and
//! that database's contents together) and one per other spec database (its contents), each on
//! a session that stays open for the apply when the plan has work there (up to
//! 16). Every session starts with the [`SessionGuards`] options (see the
//! `guards` module), in the startup packet: no round trip.
//!
//! Note: tokio-postgres logs every statement text at `debug` level through the `log` crate;
//! keep the `tokio_postgres` target at `info` or above, or password hashes reach the log.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use compute_spec::ValidatedSpec;
use futures::StreamExt;
use futures::future::MaybeDone;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage, SimpleQueryRow};

use crate::catalog::{
    CATALOG_AND_CONTENTS_QUERY, CATALOG_QUERY, CATALOG_SETS, CONTENTS_QUERY, Catalog,
    DatabaseContents, parse_catalog, parse_contents,
};
use crate::error::{OperationError, ReconcileError};
use crate::guards::SessionGuards;
use crate::plan::{Operation, Phase, PhaseKind, Plan, PlanOptions, Unobserved, plan, plan_with};

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

/// How to open admin sessions: the connection settings (dbname replaced per session), the
/// [`SessionGuards`] placed before the settings' own options, and the counters.
#[derive(Debug, Clone)]
pub struct Connector {
    base: Config,
    guards: SessionGuards,
    counters: Counters,
    max_sessions: Option<usize>,
    connect_bound: Duration,
}

/// How long a session may take to be ready by default (TCP connection, authentication and
/// the server's startup answers): a postmaster that accepts sockets but never answers (stopped,
/// wedged) fails the connection instead of holding it forever.
pub const CONNECT_BOUND: Duration = Duration::from_secs(30);

impl Connector {
    /// Sessions like `base`, guarded by `guards`, counted in `counters`.
    pub fn new(base: &Config, guards: SessionGuards, counters: &Counters) -> Connector {
        Connector {
            base: base.clone(),
            guards,
            counters: counters.clone(),
            max_sessions: None,
            connect_bound: CONNECT_BOUND,
        }
    }

    /// Bounds each session's connection, ready to answer, by `bound` instead of
    /// [`CONNECT_BOUND`] (a longer `connect_timeout` in the base settings wins).
    pub fn connect_bound(mut self, bound: Duration) -> Connector {
        self.connect_bound = bound;
        self
    }

    /// At most `limit` (at least 1) spec databases observed at once, each on its own session
    /// beside the system database's, and at most `limit + 1` sessions open during the apply
    /// (kept ones and those a phase of independent operations adds); by default 8 observe at
    /// once and up to 16 are open.
    pub fn max_sessions(mut self, limit: usize) -> Connector {
        self.max_sessions = Some(limit.max(1));
        self
    }

    /// (databases observed at once, sessions kept open for the apply).
    fn session_limits(&self) -> (usize, usize) {
        match self.max_sessions {
            Some(limit) => (limit, limit + 1),
            None => (OBSERVING_SESSIONS, KEPT_SESSIONS),
        }
    }

    /// Connects to `database` without TLS, setting `application_name` (unless the base sets
    /// one) and the guards' startup options (see the `guards` module).
    pub async fn connect(&self, database: &str) -> Result<Session, ReconcileError> {
        let mut config = self.base.clone();
        config.dbname(database);
        if config.get_application_name().is_none() {
            config.application_name("compute_ctl:apply_config");
        }
        self.guards.apply_to(&mut config);
        // A longer `connect_timeout` of the connection string is kept.
        let bound = config
            .get_connect_timeout()
            .map_or(self.connect_bound, |t| (*t).max(self.connect_bound));
        let connected = tokio::time::timeout(bound, config.connect(NoTls)).await;
        let (client, connection) = connected
            .map_err(|_| ReconcileError::ConnectTimedOut {
                database: database.to_owned(),
                after: bound,
            })?
            .map_err(|source| ReconcileError::Connect {
                database: database.to_owned(),
                source,
            })?;
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %crate::error::chained(&e), "reconcile connection ended");
            }
        });
        Ok(Session {
            client,
            database: database.to_owned(),
            counters: self.counters.clone(),
            task,
        })
    }
}

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
    /// Connects to `database` with `base` (its own dbname is replaced), without TLS, with the
    /// default [`SessionGuards`] (no `pgaudit`): a shorthand for [`Connector::connect`].
    pub async fn connect(
        base: &Config,
        database: &str,
        counters: &Counters,
    ) -> Result<Session, ReconcileError> {
        Connector::new(base, SessionGuards::default(), counters)
            .connect(database)
            .await
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
        let sets = self.query_sets(CATALOG_QUERY).await?;
        parse_catalog(&sets.iter().map(|s| s.iter().collect()).collect::<Vec<_>>())
            .map_err(ReconcileError::CatalogFormat)
    }

    /// Reads the contents of this session's database in one round trip, inside a `READ ONLY`
    /// transaction.
    pub async fn observe_contents(&self) -> Result<DatabaseContents, ReconcileError> {
        let sets = self.query_sets(CONTENTS_QUERY).await?;
        parse_contents(&sets.iter().map(|s| s.iter().collect()).collect::<Vec<_>>())
            .map_err(ReconcileError::CatalogFormat)
    }

    /// Reads the catalog and this session's database contents in one round trip.
    async fn observe_with_contents(&self) -> Result<Catalog, ReconcileError> {
        let sets = self.query_sets(CATALOG_AND_CONTENTS_QUERY).await?;
        let sets: Vec<Vec<&SimpleQueryRow>> = sets.iter().map(|s| s.iter().collect()).collect();
        let (catalog_sets, contents_sets) = sets.split_at(sets.len().min(CATALOG_SETS));
        let mut catalog = parse_catalog(catalog_sets).map_err(ReconcileError::CatalogFormat)?;
        let contents = parse_contents(contents_sets).map_err(ReconcileError::CatalogFormat)?;
        if let Some(db) = catalog.databases.get_mut(&self.database) {
            db.contents = Some(contents);
        }
        Ok(catalog)
    }

    /// The digest the last full apply recorded (`digest` module); `None` when there is none
    /// or it cannot be read.
    async fn recorded_digest(&self) -> Option<String> {
        let exists = self.client.simple_query(crate::digest::EXISTS).await.ok()?;
        self.counters.round_trip();
        if first_row(exists)?.get(0) != Some("t") {
            return None;
        }
        let read = self.client.simple_query(crate::digest::READ).await.ok()?;
        self.counters.round_trip();
        first_row(read)?.get(0).map(str::to_owned)
    }

    /// Records `digest` after a successful full apply; a failure only costs the next start
    /// its full observation, so it is logged, not returned.
    async fn record_digest(&self, digest: &str) {
        match self
            .client
            .batch_execute(&crate::digest::record_sql(digest))
            .await
        {
            Ok(()) => self.counters.round_trip(),
            Err(e) => {
                tracing::warn!(error = %crate::error::chained(&e), "could not record the catalog digest")
            }
        }
    }

    /// Sends `query` (`BEGIN READ ONLY; …; COMMIT`) and returns the rows of each statement
    /// between `BEGIN` and `COMMIT`, one vector per statement.
    async fn query_sets(&self, query: &str) -> Result<Vec<Vec<SimpleQueryRow>>, ReconcileError> {
        let messages =
            self.client
                .simple_query(query)
                .await
                .map_err(|source| ReconcileError::Observe {
                    database: self.database.clone(),
                    source,
                })?;
        self.counters.round_trip();
        // Result sets are separated by CommandComplete; the first one ends `BEGIN`, the last
        // one `COMMIT`.
        let mut sets: Vec<Vec<SimpleQueryRow>> = vec![Vec::new()];
        for m in messages {
            match m {
                SimpleQueryMessage::Row(row) => sets.last_mut().expect("never empty").push(row),
                SimpleQueryMessage::CommandComplete(_) => sets.push(Vec::new()),
                _ => {}
            }
        }
        let end = sets.len().saturating_sub(2);
        Ok(sets.drain(..).take(end).skip(1).collect())
    }

    /// Runs `operations` pipelined: all are sent, then all answers awaited (one round trip; two
    /// when a statement carries a password, see the module docs). Returns one result per
    /// operation, in order.
    pub async fn run(&self, operations: &[Operation]) -> Vec<Result<(), OperationError>> {
        self.run_refs(&operations.iter().collect::<Vec<_>>()).await
    }

    /// [`Session::run`] of operations that need not be next to one another in their phase.
    async fn run_refs(&self, operations: &[&Operation]) -> Vec<Result<(), OperationError>> {
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
                    tracing::warn!(error = %crate::error::chained(&e), "reconcile: cannot restore statement logging");
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

/// The first row of a simple query's answer, if any.
pub(crate) fn first_row(messages: Vec<SimpleQueryMessage>) -> Option<SimpleQueryRow> {
    messages.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })
}

/// Session settings under which no statement text reaches the server log (not as a logged
/// statement, not as the statement of an error, not as a slow statement) or a statistics
/// view: `pg_stat_statements` records no statement of the session
/// (`pg_stat_statements.track = 'none'`), and `pg_stat_activity` shows no query text while a
/// statement runs (`track_activities = off`). Nor a parse, rewrite or plan tree
/// (`debug_print_*`: PostgreSQL 15 prints a utility statement's tree as `utilityStmt ?`, later
/// versions print its fields, a password among them).
/// `pgaudit.log` and `pg_stat_statements.track` whether or not the library is loaded (it can
/// be preloaded by `cluster.postgresql_conf`, which the guard does not read); without it they
/// are harmless placeholders. All are superuser settings: a session that may not set them
/// fails here, before a secret is sent.
const QUIET: &str = "SET log_statement = 'none'; SET log_min_error_statement = 'panic'; \
     SET log_min_duration_statement = -1; SET pgaudit.log = 'none'; \
     SET pg_stat_statements.track = 'none'; SET track_activities = off; \
     SET debug_print_parse = off; SET debug_print_rewritten = off; SET debug_print_plan = off";

/// Back to the server's configuration.
const UNQUIET: &str = "RESET log_statement; RESET log_min_error_statement; \
     RESET log_min_duration_statement; RESET pgaudit.log; RESET pg_stat_statements.track; \
     RESET track_activities; RESET debug_print_parse; RESET debug_print_rewritten; \
     RESET debug_print_plan";

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

/// Runs `plan`, phase by phase. A phase on the database of one of the `open` sessions runs
/// there; otherwise `connector` opens a session, kept while the next phases are on the same
/// database. Stops after the first phase with a failure: later phases depend on earlier ones;
/// their operations are reported [`Outcome::NotRun`], and the next run plans them again from
/// the catalog.
pub async fn apply(plan: &Plan, connector: &Connector, open: &[Session]) -> ApplyReport {
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
        let kept = open.iter().find(|s| s.database == phase.database);
        if kept.is_none() && own.as_ref().is_none_or(|s| s.database != phase.database) {
            own = None;
            match connector.connect(&phase.database).await {
                Ok(s) => own = Some(s),
                Err(e) => {
                    let retryable = e.is_retryable();
                    let message = crate::error::chained(&e);
                    tracing::warn!(database = %phase.database, error = %message, "reconcile: cannot connect");
                    outcomes.extend(phase.operations.iter().map(|op| {
                        Outcome::Failed(OperationError {
                            object: op.object.to_string(),
                            sqlstate: None,
                            message: message.clone(),
                            retryable,
                        })
                    }));
                    failed = true;
                    continue;
                }
            }
        }
        let session = kept.unwrap_or_else(|| own.as_ref().expect("connected above"));
        let opened = open.len() + usize::from(own.is_some());
        for result in run_phase(phase, session, connector, opened).await {
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

/// Sessions one phase of independent operations is spread over, at most (the phase's own
/// and up to three more, within the [`Connector`]'s budget). Creating 20 databases took
/// 0.72–0.92 of the one-session time on four sessions and 0.85–0.95 on two, medians of two
/// runs of 9 rounds on a loaded 2-core machine (`benches/create_databases.rs`):
/// `CREATE DATABASE` waits on I/O as much as on a core.
const PHASE_SESSIONS: usize = 4;

/// Runs one phase on `session`; when its operations form independent chains
/// ([`Phase::chains`]) and the budget allows (`opened` sessions are open), on up to
/// [`PHASE_SESSIONS`] sessions, each taking the next chain when it is done with one. A session
/// that cannot be opened only means fewer. One result per operation, in phase order.
async fn run_phase(
    phase: &Phase,
    session: &Session,
    connector: &Connector,
    opened: usize,
) -> Vec<Result<(), OperationError>> {
    let chains = phase.chains();
    let budget = 1 + connector.session_limits().1.saturating_sub(opened);
    let lanes = chains.len().min(PHASE_SESSIONS).min(budget);
    if lanes <= 1 {
        return session.run(&phase.operations).await;
    }
    let extra = connect_extra(connector, &phase.database, lanes - 1).await;
    let sessions: Vec<&Session> = std::iter::once(session).chain(&extra).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let lanes = sessions.iter().map(|s| async {
        let mut done = Vec::new();
        while let Some(chain) = chains.get(next.fetch_add(1, Ordering::Relaxed)) {
            let operations: Vec<&Operation> = chain.iter().map(|&i| &phase.operations[i]).collect();
            done.push((chain, s.run_refs(&operations).await));
        }
        done
    });
    let mut results: Vec<Option<Result<(), OperationError>>> = vec![None; phase.operations.len()];
    for (chain, chain_results) in futures::future::join_all(lanes).await.into_iter().flatten() {
        for (&i, result) in chain.iter().zip(chain_results) {
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every operation is in one chain"))
        .collect()
}

/// Up to `count` more sessions on `database`, opened at the same time; those that fail are
/// logged and left out.
async fn connect_extra(connector: &Connector, database: &str, count: usize) -> Vec<Session> {
    let attempts = (0..count).map(|_| connector.connect(database));
    let mut sessions = Vec::new();
    for attempt in futures::future::join_all(attempts).await {
        match attempt {
            Ok(s) => sessions.push(s),
            Err(e) => {
                let error = crate::error::chained(&e);
                tracing::warn!(%database, %error, "reconcile: one session fewer for a phase")
            }
        }
    }
    sessions
}

/// What [`reconcile`] did.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// The plan that was applied.
    pub plan: Plan,
    /// The outcome of each operation.
    pub report: ApplyReport,
}

/// Sessions kept open from observation to apply, at most: a database beyond these is observed
/// on a session closed right after, and connected to again if the plan has work there.
const KEPT_SESSIONS: usize = 16;

/// Databases observed at the same time (each on its own session).
const OBSERVING_SESSIONS: usize = 8;

/// Observes the cluster as the planner needs it: the catalog and the system database's
/// contents on a session to `first` (the system database), then the contents of every spec
/// database that exists, allows connections and is not invalid, one session and one round trip
/// each, eight at a time (see [`Connector::max_sessions`]). Returns the catalog and the sessions kept open (`first`'s always),
/// for [`apply`].
pub async fn observe_cluster(
    spec: &ValidatedSpec,
    connector: &Connector,
    first: &str,
) -> Result<(Catalog, Vec<Session>), ReconcileError> {
    let system = connector.connect(first).await?;
    let mut catalog = system.observe_with_contents().await?;
    let sessions = observe_databases(spec, connector, system, &mut catalog).await?;
    Ok((catalog, sessions))
}

/// The second half of [`observe_cluster`]: the contents of every spec database but the one
/// `system` is connected to (whose contents `catalog` has), into `catalog`. Returns the
/// sessions kept, `system` first.
async fn observe_databases(
    spec: &ValidatedSpec,
    connector: &Connector,
    system: Session,
    catalog: &mut Catalog,
) -> Result<Vec<Session>, ReconcileError> {
    let (observing, kept) = connector.session_limits();
    let mut sessions = vec![system];
    let targets: Vec<String> = spec
        .databases()
        .map(|(db, _)| db.name.clone())
        .filter(|name| {
            catalog
                .databases
                .get(name)
                .is_some_and(|d| d.allow_connections && !d.invalid && d.contents.is_none())
        })
        .collect();
    let observed = futures::stream::iter(targets)
        .map(|name| async move {
            let session = connector.connect(&name).await?;
            let contents = session.observe_contents().await?;
            Ok::<_, ReconcileError>((name, session, contents))
        })
        .buffer_unordered(observing);
    futures::pin_mut!(observed);
    while let Some(result) = observed.next().await {
        let (name, session, contents) = result?;
        if let Some(db) = catalog.databases.get_mut(&name) {
            db.contents = Some(contents);
        }
        if sessions.len() < kept {
            sessions.push(session);
        }
    }
    Ok(sessions)
}

/// Observes ([`observe_cluster`]), plans and applies: the entry point for compute_ctl. Every
/// session is guarded by [`SessionGuards::for_spec`]. Fails without changing anything when the
/// spec cannot be planned.
pub async fn reconcile(
    spec: &ValidatedSpec,
    options: &PlanOptions,
    base: &Config,
    counters: &Counters,
) -> Result<Reconciled, ReconcileError> {
    let mut connector = Connector::new(base, SessionGuards::for_spec(spec), counters);
    if let Some(limit) = options.max_sessions {
        connector = connector.max_sessions(limit);
    }
    let system = connector.connect(&options.system_database).await?;
    let mut catalog = system.observe_with_contents().await?;
    let digest = crate::digest::catalog_digest(spec, options);
    if system.recorded_digest().await.as_deref() == Some(digest.as_str()) {
        let converged = plan_with(spec, &catalog, options, Unobserved::Converged)?;
        if converged.operation_count() == 0 {
            return Ok(Reconciled {
                plan: converged,
                report: ApplyReport::default(),
            });
        }
    }
    let mut sessions = observe_databases(spec, &connector, system, &mut catalog).await?;
    let plan = plan(spec, &catalog, options)?;
    // Only sessions with work stay open during the apply, and the system database's, which
    // records the digest after it.
    sessions.retain(|s| {
        s.database == options.system_database
            || plan.phases.iter().any(|p| p.database == s.database)
    });
    let report = apply(&plan, &connector, &sessions).await;
    if report.is_success()
        && let Some(system) = sessions
            .iter()
            .find(|s| s.database == options.system_database)
    {
        system.record_digest(&digest).await;
    }
    Ok(Reconciled { plan, report })
}

/// Observes ([`observe_cluster`], starting on the connection string's database) and plans,
/// without changing anything: the entry point for `spec-check --plan --connstr URL`. Every
/// session has `default_transaction_read_only = on` and observes inside a `READ ONLY`
/// transaction. `connstr` is a libpq URL or key=value string.
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
    let connector = Connector::new(&base, SessionGuards::for_spec(spec), &Counters::default());
    let (catalog, _sessions) = observe_cluster(spec, &connector, &database).await?;
    Ok(plan(spec, &catalog, options)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector() -> Connector {
        let base: Config = "host=localhost user=admin".parse().unwrap();
        Connector::new(&base, SessionGuards::default(), &Counters::default())
    }

    /// A server that accepts the socket and never answers fails the connection at the bound.
    #[tokio::test]
    async fn a_silent_server_fails_the_connection_at_the_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                sockets.push(socket);
            }
        });
        let base: Config = format!("host=127.0.0.1 port={port} user=admin")
            .parse()
            .unwrap();
        let connector = Connector::new(&base, SessionGuards::default(), &Counters::default())
            .connect_bound(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let Err(e) = connector.connect("app").await else {
            panic!("connected to a silent server");
        };
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
        assert_eq!(
            e.to_string(),
            r#"connect to database "app": no answer within 200ms"#
        );
        assert!(e.is_retryable());
        held.abort();
    }

    #[test]
    fn session_limits_default_and_bounded() {
        assert_eq!(
            connector().session_limits(),
            (OBSERVING_SESSIONS, KEPT_SESSIONS)
        );
        assert_eq!(connector().max_sessions(1).session_limits(), (1, 2));
        assert_eq!(connector().max_sessions(0).session_limits(), (1, 2));
        assert_eq!(connector().max_sessions(4).session_limits(), (4, 5));
    }
}
