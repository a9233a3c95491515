//! `--pgbin`: checks a spec's settings against a real PostgreSQL binary.
//!
//! - `postgres --describe-config` gives the names and types of every GUC the binary knows (for
//!   "did you mean" and vartype checks); `pg-binary` runs it and finds the library directory.
//! - `postgres -c name=value …` (no data directory, empty environment) makes the server itself
//!   parse every value exactly as it would at start — names, booleans, enum values, units,
//!   ranges — and stop with a FATAL at the first bad one; it never gets as far as starting,
//!   since it cannot find a configuration file. Bad settings are found one run at a time.
//! - `shared_preload_libraries` entries are looked up in the binary's library directory
//!   (`pg_config --pkglibdir` beside it, else `../lib`).
//!
//! PostgreSQL refuses to run as root, so when we are root the binary runs as the unprivileged
//! `postgres` user. Parsing the binary's output is pure and unit-tested.

use std::path::{Path, PathBuf};

use anyhow::Context;
use child_process::Command;
use compute_spec::{ComputeSpec, Diagnostic, Severity};
use nix::unistd::{Uid, User};
use pg_binary::{GucDescription, PgBinary};
use pg_config::{parse_conf, preload_entries};

/// Diagnostic codes of the `--pgbin` checks.
pub mod codes {
    /// The binary does not know this setting.
    pub const UNKNOWN_SETTING: &str = "unknown-setting";
    /// The binary rejects this value (type, enum value, range, or not settable).
    pub const INVALID_SETTING_VALUE: &str = "invalid-setting-value";
    /// The spec's vartype differs from the binary's type of the setting.
    pub const PG_VARTYPE_MISMATCH: &str = "pg-vartype-mismatch";
    /// A `shared_preload_libraries` entry not found in the library directory.
    pub const UNKNOWN_LIBRARY: &str = "unknown-library";
}

/// The user that runs PostgreSQL when we are root.
pub const UNPRIVILEGED_USER: &str = "postgres";

/// Settings that name files: passing them to a server run could make it read arbitrary files,
/// so they are not checked by running the binary.
const FILE_SETTINGS: &[&str] = &[
    "config_file",
    "data_directory",
    "hba_file",
    "ident_file",
    "external_pid_file",
];

/// The FATAL message (and HINT) a server run ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// Text after `FATAL:`.
    pub message: String,
    /// Text after `HINT:`, if any.
    pub hint: Option<String>,
}

impl ServerError {
    /// The setting the message is about: the first `parameter "name"` in it.
    pub fn parameter(&self) -> Option<&str> {
        let start = self.message.find("parameter \"")? + "parameter \"".len();
        let len = self.message[start..].find('"')?;
        Some(&self.message[start..start + len])
    }
}

/// Finds the FATAL line of a server's stderr.
pub fn parse_server_error(stderr: &str) -> Option<ServerError> {
    let after = |line: &str, tag: &str| {
        line.find(tag)
            .map(|i| line[i + tag.len()..].trim().to_owned())
    };
    let message = stderr.lines().find_map(|l| after(l, "FATAL:"))?;
    let hint = stderr.lines().find_map(|l| after(l, "HINT:"));
    Some(ServerError { message, hint })
}

/// A setting waiting to be checked by a server run, with where to report it.
#[derive(Debug)]
struct Pending {
    name: String,
    value: String,
    name_at: String,
    value_at: String,
    /// Prefix for messages (`line 3 of postgresql_conf: `), empty for `settings` entries.
    context: String,
}

/// A PostgreSQL installation to check against.
#[derive(Debug, Clone)]
pub struct PgBin {
    binary: PgBinary,
}

