//! Installed-extensions statistics, as upstream collects them: which extensions, at which
//! version, are installed in how many databases, owned by the bootstrap superuser or not;
//! exposed in `/metrics` as `compute_installed_extensions{extension_name, version,
//! owned_by_superuser}` and logged as one `[NEON_EXT_STAT] {json}` line.
//!
//! A scan reads `pg_extension` in each database that allows connections and is not invalid
//! (at most [`MAX_DATABASES`]), one connection at a time, as compute_ctl's user (whose
//! sessions the compute monitor never counts as activity) under the application name
//! [`APPLICATION_NAME`]. It runs once when a Primary starts (even with
//! `skip_pg_catalog_updates`), then in every mode every 2 × the interval: the spec's
//! `suspend_timeout_seconds` when positive, else `--installed-extensions-collection-interval`
//! (upstream's rule, so that the scan's connections never keep a compute from suspending).
//! The interval is read again before each wait (so a reconfiguration changes the next one;
//! upstream only ever lengthens it). Each scan is bounded by [`SCAN_TIMEOUT`]; the task stops
//! when its token is cancelled. The gauge holds the last successful scan only (upstream keeps
//! series of extensions dropped since).

use pg_reconcile::SessionGuards;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::catalog;
use crate::state::Compute;

/// Upstream's limit on the databases scanned.
pub(crate) const MAX_DATABASES: i64 = 500;
/// `application_name` of the scan's sessions (upstream's).
pub(crate) const APPLICATION_NAME: &str = "compute_ctl:get_installed_extensions";
/// Longest time one scan may take.
pub(crate) const SCAN_TIMEOUT: Duration = Duration::from_secs(300);
/// OID of the bootstrap superuser, which `owned_by_superuser` refers to.
const BOOTSTRAP_SUPERUSER: u32 = 10;

/// Databases to scan: connectable, not invalid.
const DATABASES: &str = "SELECT datname::text FROM pg_catalog.pg_database \
     WHERE datallowconn AND datconnlimit <> -2 ORDER BY datname LIMIT $1";
/// Extensions of the connection's database.
const EXTENSIONS: &str = "SELECT extname::text, extversion, extowner FROM pg_catalog.pg_extension";

/// One (extension, version, owner kind) and how many databases have it; upstream's
/// `InstalledExtension`, which the log line serializes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct InstalledExtension {
    /// Extension name.
    pub(crate) extname: String,
    /// Installed version.
    pub(crate) version: String,
    /// Number of databases it is installed in at this version.
    pub(crate) n_databases: u32,
    /// `"1"` when owned by the bootstrap superuser, else `"0"`.
    pub(crate) owned_by_superuser: String,
}

/// One scan's result (upstream's `InstalledExtensions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct InstalledExtensions {
    /// Sorted by name, version, owner kind.
    pub(crate) extensions: Vec<InstalledExtension>,
}

