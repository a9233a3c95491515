//! The `--sync-safekeepers` stand-in: prints a configured LSN (or fails) for
//! `--sync-safekeepers`, and execs the real `postgres` for anything else, so that it can be
//! given to compute_ctl as its Postgres binary (`-b`).
//!
//! Configuration, from the environment or from the file named by `TEST_SYNC_SK_CONFIG`
//! (`key=value` lines; the environment wins):
//! - `TEST_SYNC_SK_LSN` / `lsn=X/Y`: the LSN to print;
//! - `TEST_SYNC_SK_FAIL` / `fail=MESSAGE`: print MESSAGE on stderr and exit 1;
//! - `TEST_SYNC_SK_FAIL_FIRST` / `fail_first=N`: fail the first N runs (counted in the record
//!   file, which must be set);
//! - `TEST_SYNC_SK_DELAY_MS` / `delay_ms=N`: sleep first (for timeout and cancel tests);
//! - `TEST_SYNC_SK_EXPECT_TOKEN` / `expect_token=T`: fail unless `NEON_AUTH_TOKEN` is T;
//! - `TEST_SYNC_SK_RECORD` / `record=PATH`: append one line per run (`PGDATA=…`);
//! - `TEST_SYNC_SK_POSTGRES` / `postgres=PATH`: the real postgres (default
//!   `$PG_BIN_DIR/postgres`, else `/usr/lib/postgresql/15/bin/postgres`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// `test-sync-safekeepers --help`.
pub const HELP: &str = "\
A stand-in for `postgres --sync-safekeepers`: prints a configured LSN (or fails); any other
invocation execs the real postgres, so it can be compute_ctl's Postgres binary (-b).

Usage: test-sync-safekeepers --sync-safekeepers
       test-sync-safekeepers [POSTGRES ARGUMENTS]...   (the real postgres)
       test-sync-safekeepers --help | --version

Configuration, from the environment or from the file named by TEST_SYNC_SK_CONFIG
(key=value lines; the environment wins):
  TEST_SYNC_SK_LSN           lsn=X/Y          the LSN to print
  TEST_SYNC_SK_FAIL          fail=MESSAGE     print MESSAGE on stderr and exit 1
  TEST_SYNC_SK_FAIL_FIRST    fail_first=N     fail the first N runs (counted in the record file,
                                              which must be set)
  TEST_SYNC_SK_DELAY_MS      delay_ms=N       sleep first
  TEST_SYNC_SK_EXPECT_TOKEN  expect_token=T   fail unless NEON_AUTH_TOKEN is T
  TEST_SYNC_SK_RECORD        record=PATH      append one line per run (PGDATA=...)
  TEST_SYNC_SK_POSTGRES      postgres=PATH    the real postgres (default $PG_BIN_DIR/postgres,
                                              else /usr/lib/postgresql/15/bin/postgres)
";

/// Arguments the stand-in answers itself instead of passing them to postgres: its own help
/// and version (only as the sole argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnFlag {
    /// `--help`, `-h` or `-?` (postgres's own spelling).
    Help,
    /// `--version` or `-V`.
    Version,
}

impl OwnFlag {
    /// The flag `args` (without the program name) consist of, if any.
    pub fn of(args: &[OsString]) -> Option<OwnFlag> {
        match args {
            [one] if one == "--help" || one == "-h" || one == "-?" => Some(OwnFlag::Help),
            [one] if one == "--version" || one == "-V" => Some(OwnFlag::Version),
            _ => None,
        }
    }
}

/// What the stand-in does for one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Print this LSN and exit 0.
    PrintLsn(String),
    /// Print this message on stderr and exit 1.
    Fail(String),
    /// Replace the process with the real postgres.
    Exec(PathBuf),
}

/// The settings read from the environment and the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StandinConfig {
    /// `key=value` settings (keys as in the file: `lsn`, `fail`, …).
    pub settings: BTreeMap<String, String>,
}

