//! Data-directory safety: every start wipes PGDATA, so first make sure the path is a data
//! directory this compute may wipe. The rule, in order; `--force-wipe` lifts only the last:
//!
//! 1. never `/` or system content: anything at or under `/bin`, `/boot`, `/dev`, `/etc`,
//!    `/lib`, `/lib32`, `/lib64`, `/libx32`, `/proc`, `/run`, `/sbin`, `/snap`, `/sys`,
//!    `/usr`, `/var/backups`, `/var/cache`, `/var/lib`, `/var/log`, `/var/mail`,
//!    `/var/spool` — except strictly below `/var/lib/postgresql` and `/usr/local/pgsql`,
//!    PostgreSQL's customary data-directory parents — nor the shared top-level directories
//!    themselves (`/home`, `/media`, `/mnt`, `/opt`, `/root`, `/srv`, `/tmp`, `/var`,
//!    `/var/db`, `/var/tmp`);
//! 2. never a home directory of a user of the passwd database or `$HOME`, nor a directory
//!    holding one; symlinks are resolved on both sides (a `$HOME` that links to PGDATA, a
//!    PGDATA that links to a home);
//! 3. never a directory a live postmaster uses (its `postmaster.pid`);
//! 4. never a directory holding a top-level entry neither PostgreSQL nor compute_ctl makes,
//!    forced or not (a planted `PG_VERSION` does not make `/some/dir` a data directory, and
//!    no flag makes a user's files compute_ctl's to delete);
//! 5. unless forced, never a non-empty directory without `PG_VERSION` (but for what an
//!    interrupted start leaves: `postgresql.conf` beside other entries of a data directory,
//!    or only the subdirectories initdb makes before `PG_VERSION`, holding no file):
//!    `--force-wipe` is for a damaged data directory whose `PG_VERSION` is gone.
//!
//! The decision is pure ([`protected`], [`foreign_entries`]) over what [`survey`] reads.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a data directory was not wiped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PgdataError {
    /// The path is `/`, system content or a home directory (`--force-wipe` does not help).
    #[error("refusing to wipe {path}: it is {what}, not a compute data directory")]
    Protected {
        /// The directory.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// A non-empty directory without `PG_VERSION` (and without foreign files).
    #[error(
        "refusing to wipe {path}: it is not empty and has no PG_VERSION, so it does not look \
         like a data directory (pass --force-wipe to wipe a data directory that lost it)"
    )]
    NotADataDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// A directory that holds what PostgreSQL would not have made (`--force-wipe` does not
    /// help).
    #[error(
        "refusing to wipe {path}: it holds files PostgreSQL and compute_ctl do not make \
         ({entries}), so it is not a data directory (move them away, or choose another -D)"
    )]
    ForeignFiles {
        /// The directory.
        path: PathBuf,
        /// The first few foreign entries, comma-separated.
        entries: String,
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
    #[error("{action} {path}: {error}")]
    Io {
        /// What was done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error (in the message, not a `source`: printed once in a chain).
        error: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PgdataError {
    let path = path.to_owned();
    move |source| PgdataError::Io {
        action,
        path,
        error: source,
    }
}

/// System content: these directories and everything below them (rule 1).
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/snap",
    "/sys",
    "/usr",
    "/var/backups",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/mail",
    "/var/spool",
];

/// Below these (not at them), a system tree may hold data directories.
const DATA_PARENTS: &[&str] = &["/var/lib/postgresql", "/usr/local/pgsql"];

/// Shared directories that are never a data directory themselves (rule 1).
const SHARED_DIRS: &[&str] = &[
    "/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var", "/var/db", "/var/tmp",
];

/// Top-level entries PostgreSQL 15 (initdb, the server, a base backup, recovery, a crash's
/// core file aside) or compute_ctl and the pageserver's basebackup make in a data directory.
const DATA_DIRECTORY_ENTRIES: &[&str] = &[
    "PG_VERSION",
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
    "pg_hba.conf",
    "pg_ident.conf",
    "postgresql.conf",
    "postgresql.auto.conf",
    "postgresql.auto.conf.tmp",
    "postmaster.opts",
    "postmaster.pid",
    "current_logfiles",
    "current_logfiles.tmp",
    "log",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "standby.signal",
    "recovery.signal",
    "core",
    // compute_ctl's own (pg-config's names) and the pageserver's basebackup.
    pg_config::TEMP_OVERRIDE_CONF,
    pg_config::SERVER_CRT,
    pg_config::SERVER_KEY,
    "zenith.signal",
    "neon.signal",
];

/// Why `canonical` (symlinks resolved) may never be wiped, if so: rules 1 and 2. `homes` are
/// the users' home directories, resolved too.
fn protected(canonical: &Path, homes: &[PathBuf]) -> Option<String> {
    if canonical.parent().is_none() {
        return Some("the root directory".to_owned());
    }
    let below_data_parent = DATA_PARENTS
        .iter()
        .any(|p| canonical.starts_with(p) && canonical != Path::new(p));
    if let Some(tree) = SYSTEM_TREES.iter().find(|t| canonical.starts_with(t))
        && !below_data_parent
    {
        return Some(if canonical == Path::new(tree) {
            "a system directory".to_owned()
        } else {
            format!("system content (under {tree})")
        });
    }
    if SHARED_DIRS.iter().any(|d| canonical == Path::new(d)) {
        return Some("a system directory".to_owned());
    }
    let real_homes = homes.iter().filter(|h| h.parent().is_some());
    for home in real_homes {
        if home == canonical {
            return Some("a home directory".to_owned());
        }
        if home.starts_with(canonical) {
            return Some(format!(
                "a directory holding a home directory ({})",
                home.display()
            ));
        }
    }
    None
}

/// The top-level entries of a data directory that neither PostgreSQL nor compute_ctl makes
/// (rule 4), sorted. compute_ctl's interrupted atomic writes (`.NAME.PID.tmp`) and core
/// files (`core.PID`) are its own.
fn foreign_entries(names: &[OsString]) -> Vec<String> {
    let ours = |name: &str| {
        if DATA_DIRECTORY_ENTRIES.contains(&name) {
            return true;
        }
        if let Some(pid) = name.strip_prefix("core.") {
            return !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
        }
        let temp = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.rsplit_once('.'));
        temp.is_some_and(|(file, pid)| {
            DATA_DIRECTORY_ENTRIES.contains(&file) && pid.bytes().all(|b| b.is_ascii_digit())
        })
    };
    let mut foreign: Vec<String> = names
        .iter()
        .map(|n| n.to_string_lossy())
        .filter(|n| !ours(n))
        .map(|n| n.into_owned())
        .collect();
    foreign.sort();
    foreign
}

