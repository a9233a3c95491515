//! Test support: start a real, throw-away PostgreSQL server on a temporary data directory, a
//! free TCP port on 127.0.0.1 and a private unix-socket directory, and stop it on drop.
//!
//! PostgreSQL refuses to run as root, and CI runs as root. When the current user is root, every
//! PostgreSQL program started here runs as an unprivileged user (`$TEST_PG_USER`, default
//! `postgres`), and the temporary directory is handed to that user. When not root, programs
//! run as the current user.
//!
//! This crate owns nothing of the product: it is a dev-dependency for tests and benchmarks.
//! Binaries come from `$PG_BIN_DIR`, default `/usr/lib/postgresql/15/bin`.
//!
//! ```no_run
//! let pg = test_postgres::TestPostgres::start().unwrap();
//! println!("connect with {}", pg.connstr("postgres"));
//! ```
#![warn(missing_docs)]

use std::ffi::OsStr;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid, User};

/// What went wrong starting or stopping a test server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem or process-spawn operation failed.
    #[error("{action}: {error}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error (in the message, not a `source`: printed once in a chain).
        error: std::io::Error,
    },
    /// A PostgreSQL program exited with a failure.
    #[error("{program} failed ({status}): {output}")]
    Program {
        /// The program.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its combined output, or the server log.
        output: String,
    },
    /// Running as root, but the unprivileged user does not exist.
    #[error("running as root and user {0:?} does not exist; create it or set TEST_PG_USER")]
    NoUser(String),
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let action = action.into();
    move |source| Error::Io {
        action,
        error: source,
    }
}

/// The tricky names of upstream's catalog test (spaces, a trailing tab, `%20`, an injection
/// attempt, `#`, `&`, `=`, an emoji, `";$$ $x$ %I`, quotes, `$`, `$$`, `$x$`, `x`, `xx`,
/// `$xx$`), plus 63 × `x`: the longest identifier PostgreSQL keeps. For tests that use them as
/// role, database and owner names and as values.
pub fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "name with spaces",
        "trailing tab\t",
        "%20",
        "\"name\";\\n select 1;",
        "'; DROP TABLE x; --",
        "#hash",
        "&amp",
        "a=b",
        "🐘 emoji",
        "\";$$ $x$ %I",
        "\"",
        "'",
        "$",
        "$$",
        "$x$",
        "x",
        "xx",
        "$xx$",
    ]
    .map(str::to_owned)
    .into();
    names.push("x".repeat(63));
    names
}