impl StandinConfig {
    /// Reads `TEST_SYNC_SK_CONFIG` (if set) then the `TEST_SYNC_SK_*` variables.
    pub fn from_env() -> Result<StandinConfig, String> {
        let mut settings = BTreeMap::new();
        if let Some(path) = std::env::var_os("TEST_SYNC_SK_CONFIG") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("read {}: {e}", PathBuf::from(&path).display()))?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| format!("bad config line {line:?}"))?;
                settings.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        for key in [
            "lsn",
            "fail",
            "fail_first",
            "delay_ms",
            "expect_token",
            "record",
            "postgres",
        ] {
            if let Ok(v) = std::env::var(format!("TEST_SYNC_SK_{}", key.to_uppercase())) {
                settings.insert(key.to_owned(), v);
            }
        }
        Ok(StandinConfig { settings })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }

    /// The delay before answering.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(
            self.get("delay_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        )
    }

    /// Where to record invocations.
    pub fn record(&self) -> Option<PathBuf> {
        self.get("record").map(PathBuf::from)
    }

    /// Decides what to do for `args` (without the program name), given `NEON_AUTH_TOKEN` and
    /// the number of earlier runs recorded.
    pub fn decide(&self, args: &[OsString], token: Option<&str>, previous_runs: usize) -> Action {
        if args.first().map(|a| a == "--sync-safekeepers") != Some(true) {
            let postgres = match self.get("postgres") {
                Some(p) => PathBuf::from(p),
                None => std::env::var_os("PG_BIN_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
                    .join("postgres"),
            };
            return Action::Exec(postgres);
        }
        if let Some(expected) = self.get("expect_token")
            && token != Some(expected)
        {
            return Action::Fail("FATAL: NEON_AUTH_TOKEN is not the expected token".into());
        }
        if let Some(message) = self.get("fail") {
            return Action::Fail(message.to_owned());
        }
        let fail_first: usize = self
            .get("fail_first")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if previous_runs < fail_first {
            return Action::Fail(format!(
                "FATAL: injected failure {} of {fail_first}",
                previous_runs + 1
            ));
        }
        match self.get("lsn") {
            Some(lsn) => Action::PrintLsn(lsn.to_owned()),
            None => Action::Fail("FATAL: no LSN configured (TEST_SYNC_SK_LSN)".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides() {
        let config = |pairs: &[(&str, &str)]| StandinConfig {
            settings: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let sync = [OsString::from("--sync-safekeepers")];
        assert_eq!(
            config(&[("lsn", "0/15")]).decide(&sync, None, 0),
            Action::PrintLsn("0/15".into())
        );
        assert_eq!(
            config(&[("lsn", "0/15"), ("fail", "boom")]).decide(&sync, None, 0),
            Action::Fail("boom".into())
        );
        assert!(matches!(
            config(&[("lsn", "0/15"), ("expect_token", "t")]).decide(&sync, Some("u"), 0),
            Action::Fail(_)
        ));
        assert_eq!(
            config(&[("lsn", "0/15"), ("expect_token", "t")]).decide(&sync, Some("t"), 0),
            Action::PrintLsn("0/15".into())
        );
        let fail_twice = config(&[("lsn", "0/15"), ("fail_first", "2")]);
        assert!(matches!(fail_twice.decide(&sync, None, 1), Action::Fail(_)));
        assert_eq!(
            fail_twice.decide(&sync, None, 2),
            Action::PrintLsn("0/15".into())
        );
        assert_eq!(
            config(&[("postgres", "/x/postgres")]).decide(&["-D".into(), "/d".into()], None, 0),
            Action::Exec("/x/postgres".into())
        );
    }

    #[test]
    fn own_flags_only_alone() {
        let of = |args: &[&str]| OwnFlag::of(&args.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(of(&["--help"]), Some(OwnFlag::Help));
        assert_eq!(of(&["-?"]), Some(OwnFlag::Help));
        assert_eq!(of(&["-V"]), Some(OwnFlag::Version));
        assert_eq!(of(&["--sync-safekeepers"]), None);
        assert_eq!(of(&["-D", "--help"]), None);
        assert_eq!(of(&[]), None);
        for key in [
            "lsn",
            "fail",
            "fail_first",
            "delay_ms",
            "expect_token",
            "record",
            "postgres",
        ] {
            let var = format!("TEST_SYNC_SK_{}", key.to_uppercase());
            assert!(HELP.contains(&format!("{var} ")), "{var} undocumented");
            assert!(HELP.contains(&format!("{key}=")), "{key} undocumented");
        }
    }
}
