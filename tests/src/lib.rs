//! Cross-crate integration tests of the compute-tools libraries; this library is empty.
//!
//! The tests live in `tests/tests/` and run against real PostgreSQL 15 servers started by
//! `test-postgres` (as the unprivileged `postgres` user when run as root):
//!
//! - `spec_to_running_cluster`: every upstream example spec that validates goes through what
//!   compute_ctl does in standalone mode, but through the libraries only: `initdb` →
//!   `pg-config` renders and writes `postgresql.conf` → the real server starts on it →
//!   `pg-reconcile` converges roles, databases, renames and deletions → the result is read
//!   back with `psql` (roles with owner, attributes and hashes, renames keeping their oid,
//!   deletions with reassigned objects, every setting via `SHOW`), no password hash reached
//!   the server log although it logs every statement, and a second plan is empty.
//! - `monitor_sees_reconciled_roles`: `compute-monitor` counts a reconciled role's session as
//!   activity and never compute_ctl's own.
//! - `rejected_specs_change_nothing`: a spec refused by validation or by the reconciler's
//!   option allow-list leaves the catalog byte for byte unchanged.
//!
//! Shared helpers are in `tests/tests/common/mod.rs`. Run them with
//! `cargo test -p integration-tests`.
