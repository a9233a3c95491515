//! Test fixtures: a real data directory to serve (made by `initdb`, filled by the real server,
//! shut down cleanly), and a real PostgreSQL started on an unpacked data directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use test_postgres::{command_as_pg_user, pg_bin_dir};

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn run(mut cmd: Command, what: &str) -> io::Result<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(other(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The rows of the table `fixture` in the filled data directory.
pub const FIXTURE_ROWS: u32 = 1000;

/// A data directory made by the real `initdb` (superuser `cloud_admin`), with a table
/// `fixture(i int, t text)` of [`FIXTURE_ROWS`] rows written by the real server, shut down
/// cleanly. Built once per `name` and reused (under the system temp directory).
pub fn filled_pgdata(name: &str) -> io::Result<PathBuf> {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let root = std::env::temp_dir().join(format!("neon-test-servers-fixture-{name}"));
    let pgdata = root.join("pgdata");
    if root.join("complete").exists() {
        return Ok(pgdata);
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    test_postgres::chown_to_pg_user(&root).map_err(other)?;
    test_postgres::initdb(&pgdata, "cloud_admin").map_err(other)?;
    {
        let pg = PostgresOnDir::start(&pgdata)?;
        pg.psql(&format!(
            "create table fixture(i int, t text); \
             insert into fixture select i, md5(i::text) from generate_series(1, {FIXTURE_ROWS}) i; \
             checkpoint"
        ))?;
        pg.stop()?;
    }
    std::fs::remove_file(pgdata.join("server.log"))?;
    std::fs::remove_dir(pgdata.join("sock"))?;
    // The basebackup does not ship postgresql.conf; the one left here has our test settings.
    std::fs::write(root.join("complete"), "")?;
    Ok(pgdata)
}

/// A real PostgreSQL running on a given data directory (as the unprivileged user when root),
/// on a free port of 127.0.0.1. Stopped (immediate) on drop.
pub struct PostgresOnDir {
    pgdata: PathBuf,
    /// TCP port.
    pub port: u16,
    running: bool,
}

impl PostgresOnDir {
    /// Appends the connection settings to `postgresql.conf` (creating it if needed), hands the
    /// directory to the unprivileged user, and starts the server.
    pub fn start(pgdata: &Path) -> io::Result<PostgresOnDir> {
        let port = test_postgres::free_port();
        let socket_dir = pgdata.join("sock");
        std::fs::create_dir_all(&socket_dir)?;
        let conf_path = pgdata.join("postgresql.conf");
        let mut conf = std::fs::read_to_string(&conf_path).unwrap_or_default();
        conf.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\n",
            socket_dir.display()
        ));
        std::fs::write(&conf_path, conf)?;
        test_postgres::chown_to_pg_user(pgdata).map_err(other)?;
        let log = pgdata.join("server.log");
        let mut cmd = command_as_pg_user(pg_bin_dir().join("pg_ctl")).map_err(other)?;
        cmd.arg("-D")
            .arg(pgdata)
            .args(["start", "-w", "-t", "60", "-l"])
            .arg(&log)
            .current_dir(pgdata);
        run(cmd, "pg_ctl start").map_err(|e| {
            other(format!(
                "{e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        })?;
        Ok(PostgresOnDir {
            pgdata: pgdata.to_owned(),
            port,
            running: true,
        })
    }

    /// Runs `sql` with psql as `cloud_admin` on database `postgres`; unaligned tuples only.
    pub fn psql(&self, sql: &str) -> io::Result<String> {
        let mut cmd = Command::new(pg_bin_dir().join("psql"));
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
        ])
        .arg("cloud_admin")
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-d", "postgres", "-c", sql]);
        run(cmd, "psql")
    }

    fn pg_ctl_stop(&self, mode: &str) -> io::Result<()> {
        let mut cmd = command_as_pg_user(pg_bin_dir().join("pg_ctl")).map_err(other)?;
        cmd.arg("-D")
            .arg(&self.pgdata)
            .args(["stop", "-w", "-m", mode])
            .current_dir(&self.pgdata);
        run(cmd, "pg_ctl stop").map(|_| ())
    }

    /// Stops the server cleanly (fast mode).
    pub fn stop(mut self) -> io::Result<()> {
        self.running = false;
        self.pg_ctl_stop("fast")
    }
}

impl Drop for PostgresOnDir {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl_stop("immediate");
        }
    }
}
