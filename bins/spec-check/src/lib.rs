//! `spec-check`: lints compute spec files (either document shape) offline, and optionally
//! against a PostgreSQL binary's own GUC catalogue.
//!
//! This package owns the CLI definition ([`Cli`]), reading inputs, rendering diagnostics
//! ([`render`]) and the `--pgbin` checks ([`pgbin`]: the only place that runs processes). The
//! rules themselves live in `compute-spec`, which does no I/O.
//!
//! ```
//! use clap::Parser;
//! use spec_check::{Cli, run};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let file = dir.path().join("spec.json");
//! std::fs::write(&file, r#"{"format_version": 1.0,
//!     "cluster": {"roles": [], "databases": [{"name": "app", "owner": "nobody"}]}}"#).unwrap();
//! let cli = Cli::parse_from(["spec-check", file.to_str().unwrap()]);
//! let (mut out, mut err) = (Vec::new(), Vec::new());
//! assert_eq!(run(&cli, &mut std::io::empty(), &mut out, &mut err), 1);
//! assert!(String::from_utf8(out).unwrap().contains("error[unknown-owner]"));
//! ```
#![warn(missing_docs)]

pub mod pgbin;
pub mod render;

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use compute_spec::{Diagnostic, Location, Severity, ValidationOptions, codes};

/// Command line of `spec-check`.
#[derive(Debug, Parser)]
#[command(
    name = "spec-check",
    version,
    about = "Lint Neon compute spec files (bare ComputeSpec or {spec, compute_ctl_config} wrapper)",
    after_help = "Exit status: 0 clean, 1 findings (errors, or warnings with --deny-warnings), \
                  2 usage or I/O error."
)]
pub struct Cli {
    /// Spec files to check; `-` reads standard input.
    #[arg(value_name = "FILE", required_unless_present = "print_schema")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Treat warnings as findings (exit 1).
    #[arg(long)]
    pub deny_warnings: bool,
    /// A `postgres` binary (or its bin directory): check every setting's name, type, enum value and range with it
    /// (`postgres --describe-config` and `-c name=value`), and `shared_preload_libraries`
    /// entries against its library directory.
    #[arg(long, value_name = "PATH")]
    pub pgbin: Option<PathBuf>,
    /// A role the compute provides besides the defaults (cloud_admin, neon_superuser,
    /// zenith_admin, pg_* predefined roles); may be repeated.
    #[arg(long = "provided-role", value_name = "NAME")]
    pub provided_roles: Vec<String>,
    /// The user compute_ctl connects as (its `-C` user): a spec must not make it NOLOGIN,
    /// expire it, limit its connections, or rename another role onto it.
    #[arg(long, value_name = "NAME", default_value = "cloud_admin")]
    pub admin_user: String,
    /// The database compute_ctl connects to (its `-C` database): a spec must not delete,
    /// rename or close it.
    #[arg(long, value_name = "NAME", default_value = "postgres")]
    pub admin_database: String,
    /// compute_ctl logs in with a password (its `-C` has one): a spec that sets the admin
    /// user's password is then an error, not a warning.
    #[arg(long)]
    pub admin_password_login: bool,
    /// Print the JSON Schema of a spec document and exit.
    #[arg(long, conflicts_with_all = ["files", "pgbin", "deny_warnings"])]
    pub print_schema: bool,
    /// Print the reconcile plan of the (single) spec against the live server at `--connstr`,
    /// observed in a read-only transaction: nothing is changed. Passwords are redacted.
    #[arg(long, requires = "connstr", conflicts_with_all = ["print_schema", "format"])]
    pub plan: bool,
    /// Connection string (URL or key=value) of the server to plan against, as its superuser.
    #[arg(long, value_name = "URL", requires = "plan")]
    pub connstr: Option<String>,
    /// Inputs larger than this many bytes are rejected unread.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_bytes: usize,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `file:line:col: severity[code]: message (at /pointer)`, one per line.
    Human,
    /// One JSON document with every file's diagnostics.
    Json,
}

/// The diagnostics of one input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileReport {
    /// The path as given (`<stdin>` for `-`).
    pub file: String,
    /// Every finding, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Exit status: no findings.
pub const EXIT_CLEAN: u8 = 0;
/// Exit status: findings.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status: usage or I/O error.
pub const EXIT_TROUBLE: u8 = 2;

/// Runs `spec-check`: reads every input, checks it, prints the report on `out` and problems
/// that are not findings (unreadable files, a failing `--pgbin`) on `err`. Returns the exit
/// status.
pub fn run(cli: &Cli, stdin: &mut dyn Read, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let status = run_inner(cli, stdin, out, err);
    match status {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "spec-check: {e:#}");
            EXIT_TROUBLE
        }
    }
}

