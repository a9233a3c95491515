//! Upstream's compute migrations: numbered, run once per cluster, in order, each in its own
//! transaction together with the record that it ran.
//!
//! Bookkeeping (as upstream): schema `neon_migration`, owned by the superuser the session
//! connects as and closed to `PUBLIC`, with table `migration_id(key int4 PRIMARY KEY, id int8
//! DEFAULT 0)` holding one row, key 0, whose `id` is the number of the last migration that ran
//! (0: none). Migration *k* runs when `id < k`; the first one that fails stops the run, and
//! its transaction (statements and id update) is rolled back, so the next run starts again
//! from *k*. A migration with nothing to do on this server ([`Step::Skip`]) only records its
//! number. A run on a migrated cluster changes nothing.
//!
//! The list ([`migrations`]) is pure and depends on the privileged role's name and the server's
//! `server_version_num` (the two PostgreSQL 16-only grants are recorded without running on 15).
//! [`migrate`] connects, reads the version, and runs it.

mod list;
#[cfg(test)]
mod tests;

use tokio_postgres::{Client, Config};

use crate::SessionGuards;
use crate::apply::first_row;
use crate::apply::{Connector, Counters};
use crate::error::{OperationError, ReconcileError};

pub use list::{MIGRATION_COUNT, Migration, SkipReason, Step, migrations};

/// The `application_name` of the migration session (as upstream).
pub const MIGRATIONS_APPLICATION_NAME: &str = "compute_ctl:migrations";

/// Creates the bookkeeping if missing and puts its ownership and privileges right; one implicit
/// transaction.
const PREPARE: &str = "\
CREATE SCHEMA IF NOT EXISTS neon_migration; \
CREATE TABLE IF NOT EXISTS neon_migration.migration_id \
  (key pg_catalog.int4 NOT NULL PRIMARY KEY, id pg_catalog.int8 NOT NULL DEFAULT 0); \
INSERT INTO neon_migration.migration_id (key, id) VALUES (0, 0) ON CONFLICT (key) DO NOTHING; \
ALTER SCHEMA neon_migration OWNER TO SESSION_USER; \
REVOKE ALL ON SCHEMA neon_migration FROM PUBLIC";

const READ_ID: &str = "SELECT id FROM neon_migration.migration_id WHERE key = 0";

const RECORD_ID: &str = "UPDATE neon_migration.migration_id SET id = $1 WHERE key = 0";

const SERVER_VERSION: &str = "SELECT pg_catalog.current_setting('server_version_num')";

/// Without a write: the server version and whether the bookkeeping exists exactly as
/// [`PREPARE`] leaves it (its table there, the schema owned by the session user, nothing
/// granted to PUBLIC). Never fails on a cluster without it (a failed statement would put an
/// ERROR in the server log).
const FAST_CHECK: &str = "\
SELECT pg_catalog.current_setting('server_version_num'), \
  pg_catalog.to_regclass('neon_migration.migration_id') IS NOT NULL AND EXISTS ( \
    SELECT FROM pg_catalog.pg_namespace n \
    WHERE n.nspname = 'neon_migration' \
      AND n.nspowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = SESSION_USER) \
      AND NOT pg_catalog.has_schema_privilege('public', n.oid, 'USAGE') \
      AND NOT pg_catalog.has_schema_privilege('public', n.oid, 'CREATE'))";

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The recorded id before the run.
    pub previous_id: i64,
    /// The recorded id after the run.
    pub current_id: i64,
    /// The migrations that ran (skipped ones included), in order; empty when there was
    /// nothing to do.
    pub ran: Vec<i64>,
}

/// Why a migration run stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// Could not connect (the cause is the source: print the chain).
    #[error("migrations could not start")]
    Connect(#[from] ReconcileError),
    /// Reading the server version or preparing or reading the bookkeeping failed; no
    /// migration ran.
    #[error("migrations: {0}")]
    Bookkeeping(OperationError),
    /// Migration `id` failed; its transaction was rolled back, the ones before it stay
    /// recorded, the ones after it did not run.
    #[error("{error}")]
    Failed {
        /// The migration's number.
        id: i64,
        /// Its name.
        name: &'static str,
        /// The SQLSTATE and message; `object` is `migration <id> (<name>)`.
        error: OperationError,
    },
}

