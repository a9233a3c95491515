//! Remote extensions in compute_ctl: when to download (before Postgres starts: the control
//! files of the allowed extensions and the archives of the preload libraries; on demand:
//! `POST /extension_server/{filename}`), where the installation keeps its files (found once
//! with `pg_config`), and what was downloaded (one download per archive at a time; a repeated
//! request waits for the first and succeeds without downloading again once it has). The
//! client, the installer and the pure decisions are `neon_clients::remote_ext`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use compute_spec::{RemoteExtSpec, ValidatedSpec};
use neon_clients::remote_ext::{self, ArchiveRef, DownloadError, FetchConfig, InstallDirs, plan};
use tokio_util::sync::CancellationToken;

use crate::cli::Options;
use crate::state::Compute;

/// The installation's extension directories and major version, from `pg_config`.
#[derive(Debug, Clone)]
pub(crate) struct Installation {
    /// Where files go.
    pub(crate) dirs: InstallDirs,
    /// `v15`.
    pub(crate) pg_major: String,
}

/// How long `pg_config` may take.
const PG_CONFIG_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for another download of the same archive: the longest a
/// download can take, and some.
fn wait_limit(config: &FetchConfig) -> Duration {
    config.connect_timeout + config.timeout + Duration::from_secs(30)
}

/// What compute_ctl remembers about remote extensions.
#[derive(Debug, Default)]
pub(crate) struct RemoteExtensions {
    installation: tokio::sync::OnceCell<Installation>,
    /// Per archive path: held during its download; `true` once it succeeded.
    downloads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<bool>>>>,
    fetch: FetchConfig,
}

/// Why an on-demand download was not done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExtensionRequestError {
    /// The spec does not serve this file (404).
    #[error(transparent)]
    Lookup(#[from] plan::LookupError),
    /// Finding the installation, downloading or installing failed (500).
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl RemoteExtensions {
    /// The installation's directories, found with `pg_config` beside the postgres binary on
    /// first use (the staging directory is upstream's `<install>/download_extensions`).
    pub(crate) async fn installation(&self, opts: &Options) -> anyhow::Result<&Installation> {
        self.installation
            .get_or_try_init(|| find_installation(opts))
            .await
    }

    /// Downloads and installs `archive` unless an earlier request did; waits (bounded) for a
    /// download of the same archive in progress. Returns the archive's size, `None` when it
    /// was installed already. Every request to the server is counted in
    /// `compute_ctl_remote_ext_requests_total`.
    pub(crate) async fn download(
        &self,
        compute: &Compute,
        base_url: &url::Url,
        archive: &ArchiveRef,
        installation: &Installation,
        cancel: &CancellationToken,
    ) -> Result<Option<u64>, anyhow::Error> {
        let slot = {
            let mut downloads = self.downloads.lock().unwrap_or_else(|e| e.into_inner());
            downloads.entry(archive.path.clone()).or_default().clone()
        };
        let limit = wait_limit(&self.fetch);
        let mut done = tokio::time::timeout(limit, slot.lock())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "another download of {} did not finish within {limit:?}",
                    archive.path
                )
            })?;
        if *done {
            tracing::info!(
                extension = archive.extension,
                "extension already downloaded"
            );
            return Ok(None);
        }
        let result = remote_ext::download_extension(
            base_url,
            archive,
            &installation.dirs,
            &self.fetch,
            cancel,
        )
        .await;
        let status = status_label(&result);
        compute
            .metrics
            .count_remote_ext_request(&status, archive.file_name());
        let downloaded = result?;
        *done = true;
        Ok(Some(downloaded.bytes))
    }

    /// The on-demand request of `filename` (`is_library`: a shared library, `hstore.so`).
    pub(crate) async fn request(
        &self,
        compute: &Compute,
        opts: &Options,
        spec: &RemoteExtSpec,
        filename: &str,
        is_library: bool,
    ) -> Result<Option<u64>, ExtensionRequestError> {
        let installation = self
            .installation(opts)
            .await
            .map_err(ExtensionRequestError::Failed)?;
        let archive = plan::lookup(
            spec,
            filename,
            is_library,
            crate::metrics::build_tag(),
            &installation.pg_major,
        )?;
        let Some(base_url) = &opts.remote_ext_base_url else {
            return Err(ExtensionRequestError::Failed(anyhow::anyhow!(
                "no remote extension base URL"
            )));
        };
        self.download(
            compute,
            base_url,
            &archive,
            installation,
            &CancellationToken::new(),
        )
        .await
        .map_err(ExtensionRequestError::Failed)
    }
}

