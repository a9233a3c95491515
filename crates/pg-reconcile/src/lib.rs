//! Converges the roles, databases and per-database privileges of a running PostgreSQL to a
//! validated spec: **observe** the catalog and the contents of each spec database (one round
//! trip each), **plan** operations as data (a pure function), **apply** them (one connection
//! per database with work, one round trip per phase, two when the phase carries passwords;
//! the databases to create spread over up to four sessions).
//!
//! This crate owns the catalog semantics of compute_ctl: upstream's role defaults, password
//! comparison, renames, deletions with their reassignments and revocations, invalid
//! databases, the privileged role, the privileges in schema `public` of each spec database
//! (owner, `web_access`, default privileges), and what compute_ctl keeps in the system
//! database (schema `neon`, extensions `pg_stat_statements` and `neon`, `public.health_check`;
//! with an audit level the pgaudit extensions and the system database's `pgaudit.log`),
//! and logical replication subscriptions (dropped before their database, and once per timeline
//! for `drop_subscriptions_before_start`).
//! It also owns the options every admin session starts with ([`SessionGuards`]). It does not
//! decide *when* to reconcile (compute_ctl), does not parse or validate the spec, options
//! included (`compute-spec` does: the planner renders the typed options of a
//! [`ValidatedSpec`](compute_spec::ValidatedSpec) and never checks them again), does not write
//! configuration files (`pg-config`), does not probe the server binary (compute_ctl tells it
//! through [`PlanOptions::neon_extension`]) and does not quote by itself (`pg-quote` does, for
//! every name and value placed in SQL). It also runs upstream's numbered compute migrations
//! ([`migrations`](mod@migrations) module; compute_ctl decides when: at start only).
//!
//! Entry points (stable):
//! - [`plan`]`(&ValidatedSpec, &Catalog, &PlanOptions) -> Result<Plan, PlanError>`: pure.
//! - [`reconcile`]`(&ValidatedSpec, &PlanOptions, &tokio_postgres::Config, &Counters)
//!   -> Result<Reconciled, ReconcileError>`: connect, observe the system database and each
//!   spec database, plan, apply; per-operation [`Outcome`]s in [`Reconciled::report`].
//! - [`plan_read_only`]`(&ValidatedSpec, &PlanOptions, connstr) -> Result<Plan, ReconcileError>`:
//!   for `spec-check --plan --connstr URL`; observes inside a `READ ONLY` transaction, in a
//!   session with `default_transaction_read_only = on`. Print the plan with `{}` (redacted).
//! - [`migrate`]`(&tokio_postgres::Config, SessionGuards, privileged_role_name) -> Result<Migrated,
//!   MigrationError>`: upstream's migrations 1..=12 not yet recorded in
//!   `neon_migration.migration_id`, each in its own transaction, on a connection of its own;
//!   the list itself is [`migrations()`] (pure).
//! - Lower level: [`Connector`], [`Session::connect`], [`Session::observe`],
//!   [`Session::observe_contents`], [`observe_cluster`], [`apply`]; [`Counters`] counts round
//!   trips and connections. Every session's connection, ready to answer, is bounded
//!   ([`CONNECT_BOUND`], [`Connector::connect_bound`]): a server that accepts the socket and
//!   never answers is an error, not a hang. Statements are not bounded (`statement_timeout`
//!   and `lock_timeout` are 0 in admin sessions, so that a `CREATE DATABASE` may
//!   take its time): a server that stops answering after the connection holds the apply until
//!   the caller drops it, as compute_ctl does at a signal.
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
//! - Subscriptions (upstream's order: disable, detach from the slot with `slot_name = NONE`,
//!   drop; the slot stays on the publisher): before `DROP DATABASE` of a `delete_db`, in that
//!   database; and, when the spec sets `drop_subscriptions_before_start`, in every spec
//!   database and the system database once per timeline (the spec's, which pg-config writes
//!   as `neon.timeline_id`), which is then recorded in `neon.drop_subscriptions_done` as
//!   upstream does. Without a timeline that flag is ignored with a plan warning (doing it on
//!   every apply would drop subscriptions made after the start). Only observed subscriptions
//!   in observed databases are planned, so a retried `delete_db` of a database already gone
//!   plans nothing (upstream tries and ignores "does not exist"); a database or subscription
//!   that vanishes between observation and apply fails its statement like any other failure,
//!   and the next run converges. A database that refuses connections cannot be entered: its
//!   subscriptions are left with a plan warning.
//! - Observation ([`observe_cluster`]): one message on the system database (the catalog and
//!   that database's contents), then one per other spec database that exists and allows
//!   connections (its [`DatabaseContents`]), each on its own connection, kept open for the
//!   apply when the plan has work there. A converged cluster with N other spec databases costs
//!   1 + N connections and 1 + N round trips, and plans nothing. Subscriptions and the
//!   recorded timelines come with the catalog (`pg_subscription` is a shared catalog;
//!   `neon.drop_subscriptions_done` is read only if it exists, see [`CATALOG_QUERY`]). The deletion of a role's
//!   references needs no per-database query: its statements are self-guarding (`REASSIGN
//!   OWNED`/`DROP OWNED` do nothing when nothing is owned; the revocation block finds the
//!   grantors itself), and it is planned only while the role exists. A database whose
//!   contents were not observed (created or renamed by the plan) gets a self-guarding block
//!   for its schema privileges, and the system database `IF NOT EXISTS` statements.
//! - Secrets: statements with password hashes show `PASSWORD '<redacted>'` in `Display` and
//!   `Debug`; they are sent only after `log_statement`, `log_min_error_statement`,
//!   `log_min_duration_statement`, `pgaudit.log`, `pg_stat_statements.track` and
//!   `track_activities` are known to be off for the session (see the `apply` module), so no
//!   hash reaches the server log, `pg_stat_statements` or `pg_stat_activity`, even when a
//!   statement fails. tokio-postgres logs
//!   statement texts at `debug` level: keep the `tokio_postgres` log target at `info` or above.
//! - Failures: each statement runs in its own implicit transaction; a failed one is reported as
//!   an [`OperationError`] (object, SQLSTATE, message, retryable or not), its phase finishes,
//!   later phases are [`Outcome::NotRun`], and the next run plans what is still missing.
//! - Every session starts with [`SessionGuards`]: `role=none`, `default_transaction_read_only`
//!   off, an empty `search_path` (so every statement names the schema of what is outside
//!   `pg_catalog`), no statement or lock timeout, `neon.forward_ddl` off, and `pgaudit.log=none`
//!   when the spec preloads `pgaudit` or sets an audit level; the connection string's own options last. No round trip.
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
mod digest;
mod error;
mod guards;
pub mod migrations;
mod plan;

pub use apply::{
    ApplyReport, CONNECT_BOUND, Connector, Counters, Outcome, PhaseTiming, Reconciled, Session,
    apply, observe_cluster, plan_read_only, reconcile,
};
pub use catalog::{
    CATALOG_QUERY, CONTENTS_QUERY, Catalog, DatabaseContents, DatabaseInfo, ExtensionInfo,
    RoleInfo, SubscriptionInfo, ValidUntil,
};
pub use error::{OperationError, PlanError, PlanProblem, ReconcileError, sqlstate_is_retryable};
pub use guards::{SessionGuards, preloads};
pub use migrations::{Migrated, MigrationError, migrate, migrations};
pub use plan::{
    Dependencies, ObjectRef, Operation, Phase, PhaseKind, Plan, PlanOptions, Statement, plan,
};