impl MigrationError {
    /// The number of the migration that failed, if one did (upstream's `migration_id` label).
    pub fn migration_id(&self) -> Option<i64> {
        match self {
            MigrationError::Failed { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// Runs the migrations not yet recorded, for `privileged_role_name`, on the database of `base`
/// (`postgres` when it names none), on a connection of its own (`application_name`
/// [`MIGRATIONS_APPLICATION_NAME`], started with `guards`, see [`SessionGuards`]).
/// Statements have no time limit: bound the call.
pub async fn migrate(
    base: &Config,
    guards: SessionGuards,
    privileged_role_name: &str,
) -> Result<Migrated, MigrationError> {
    let mut config = base.clone();
    config.application_name(MIGRATIONS_APPLICATION_NAME);
    let database = base.get_dbname().unwrap_or("postgres").to_owned();
    let session = Connector::new(&config, guards, &Counters::default())
        .connect(&database)
        .await?;
    let client = session.client();
    if let Some(done) = already_done(client, privileged_role_name).await {
        return Ok(done);
    }
    let version = server_version_num(client).await?;
    run(client, &migrations(privileged_role_name, version)).await
}

/// The run when every migration is recorded as done and the bookkeeping is as [`PREPARE`]
/// leaves it, read in two round trips without a write ([`FAST_CHECK`], then the id): the
/// common start of a migrated cluster. `None` when anything else is the case (or cannot be read): then the full
/// path runs and reports.
async fn already_done(client: &Client, privileged_role_name: &str) -> Option<Migrated> {
    let check = first_row(client.simple_query(FAST_CHECK).await.ok()?)?;
    let version: i32 = check.get(0)?.parse().ok()?;
    if check.get(1)? != "t" {
        return None;
    }
    let read = first_row(client.simple_query(READ_ID).await.ok()?)?;
    let recorded: i64 = read.get(0)?.parse().ok()?;
    let last = migrations(privileged_role_name, version)
        .last()
        .map_or(0, |m| m.id);
    (recorded >= last).then_some(Migrated {
        previous_id: recorded,
        current_id: recorded,
        ran: Vec::new(),
    })
}

async fn server_version_num(client: &Client) -> Result<i32, MigrationError> {
    let bookkeeping = |e: &tokio_postgres::Error| {
        MigrationError::Bookkeeping(OperationError::from_pg("server_version_num".into(), e))
    };
    let text: String = client
        .query_one(SERVER_VERSION, &[])
        .await
        .map_err(|e| bookkeeping(&e))?
        .get(0);
    text.parse().map_err(|_| {
        MigrationError::Bookkeeping(OperationError {
            object: "server_version_num".into(),
            sqlstate: None,
            message: format!("not a number: {text:?}"),
            retryable: false,
        })
    })
}

/// Prepares the bookkeeping, then runs the migrations of `list` (numbered 1, 2, … in order)
/// whose number is above the recorded one. Takes the list so that tests can run their own.
pub(crate) async fn run(client: &Client, list: &[Migration]) -> Result<Migrated, MigrationError> {
    debug_assert!(
        list.iter().zip(1..).all(|(m, id)| m.id == id),
        "numbered 1.."
    );
    let bookkeeping = |e: tokio_postgres::Error| {
        MigrationError::Bookkeeping(OperationError::from_pg(
            "neon_migration.migration_id".into(),
            &e,
        ))
    };
    client.batch_execute(PREPARE).await.map_err(bookkeeping)?;
    let previous_id: i64 = client
        .query_one(READ_ID, &[])
        .await
        .map_err(bookkeeping)?
        .get(0);
    let mut done = Migrated {
        previous_id,
        current_id: previous_id,
        ran: Vec::new(),
    };
    for migration in list.iter().filter(|m| m.id > previous_id) {
        run_one(client, migration)
            .await
            .map_err(|e| MigrationError::Failed {
                id: migration.id,
                name: migration.name,
                error: OperationError::from_pg(
                    format!("migration {} ({})", migration.id, migration.name),
                    &e,
                ),
            })?;
        done.current_id = migration.id;
        done.ran.push(migration.id);
    }
    Ok(done)
}

/// One migration and its id update in one transaction; rolled back when either fails.
async fn run_one(client: &Client, migration: &Migration) -> Result<(), tokio_postgres::Error> {
    match &migration.step {
        Step::Sql(_) => {
            tracing::info!(
                id = migration.id,
                name = migration.name,
                "running migration"
            );
        }
        Step::Skip(why) => {
            tracing::info!(id = migration.id, name = migration.name, %why, "skipping migration");
        }
    }
    client.batch_execute("BEGIN").await?;
    let result = async {
        if let Step::Sql(sql) = &migration.step {
            client.batch_execute(sql).await?;
        }
        client.execute(RECORD_ID, &[&migration.id]).await?;
        client.batch_execute("COMMIT").await
    }
    .await;
    if result.is_err() {
        // Without a transaction in progress (a failed COMMIT ended it) this only warns.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}
