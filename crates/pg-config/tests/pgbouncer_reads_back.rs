//! Proof against the real pgbouncer (Debian's 1.18, `/usr/sbin/pgbouncer`, run as the
//! unprivileged user): every hostile value that `update_pgbouncer_ini` writes is read back by
//! pgbouncer after `RELOAD` as exactly the spec value (`SHOW CONFIG` on its admin console), and
//! every value it refuses is one pgbouncer would have changed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pg_config::{FileOptions, update_pgbouncer_ini, write_file_atomically};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

fn hostile_values() -> Vec<String> {
    let mut values = test_postgres::hostile_names();
    for extra in [
        "",
        "[pgbouncer]",
        "%include /etc/passwd",
        "; not a comment",
        "a\tb",
        " leading",
        "trailing ",
        "\\",
        "key = value",
    ] {
        values.push(extra.to_owned());
    }
    values
}

fn base_ini(dir: &Path, port: u16) -> String {
    format!(
        "[databases]\n* = host=127.0.0.1\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
         listen_port = {port}\nunix_socket_dir =\nauth_type = trust\n\
         auth_file = {}/userlist.txt\nadmin_users = postgres\nlogfile =\npidfile =\n",
        dir.display()
    )
}

/// psql on the admin console: rows of fields separated by U+001F.
fn admin(port: u16, command: &str) -> Result<Vec<Vec<String>>, String> {
    let out = Command::new(test_postgres::pg_bin_dir().join("psql"))
        .args(["-X", "-A", "-t", "-F", "\u{1f}", "-h", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", "pgbouncer"])
        .args(["-c", command])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\u{1f}').map(str::to_owned).collect())
        .collect())
}

fn show(port: u16, key: &str) -> Result<String, String> {
    admin(port, "SHOW CONFIG")?
        .into_iter()
        .find(|row| row[0] == key)
        .map(|row| row[1].clone())
        .ok_or_else(|| format!("no {key} in SHOW CONFIG"))
}

struct Pgbouncer(Child);

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pgbouncer_reads_back_every_written_value() {
    let dir = tempfile::tempdir().unwrap();
    let port = test_postgres::free_port();
    let ini = dir.path().join("pgbouncer.ini");
    std::fs::write(&ini, base_ini(dir.path(), port)).unwrap();
    std::fs::write(dir.path().join("userlist.txt"), "\"postgres\" \"\"\n").unwrap();
    test_postgres::chown_to_pg_user(dir.path()).unwrap();
    let _pgbouncer = Pgbouncer(
        test_postgres::command_as_pg_user(PGBOUNCER)
            .unwrap()
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = show(port, "server_reset_query") {
        assert!(Instant::now() < deadline, "pgbouncer did not start: {e}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let owner = test_postgres::unprivileged_user()
        .unwrap()
        .map(|(u, g)| (u.as_raw(), g.as_raw()));
    let mut written = 0;
    for value in hostile_values() {
        let text = std::fs::read_to_string(&ini).unwrap();
        match update_pgbouncer_ini(&text, [("server_reset_query", value.as_str())]) {
            Ok(updated) => {
                let options = FileOptions { mode: 0o644, owner };
                write_file_atomically(&ini, updated.as_bytes(), &options).unwrap();
                admin(port, "RELOAD").unwrap();
                assert_eq!(show(port, "server_reset_query").unwrap(), value);
                written += 1;
            }
            Err(e) => assert_ne!(value.trim_matches([' ', '\t']), value, "{value:?}: {e}"),
        }
    }
    assert!(written >= 20, "only {written} values written");
}
