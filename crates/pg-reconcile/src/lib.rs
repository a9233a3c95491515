//! Converges the roles and databases of a running PostgreSQL to a validated spec: **observe**
//! the catalog (one query), **plan** operations as data (a pure function), **apply** them
//! (one connection per database with work, one round trip per phase, two when the phase
//! carries passwords).
//!
//! This crate owns the role/database semantics of compute_ctl: upstream's role defaults,
//! password comparison, renames, deletions with their reassignments and revocations, invalid
//! databases, and the privileged role. It does not decide *when* to reconcile (compute_ctl),
//! does not parse or validate the spec, options included (`compute-spec` does: the planner
//! renders the typed options of a [`ValidatedSpec`](compute_spec::ValidatedSpec) and never
//! checks them again), does not write configuration files (`pg-config`) and does not quote by
//! itself (`pg-quote` does, for every name and value placed in SQL). Extensions and schema
//! permissions are not handled here. It also runs upstream's numbered compute migrations
//! ([`migrations`](mod@migrations) module; compute_ctl decides when: at start only).
//!
//! Entry points (stable):
//! - [`plan`]`(&ValidatedSpec, &Catalog, &PlanOptions) -> Result<Plan, PlanError>`: pure.
//! - [`reconcile`]`(&ValidatedSpec, &PlanOptions, &tokio_postgres::Config, &Counters)
//!   -> Result<Reconciled, ReconcileError>`: connect to the system database, observe, plan,
//!   apply; per-operation [`Outcome`]s in [`Reconciled::report`].
//! - [`plan_read_only`]`(&ValidatedSpec, &PlanOptions, connstr) -> Result<Plan, ReconcileError>`:
//!   for `spec-check --plan --connstr URL`; observes inside a `READ ONLY` transaction, in a
//!   session with `default_transaction_read_only = on`. Print the plan with `{}` (redacted).
//! - [`migrate`]`(&tokio_postgres::Config, privileged_role_name) -> Result<Migrated,
//!   MigrationError>`: upstream's migrations 1..=12 not yet recorded in
//!   `neon_migration.migration_id`, each in its own transaction, on a connection of its own;
//!   the list itself is [`migrations()`] (pure).
//! - Lower level: [`Session::connect`], [`Session::observe`], [`apply`]; [`Counters`] counts
//!   round trips and connections.
//!
//! Semantics in short (details in the `plan` module docs):
//! - Passwords: md5 with or without the `md5` prefix compare equal; SCRAM verifiers exactly;
//!   anything else (a cleartext) is refused.
//! - Role attributes (`LOGIN`, `CREATEDB`, `CREATEROLE`, `REPLICATION`, `BYPASSRLS`, `INHERIT`,
//!   `CONNECTION LIMIT`, `VALID UNTIL`, `IN ROLE`) come typed from the spec's validation and
//!   are diffed against the catalog; spec roles default to upstream's `INHERIT CREATEROLE CREATEDB
//!   BYPASSRLS REPLICATION LOGIN` and membership in the privileged role (JWKS roles: `LOGIN`
//!   only). `VALID UNTIL` is only managed when given (PostgreSQL cannot reset it to NULL).
//!   Memberships are only added, never revoked.
//! - Databases: created with allow-listed options and owner; owner, `ALLOW_CONNECTIONS`,
//!   `IS_TEMPLATE` and `CONNECTION LIMIT` are diffed; creation-only options are not.
//! - Observation is one message per cluster. The per-database work (deleting a role's
//!   references) needs no per-database query: its statements are self-guarding (`REASSIGN
//!   OWNED`/`DROP OWNED` do nothing when nothing is owned; the revocation block finds the
//!   grantors itself), and it is planned only while the role exists.
//! - Secrets: statements with password hashes show `PASSWORD '<redacted>'` in `Display` and
//!   `Debug`; they are sent only after `log_statement`, `log_min_error_statement` and
//!   `log_min_duration_statement` are known to be off for the session (see the `apply` module),
//!   so no hash reaches the server log, even when a statement fails. tokio-postgres logs
//!   statement texts at `debug` level: keep the `tokio_postgres` log target at `info` or above.
//! - Failures: each statement runs in its own implicit transaction; a failed one is reported as
//!   an [`OperationError`] (object, SQLSTATE, message, retryable or not), its phase finishes,
//!   later phases are [`Outcome::NotRun`], and the next run plans what is still missing.
//! - `neon.forward_ddl = off` is set in the startup packet of every connection: no round trip,
//!   harmless on vanilla PostgreSQL (a placeholder setting).
//! - Revocation of foreign grants covers relations, schemas, routines and databases; grants on
//!   types, languages, large objects and foreign-data wrappers by third parties are not revoked
//!   and would make `DROP ROLE` fail with a named error.
//!
//! A [`Plan`] prints as SQL with a reason per statement and passwords redacted:
//!
//! ```
//! use compute_spec::ValidatedSpec;
//! use pg_reconcile::{Catalog, PlanOptions, plan};
//!
//! let spec = ValidatedSpec::from_json(r#"{"format_version": 1.0, "cluster": {
//!     "roles": [{"name": "alice", "encrypted_password": "0123456789abcdef0123456789abcdef"}],
//!     "databases": [{"name": "app", "owner": "alice"}]}}"#).unwrap();
//! let plan = plan(&spec, &Catalog::default(), &PlanOptions::default()).unwrap();
//! let text = plan.to_string();
//! assert!(text.contains(r#"CREATE ROLE "alice" INHERIT CREATEROLE"#));
//! assert!(text.contains("PASSWORD '<redacted>'") && !text.contains("0123456789abcdef"));
//! assert!(text.contains(r#"CREATE DATABASE "app" OWNER "alice";  -- database "app": create: absent"#));
//! ```
#![warn(missing_docs)]

mod apply;
mod catalog;
mod error;
pub mod migrations;
mod plan;

pub use apply::{
    ApplyReport, Counters, Outcome, PhaseTiming, Reconciled, SESSION_GUARDS, Session, apply,
    plan_read_only, reconcile,
};
pub use catalog::{CATALOG_QUERY, Catalog, DatabaseInfo, RoleInfo, ValidUntil};
pub use error::{OperationError, PlanError, PlanProblem, ReconcileError, sqlstate_is_retryable};
pub use migrations::{Migrated, MigrationError, migrate, migrations};
pub use plan::{ObjectRef, Operation, Phase, PhaseKind, Plan, PlanOptions, Statement, plan};