/// Counts `(name, version, owner oid)` rows, one list per database.
fn tally<'a>(
    databases: impl IntoIterator<Item = &'a [(String, String, u32)]>,
) -> InstalledExtensions {
    let mut counts: BTreeMap<(String, String, &'static str), u32> = BTreeMap::new();
    for rows in databases {
        for (name, version, owner) in rows {
            let owned = if *owner == BOOTSTRAP_SUPERUSER {
                "1"
            } else {
                "0"
            };
            *counts
                .entry((name.clone(), version.clone(), owned))
                .or_default() += 1;
        }
    }
    InstalledExtensions {
        extensions: counts
            .into_iter()
            .map(|((extname, version, owned), n)| InstalledExtension {
                extname,
                version,
                n_databases: n,
                owned_by_superuser: owned.to_owned(),
            })
            .collect(),
    }
}

async fn connect(
    pg: &tokio_postgres::Config,
    guards: SessionGuards,
    db: Option<&str>,
) -> anyhow::Result<tokio_postgres::Client> {
    catalog::connect_as(pg, guards, db, APPLICATION_NAME).await
}

/// Reads the extensions of every connectable database.
pub(crate) async fn scan(
    pg: &tokio_postgres::Config,
    guards: SessionGuards,
) -> anyhow::Result<InstalledExtensions> {
    let databases: Vec<String> = connect(pg, guards, None)
        .await?
        .query(DATABASES, &[&MAX_DATABASES])
        .await
        .context("list databases")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut per_database = Vec::with_capacity(databases.len());
    for db in &databases {
        let rows: Vec<(String, String, u32)> = connect(pg, guards, Some(db))
            .await
            .with_context(|| format!("connect to database {db:?}"))?
            .query(EXTENSIONS, &[])
            .await
            .with_context(|| format!("list the extensions of database {db:?}"))?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        per_database.push(rows);
    }
    Ok(tally(per_database.iter().map(Vec::as_slice)))
}

/// One bounded scan: updates the gauge and logs the result, or logs why it failed.
///
/// A scan that fails once `cancel` fired (postgres is being stopped) is no failure to report.
async fn scan_and_report(
    compute: &Compute,
    pg: &tokio_postgres::Config,
    cancel: &CancellationToken,
) {
    let result = tokio::time::timeout(SCAN_TIMEOUT, scan(pg, catalog::guards(compute))).await;
    if cancel.is_cancelled() {
        return;
    }
    match result {
        Ok(Ok(found)) => {
            compute.metrics.set_installed_extensions(&found.extensions);
            match serde_json::to_string(&found) {
                Ok(json) => tracing::info!("[NEON_EXT_STAT] {json}"),
                Err(e) => tracing::warn!(error = %e, "serialize installed extensions"),
            }
        }
        Ok(Err(e)) => tracing::error!(
            error = format!("{e:#}"),
            "could not get installed extensions"
        ),
        Err(_) => {
            tracing::error!(timeout = ?SCAN_TIMEOUT, "could not get installed extensions: timed out")
        }
    }
}

/// Time between scans: twice the spec's positive `suspend_timeout_seconds`, else twice
/// `default`.
pub(crate) fn period(suspend_timeout_seconds: Option<i64>, default: Duration) -> Duration {
    let base = match suspend_timeout_seconds {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds.unsigned_abs()),
        _ => default,
    };
    base.saturating_mul(2)
}

/// What the scanning task needs.
#[derive(Debug, Clone)]
pub(crate) struct ScanConfig {
    /// compute_ctl's connection (`--connstr`).
    pub(crate) pg: tokio_postgres::Config,
    /// `--installed-extensions-collection-interval`.
    pub(crate) default_interval: Duration,
    /// Scan at once (the start of a Primary) before the first wait.
    pub(crate) scan_at_start: bool,
}

/// Scans at start if asked, then every [`period`] (of the spec in effect) until `cancel`.
pub(crate) fn spawn(
    compute: Arc<Compute>,
    config: ScanConfig,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if config.scan_at_start {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = scan_and_report(&compute, &config.pg, &cancel) => {}
            }
        }
        loop {
            let suspend = compute.with(|s| {
                s.spec
                    .as_ref()
                    .and_then(|spec| spec.spec().suspend_timeout_seconds)
            });
            let wait = period(suspend, config.default_interval);
            tracing::debug!(?wait, "next installed-extensions scan");
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = scan_and_report(&compute, &config.pg, &cancel) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_databases_per_extension_version_and_owner_kind() {
        let row = |n: &str, v: &str, o: u32| (n.to_owned(), v.to_owned(), o);
        let postgres = [row("plpgsql", "1.0", 10), row("hstore", "1.8", 10)];
        let template1 = [row("plpgsql", "1.0", 10)];
        let app = [row("plpgsql", "1.0", 10), row("hstore", "1.7", 16384)];
        let found = tally([&postgres[..], &template1[..], &app[..]]);
        let summary: Vec<String> = found
            .extensions
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} {}",
                    e.extname, e.version, e.owned_by_superuser, e.n_databases
                )
            })
            .collect();
        assert_eq!(
            summary,
            ["hstore 1.7 0 1", "hstore 1.8 1 1", "plpgsql 1.0 1 3"]
        );
        assert_eq!(
            serde_json::to_string(&tally([&template1[..]])).unwrap(),
            r#"{"extensions":[{"extname":"plpgsql","version":"1.0","n_databases":1,"owned_by_superuser":"1"}]}"#
        );
    }

    #[test]
    fn period_is_twice_the_suspend_timeout_or_the_default() {
        let default = Duration::from_secs(3600);
        assert_eq!(period(Some(300), default), Duration::from_secs(600));
        for unset in [None, Some(0), Some(-1), Some(-5)] {
            assert_eq!(
                period(unset, default),
                Duration::from_secs(7200),
                "{unset:?}"
            );
        }
        assert!(period(Some(i64::MAX), default) > Duration::from_secs(1 << 62));
    }
}
