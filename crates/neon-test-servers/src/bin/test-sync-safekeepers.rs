//! `test-sync-safekeepers`: prints a configured LSN for `--sync-safekeepers`, execs the real
//! postgres otherwise (see `neon_test_servers::sync_standin`); its own `--help` and
//! `--version`.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use neon_test_servers::sync_standin::{Action, HELP, OwnFlag, StandinConfig};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    match OwnFlag::of(&args) {
        Some(OwnFlag::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some(OwnFlag::Version) => {
            println!("test-sync-safekeepers {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    let config = match StandinConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("test-sync-safekeepers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let token = std::env::var("NEON_AUTH_TOKEN").ok();
    let previous_runs = config
        .record()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map_or(0, |text| text.lines().count());
    let action = config.decide(&args, token.as_deref(), previous_runs);
    if let Action::Exec(postgres) = &action {
        let err = std::process::Command::new(postgres).args(&args).exec();
        eprintln!("test-sync-safekeepers: exec {}: {err}", postgres.display());
        return ExitCode::FAILURE;
    }
    if let Some(path) = config.record() {
        let pgdata = std::env::var("PGDATA").unwrap_or_default();
        let uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(u32::MAX);
        let token = if token.is_some() { "set" } else { "unset" };
        let line = format!("PGDATA={pgdata} token={token} uid={uid}\n");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
    eprintln!("LOG:  test-sync-safekeepers: syncing (stand-in)");
    std::thread::sleep(config.delay());
    match action {
        Action::PrintLsn(lsn) => {
            println!("{lsn}");
            ExitCode::SUCCESS
        }
        Action::Fail(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
        Action::Exec(_) => ExitCode::FAILURE,
    }
}