/// The top-level directories initdb makes before it writes `PG_VERSION` (PostgreSQL 15's
/// `initdb.c`: `pg_wal`, then its `subdirs`).
const INITDB_SUBDIRECTORIES: &[&str] = &[
    "pg_wal",
    "global",
    "pg_commit_ts",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
    "pg_twophase",
    "pg_multixact",
    "base",
    "pg_replslot",
    "pg_tblspc",
    "pg_stat",
    "pg_stat_tmp",
    "pg_xact",
    "pg_logical",
];

/// Whether a directory without `PG_VERSION` holds only what an interrupted start of a compute
/// leaves, which the next start must be able to wipe: nothing that neither PostgreSQL nor
/// compute_ctl makes, and either compute_ctl's `postgresql.conf` (written before
/// sync-safekeepers, which reads it; a basebackup's first entries beside it) or only initdb's
/// subdirectories holding no file (`empty_directories`: what initdb leaves before it writes
/// `PG_VERSION`).
fn interrupted_start(names: &[OsString], empty_directories: bool) -> bool {
    let initdb_made = |n: &OsString| INITDB_SUBDIRECTORIES.iter().any(|d| n == d);
    foreign_entries(names).is_empty()
        && (names.iter().any(|n| n == "postgresql.conf")
            || (empty_directories && names.iter().all(initdb_made)))
}

/// Whether `dir` holds nothing but directories, down to `depth` levels (symlinks not
/// followed: a link is not a directory); deeper than that counts as holding something.
fn holds_only_directories(dir: &Path, depth: usize) -> io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir()
            || depth == 0
            || !holds_only_directories(&entry.path(), depth - 1)?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What the decision looks at, read from the filesystem.
