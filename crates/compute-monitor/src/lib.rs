//! Decides when the compute was last active, for auto-suspend: a tokio task polls postgres'
//! activity views every 500 ms (configurable) and records the newest activity and its
//! *reason* in a shared [`ActivityTracker`], which compute_ctl's HTTP layer reads.
//!
//! What counts, as upstream's compute monitor decides it: a client backend that is not idle
//! (active now), the latest `state_change` of idle client backends, WAL senders other than
//! `walproposer`, running subscription workers, autovacuum workers and, when enabled, changed
//! `pg_stat_database` session counters. Sessions of compute_ctl's own role(s) and the
//! monitor's own backend never count. All views are read in one query (one round trip per
//! check), and "now" is the server's `statement_timestamp()`, the clock of `state_change`.
//!
//! Guarantees: `last_active` is `None` until the first activity and only moves forward; a lost
//! connection or a restarted postgres is retried with backoff, never panics, keeps the last
//! value, and is counted as postgres downtime ([`ActivitySnapshot::current_downtime_ms`],
//! [`ActivitySnapshot::total_downtime_ms`]); the task stops when its cancellation token fires.
//!
//! This crate does not decide *whether* to suspend (the control plane does), does not serve
//! HTTP (compute_ctl does) and does not start or stop postgres.
//!
//! ```no_run
//! use std::sync::Arc;
//! use compute_monitor::{ActivityTracker, MonitorConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example() {
//! let connection = "host=127.0.0.1 user=cloud_admin dbname=postgres".parse().unwrap();
//! let tracker = Arc::new(ActivityTracker::new());
//! let cancel = CancellationToken::new();
//! let task = compute_monitor::spawn(MonitorConfig::new(connection), tracker.clone(), cancel.clone());
//! // ... later, from the HTTP layer:
//! let snapshot = tracker.snapshot();
//! println!("{:?} {:?}", snapshot.last_active_rfc3339(), snapshot.reason);
//! cancel.cancel();
//! task.await.unwrap();
//! # }
//! ```
#![warn(missing_docs)]

mod monitor;
mod observation;
mod tracker;

pub use monitor::{MONITOR_APPLICATION_NAME, MonitorConfig, run, spawn};
pub use observation::OBSERVATION_QUERY;
pub use tracker::{ActivityReason, ActivitySnapshot, ActivityTracker, format_rfc3339};
