//! Dev-only stand-ins for Neon's storage services, speaking their real libpq protocol, so that
//! any compute_ctl (ours or upstream's) can be pointed at them. Each also runs as a standalone
//! process.
//!
//! This crate owns:
//! - [`TestPageserver`] (`test-pageserver`): libpq startup, cleartext password checked against
//!   the token, tenant and timeline checks, and `basebackup <tenant> <timeline> [<lsn>]
//!   [--gzip] [--replica]` answered as COPY OUT with a tar of a real data directory (or a
//!   prepared archive), compressed as asked, with [`Fault`]s: close after N bytes, corrupt
//!   stream, `../escape`, absolute path, symlink escape, ErrorResponse before or after the
//!   data, slow stream; and `lease lsn <tenant_shard_id> <timeline> <lsn>` ([`lease`])
//!   answered with the pageserver's reply (`valid_until`, epoch ms, or NULL below the GC
//!   cutoff), leases recorded ([`TestPageserver::leases`]), [`LeaseFault`]s: error, stall;
//! - [`TestSafekeeper`] (`test-safekeeper`): `TIMELINE_STATUS` with configurable LSNs, no row
//!   for an unknown timeline, or silence;
//! - the `--sync-safekeepers` stand-in ([`sync_standin`], `test-sync-safekeepers`);
//! - [`TestExtServer`] (`test-ext-server`): the remote extension server, plain HTTP `GET` of
//!   `.tar.zst` archives (built from a real installation's extension, or hostile), with
//!   [`ExtFault`]s: another status, a body cut short, a slow answer.
//!
//! It does not own the clients (`neon-clients`) nor PostgreSQL test servers (`test-postgres`).
//! Nothing of the product depends on it.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use neon_test_servers::{PageserverConfig, TestPageserver};
//! let config = PageserverConfig::new(
//!     "/tmp/pgdata".into(),
//!     "b0554b632bd4d547a63b86c3630317e8".parse().unwrap(),
//!     "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d".parse().unwrap(),
//! );
//! let pageserver = TestPageserver::start(config).await?;
//! println!("basebackups at {}", pageserver.connstr());
//! # Ok(())
//! # }
//! ```
//!
//! Standalone:
//! ```text
//! test-pageserver --listen 127.0.0.1:6400 --pgdata-source DIR --tenant T --timeline TL --token TOK \
//!     [--compression auto|none|gzip|zstd] [--fault close-after=N|corrupt|dotdot|absolute=/P|
//!      symlink-escape|error-before|error-after|slow=MS|stall-before=MS] [--fault-count N] \
//!     [--lease-length-ms MS] [--gc-cutoff X/Y] [--lease-fault error|stall]
//! test-safekeeper --listen 127.0.0.1:5454 --tenant T --timeline TL [--token TOK]
//!     [--flush-lsn X/Y] [--commit-lsn X/Y] [--silent]
//! TEST_SYNC_SK_LSN=0/16B3748 test-sync-safekeepers --sync-safekeepers
//! test-ext-server --listen 127.0.0.1:8080 [--dir DIR] [--status CODE]
//! ```
#![warn(missing_docs)]

pub mod ext_server;
pub mod fixture;
pub mod lease;
pub mod pageserver;
pub mod safekeeper;
pub mod sync_standin;
pub mod tarball;
mod wire;

pub use ext_server::{ExtFault, ExtServerConfig, TestExtServer};
pub use lease::{LeaseAnswer, LeaseFault, LeaseRecord, LeaseSettings};
pub use pageserver::{CompressionMode, ConnectionRecord, Fault, PageserverConfig, TestPageserver};
pub use safekeeper::{SafekeeperConfig, TestSafekeeper};
pub use tarball::{HostileEntry, write_pgdata_tar};

/// Sets up logging to stderr for the standalone binaries (`RUST_LOG`, default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