#[derive(Debug)]
struct Survey {
    /// The data directory, symlinks resolved (a missing tail appended as given).
    canonical: PathBuf,
    /// The home directory of every user in the passwd database, and `$HOME`, resolved.
    homes: Vec<PathBuf>,
    /// What is at the path.
    found: Found,
    /// Whether it holds a regular file `PG_VERSION`.
    has_pg_version: bool,
}

/// What is at a data directory's path.
#[derive(Debug)]
enum Found {
    /// Nothing.
    Missing,
    /// Something that is not a directory.
    NotADirectory,
    /// A directory with these names at its top.
    Directory {
        /// The names.
        names: Vec<OsString>,
        /// Whether it holds nothing but directories, three levels down (initdb's
        /// `base/1`, `pg_wal/archive_status`, `pg_multixact/members`).
        empty_directories: bool,
    },
}

/// Reads what [`check_wipe_allowed`] decides on.
fn survey(path: &Path) -> Result<Survey, PgdataError> {
    let canonical = resolve(path).map_err(io_err("resolve", path))?;
    let mut homes: Vec<PathBuf> = passwd_homes().iter().map(|h| resolve_lossy(h)).collect();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        homes.push(resolve_lossy(Path::new(&home)));
    }
    let found = match std::fs::symlink_metadata(&canonical) {
        Ok(meta) if !meta.is_dir() => Found::NotADirectory,
        Ok(_) => Found::Directory {
            names: std::fs::read_dir(&canonical)
                .map_err(io_err("read", path))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(io_err("read", path))?,
            empty_directories: holds_only_directories(&canonical, 3)
                .map_err(io_err("read", path))?,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Found::Missing,
        Err(e) => return Err(io_err("stat", path)(e)),
    };
    Ok(Survey {
        has_pg_version: canonical.join("PG_VERSION").is_file(),
        canonical,
        homes,
        found,
    })
}

