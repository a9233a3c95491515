//! What one PostgreSQL installation supports, found by running its programs: the settings
//! `postgres --describe-config` lists (plus the ones it hides, confirmed one by one), the
//! library directory (`pg_config --pkglibdir` beside the binary, else `../lib`) and the
//! libraries in it. [`PgBinary::support`] turns that into the plain
//! [`pg_config::ServerSupport`] that `pg-config` decides with (it drops what the binary would
//! refuse), so the decisions stay pure.
//!
//! This crate runs programs and reads directories; it does not start a server, check setting
//! values (spec-check does, with [`PgBinary::command`]), or decide what to drop (`pg-config`).
//! PostgreSQL refuses to run as root: callers that are root pass the unprivileged user to run
//! it as.
//!
//! ```no_run
//! use std::path::Path;
//! use pg_binary::PgBinary;
//!
//! let pg = PgBinary::probe(Path::new("/usr/lib/postgresql/15/bin/postgres"), Some((999, 999)))?;
//! assert!(pg.knows_setting("work_mem"));
//! assert!(!pg.has_library("neon"));
//! let support: &pg_config::ServerSupport = pg.support();
//! assert!(!support.walproposer);
//! # Ok::<(), pg_binary::ProbeError>(())
//! ```
#![warn(missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use child_process::Command;

use pg_config::ServerSupport;

/// One line of `postgres --describe-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GucDescription {
    /// Name, lower case.
    pub name: String,
    /// `postmaster`, `sighup`, `user`, …
    pub context: String,
    /// `BOOLEAN`, `INTEGER`, `REAL`, `STRING` or `ENUM`.
    pub vartype: String,
    /// Minimum, for numbers (in the setting's base unit).
    pub min: Option<String>,
    /// Maximum, for numbers (in the setting's base unit).
    pub max: Option<String>,
}

/// Parses `postgres --describe-config` output: tab-separated name, context, group, type,
/// reset value, min, max, descriptions.
pub fn parse_describe_config(text: &str) -> Vec<GucDescription> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() < 7 || fields[0].is_empty() {
                return None;
            }
            let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            Some(GucDescription {
                name: fields[0].to_ascii_lowercase(),
                context: fields[1].to_owned(),
                vartype: fields[3].to_owned(),
                min: non_empty(fields[5]),
                max: non_empty(fields[6]),
            })
        })
        .collect()
}

/// Settings of PostgreSQL 14–17 that `--describe-config` leaves out (not in the sample file,
/// not shown by `SHOW ALL`, compile-time debugging options) although some may be set in a
/// configuration file, `application_name` among them. Each one the binary does not list is
/// confirmed by a run before it counts as known.
const HIDDEN_SETTINGS: &[&str] = &[
    "allow_alter_system",
    "allow_in_place_tablespaces",
    "allow_system_table_mods",
    "application_name",
    "backtrace_functions",
    "block_size",
    "data_checksums",
    "data_directory_mode",
    "debug_assertions",
    "debug_deadlocks",
    "debug_discard_caches",
    "debug_io_direct",
    "debug_logical_replication_streaming",
    "debug_parallel_query",
    "force_parallel_mode",
    "huge_pages_status",
    "ignore_checksum_failure",
    "ignore_invalid_pages",
    "ignore_system_indexes",
    "in_hot_standby",
    "integer_datetimes",
    "is_superuser",
    "jit_debugging_support",
    "jit_dump_bitcode",
    "jit_expressions",
    "jit_profiling_support",
    "jit_tuple_deforming",
    "lc_collate",
    "lc_ctype",
    "max_function_args",
    "max_identifier_length",
    "max_index_keys",
    "num_os_semaphores",
    "optimize_bounded_sort",
    "post_auth_delay",
    "pre_auth_delay",
    "remove_temp_files_after_crash",
    "restrict_nonsystem_relation_kind",
    "role",
    "seed",
    "segment_size",
    "send_abort_for_crash",
    "send_abort_for_kill",
    "server_encoding",
    "server_version",
    "server_version_num",
    "session_authorization",
    "shared_memory_size",
    "shared_memory_size_in_huge_pages",
    "ssl_library",
    "trace_connection_negotiation",
    "trace_lock_oidmin",
    "trace_lock_table",
    "trace_locks",
    "trace_lwlocks",
    "trace_notify",
    "trace_recovery_messages",
    "trace_sort",
    "trace_syncscan",
    "trace_userlocks",
    "transaction_deferrable",
    "transaction_isolation",
    "transaction_read_only",
    "wal_block_size",
    "wal_consistency_checking",
    "wal_debug",
    "wal_segment_size",
    "zero_damaged_pages",
];

/// Settings naming files, which every PostgreSQL has: known without a run (a run would make the
/// server read the file named).
const FILE_SETTINGS: &[&str] = &[
    "config_file",
    "data_directory",
    "external_pid_file",
    "hba_file",
    "ident_file",
];

