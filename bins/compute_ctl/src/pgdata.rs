//! Data-directory safety: every start wipes PGDATA, so first make sure the path looks like a
//! data directory this compute owns. Refused: `/`, top-level system directories, any user's
//! home directory, a directory a live postmaster uses, and a non-empty directory without
//! `PG_VERSION` (unless forced) — except one holding only what a start makes before
//! `PG_VERSION` exists (compute_ctl's config files, a basebackup's first entries): a start
//! killed during sync-safekeepers or the basebackup leaves that, and the next start must
//! wipe it.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a data directory was not wiped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PgdataError {
    /// The path is `/`, a system directory or a home directory.
    #[error("refusing to wipe {path}: it is {what}, not a compute data directory")]
    Protected {
        /// The directory.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// A non-empty directory that is not a PostgreSQL data directory.
    #[error(
        "refusing to wipe {path}: it is not empty and has no PG_VERSION, so it does not look \
         like a data directory (pass --force-wipe to wipe it anyway)"
    )]
    NotADataDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// A postmaster is alive in it.
    #[error("refusing to wipe {path}: postmaster pid {pid} from postmaster.pid is alive")]
    InUse {
        /// The directory.
        path: PathBuf,
        /// The live pid.
        pid: i32,
    },
    /// The path exists and is not a directory.
    #[error("{path} exists and is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The unprivileged user cannot reach the directory (an ancestor is not searchable).
    #[error(
        "user {uid} cannot reach {path}: {ancestor} is not searchable by it; choose a data \
         directory under a path it can traverse (e.g. /var/db/postgres or /tmp)"
    )]
    Unreachable {
        /// The data directory.
        path: PathBuf,
        /// The blocking ancestor.
        ancestor: PathBuf,
        /// The user.
        uid: u32,
    },
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PgdataError {
    let path = path.to_owned();
    move |source| PgdataError::Io {
        action,
        path,
        source,
    }
}

const SYSTEM_DIRS: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run",
    "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/db",
];

/// Checks that `path` may be wiped. `path` must be absolute.
pub(crate) fn check_wipe_allowed(path: &Path, force: bool) -> Result<(), PgdataError> {
    let protected = |what: &str| PgdataError::Protected {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    let canonical = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => normalize(path),
        Err(e) => return Err(io_err("resolve", path)(e)),
    };
    if canonical.parent().is_none() {
        return Err(protected("the root directory"));
    }
    if SYSTEM_DIRS.iter().any(|d| canonical == Path::new(d)) {
        return Err(protected("a system directory"));
    }
    if is_home_directory(&canonical) {
        return Err(protected("a home directory"));
    }
    let meta = match std::fs::symlink_metadata(&canonical) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("stat", path)(e)),
    };
    if !meta.is_dir() {
        return Err(PgdataError::NotADirectory {
            path: path.to_owned(),
        });
    }
    if let Some(pid) = live_postmaster(&canonical) {
        return Err(PgdataError::InUse {
            path: path.to_owned(),
            pid,
        });
    }
    let empty = std::fs::read_dir(&canonical)
        .map_err(io_err("read", path))?
        .next()
        .is_none();
    if !empty && !canonical.join("PG_VERSION").is_file() && !interrupted_start(&canonical) && !force
    {
        return Err(PgdataError::NotADataDirectory {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Top-level entries a start makes before `PG_VERSION` exists: compute_ctl's config files
/// (written before sync-safekeepers, which reads them) and what a basebackup unpacks.
const START_ENTRIES: &[&str] = &[
    "postgresql.conf",
    "postgresql.auto.conf",
    "pg_hba.conf",
    "pg_ident.conf",
    "standby.signal",
    pg_config::TEMP_OVERRIDE_CONF,
    pg_config::SERVER_CRT,
    pg_config::SERVER_KEY,
    "zenith.signal",
    "neon.signal",
    "base",
    "global",
    "pg_commit_ts",
    "pg_dynshmem",
    "pg_logical",
    "pg_multixact",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat",
    "pg_stat_tmp",
    "pg_subtrans",
    "pg_tblspc",
    "pg_twophase",
    "pg_wal",
    "pg_xact",
];

/// Whether `dir` holds only what a start makes before `PG_VERSION` (an interrupted start of
/// this compute).
fn interrupted_start(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .into_iter()
        .all(|entry| entry.is_ok_and(|e| START_ENTRIES.iter().any(|known| e.file_name() == *known)))
}

/// Removes `.` and `..` without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn is_home_directory(path: &Path) -> bool {
    if std::env::var_os("HOME").is_some_and(|h| Path::new(&h) == path) {
        return true;
    }
    let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
        return false;
    };
    passwd
        .lines()
        .filter_map(|line| line.split(':').nth(5))
        .filter(|home| !home.is_empty() && *home != "/" && *home != "/nonexistent")
        .any(|home| Path::new(home) == path)
}

fn live_postmaster(pgdata: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).ok()?;
    Some(pid)
}