/// Checks that `path` may be wiped. `path` must be absolute.
pub(crate) fn check_wipe_allowed(path: &Path, force: bool) -> Result<(), PgdataError> {
    let survey = survey(path)?;
    if let Some(what) = protected(&survey.canonical, &survey.homes) {
        return Err(PgdataError::Protected {
            path: path.to_owned(),
            what,
        });
    }
    let (entries, empty_directories) = match survey.found {
        Found::Missing => return Ok(()),
        Found::NotADirectory => {
            return Err(PgdataError::NotADirectory {
                path: path.to_owned(),
            });
        }
        Found::Directory {
            names,
            empty_directories,
        } => (names, empty_directories),
    };
    if let Some(pid) = live_postmaster(&survey.canonical) {
        return Err(PgdataError::InUse {
            path: path.to_owned(),
            pid,
        });
    }
    let foreign = foreign_entries(&entries);
    if !foreign.is_empty() {
        let shown = foreign
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = foreign.len().saturating_sub(5);
        return Err(PgdataError::ForeignFiles {
            path: path.to_owned(),
            entries: if more > 0 {
                format!("{shown} and {more} more")
            } else {
                shown
            },
        });
    }
    if !entries.is_empty()
        && !force
        && !survey.has_pg_version
        && !interrupted_start(&entries, empty_directories)
    {
        return Err(PgdataError::NotADataDirectory {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// `path` with symlinks resolved: its longest existing prefix canonicalized, the rest (`.`
/// and `..` removed) appended.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    let path = normalize(path);
    let mut existing = path.as_path();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(real) => {
                let rest = path.strip_prefix(existing).unwrap_or(Path::new(""));
                return Ok(if rest.as_os_str().is_empty() {
                    real
                } else {
                    real.join(rest)
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match existing.parent() {
                Some(parent) => existing = parent,
                None => return Ok(path),
            },
            Err(e) => return Err(e),
        }
    }
}

/// [`resolve`], or the path as given when it cannot be resolved.
fn resolve_lossy(path: &Path) -> PathBuf {
    resolve(path).unwrap_or_else(|_| normalize(path))
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

/// The home directories of the passwd database (absolute ones only).
fn passwd_homes() -> Vec<PathBuf> {
    let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
        return Vec::new();
    };
    passwd
        .lines()
        .filter_map(|line| line.split(':').nth(5))
        .filter(|home| home.starts_with('/'))
        .map(PathBuf::from)
        .collect()
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

    /// An OS error is printed once in the chain (it was in the message and the source).
    #[test]
    fn an_os_error_is_printed_once() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        let e = check_wipe_allowed(&tmp.path().join("file/pgdata"), false).unwrap_err();
        let text = format!("{:#}", anyhow::Error::new(e));
        assert_eq!(text.matches("os error 20").count(), 1, "{text}");
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
        check(&dir.join("interrupted"), false, "do not make (notes.txt)");
        check(&dir.join("interrupted"), true, "do not make (notes.txt)");
        check(&dir.join("stuff"), false, "do not make (notes.txt)");
        check(&dir.join("stuff"), true, "do not make (notes.txt)");
        // What an initdb killed before PG_VERSION leaves: its subdirectories only, empty.
        std::fs::create_dir(dir.join("initdb")).unwrap();
        std::fs::create_dir_all(dir.join("initdb/pg_wal/archive_status")).unwrap();
        std::fs::create_dir_all(dir.join("initdb/base/1")).unwrap();
        check(&dir.join("initdb"), false, "ok");
        // A file below them, a link among them, or a name initdb does not make first: refused.
        std::fs::write(dir.join("initdb/base/1/16384"), "data").unwrap();
        check(&dir.join("initdb"), false, "has no PG_VERSION");
        std::fs::remove_file(dir.join("initdb/base/1/16384")).unwrap();
        std::os::unix::fs::symlink(dir.join("stuff"), dir.join("initdb/global")).unwrap();
        check(&dir.join("initdb"), false, "has no PG_VERSION");
        std::fs::remove_file(dir.join("initdb/global")).unwrap();
        std::fs::create_dir_all(dir.join("logs-only/log")).unwrap();
        check(&dir.join("logs-only"), false, "has no PG_VERSION");
        std::fs::write(dir.join("logs-only/log/app.log"), "x").unwrap();
        check(&dir.join("logs-only"), false, "has no PG_VERSION");
        check(&dir.join("initdb"), false, "ok");
        // A data directory that lost its PG_VERSION: only forced.
        std::fs::create_dir(dir.join("damaged")).unwrap();
        std::fs::create_dir(dir.join("damaged/base")).unwrap();
        std::fs::write(dir.join("damaged/pg_hba.conf"), "").unwrap();
        check(&dir.join("damaged"), false, "has no PG_VERSION");
        check(&dir.join("damaged"), true, "ok");
        std::fs::write(dir.join("file"), "x").unwrap();
        check(&dir.join("file"), false, "is not a directory");
        std::fs::create_dir(dir.join("pg")).unwrap();
        std::fs::write(dir.join("pg/PG_VERSION"), "15\n").unwrap();
        check(&dir.join("pg"), false, "ok");
        // A planted PG_VERSION beside what postgres would not make: refused, forced or not.
        std::fs::write(dir.join("stuff/PG_VERSION"), "15\n").unwrap();
        check(&dir.join("stuff"), false, "do not make (notes.txt)");
        check(&dir.join("stuff"), true, "do not make (notes.txt)");
        // Our own pid is certainly alive.
        std::fs::write(
            dir.join("pg/postmaster.pid"),
            format!("{}\n/x\n", std::process::id()),
        )
        .unwrap();
        check(&dir.join("pg"), true, "is alive");
    }

    /// Rules 1 and 2 over plain paths: what is refused whatever the flags say, and why.
    #[test]
    fn system_content_and_homes_are_protected() {
        let homes: Vec<PathBuf> = [
            "/",
            "/root",
            "/home/alice",
            "/var/lib/postgresql",
            "/srv/bob",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let cases = [
            ("/", Some("the root directory")),
            ("/usr", Some("a system directory")),
            ("/usr/local/lib", Some("system content (under /usr)")),
            ("/etc/ssh", Some("system content (under /etc)")),
            ("/var/log", Some("a system directory")),
            (
                "/var/log/postgresql",
                Some("system content (under /var/log)"),
            ),
            ("/var/lib/docker", Some("system content (under /var/lib)")),
            ("/proc/self", Some("system content (under /proc)")),
            ("/lib64/x", Some("system content (under /lib64)")),
            ("/run/postgresql", Some("system content (under /run)")),
            ("/usr/local/pgsql", Some("system content (under /usr)")),
            ("/usr/local", Some("system content (under /usr)")),
            ("/tmp", Some("a system directory")),
            ("/var/db", Some("a system directory")),
            (
                "/var/lib/postgresql",
                Some("system content (under /var/lib)"),
            ),
            ("/home/alice", Some("a home directory")),
            ("/root", Some("a system directory")),
            ("/srv/bob", Some("a home directory")),
            ("/home", Some("a system directory")),
            ("/srv", Some("a system directory")),
            ("/data", None),
            ("/data/..", Some("the root directory")),
            ("/var/lib/postgresql/15/main", None),
            ("/usr/local/pgsql/data", None),
            ("/var/db/postgres/compute", None),
            ("/home/alice/pgdata", None),
            ("/tmp/compute", None),
            ("/usrdata", None),
        ];
        for (path, want) in cases {
            let got = protected(&normalize(Path::new(path)), &homes);
            assert_eq!(got.as_deref(), want, "{path}");
        }
        // A directory holding a home: wiping it wipes the home.
        let homes = [PathBuf::from("/data/users/carol")];
        assert_eq!(
            protected(Path::new("/data/users"), &homes).as_deref(),
            Some("a directory holding a home directory (/data/users/carol)")
        );
        assert_eq!(protected(Path::new("/data/users/carol/pg"), &homes), None);
    }

    /// Rule 4's list: what initdb, a running server and compute_ctl leave is ours.
    #[test]
    fn entries_postgres_would_not_make_are_foreign() {
        let names = |list: &[&str]| -> Vec<OsString> { list.iter().map(OsString::from).collect() };
        let initdb = [
            "PG_VERSION",
            "base",
            "global",
            "pg_commit_ts",
            "pg_dynshmem",
            "pg_hba.conf",
            "pg_ident.conf",
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
            "postgresql.auto.conf",
            "postgresql.conf",
        ];
        assert!(foreign_entries(&names(&initdb)).is_empty());
        let ours = [
            "postmaster.pid",
            "postmaster.opts",
            "log",
            "current_logfiles",
            "standby.signal",
            "compute_ctl_temp_override.conf",
            "server.key",
            "server.crt",
            "zenith.signal",
            ".postgresql.conf.1234.tmp",
            "core",
            "core.4242",
        ];
        assert!(foreign_entries(&names(&ours)).is_empty());
        let planted = [
            "PG_VERSION",
            "syslog",
            "auth.log",
            "core.x",
            ".bashrc.1.tmp",
            ".postgresql.conf.tmp",
            "apt",
        ];
        assert_eq!(
            foreign_entries(&names(&planted)),
            [
                ".bashrc.1.tmp",
                ".postgresql.conf.tmp",
                "apt",
                "auth.log",
                "core.x",
                "syslog"
            ]
        );
    }

    /// Symlinks are resolved on both sides: a home that links to the data directory, a data
    /// directory that links to a home, and paths below a linked parent that do not exist yet.
    #[test]
    fn symlinks_are_resolved_before_deciding() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let real = resolve(&real).unwrap();
        assert_eq!(resolve(&link).unwrap(), real);
        assert_eq!(resolve(&link.join("new/../pg")).unwrap(), real.join("pg"));
        // $HOME (or a passwd home) is the link, -D the directory; and the other way round.
        assert!(protected(&real, &[resolve_lossy(&link)]).is_some());
        assert!(protected(&resolve(&link).unwrap(), std::slice::from_ref(&real)).is_some());
        // A link into a system tree is system content.
        let etc = tmp.path().join("etc-link");
        std::os::unix::fs::symlink("/etc", &etc).unwrap();
        assert_eq!(
            protected(&resolve(&etc.join("ssh")).unwrap(), &[]).as_deref(),
            Some("system content (under /etc)")
        );
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
