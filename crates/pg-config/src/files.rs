//! The one I/O helper of this crate: write a file atomically and durably.
//!
//! Used by compute_ctl for every file it writes into PGDATA, so that a crash leaves either the
//! old or the new content, never a torn file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How the written file must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// Permission bits, applied exactly (not filtered by the umask). Default `0o600`, what
    /// PostgreSQL expects in a data directory.
    pub mode: u32,
    /// `(uid, gid)` to give the file to, e.g. the unprivileged user postgres runs as when
    /// compute_ctl runs as root. `None` keeps the writer's.
    pub owner: Option<(u32, u32)>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            mode: 0o600,
            owner: None,
        }
    }
}

/// A step of [`write_file_atomically`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteStep {
    /// Creating the temporary file beside the target.
    CreateTemporary,
    /// Writing the content.
    Write,
    /// Setting owner or mode.
    SetOwnerOrMode,
    /// Flushing the file to disk.
    SyncFile,
    /// Renaming the temporary file over the target.
    Rename,
    /// Flushing the directory entry to disk.
    SyncDirectory,
}

impl std::fmt::Display for WriteStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteStep::CreateTemporary => "create a temporary file for",
            WriteStep::Write => "write",
            WriteStep::SetOwnerOrMode => "set owner and mode of",
            WriteStep::SyncFile => "fsync",
            WriteStep::Rename => "rename into place",
            WriteStep::SyncDirectory => "fsync the directory of",
        })
    }
}

/// Why a file could not be written. The target is unchanged in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteFileError {
    /// The path has no file name (e.g. `/` or `..`).
    #[error("cannot write {}: not a file path", path.display())]
    NotAFilePath {
        /// The path given.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("{step} {}: {error}", path.display())]
    Io {
        /// What was being done.
        step: WriteStep,
        /// The target file.
        path: PathBuf,
        /// The underlying error (in the message, not a `source`: printed once in a chain).
        error: std::io::Error,
    },
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory is written,
/// given `options.mode` (and owner), fsynced, renamed over `path`, and the directory is
/// fsynced. Readers see the old file or the new one, never a part. On error the temporary file
/// is removed and `path` is untouched.
pub fn write_file_atomically(
    path: &Path,
    contents: &[u8],
    options: &FileOptions,
) -> Result<(), WriteFileError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(name) = path.file_name() else {
        return Err(WriteFileError::NotAFilePath {
            path: path.to_owned(),
        });
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);
    let fail = |step| {
        move |source| WriteFileError::Io {
            step,
            path: path.to_owned(),
            error: source,
        }
    };

    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(options.mode)
        .open(&temp)
        .map_err(fail(WriteStep::CreateTemporary))?;
    let written = fill(&mut file, contents, options).and_then(|()| {
        file.sync_all().map_err(|e| (WriteStep::SyncFile, e))?;
        drop(file);
        std::fs::rename(&temp, path).map_err(|e| (WriteStep::Rename, e))
    });
    if let Err((step, source)) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(fail(step)(source));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail(WriteStep::SyncDirectory))
}

fn fill(
    file: &mut File,
    contents: &[u8],
    options: &FileOptions,
) -> Result<(), (WriteStep, std::io::Error)> {
    file.write_all(contents)
        .map_err(|e| (WriteStep::Write, e))?;
    if let Some((uid, gid)) = options.owner {
        std::os::unix::fs::fchown(&*file, Some(uid), Some(gid))
            .map_err(|e| (WriteStep::SetOwnerOrMode, e))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(options.mode))
        .map_err(|e| (WriteStep::SetOwnerOrMode, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_content_with_the_mode_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postgresql.conf");
        let options = FileOptions::default();
        write_file_atomically(&path, b"old\n", &options).unwrap();
        let group_readable = FileOptions {
            mode: 0o640,
            ..options
        };
        write_file_atomically(&path, b"new\n", &group_readable).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("postgresql.conf")]);
    }

    #[test]
    fn failure_leaves_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: rename fails after the temp file was written.
        let path = dir.path().join("target");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), "x").unwrap();
        let err = write_file_atomically(&path, b"new", &FileOptions::default()).unwrap_err();
        assert!(
            matches!(&err, WriteFileError::Io { step: WriteStep::Rename, path: p, .. } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("rename into place "), "{err}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("target")]);

        let missing = dir.path().join("no-such-dir").join("file");
        let err = write_file_atomically(&missing, b"x", &FileOptions::default()).unwrap_err();
        assert!(matches!(
            err,
            WriteFileError::Io {
                step: WriteStep::CreateTemporary,
                ..
            }
        ));
        let err = write_file_atomically(Path::new("/"), b"x", &FileOptions::default()).unwrap_err();
        assert!(matches!(err, WriteFileError::NotAFilePath { .. }));
    }
}