fn run_inner(
    cli: &Cli,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u8> {
    if cli.print_schema {
        serde_json::to_writer_pretty(&mut *out, &compute_spec::json_schema())?;
        writeln!(out)?;
        return Ok(EXIT_CLEAN);
    }
    let mut options = ValidationOptions {
        max_bytes: cli.max_bytes,
        admin_password_login: cli.admin_password_login,
        ..ValidationOptions::default()
    }
    .with_admin_user(&cli.admin_user)
    .with_admin_database(&cli.admin_database);
    for role in &cli.provided_roles {
        options.provided_roles.insert(role.clone());
    }
    let pgbin = match &cli.pgbin {
        Some(path) => Some(pgbin::PgBin::open(path)?),
        None => None,
    };
    let mut trouble = false;
    let mut reports = Vec::new();
    for path in &cli.files {
        let name = if path.as_os_str() == "-" {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        };
        let bytes = match read_limited(path, stdin, cli.max_bytes) {
            Ok(bytes) => bytes,
            Err(e) => {
                writeln!(err, "{name}: cannot read: {e}")?;
                trouble = true;
                continue;
            }
        };
        let diagnostics = check_bytes(&bytes, &options, pgbin.as_ref())
            .map_err(|e| e.context(format!("check {name} with --pgbin")))?;
        reports.push(FileReport {
            file: name,
            diagnostics,
        });
    }
    let (errors, _) = render::counts(&reports);
    if cli.plan && !trouble && errors == 0 {
        return print_plan(cli, &reports, &options, out);
    }
    match cli.format {
        Format::Human => render::human(&reports, out)?,
        Format::Json => render::json(&reports, out)?,
    }
    let (errors, warnings) = render::counts(&reports);
    if cli.format == Format::Human && (errors > 0 || warnings > 0) {
        writeln!(
            err,
            "spec-check: {} file(s), {errors} error(s), {warnings} warning(s)",
            reports.len()
        )?;
    }
    Ok(if trouble {
        EXIT_TROUBLE
    } else if errors > 0 || (cli.deny_warnings && warnings > 0) {
        EXIT_FINDINGS
    } else {
        EXIT_CLEAN
    })
}

/// `--plan`: validate the single input, then plan it against the server read-only.
fn print_plan(
    cli: &Cli,
    reports: &[FileReport],
    options: &ValidationOptions,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    use anyhow::Context as _;
    let [path] = cli.files.as_slice() else {
        anyhow::bail!("--plan takes exactly one spec file");
    };
    anyhow::ensure!(
        path.as_os_str() != "-",
        "--plan reads its spec from a file, not stdin"
    );
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let spec = compute_spec::ValidatedSpec::from_json_with(&text, options)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let connstr = cli.connstr.as_deref().unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let plan = runtime
        .block_on(pg_reconcile::plan_read_only(
            &spec,
            &pg_reconcile::PlanOptions::default(),
            connstr,
        ))
        .context("plan against the server")?;
    render::human(reports, out)?;
    write!(out, "{plan}")?;
    Ok(EXIT_CLEAN)
}

/// Reads a file (or stdin for `-`), at most `max + 1` bytes so that huge inputs are not read
/// whole.
fn read_limited(path: &PathBuf, stdin: &mut dyn Read, max: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    if path.as_os_str() == "-" {
        stdin.take(limit).read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(path)?
            .take(limit)
            .read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

/// Checks one input's bytes: size, UTF-8, then everything `compute-spec` checks, then (with a
/// `PgBin`) the settings against the binary. Diagnostics come back located and sorted.
pub fn check_bytes(
    bytes: &[u8],
    options: &ValidationOptions,
    pgbin: Option<&pgbin::PgBin>,
) -> anyhow::Result<Vec<Diagnostic>> {
    let at_start = Location { line: 1, column: 1 };
    if bytes.len() > options.max_bytes {
        return Ok(vec![Diagnostic {
            location: Some(at_start),
            ..Diagnostic::new(
                codes::TOO_LARGE,
                Severity::Error,
                String::new(),
                format!(
                    "the input is larger than the limit of {} bytes (--max-bytes)",
                    options.max_bytes
                ),
            )
        }]);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.valid_up_to();
            // The valid prefix is UTF-8, so the location is well defined.
            let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
            return Ok(vec![Diagnostic {
                location: Some(compute_spec::location_of_offset(prefix, valid)),
                ..Diagnostic::new(
                    codes::INVALID_UTF8,
                    Severity::Error,
                    String::new(),
                    format!("the input is not UTF-8: invalid byte sequence at byte {valid}"),
                )
            }]);
        }
    };
    // Includes the option allow-lists: what the reconciler could not render on any cluster.
    let mut validation = compute_spec::validate_json(text, options);
    if let (Some(pgbin), Some(spec)) = (pgbin, &validation.spec) {
        let extra = pgbin.check_spec(spec, validation.spec_pointer)?;
        if !extra.is_empty() {
            validation.report.diagnostics.extend(extra);
            compute_spec::locate_diagnostics(text, &mut validation.report.diagnostics);
        }
    }
    Ok(validation.report.diagnostics)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn invalid_utf8_is_located() {
        let diags = check_bytes(
            b"{\n  \"a\": \"\xff\"}",
            &ValidationOptions::default(),
            None,
        )
        .unwrap();
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, codes::INVALID_UTF8);
        assert_eq!(diags[0].location, Some(Location { line: 2, column: 9 }));
    }
}