/// Why an installation could not be probed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The path could not be made absolute.
    #[error("resolve {}", path.display())]
    Resolve {
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a file.
    #[error("{} is not a file (expected the `postgres` binary)", path.display())]
    NotAFile {
        /// The absolute path.
        path: PathBuf,
    },
    /// A program could not be run.
    #[error("run {} {arg}", program.display())]
    Run {
        /// The program.
        program: PathBuf,
        /// Its argument.
        arg: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `postgres --describe-config` failed.
    #[error("{} --describe-config failed ({status}): {stderr}", postgres.display())]
    DescribeConfigFailed {
        /// The binary.
        postgres: PathBuf,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// `postgres --describe-config` listed nothing.
    #[error("{} --describe-config listed no settings", postgres.display())]
    NoSettings {
        /// The binary.
        postgres: PathBuf,
    },
}

/// A probed PostgreSQL installation.
#[derive(Debug, Clone)]
pub struct PgBinary {
    postgres: PathBuf,
    run_as: Option<(u32, u32)>,
    settings: Vec<GucDescription>,
    libdir: PathBuf,
    support: ServerSupport,
}

impl PgBinary {
    /// Probes the `postgres` binary at `postgres_path` (or in the directory `postgres_path`),
    /// running it as `run_as` (uid, gid) when given: reads its settings and finds its library
    /// directory and libraries.
    pub fn probe(postgres_path: &Path, run_as: Option<(u32, u32)>) -> Result<PgBinary, ProbeError> {
        let postgres = resolve(postgres_path)?;
        let mut pg = PgBinary {
            postgres,
            run_as,
            settings: Vec::new(),
            libdir: PathBuf::new(),
            support: ServerSupport::default(),
        };
        let output = pg
            .command()
            .arg("--describe-config")
            .output_blocking()
            .map_err(|e| ProbeError::Run {
                program: pg.postgres.clone(),
                arg: "--describe-config",
                source: e.into(),
            })?;
        if !output.status.success() {
            return Err(ProbeError::DescribeConfigFailed {
                postgres: pg.postgres,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        pg.settings = parse_describe_config(&String::from_utf8_lossy(&output.stdout));
        if pg.settings.is_empty() {
            return Err(ProbeError::NoSettings {
                postgres: pg.postgres,
            });
        }
        let mut known: BTreeSet<String> = pg.settings.iter().map(|g| g.name.clone()).collect();
        known.extend(FILE_SETTINGS.iter().map(|s| (*s).to_owned()));
        let hidden: Vec<&str> = HIDDEN_SETTINGS
            .iter()
            .copied()
            .filter(|name| !known.contains(*name))
            .collect();
        known.extend(pg.confirm_settings(&hidden)?.into_iter().map(str::to_owned));
        pg.libdir = find_libdir(&pg.postgres);
        pg.support = ServerSupport {
            known_settings: known,
            ..library_support(&pg.libdir)
        };
        Ok(pg)
    }

    /// The `postgres` binary (absolute).
    pub fn postgres(&self) -> &Path {
        &self.postgres
    }

    /// The settings `--describe-config` lists (not the hidden ones [`Self::knows_setting`]
    /// also knows).
    pub fn settings(&self) -> &[GucDescription] {
        &self.settings
    }

    /// Whether the binary accepts a setting named `name`: dotted names always (custom
    /// placeholders), others when it knows them (case-insensitively).
    pub fn knows_setting(&self, name: &str) -> bool {
        self.support.knows_setting(name)
    }

    /// The library directory library names are looked up in.
    pub fn libdir(&self) -> &Path {
        &self.libdir
    }

    /// The files in the library directory and its `plugins/` subdirectory, relative to it.
    pub fn library_files(&self) -> &BTreeSet<String> {
        &self.support.libraries
    }

    /// Whether the library `name` is installed: `name.so` or `name` is in the library
    /// directory (a `$libdir/` prefix is allowed). Names with another directory are not
    /// looked up: `false`.
    pub fn has_library(&self, name: &str) -> bool {
        self.support.has_library(name) == Some(true)
    }

    /// What the installation supports, as plain data for `pg-config`.
    pub fn support(&self) -> &ServerSupport {
        &self.support
    }

    /// The binary, with an empty environment (no `PGDATA`: the server must not find a data
    /// directory), C messages, `/` as working directory, as the `run_as` user if given.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.postgres);
        cmd.env_clear()
            .env("LC_ALL", "C")
            .current_dir("/")
            .run_as(self.run_as.map(child_process::RunAs::from));
        cmd
    }

    /// The `names` the binary knows, one `postgres -c name=0` run each (all at once): the
    /// server stops with "unrecognized configuration parameter" only for names it does not
    /// know, otherwise with a bad value or at not finding a configuration file.
    fn confirm_settings<'a>(&self, names: &[&'a str]) -> Result<Vec<&'a str>, ProbeError> {
        let run_error = |e: child_process::Error| ProbeError::Run {
            program: self.postgres.clone(),
            arg: "-c",
            source: e.into(),
        };
        let mut children = Vec::new();
        for name in names {
            let child = self
                .command()
                .arg("-c")
                .arg(format!("{name}=0"))
                .start_blocking()
                .map_err(run_error)?;
            children.push((*name, child));
        }
        let mut known = Vec::new();
        for (name, child) in children {
            let output = child.wait_with_output().map_err(run_error)?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            if !stderr.contains("unrecognized configuration parameter") {
                known.push(name);
            }
        }
        Ok(known)
    }
}

/// The libraries of the installation the `postgres` binary at `postgres_path` (or in the
/// directory `postgres_path`) belongs to: the cheap part of [`PgBinary::probe`], one
/// `pg_config --pkglibdir` and a directory listing, no server run. In the result only
/// `libdir`, `libraries` and `walproposer` are known: `known_settings` is empty, so it answers
/// [`ServerSupport::has_library`] and nothing about settings.
pub fn probe_libraries(postgres_path: &Path) -> Result<ServerSupport, ProbeError> {
    Ok(library_support(&find_libdir(&resolve(postgres_path)?)))
}

/// What the library directory `libdir` tells: its libraries, and whether the `neon` library
/// (and so the walproposer) is among them; no settings known.
fn library_support(libdir: &Path) -> ServerSupport {
    let mut support = ServerSupport {
        known_settings: BTreeSet::new(),
        libdir: libdir.display().to_string(),
        walproposer: false,
        libraries: library_files(libdir),
    };
    support.walproposer = support.has_library("neon") == Some(true);
    support
}

/// The absolute path of the binary `postgres_path` names (or of `postgres` in that directory).
fn resolve(postgres_path: &Path) -> Result<PathBuf, ProbeError> {
    let mut postgres =
        std::path::absolute(postgres_path).map_err(|source| ProbeError::Resolve {
            path: postgres_path.to_owned(),
            source,
        })?;
    if postgres.is_dir() {
        postgres.push("postgres"); // a bin directory
    }
    if !postgres.is_file() {
        return Err(ProbeError::NotAFile { path: postgres });
    }
    Ok(postgres)
}

/// The library directory: `pg_config --pkglibdir` beside the binary, else `../lib`.
fn find_libdir(postgres: &Path) -> PathBuf {
    let bindir = postgres.parent().unwrap_or(Path::new("/"));
    let pg_config = bindir.join("pg_config");
    if let Ok(out) = Command::new(&pg_config)
        .arg("--pkglibdir")
        .output_blocking()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.is_dir() {
            return dir;
        }
    }
    bindir.join("../lib")
}

