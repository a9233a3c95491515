//! Putting remote extension files in place: the control files of the spec (written whole,
//! never over an existing file), and an archive unpacked into a fresh staging directory with
//! the basebackup's checked unpacker ([`crate::unpack::unpack_archive`]), then moved file by
//! file into `<sharedir>/extension` (from the archive's `share/extension/`) and the package
//! library directory (from `lib/`). Nothing is moved unless the whole staging tree holds only
//! regular files and directories; moved files get mode 0644 whatever the archive said, and an
//! existing `.control` file is never replaced. The staging directory is removed afterwards.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::remote_ext::plan::ControlFile;
use crate::unpack::{UnpackError, unpack_archive};

/// Where an installation keeps extension files, and where archives are staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallDirs {
    /// `pg_config --sharedir` + `/extension`: control and SQL files.
    pub extension_dir: PathBuf,
    /// `pg_config --pkglibdir`: shared libraries.
    pub pkglibdir: PathBuf,
    /// Where archives are unpacked first (upstream: `<install>/download_extensions`); on the
    /// same filesystem as the two above, so that files are moved by a rename.
    pub staging_root: PathBuf,
}

/// Why extension files could not be put in place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// Creating, reading or removing a staging directory failed.
    #[error("staging directory {path}")]
    Staging {
        /// The path involved.
        path: PathBuf,
        /// The filesystem error.
        source: io::Error,
    },
    /// The archive was refused or could not be unpacked.
    #[error("unpack the archive of extension {extension:?}")]
    Unpack {
        /// The extension.
        extension: String,
        /// The unpacker's error (a refused entry names it).
        source: UnpackError,
    },
    /// The archive holds something else than regular files and directories.
    #[error("archive entry {entry:?} refused: {reason}")]
    Refused {
        /// The entry's path in the archive.
        entry: String,
        /// Why.
        reason: &'static str,
    },
    /// Writing a file in its final place failed.
    #[error("install {path}")]
    Write {
        /// The file's final path.
        path: PathBuf,
        /// The filesystem error.
        source: io::Error,
    },
}

/// What was put in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// Files written, by final path.
    pub written: Vec<PathBuf>,
    /// Control files left as they were because one existed already.
    pub kept: Vec<PathBuf>,
}

/// Mode of every installed file and directory.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// A name no other writer (another download, another process) uses at the same time.
fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}.{}.{n}", std::process::id())
}

/// Writes each control file into `extension_dir` unless a file of that name exists: the
/// content goes to a new temporary file first, then gets its name by a hard link, which fails
/// rather than replace an existing file. A file is either whole or absent.
pub fn write_control_files(
    files: &[ControlFile],
    extension_dir: &Path,
) -> Result<Installed, InstallError> {
    let mut done = Installed::default();
    for file in files {
        let target = extension_dir.join(&file.name);
        if std::fs::symlink_metadata(&target).is_ok() {
            done.kept.push(target);
            continue;
        }
        let write_err = |source| InstallError::Write {
            path: target.clone(),
            source,
        };
        let temp = extension_dir.join(unique_name(&format!(".{}", file.name)));
        let linked = (|| {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&temp)?;
            out.write_all(file.content.as_bytes())?;
            out.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
            out.sync_all()?;
            std::fs::hard_link(&temp, &target)
        })();
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => done.written.push(target),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => done.kept.push(target),
            Err(e) => return Err(write_err(e)),
        }
    }
    Ok(done)
}

/// Removes a staging directory when dropped.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "remove the staging directory");
        }
    }
}

/// Unpacks `archive` (a `.tar.zst`, or gzip or plain tar) of `extension` into a new staging
/// directory under `dirs.staging_root`, checks the tree, and moves its `share/extension/` and
/// `lib/` files into place (other parts of the archive are ignored, as upstream).
pub fn install_archive(
    archive: &[u8],
    extension: &str,
    dirs: &InstallDirs,
) -> Result<Installed, InstallError> {
    let staging_err = |path: &Path| {
        let path = path.to_owned();
        move |source| InstallError::Staging { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dirs.staging_root)
        .map_err(staging_err(&dirs.staging_root))?;
    let staging = Staging(dirs.staging_root.join(unique_name(extension)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging.0)
        .map_err(staging_err(&staging.0))?;
    unpack_archive(archive, &staging.0).map_err(|source| InstallError::Unpack {
        extension: extension.to_owned(),
        source,
    })?;
    check_tree(&staging.0, Path::new(""))?;
    let mut done = Installed::default();
    for (part, dest) in [
        ("share/extension", &dirs.extension_dir),
        ("lib", &dirs.pkglibdir),
    ] {
        let from = staging.0.join(part);
        if from.is_dir() {
            move_tree(&from, dest, &mut done)?;
        }
    }
    Ok(done)
}

/// Refuses anything but regular files and directories below `root` (links, even ones that
/// stay inside, would be resolved from a different place once moved).
fn check_tree(root: &Path, relative: &Path) -> Result<(), InstallError> {
    let dir = root.join(relative);
    let entries = std::fs::read_dir(&dir).map_err(|source| InstallError::Staging {
        path: dir.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| InstallError::Staging {
            path: dir.clone(),
            source,
        })?;
        let path = relative.join(entry.file_name());
        let kind = entry.file_type().map_err(|source| InstallError::Staging {
            path: root.join(&path),
            source,
        })?;
        if kind.is_dir() {
            check_tree(root, &path)?;
        } else if !kind.is_file() {
            return Err(InstallError::Refused {
                entry: path.display().to_string(),
                reason: "only regular files and directories are installed",
            });
        }
    }
    Ok(())
}

/// Moves the files below `from` into `to`, merging directories.
fn move_tree(from: &Path, to: &Path, done: &mut Installed) -> Result<(), InstallError> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| InstallError::Write { path, source }
    };
    let mut names: Vec<_> = std::fs::read_dir(from)
        .and_then(|entries| entries.map(|e| e.map(|e| e.file_name())).collect())
        .map_err(|source| InstallError::Staging {
            path: from.to_owned(),
            source,
        })?;
    names.sort();
    for name in names {
        let (source, target) = (from.join(&name), to.join(&name));
        if source.is_dir() {
            match std::fs::DirBuilder::new().mode(DIR_MODE).create(&target) {
                Err(e) if !(e.kind() == io::ErrorKind::AlreadyExists && target.is_dir()) => {
                    return Err(write_err(&target)(e));
                }
                _ => {}
            }
            move_tree(&source, &target, done)?;
            continue;
        }
        let is_control = target.extension().is_some_and(|e| e == "control");
        if is_control && std::fs::symlink_metadata(&target).is_ok() {
            done.kept.push(target);
            continue;
        }
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(write_err(&target))?;
        move_file(&source, &target).map_err(write_err(&target))?;
        done.written.push(target);
    }
    Ok(())
}

/// Renames `source` to `target` (replacing a file there: the old one stays intact for whoever
/// has it open); across filesystems, copies to a temporary file beside `target` first.
fn move_file(source: &Path, target: &Path) -> io::Result<()> {
    match std::fs::rename(source, target) {
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            let parent = target.parent().unwrap_or(Path::new("/"));
            let name = target.file_name().unwrap_or_default().to_string_lossy();
            let temp = parent.join(unique_name(&format!(".{name}")));
            let copied = std::fs::copy(source, &temp)
                .and_then(|_| {
                    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(FILE_MODE))
                })
                .and_then(|()| std::fs::rename(&temp, target));
            if copied.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            copied
        }
        other => other,
    }
}