impl PgBin {
    /// Opens the `postgres` binary at `path` (or in the directory `path`): reads its GUC
    /// catalogue and finds its library directory.
    pub fn open(path: &Path) -> anyhow::Result<PgBin> {
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name(UNPRIVILEGED_USER)
                .context("look up the unprivileged user")?
                .with_context(|| {
                    format!(
                        "PostgreSQL refuses to run as root and there is no `{UNPRIVILEGED_USER}` user to run it as"
                    )
                })?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        } else {
            None
        };
        let binary = PgBinary::probe(path, run_as)?;
        Ok(PgBin { binary })
    }

    /// The settings the binary knows.
    pub fn gucs(&self) -> &[GucDescription] {
        self.binary.settings()
    }

    /// The library directory `shared_preload_libraries` entries are looked up in.
    pub fn libdir(&self) -> &Path {
        self.binary.libdir()
    }

    /// The binary, with an empty environment, C messages, as the unprivileged user when we
    /// are root.
    fn command(&self) -> Command {
        self.binary.command()
    }

    /// Checks the settings of `spec` (located at `prefix` in its document): `cluster.settings`
    /// and the lines of `cluster.postgresql_conf`.
    pub fn check_spec(&self, spec: &ComputeSpec, prefix: &str) -> anyhow::Result<Vec<Diagnostic>> {
        let mut out = Vec::new();
        // postgresql_conf comes first in the file; settings are written after it.
        let mut pending = self.conf_lines(spec, prefix, &mut out);
        pending.extend(self.setting_values(spec, prefix, &mut out));
        // Only plain names (dotted ones are extension settings a bare binary does not know),
        // no control characters (compute-spec reports those), no file locations.
        pending.retain(|p| {
            p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.value.chars().any(char::is_control)
                && !FILE_SETTINGS.contains(&p.name.to_ascii_lowercase().as_str())
        });
        self.check_values(pending, &mut out)?;
        Ok(out)
    }

    /// The settings of `cluster.postgresql_conf` to check by value; its
    /// `shared_preload_libraries` are checked here, into `out`.
    fn conf_lines(
        &self,
        spec: &ComputeSpec,
        prefix: &str,
        out: &mut Vec<Diagnostic>,
    ) -> Vec<Pending> {
        let mut pending = Vec::new();
        if let Some(conf) = &spec.cluster.postgresql_conf {
            let at = format!("{prefix}/cluster/postgresql_conf");
            for line in parse_conf(conf) {
                let name = line.name.to_ascii_lowercase();
                if name.starts_with("include") {
                    continue;
                }
                if name == "shared_preload_libraries" {
                    let mut found = Vec::new();
                    self.check_libraries(&line.value, &at, &mut found);
                    for d in &mut found {
                        d.message = format!("line {} of postgresql_conf: {}", line.line, d.message);
                    }
                    out.extend(found);
                }
                pending.push(Pending {
                    name_at: at.clone(),
                    value_at: at.clone(),
                    context: format!("line {} of postgresql_conf: ", line.line),
                    name: line.name,
                    value: line.value,
                });
            }
        }
        pending
    }

    /// The settings of `cluster.settings` to check by value; vartypes and
    /// `shared_preload_libraries` are checked here, into `out`.
    fn setting_values(
        &self,
        spec: &ComputeSpec,
        prefix: &str,
        out: &mut Vec<Diagnostic>,
    ) -> Vec<Pending> {
        let mut pending = Vec::new();
        let settings = spec.cluster.settings.as_deref().unwrap_or_default();
        for (i, s) in settings.iter().enumerate() {
            let Some(value) = s.value.as_deref() else {
                continue; // compute-spec reports it
            };
            let at = format!("{prefix}/cluster/settings/{i}");
            if let Some(desc) = self
                .gucs()
                .iter()
                .find(|g| g.name.eq_ignore_ascii_case(&s.name))
                && let Some(expected) = spec_vartype(&desc.vartype)
                && expected != s.vartype
                && !(expected == "enum" && s.vartype == "string")
            {
                out.push(Diagnostic::new(
                            codes::PG_VARTYPE_MISMATCH,
                            Severity::Warning,
                            format!("{at}/vartype"),
                            format!(
                                "setting {:?} is of type {} in this PostgreSQL; vartype {:?} is expected, not {:?}",
                                s.name, desc.vartype, expected, s.vartype
                            ),
                        ));
            }
            if s.name.eq_ignore_ascii_case("shared_preload_libraries") {
                self.check_libraries(value, &format!("{at}/value"), out);
            }
            pending.push(Pending {
                name_at: format!("{at}/name"),
                value_at: format!("{at}/value"),
                context: String::new(),
                name: s.name.clone(),
                value: value.to_owned(),
            });
        }
        pending
    }

    /// Runs the binary with every pending `-c name=value`; each run reports the first value it
    /// refuses, which is dropped (with those before it) for the next run.
    fn check_values(
        &self,
        mut pending: Vec<Pending>,
        out: &mut Vec<Diagnostic>,
    ) -> anyhow::Result<()> {
        while !pending.is_empty() {
            let mut cmd = self.command();
            for p in &pending {
                cmd.arg("-c").arg(format!("{}={}", p.name, p.value));
            }
            let output = cmd
                .output_blocking()
                .with_context(|| format!("run {}", self.binary.postgres().display()))?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            let Some(error) = parse_server_error(&stderr) else {
                break;
            };
            let Some(parameter) = error.parameter() else {
                break; // e.g. "does not know where to find the server configuration file": all valid
            };
            let Some(k) = pending
                .iter()
                .position(|p| p.name.eq_ignore_ascii_case(parameter))
            else {
                break;
            };
            out.push(self.value_diagnostic(&error, &pending[k]));
            pending.drain(..=k);
        }
        Ok(())
    }

    fn value_diagnostic(&self, error: &ServerError, p: &Pending) -> Diagnostic {
        if error
            .message
            .starts_with("unrecognized configuration parameter")
        {
            let lname = p.name.to_ascii_lowercase();
            let mut message = format!("{}this PostgreSQL has no setting {:?}", p.context, p.name);
            if let Some(best) = closest(&lname, self.gucs().iter().map(|g| g.name.as_str())) {
                message.push_str(&format!(" (did you mean `{best}`?)"));
            }
            return Diagnostic::new(
                codes::UNKNOWN_SETTING,
                Severity::Error,
                p.name_at.clone(),
                message,
            );
        }
        let mut message = format!("{}PostgreSQL rejects it: {}", p.context, error.message);
        if let Some(hint) = &error.hint {
            message.push_str(&format!(" ({})", hint.trim_end_matches('.')));
            if let Some(values) = hint.strip_prefix("Available values: ") {
                let values = values.trim_end_matches('.').split(", ");
                if let Some(best) = closest(&p.value.trim().to_ascii_lowercase(), values) {
                    message.push_str(&format!("; did you mean `{best}`?"));
                }
            }
        }
        Diagnostic::new(
            codes::INVALID_SETTING_VALUE,
            Severity::Error,
            p.value_at.clone(),
            message,
        )
    }

    fn check_libraries(&self, value: &str, at: &str, out: &mut Vec<Diagnostic>) {
        for entry in preload_entries(value) {
            let name = entry.strip_prefix("$libdir/").unwrap_or(&entry);
            let candidates = if name.contains('/') {
                vec![PathBuf::from(name), PathBuf::from(format!("{name}.so"))]
            } else {
                vec![
                    self.libdir().join(name),
                    self.libdir().join(format!("{name}.so")),
                ]
            };
            if candidates.iter().any(|p| p.is_file()) {
                continue;
            }
            let mut message = format!(
                "shared_preload_libraries entry {entry:?} is not installed: no {name}.so in {}",
                self.libdir().display()
            );
            let installed: Vec<String> = std::fs::read_dir(self.libdir())
                .map(|dir| {
                    dir.filter_map(|e| {
                        let file = e.ok()?.file_name().into_string().ok()?;
                        file.strip_suffix(".so").map(str::to_owned)
                    })
                    .collect()
                })
                .unwrap_or_default();
            if let Some(best) = closest(name, installed.iter().map(String::as_str)) {
                message.push_str(&format!(" (did you mean `{best}`?)"));
            }
            out.push(Diagnostic::new(
                codes::UNKNOWN_LIBRARY,
                Severity::Error,
                at.to_owned(),
                message,
            ));
        }
    }
}

/// The spec vartype matching a describe-config type.
fn spec_vartype(pg_type: &str) -> Option<&'static str> {
    Some(match pg_type {
        "BOOLEAN" => "bool",
        "INTEGER" => "integer",
        "REAL" => "real",
        "STRING" => "string",
        "ENUM" => "enum",
        _ => return None,
    })
}

/// The closest candidate to `word`, if close enough to suggest.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_errors() {
        let stderr = "2026-11-25 22:28:10.837 GMT [13280] FATAL:  invalid value for parameter \"wal_level\": \"zzz\"\n\
                      2026-11-25 22:28:10.837 GMT [13280] HINT:  Available values: minimal, replica, logical.\n";
        let e = parse_server_error(stderr).unwrap();
        assert_eq!(e.parameter(), Some("wal_level"));
        assert_eq!(
            e.hint.as_deref(),
            Some("Available values: minimal, replica, logical.")
        );
        let e = parse_server_error(
            "x FATAL:  postgres does not know where to find the server configuration file.\n",
        )
        .unwrap();
        assert_eq!(e.parameter(), None);
        assert_eq!(parse_server_error("nothing"), None);
    }
}