/// Directory of the PostgreSQL binaries: `$PG_BIN_DIR` or `/usr/lib/postgresql/15/bin`.
pub fn pg_bin_dir() -> PathBuf {
    std::env::var_os("PG_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// The user PostgreSQL programs must run as: `None` when not root (run as oneself), otherwise
/// the uid and gid of `$TEST_PG_USER` (default `postgres`).
pub fn unprivileged_user() -> Result<Option<(Uid, Gid)>, Error> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let name = std::env::var("TEST_PG_USER").unwrap_or_else(|_| "postgres".to_owned());
    match User::from_name(&name) {
        Ok(Some(user)) => Ok(Some((user.uid, user.gid))),
        _ => Err(Error::NoUser(name)),
    }
}

/// A [`Command`] for `program` that runs as the unprivileged user when we are root.
pub fn command_as_pg_user(program: impl AsRef<OsStr>) -> Result<Command, Error> {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = unprivileged_user()? {
        // std drops supplementary groups (setgroups(0)) before setuid when running as root.
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
    Ok(cmd)
}

/// Gives `path` (recursively) to the unprivileged user when running as root; no-op otherwise.
pub fn chown_to_pg_user(path: &Path) -> Result<(), Error> {
    let Some((uid, gid)) = unprivileged_user()? else {
        return Ok(());
    };
    chown_recursive(path, uid.as_raw(), gid.as_raw())
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) -> Result<(), Error> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(io(format!("chown {}", path.display())))?;
    let meta = std::fs::symlink_metadata(path).map_err(io(format!("stat {}", path.display())))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io(format!("read {}", path.display())))? {
            let entry = entry.map_err(io(format!("read {}", path.display())))?;
            chown_recursive(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

fn run(mut cmd: Command, program: &str) -> Result<(), Error> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("run {program}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Program {
        program: program.to_owned(),
        status: out.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

/// Runs the real `initdb` into `pgdata` (which must not exist or be empty) with trust
/// authentication and the given superuser name. The directory's parent must be writable by the
/// unprivileged user when running as root.
pub fn initdb(pgdata: &Path, superuser: &str) -> Result<(), Error> {
    let mut cmd = command_as_pg_user(pg_bin_dir().join("initdb"))?;
    cmd.arg("--pgdata")
        .arg(pgdata)
        .args([
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "-U",
        ])
        .arg(superuser)
        .current_dir(pgdata.parent().unwrap_or(Path::new("/")));
    run(cmd, "initdb")
}

/// Options for [`TestPostgres::start_with`].
#[derive(Debug, Clone)]
pub struct TestPostgresConfig {
    /// Name of the bootstrap superuser (default `cloud_admin`, as compute_ctl connects).
    pub superuser: String,
    /// Extra `name = value` lines appended to postgresql.conf (values written as given).
    pub extra_conf: Vec<String>,
}

impl Default for TestPostgresConfig {
    fn default() -> Self {
        TestPostgresConfig {
            superuser: "cloud_admin".to_owned(),
            extra_conf: Vec::new(),
        }
    }
}

/// A running throw-away PostgreSQL server. Stopped (immediate mode) and deleted on drop.
#[derive(Debug)]
pub struct TestPostgres {
    dir: tempfile::TempDir,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Data directory.
    pub pgdata: PathBuf,
    /// Directory of the unix socket.
    pub socket_dir: PathBuf,
    /// Bootstrap superuser name.
    pub superuser: String,
    stopped: bool,
}

impl TestPostgres {
    /// Runs `initdb` and starts a server with default options.
    pub fn start() -> Result<TestPostgres, Error> {
        Self::start_with(TestPostgresConfig::default())
    }

    /// Runs `initdb` and starts a server.
    pub fn start_with(config: TestPostgresConfig) -> Result<TestPostgres, Error> {
        let dir = tempfile::Builder::new()
            .prefix("test-postgres-")
            .tempdir()
            .map_err(io("create temporary directory"))?;
        chown_to_pg_user(dir.path())?;
        let pgdata = dir.path().join("pgdata");
        let socket_dir = dir.path().join("sock");
        std::fs::create_dir(&socket_dir).map_err(io("create socket directory"))?;
        chown_to_pg_user(&socket_dir)?;
        initdb(&pgdata, &config.superuser)?;
        let port = free_port();
        let mut conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n",
            socket_dir.display()
        );
        for line in &config.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = pgdata.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).map_err(io("read postgresql.conf"))?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text).map_err(io("write postgresql.conf"))?;
        let mut pg = TestPostgres {
            port,
            pgdata,
            socket_dir,
            superuser: config.superuser,
            dir,
            stopped: true,
        };
        // `free_port` releases the port before the server binds it, so a test running in
        // parallel can take it first: then pick another port and start again.
        let mut attempts = 0;
        loop {
            match pg.pg_ctl(&["start", "-w", "-t", "60", "-l"], Some(&pg.log_path())) {
                Ok(()) => break,
                Err(_) if attempts < 5 && pg.log().contains("could not bind") => {
                    attempts += 1;
                    pg.port = free_port();
                    let mut text =
                        std::fs::read_to_string(&conf_path).map_err(io("read postgresql.conf"))?;
                    text.push_str(&format!("port = {}\n", pg.port));
                    std::fs::write(&conf_path, text).map_err(io("write postgresql.conf"))?;
                }
                Err(e) => return Err(e),
            }
        }
        pg.stopped = false;
        Ok(pg)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn pg_ctl(&self, args: &[&str], last: Option<&Path>) -> Result<(), Error> {
        let mut cmd = command_as_pg_user(pg_bin_dir().join("pg_ctl"))?;
        cmd.arg("-D").arg(&self.pgdata).args(args);
        if let Some(last) = last {
            cmd.arg(last);
        }
        cmd.current_dir(self.dir.path());
        run(cmd, "pg_ctl").map_err(|e| match e {
            Error::Program {
                program,
                status,
                output,
            } => Error::Program {
                program,
                status,
                output: format!("{output}\n{}", self.log()),
            },
            other => other,
        })
    }

    /// A key=value libpq connection string for `dbname` over TCP as the superuser.
    pub fn connstr(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={} dbname={dbname}",
            self.port, self.superuser
        )
    }

    /// A `postgresql://` URL for the `postgres` database as the superuser.
    pub fn url(&self) -> String {
        format!(
            "postgresql://{}@127.0.0.1:{}/postgres",
            self.superuser, self.port
        )
    }

    /// Runs `psql` with `sql` against `dbname` and returns its unaligned, tuples-only output.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String, Error> {
        let out = Command::new(pg_bin_dir().join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.connstr(dbname))
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .map_err(io("run psql"))?;
        if !out.status.success() {
            return Err(Error::Program {
                program: "psql".into(),
                status: out.status,
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server (fast mode) but keeps the data directory, port and this handle, so
    /// that [`TestPostgres::start_in_place`] can start it again (a restart seen by clients).
    pub fn stop_in_place(&mut self) -> Result<(), Error> {
        self.pg_ctl(&["stop", "-m", "fast", "-w"], None)?;
        self.stopped = true;
        Ok(())
    }

    /// Starts a server stopped by [`TestPostgres::stop_in_place`] on the same data directory
    /// and port, and waits until it accepts connections.
    pub fn start_in_place(&mut self) -> Result<(), Error> {
        self.pg_ctl(&["start", "-w", "-t", "60", "-l"], Some(&self.log_path()))?;
        self.stopped = false;
        Ok(())
    }

    /// Stops the server (fast mode) now; dropping does it too.
    pub fn stop(mut self) -> Result<(), Error> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        self.pg_ctl(&["stop", "-m", "fast", "-w"], None)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"], None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Servers started side by side (as parallel tests do) each get their own port and answer.
    /// (The retry on "could not bind" is not forced here: the race cannot be made to happen
    /// on demand without a hook in `free_port`.)
    #[test]
    fn several_servers_start_side_by_side() {
        let servers: Vec<_> = (0..3)
            .map(|_| std::thread::spawn(TestPostgres::start))
            .collect();
        let mut ports = Vec::new();
        for handle in servers {
            let pg = handle.join().unwrap().unwrap();
            let out = pg.psql("postgres", "select 1").unwrap();
            assert_eq!(out.trim(), "1");
            ports.push(pg.port);
        }
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 3);
    }

    #[test]
    fn starts_answers_and_stops() {
        let pg = TestPostgres::start().unwrap();
        let out = pg
            .psql("postgres", "select current_user, version()")
            .unwrap();
        assert!(out.starts_with("cloud_admin|PostgreSQL 15"), "got {out:?}");
        let pgdata = pg.pgdata.clone();
        let mut pg = pg;
        pg.stop_in_place().unwrap();
        assert!(pg.psql("postgres", "select 1").is_err(), "stopped");
        pg.start_in_place().unwrap();
        let out = pg.psql("postgres", "select 2").unwrap();
        assert_eq!(out.trim(), "2");
        pg.stop().unwrap();
        assert!(!pgdata.join("postmaster.pid").exists());
    }
}