/// Upstream's `http_status` label: `200 OK`, `404 Not Found`, …, `unknown` without an answer.
fn status_label<T>(result: &Result<T, DownloadError>) -> String {
    let code = match result {
        Ok(_) => Some(200),
        Err(e) => e.http_status(),
    };
    match code.and_then(|c| axum::http::StatusCode::from_u16(c).ok()) {
        Some(status) => status.to_string(),
        None => "unknown".to_owned(),
    }
}

/// Runs `pg_config --version --sharedir --pkglibdir` beside the postgres binary.
async fn find_installation(opts: &Options) -> anyhow::Result<Installation> {
    let pg_config = opts.pg_bin_dir.join("pg_config");
    let mut cmd = child_process::Command::new(&pg_config);
    cmd.name("pg_config")
        .args(["--version", "--sharedir", "--pkglibdir"])
        .capture_stdout();
    let out = cmd
        .run(Some(PG_CONFIG_TIMEOUT), &CancellationToken::new())
        .await
        .with_context(|| format!("run {}", pg_config.display()))?;
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    let [version, sharedir, pkglibdir] = lines[..] else {
        anyhow::bail!(
            "unexpected output of {}: {:?}",
            pg_config.display(),
            out.stdout
        );
    };
    let pg_major = plan::pg_major(version)
        .with_context(|| format!("unrecognised PostgreSQL version {version:?}"))?;
    let install_root = opts
        .pg_bin_dir
        .parent()
        .unwrap_or(&opts.pg_bin_dir)
        .to_owned();
    Ok(Installation {
        dirs: InstallDirs {
            extension_dir: std::path::Path::new(sharedir).join("extension"),
            pkglibdir: pkglibdir.into(),
            staging_root: install_root.join("download_extensions"),
        },
        pg_major,
    })
}

/// The libraries of `shared_preload_libraries`, from the spec's settings and from a line of
/// its `postgresql_conf` (upstream reads both).
fn preload_libraries(spec: &ValidatedSpec) -> Vec<String> {
    let cluster = &spec.spec().cluster;
    let from_settings = cluster
        .settings
        .iter()
        .flatten()
        .filter(|s| s.name == "shared_preload_libraries")
        .filter_map(|s| s.value.clone());
    let from_conf = cluster
        .postgresql_conf
        .as_deref()
        .map(pg_config::parse_conf)
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.name == "shared_preload_libraries")
        .map(|l| l.value);
    from_settings
        .chain(from_conf)
        .flat_map(|v| pg_config::preload_entries(&v))
        .collect()
}

/// Before Postgres starts, with a base URL and `remote_extensions` in the spec: writes the
/// control files of the allowed extensions (never over an existing file), then downloads the
/// archives of the preload libraries in parallel, and fills `load_ext_ms`,
/// `num_ext_downloaded`, `largest_ext_size` and `total_ext_download_size`. Failures are
/// logged and do not stop the start (a missing preload library then fails Postgres' start).
pub(crate) async fn prepare_at_start(
    compute: &Compute,
    opts: &Options,
    spec: &ValidatedSpec,
    cancel: &CancellationToken,
) {
    let (Some(base_url), Some(remote)) =
        (&opts.remote_ext_base_url, &spec.spec().remote_extensions)
    else {
        return;
    };
    let installation = match compute.remote_extensions.installation(opts).await {
        Ok(installation) => installation,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "remote extensions: no installation"
            );
            return;
        }
    };
    write_control_files(remote, installation).await;

    let t = Instant::now();
    let stats =
        download_preload_archives(compute, base_url, remote, spec, installation, cancel).await;
    let ms = t.elapsed().as_millis() as u64;
    compute.with(|s| {
        s.startup.load_ext_ms = ms;
        s.startup.num_ext_downloaded = stats.count;
        s.startup.largest_ext_size = stats.largest;
        s.startup.total_ext_download_size = stats.total;
    });
    tracing::info!(
        ms,
        downloaded = stats.count,
        total_bytes = stats.total,
        "preload libraries downloaded"
    );
}

