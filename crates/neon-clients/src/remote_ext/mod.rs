//! Remote extensions: the extension server client and the installer of what it serves.
//!
//! [`plan`] is pure (which extensions are allowed, which archive a file comes from and its path
//! `{build_tag}/{arch}/{pg_major}/extensions/{ext}.tar.zst`, which control files and preload
//! archives); [`fetch_archive`] is the HTTP `GET` (only 200 accepted, bounded, cancellable);
//! [`install_archive`] and [`write_control_files`] put files in place safely;
//! [`download_extension`] is the three together. Deciding when to download, remembering what
//! was downloaded and reporting it belong to the caller (compute_ctl).

pub mod plan;

mod fetch;
mod install;

pub use fetch::{FetchConfig, FetchError, fetch_archive, redacted};
pub use install::{InstallDirs, InstallError, Installed, install_archive, write_control_files};
pub use plan::{ArchiveRef, ControlFile, LookupError, RefusedControlFile};

use tokio_util::sync::CancellationToken;

/// Why an extension could not be downloaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The archive could not be fetched.
    #[error("download extension {extension:?}")]
    Fetch {
        /// The extension.
        extension: String,
        /// What went wrong.
        source: FetchError,
    },
    /// The archive could not be put in place.
    #[error("install extension {extension:?}")]
    Install {
        /// The extension.
        extension: String,
        /// What went wrong.
        source: InstallError,
    },
    /// The blocking install task did not finish.
    #[error("install extension {extension:?}: the install task failed: {reason}")]
    Task {
        /// The extension.
        extension: String,
        /// The join error.
        reason: String,
    },
}

impl DownloadError {
    /// The extension server's HTTP status, when the download got one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            DownloadError::Fetch { source, .. } => source.http_status(),
            _ => Some(200),
        }
    }
}

/// A downloaded and installed extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Size of the archive (compressed), in bytes.
    pub bytes: u64,
    /// The files put in place.
    pub installed: Installed,
}

/// Fetches `archive` from `base_url` (which ends with `/`) and installs it into `dirs`.
pub async fn download_extension(
    base_url: &url::Url,
    archive: &ArchiveRef,
    dirs: &InstallDirs,
    config: &FetchConfig,
    cancel: &CancellationToken,
) -> Result<Downloaded, DownloadError> {
    let fetch_err = |source| DownloadError::Fetch {
        extension: archive.extension.clone(),
        source,
    };
    let url = base_url.join(&archive.path).map_err(|e| {
        fetch_err(FetchError::BadUrl {
            url: format!("{}{}", redacted(base_url), archive.path),
            reason: e.to_string(),
        })
    })?;
    tracing::info!(
        extension = archive.extension,
        url = redacted(&url),
        "downloading extension"
    );
    let body = fetch_archive(&url, config, cancel)
        .await
        .map_err(fetch_err)?;
    let bytes = body.len() as u64;
    let (extension, dirs) = (archive.extension.clone(), dirs.clone());
    let installed = tokio::task::spawn_blocking(move || install_archive(&body, &extension, &dirs))
        .await
        .map_err(|e| DownloadError::Task {
            extension: archive.extension.clone(),
            reason: e.to_string(),
        })?
        .map_err(|source| DownloadError::Install {
            extension: archive.extension.clone(),
            source,
        })?;
    tracing::info!(
        extension = archive.extension,
        bytes,
        files = installed.written.len(),
        kept = installed.kept.len(),
        "extension installed"
    );
    Ok(Downloaded { bytes, installed })
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_in_urls_are_not_shown() {
        let url = url::Url::parse("http://user:secret@gateway:8080/base/").unwrap();
        assert_eq!(super::redacted(&url), "http://user:***@gateway:8080/base/");
        let plain = url::Url::parse("http://gateway/").unwrap();
        assert_eq!(super::redacted(&plain), "http://gateway/");
    }
}