/// Checks that `owner` can traverse every existing ancestor of `path` (PostgreSQL, run as that
/// user, must reach its data directory).
pub(crate) fn check_reachable(path: &Path, owner: (u32, u32)) -> Result<(), PgdataError> {
    use std::os::unix::fs::MetadataExt;
    let (uid, gid) = owner;
    for ancestor in path.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode();
        let searchable = if meta.uid() == uid {
            mode & 0o100 != 0
        } else if meta.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(PgdataError::Unreachable {
                path: path.to_owned(),
                ancestor: ancestor.to_owned(),
                uid,
            });
        }
    }
    Ok(())
}

/// Wipes `path` (after [`check_wipe_allowed`]) and recreates it empty with mode 0700, owned
/// by `owner` when given.
pub(crate) fn wipe_and_create(
    path: &Path,
    force: bool,
    owner: Option<(u32, u32)>,
) -> Result<(), PgdataError> {
    check_wipe_allowed(path, force)?;
    if let Some(owner) = owner {
        check_reachable(path, owner)?;
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", path)(e)),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err("create", path))?;
    // The umask may have narrowed the mode; recursive creation may have left it as it was.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err("chmod", path))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err("chown", path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &Path, force: bool, expect: &str) {
        let got = match check_wipe_allowed(path, force) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            got.contains(expect),
            "{}: got {got:?}, want {expect:?}",
            path.display()
        );
    }

    #[test]
    fn refuses_what_is_not_a_data_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        check(Path::new("/"), true, "the root directory");
        check(Path::new("/usr/.."), true, "the root directory");
        check(Path::new("/etc"), true, "a system directory");
        check(Path::new("/root"), true, "");
        if let Some(home) = std::env::var_os("HOME") {
            check(Path::new(&home), true, "refusing");
        }
        check(&dir.join("missing"), false, "ok");
        std::fs::create_dir(dir.join("empty")).unwrap();
        check(&dir.join("empty"), false, "ok");
        std::fs::create_dir(dir.join("stuff")).unwrap();
        std::fs::write(dir.join("stuff/notes.txt"), "keep me").unwrap();
        // What a start killed before PG_VERSION existed leaves.
        std::fs::create_dir(dir.join("interrupted")).unwrap();
        std::fs::write(dir.join("interrupted/postgresql.conf"), "").unwrap();
        std::fs::create_dir(dir.join("interrupted/base")).unwrap();
        check(&dir.join("interrupted"), false, "ok");
        std::fs::write(dir.join("interrupted/notes.txt"), "keep me").unwrap();
        check(&dir.join("interrupted"), false, "no PG_VERSION");
        check(&dir.join("stuff"), false, "has no PG_VERSION");
        check(&dir.join("stuff"), true, "ok");
        std::fs::write(dir.join("file"), "x").unwrap();
        check(&dir.join("file"), false, "is not a directory");
        std::fs::create_dir(dir.join("pg")).unwrap();
        std::fs::write(dir.join("pg/PG_VERSION"), "15\n").unwrap();
        check(&dir.join("pg"), false, "ok");
        // Our own pid is certainly alive.
        std::fs::write(
            dir.join("pg/postmaster.pid"),
            format!("{}\n/x\n", std::process::id()),
        )
        .unwrap();
        check(&dir.join("pg"), true, "is alive");
    }

    #[test]
    fn unreachable_data_directories_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let locked = tmp.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
        let me = nix::unistd::Uid::effective().as_raw();
        let stranger = (me.wrapping_add(12345), 54321);
        let err = check_reachable(&locked.join("pgdata"), stranger).unwrap_err();
        assert!(err.to_string().contains("is not searchable"), "{err}");
        assert!(check_reachable(&locked.join("pgdata"), (me, 0)).is_ok());
    }

    #[test]
    fn wipe_recreates_with_mode_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let pg = tmp.path().join("pg");
        std::fs::create_dir(&pg).unwrap();
        std::fs::write(pg.join("PG_VERSION"), "15\n").unwrap();
        std::fs::write(pg.join("base"), "old").unwrap();
        wipe_and_create(&pg, false, None).unwrap();
        assert_eq!(std::fs::read_dir(&pg).unwrap().count(), 0);
        let mode = std::fs::metadata(&pg).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A refused wipe leaves everything in place.
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("a"), "keep").unwrap();
        assert!(wipe_and_create(&other, false, None).is_err());
        assert_eq!(std::fs::read_to_string(other.join("a")).unwrap(), "keep");
    }
}