impl From<PgBinary> for ServerSupport {
    fn from(pg: PgBinary) -> ServerSupport {
        pg.support
    }
}

/// The files in `libdir` and `libdir/plugins`, relative to `libdir` (names that are not UTF-8
/// left out). A missing directory has none.
fn library_files(libdir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sub in ["", "plugins/"] {
        let Ok(dir) = std::fs::read_dir(libdir.join(sub)) else {
            continue;
        };
        for entry in dir.flatten() {
            if !entry.path().is_file() {
                continue;
            }
            if let Ok(name) = entry.file_name().into_string() {
                out.insert(format!("{sub}{name}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_describe_config() {
        let text = "port\tpostmaster\tConnections\tINTEGER\t0\t1\t65535\tSets the TCP port.\t\n\
                    wal_level\tpostmaster\tWAL\tENUM\treplica\t\t\tSets the level.\t\n\
                    short\tline\n";
        let gucs = parse_describe_config(text);
        assert_eq!(gucs.len(), 2);
        assert_eq!(gucs[0].name, "port");
        assert_eq!(gucs[0].vartype, "INTEGER");
        assert_eq!(gucs[0].max.as_deref(), Some("65535"));
        assert_eq!(gucs[1].min, None);
    }

    #[test]
    fn lists_library_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.so"), "").unwrap();
        std::fs::write(dir.path().join("b"), "").unwrap();
        std::fs::create_dir(dir.path().join("pgxs")).unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        std::fs::write(dir.path().join("plugins/p.so"), "").unwrap();
        let files: Vec<String> = library_files(dir.path()).into_iter().collect();
        assert_eq!(files, ["a.so", "b", "plugins/p.so"]);
        assert!(library_files(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn probe_errors() {
        let error = PgBinary::probe(Path::new("/nonexistent/postgres"), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "/nonexistent/postgres is not a file (expected the `postgres` binary)"
        );
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("postgres");
        std::fs::write(&fake, "").unwrap();
        let error = PgBinary::probe(&fake, None).unwrap_err();
        assert!(error.to_string().starts_with("run "), "{error}");
    }
}
