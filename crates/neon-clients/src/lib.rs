//! Clients of Neon's storage services: the two network steps of a compute's cold start, and
//! the LSN lease of a Static compute.
//!
//! This crate owns:
//! - the **pageserver** client ([`fetch_basebackup`]): a libpq connection to shard 0
//!   ([`shard0_connstr`]) with the storage token as password, `application_name=compute_ctl`
//!   and `-c neon.compute_mode=…`; the `basebackup <tenant> <timeline> [<lsn>] [--gzip]
//!   [--replica]` command run as COPY OUT; the stream, plain tar, gzip or zstd (recognised by
//!   its magic bytes), unpacked into PGDATA while it arrives through a bounded channel, each
//!   entry checked first ([`unpack`]); retries with exponential backoff ([`RetryConfig`])
//!   within a total deadline, only for faults another attempt may cure
//!   ([`BasebackupError::is_retryable`]); [`BasebackupStats`] (connect µs, bytes, duration).
//! - error reports ([`Chain`]): a variant that wraps an error exposes it as its source and
//!   does not repeat it in its message; [`Chain`] prints the whole chain once.
//! - the **safekeeper** sync ([`sync_safekeepers_fast_then_full`]): the `TIMELINE_STATUS`
//!   fast path to every safekeeper in parallel ([`check_safekeepers_synced`]), then if needed
//!   the `<pgbin> --sync-safekeepers` child ([`sync_safekeepers`]) with a timeout and
//!   cancellation (the child is killed and reaped).
//! - the **LSN lease** of a Static compute ([`lease`], [`keep_lease`]): `lease lsn
//!   <tenant_shard_id> <timeline> <lsn> ` to every pageserver of every shard, renewed before it
//!   expires, retried with backoff, ended by a NULL answer; the scheduling is pure
//!   ([`renew_after`], [`earliest`]).
//! - the **remote extension server** client ([`remote_ext`]): which archive serves a file
//!   (pure, [`remote_ext::plan`]), its HTTP download (only 200, bounded, cancellable), and its
//!   installation through the same checked unpacker as the basebackup into a staging
//!   directory, then moved into the installation; the control files of the spec.
//!
//! It does not own: the spec types (`compute-spec`), writing `postgresql.conf` or `pg_hba.conf`
//! (`pg-config`), creating PGDATA or starting Postgres (`compute_ctl`), nor the test doubles
//! of the services (`neon-test-servers`, dev-only).
//!
//! Public entry points (signatures kept stable for `compute_ctl`):
//! - `fetch_basebackup(connstr, auth_token, &BasebackupRequest, pgdata, &BasebackupConfig,
//!   &CancellationToken) -> Result<BasebackupStats, BasebackupError>`
//! - `sync_safekeepers_fast_then_full(&FastPathConfig, &SyncSafekeepersConfig,
//!   &CancellationToken) -> Result<SafekeeperSync, SyncError>`
//! - `sync_safekeepers_fast_then_full_with_retries(&FastPathConfig, &SyncSafekeepersConfig,
//!   &RetryConfig, &CancellationToken) -> Result<SafekeeperSync, SyncError>`
//! - `sync_safekeepers(&SyncSafekeepersConfig, &CancellationToken) -> Result<Lsn, SyncError>`
//!   and `sync_safekeepers_with_retries(…, &RetryConfig, …)`
//! - `check_safekeepers_synced(&FastPathConfig) -> Option<Lsn>`
//! - `shard0_connstr(&PageserverConnectionInfo) -> Result<&str, BasebackupError>`
//! - `unpack::unpack_archive(impl Read, &Path) -> Result<UnpackStats, UnpackError>`, and
//!   `unpack_archive_with(…, &UnpackOptions)` (the owner given to each entry as it is made)
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use neon_clients::{BasebackupConfig, BasebackupRequest, fetch_basebackup};
//! use tokio_util::sync::CancellationToken;
//!
//! let request = BasebackupRequest {
//!     tenant_id: "b0554b632bd4d547a63b86c3630317e8".parse()?,
//!     timeline_id: "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d".parse()?,
//!     lsn: "0/16B3748".parse()?,
//!     mode: compute_spec::ComputeMode::Primary,
//!     gzip: true,
//! };
//! let pgdata = std::path::Path::new("/var/db/postgres/compute");
//! let stats = fetch_basebackup(
//!     "postgresql://no_user@pageserver:6400",
//!     Some("token"),
//!     &request,
//!     pgdata,
//!     &BasebackupConfig::default(),
//!     &CancellationToken::new(),
//! )
//! .await?;
//! println!("{} bytes in {:?}", stats.bytes, stats.duration);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod lease;
pub mod pageserver;
pub mod remote_ext;
pub mod report;
pub mod retry;
pub mod safekeeper;
pub mod unpack;

pub use lease::{
    LeaseConfig, LeaseEnd, LeaseError, LeaseGrant, LeaseRequest, LeaseTarget, acquire_lease,
    earliest, keep_lease, renew_after,
};
pub use pageserver::{
    BasebackupConfig, BasebackupError, BasebackupRequest, BasebackupStats, ServerErrorKind,
    fetch_basebackup, pageserver_config, shard0_connstr,
};
pub use report::Chain;
pub use retry::RetryConfig;
pub use safekeeper::{
    FAST_PATH_TIMEOUT, FastPathConfig, SafekeeperSync, SyncError, SyncMethod,
    SyncSafekeepersConfig, TimelineStatus, TimelineStatusError, agreed_lsn,
    check_safekeepers_synced, sync_safekeepers, sync_safekeepers_fast_then_full,
    sync_safekeepers_fast_then_full_with_retries, sync_safekeepers_with_retries, timeline_status,
};
pub use unpack::{Compression, UnpackError, UnpackOptions, UnpackStats};