/// Downloads, in parallel, the archives of the preload libraries that `library_index` lists;
/// logs each failure.
async fn download_preload_archives(
    compute: &Compute,
    base_url: &url::Url,
    remote: &RemoteExtSpec,
    spec: &ValidatedSpec,
    installation: &Installation,
    cancel: &CancellationToken,
) -> DownloadStats {
    let libraries = preload_libraries(spec);
    let build_tag = crate::metrics::build_tag();
    let (archives, refused) =
        plan::preload_archives(remote, &libraries, build_tag, &installation.pg_major);
    for e in refused {
        tracing::error!(error = %e, "remote extensions: preload library not downloaded");
    }
    let exts = &compute.remote_extensions;
    let downloads = archives
        .iter()
        .map(|a| exts.download(compute, base_url, a, installation, cancel));
    let results = futures::future::join_all(downloads).await;
    let sizes = archives
        .iter()
        .zip(results)
        .filter_map(|(archive, result)| {
            result
                .inspect_err(|e| {
                    tracing::error!(
                        extension = archive.extension,
                        error = format!("{e:#}"),
                        "failed to download a preload library's extension"
                    );
                })
                .ok()
        });
    DownloadStats::of(sizes.map(|size| size.unwrap_or(0)))
}

/// The start's download metrics.
#[derive(Debug, Default, PartialEq, Eq)]
struct DownloadStats {
    count: u64,
    largest: u64,
    total: u64,
}

impl DownloadStats {
    /// Over the sizes of the successful downloads (0 for an archive already installed).
    fn of(sizes: impl Iterator<Item = u64>) -> DownloadStats {
        sizes.fold(DownloadStats::default(), |s, size| DownloadStats {
            count: s.count + 1,
            largest: s.largest.max(size),
            total: s.total + size,
        })
    }
}

async fn write_control_files(remote: &RemoteExtSpec, installation: &Installation) {
    let (files, refused) = plan::control_files(remote);
    for e in &refused {
        tracing::warn!(error = %e, "remote extensions: control file not written");
    }
    let dir = installation.dirs.extension_dir.clone();
    let written =
        tokio::task::spawn_blocking(move || remote_ext::write_control_files(&files, &dir)).await;
    match written {
        Ok(Ok(done)) => {
            for kept in &done.kept {
                tracing::warn!(
                    path = %kept.display(),
                    "control file exists locally: the remote one is ignored"
                );
            }
            tracing::info!(written = done.written.len(), "control files written");
        }
        Ok(Err(e)) => tracing::error!(
            error = %neon_clients::Chain(&e),
            "remote extensions: control files"
        ),
        Err(e) => tracing::error!(error = %e, "remote extensions: control files task"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_libraries_from_settings_and_postgresql_conf() {
        let json = serde_json::json!({
            "format_version": 1.0,
            "cluster": {
                "roles": [], "databases": [],
                "settings": [
                    {"name": "shared_preload_libraries", "value": "neon, \"auto_explain\"", "vartype": "string"}
                ],
                "postgresql_conf": "# x\nshared_preload_libraries = 'hstore,pg_stat_statements'\n"
            }
        });
        let spec = compute_spec::ValidatedSpec::from_json(&json.to_string()).unwrap();
        assert_eq!(
            preload_libraries(&spec),
            ["neon", "auto_explain", "hstore", "pg_stat_statements"]
        );
    }

    #[test]
    fn status_labels_as_upstream() {
        let ok: Result<(), DownloadError> = Ok(());
        assert_eq!(status_label(&ok), "200 OK");
        let failed = |source| -> Result<(), DownloadError> {
            Err(DownloadError::Fetch {
                extension: "x".into(),
                source,
            })
        };
        let url = || "http://h/x.tar.zst".to_owned();
        let status = remote_ext::FetchError::Status {
            url: url(),
            status: 404,
        };
        assert_eq!(status_label(&failed(status)), "404 Not Found");
        let request = remote_ext::FetchError::Request {
            url: url(),
            reason: "refused".into(),
        };
        assert_eq!(status_label(&failed(request)), "unknown");
    }

    #[test]
    fn download_stats() {
        assert_eq!(DownloadStats::of([].into_iter()), DownloadStats::default());
        assert_eq!(
            DownloadStats::of([10, 0, 7].into_iter()),
            DownloadStats {
                count: 3,
                largest: 10,
                total: 17
            }
        );
    }
}
