//! The command line (clap derive, upstream-compatible flags) and its conversion into
//! [`Options`], the validated settings the rest of the crate reads.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

const USAGE_EXAMPLE: &str = "\
Usage example:
  compute_ctl -D /var/db/postgres/compute \\
              -C 'postgresql://cloud_admin@localhost/postgres' \\
              -S /var/db/postgres/specs/current.json \\
              -b /usr/local/bin/postgres

Standalone mode (a spec with no pageserver: initdb instead of basebackup):
  compute_ctl -D /tmp/compute -C postgresql://cloud_admin@127.0.0.1:55432/postgres \\
              -S specs/examples/standalone.json -b /usr/lib/postgresql/15/bin/postgres

Every start is a fresh start: the data directory is wiped and recreated.";

/// Supervisor of a PostgreSQL compute node: prepares the data directory, starts `postgres`,
/// applies the cluster spec and serves an HTTP API until the postmaster exits.
#[derive(Debug, Parser)]
#[command(name = "compute_ctl", version, after_help = USAGE_EXAMPLE)]
pub struct Cli {
    /// Data directory of the compute. Wiped and recreated on every start.
    #[arg(short = 'D', long, env = "COMPUTE_CTL_PGDATA", value_name = "DATADIR")]
    pub pgdata: PathBuf,

    /// Connection string compute_ctl uses for its own connections to the local Postgres,
    /// e.g. `postgresql://cloud_admin@127.0.0.1:55432/postgres`. In standalone mode its user is
    /// the bootstrap superuser and its port is the port Postgres listens on.
    #[arg(
        short = 'C',
        long,
        env = "COMPUTE_CTL_CONNSTR",
        value_name = "DATABASE_URL"
    )]
    pub connstr: String,

    /// The `postgres` executable; `initdb` and `pg_ctl` are looked up beside it.
    #[arg(
        short = 'b',
        long,
        env = "POSTGRES_PATH",
        default_value = "postgres",
        value_name = "POSTGRES_PATH"
    )]
    pub pgbin: PathBuf,

    /// Spec file: a bare ComputeSpec or the `{spec, compute_ctl_config}` wrapper.
    #[arg(
        short = 'S',
        long,
        env = "COMPUTE_CTL_SPEC_PATH",
        value_name = "SPEC_PATH",
        conflicts_with_all = ["spec", "config"]
    )]
    pub spec_path: Option<PathBuf>,

    /// Inline spec JSON (either document shape).
    #[arg(short = 's', long, value_name = "SPEC_JSON", conflicts_with = "config")]
    pub spec: Option<String>,

    /// ComputeConfig file `{spec, compute_ctl_config}`; `spec: null` starts empty.
    #[arg(
        short = 'c',
        long,
        env = "COMPUTE_CTL_CONFIG",
        value_name = "CONFIG_PATH"
    )]
    pub config: Option<PathBuf>,

    /// Id of this compute: checked against JWT claims and used in the control-plane URL.
    #[arg(short = 'i', long, env = "COMPUTE_ID", value_name = "COMPUTE_ID")]
    pub compute_id: Option<String>,

    /// Control plane base URL (http only); the spec is fetched from
    /// `{uri}/compute/api/v2/computes/{id}/spec` with `Authorization: Bearer
    /// $NEON_CONTROL_PLANE_TOKEN`.
    #[arg(
        short = 'p',
        long,
        env = "CONTROL_PLANE_URI",
        value_name = "CONTROL_PLANE",
        requires = "compute_id",
        conflicts_with_all = ["config", "spec", "spec_path"]
    )]
    pub control_plane_uri: Option<String>,

    /// Port of the external HTTP API (legacy name of `--external-http-port`).
    #[arg(long, conflicts_with = "external_http_port", value_name = "PORT")]
    pub http_port: Option<u16>,

    /// Port of the external HTTP API (control plane, metrics scraper).
    #[arg(long, value_name = "PORT")]
    pub external_http_port: Option<u16>,

    /// Port of the internal HTTP API (read-only status and metrics for processes in the
    /// compute).
    #[arg(long, default_value_t = 3081, value_name = "PORT")]
    pub internal_http_port: u16,

    /// Address both HTTP listeners bind to. The external API is unauthenticated unless the
    /// config carries a JWK set.
    #[arg(
        long,
        env = "COMPUTE_CTL_HTTP_BIND",
        default_value = "0.0.0.0",
        value_name = "ADDR"
    )]
    pub http_bind: IpAddr,

    /// Name of the privileged (non-superuser) role written as `neon.privileged_role_name`.
    #[arg(long, default_value = "neon_superuser", value_parser = parse_role_name)]
    pub privileged_role_name: String,

    /// Unprivileged user that runs `postgres`, `initdb` and sync-safekeepers when compute_ctl
    /// runs as root (PostgreSQL refuses root). Default `postgres` when root, the current user
    /// otherwise.
    #[arg(long, env = "COMPUTE_CTL_PG_USER", value_name = "USER")]
    pub pg_user: Option<String>,

    /// How long a failed compute keeps serving `/status` before exiting 1 (and a compute
    /// stopped by `/terminate?mode=fast` before exiting), e.g. `30s`, `500ms`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub linger: Duration,

    /// Timeout for Postgres to report `ready` in `postmaster.pid`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub pg_ready_timeout: Duration,

    /// The vm-informant executable; started (and restarted 5 s after each exit) if it exists.
    #[arg(
        long,
        env = "VM_INFORMANT_PATH",
        default_value = "/bin/vm-informant",
        value_name = "PATH"
    )]
    pub vm_informant: PathBuf,

    /// Wipe the data directory even if it is non-empty and has no `PG_VERSION`.
    #[arg(long)]
    pub force_wipe: bool,
}

fn parse_role_name(name: &str) -> Result<String, String> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} is not a valid role name: only lower-case letters and '_'"
        ))
    }
}

/// Where the spec comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecSource {
    /// `-s`: inline JSON.
    Inline(String),
    /// `-S`: a spec file, either shape.
    File(PathBuf),
    /// `-c`: a ComputeConfig file.
    ConfigFile(PathBuf),
    /// `-p` + `-i`: the control plane.
    ControlPlane {
        /// Base URL.
        base_url: String,
        /// Compute id.
        compute_id: String,
    },
    /// Nothing given: start empty and wait for `/configure`.
    None,
}

/// Validated settings of one compute_ctl run. Paths are absolute.
#[derive(Debug, Clone)]
pub struct Options {
    /// Data directory (absolute).
    pub pgdata: PathBuf,
    /// Connection string for compute_ctl's own connections.
    pub connstr: String,
    /// Parsed `connstr`.
    pub pg_config: tokio_postgres::Config,
    /// The `postgres` executable.
    pub pgbin: PathBuf,
    /// Directory holding `initdb` and `pg_ctl`.
    pub pg_bin_dir: PathBuf,
    /// Where the spec comes from.
    pub spec_source: SpecSource,
    /// Compute id, if given.
    pub compute_id: Option<String>,
    /// External HTTP port (0: any free port).
    pub external_http_port: u16,
    /// Internal HTTP port (0: any free port).
    pub internal_http_port: u16,
    /// Bind address of both listeners.
    pub http_bind: IpAddr,
    /// `neon.privileged_role_name`.
    pub privileged_role_name: String,
    /// User to run Postgres programs as, by name (`None`: the current user).
    pub pg_user: Option<String>,
    /// Linger time after a failed start.
    pub linger: Duration,
    /// Readiness timeout.
    pub pg_ready_timeout: Duration,
    /// vm-informant executable.
    pub vm_informant: PathBuf,
    /// Wipe a non-empty directory without `PG_VERSION`.
    pub force_wipe: bool,
}

impl Cli {
    /// Checks the combination of flags and resolves paths.
    pub fn into_options(self) -> anyhow::Result<Options> {
        let cwd = std::env::current_dir().context("read the current directory")?;
        let absolute = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                cwd.join(p)
            }
        };
        let pg_config: tokio_postgres::Config = self
            .connstr
            .parse()
            .with_context(|| "parse --connstr".to_owned())?;
        if pg_config.get_user().is_none() {
            bail!("--connstr must name a user, e.g. postgresql://cloud_admin@127.0.0.1/postgres");
        }
        let pgbin = if self.pgbin.components().count() > 1 {
            absolute(&self.pgbin)
        } else {
            find_in_path(&self.pgbin).with_context(|| {
                format!(
                    "find {} in PATH (pass -b /path/to/postgres)",
                    self.pgbin.display()
                )
            })?
        };
        let pg_bin_dir = pgbin
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("/"));
        let spec_source = match (
            self.spec,
            self.spec_path,
            self.config,
            self.control_plane_uri,
        ) {
            (Some(json), ..) => SpecSource::Inline(json),
            (None, Some(path), ..) => SpecSource::File(absolute(&path)),
            (None, None, Some(path), _) => SpecSource::ConfigFile(absolute(&path)),
            (None, None, None, Some(base_url)) => SpecSource::ControlPlane {
                base_url,
                compute_id: self.compute_id.clone().unwrap_or_default(),
            },
            (None, None, None, None) => SpecSource::None,
        };
        let pg_user = match self.pg_user {
            Some(user) => Some(user),
            None if nix::unistd::Uid::effective().is_root() => Some("postgres".to_owned()),
            None => None,
        };
        Ok(Options {
            pgdata: absolute(&self.pgdata),
            connstr: self.connstr,
            pg_config,
            pgbin,
            pg_bin_dir,
            spec_source,
            compute_id: self.compute_id,
            external_http_port: self.external_http_port.or(self.http_port).unwrap_or(3080),
            internal_http_port: self.internal_http_port,
            http_bind: self.http_bind,
            privileged_role_name: self.privileged_role_name,
            pg_user,
            linger: self.linger,
            pg_ready_timeout: self.pg_ready_timeout,
            vm_informant: self.vm_informant,
            force_wipe: self.force_wipe,
        })
    }
}

fn find_in_path(program: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn check(args: &[&str], expect: Result<SpecSource, &str>) {
        let mut argv = vec![
            "compute_ctl",
            "-D",
            "/tmp/x",
            "-C",
            "postgresql://u@h/db",
            "-b",
            "/usr/bin/postgres",
        ];
        argv.extend_from_slice(args);
        let got = Cli::try_parse_from(&argv)
            .map_err(|e| e.to_string())
            .and_then(|cli| cli.into_options().map_err(|e| format!("{e:#}")))
            .map(|o| o.spec_source);
        match (got, expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(got), Err(want)) => assert!(got.contains(want), "{got}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn spec_sources() {
        check(&["-S", "/s.json"], Ok(SpecSource::File("/s.json".into())));
        check(&["-s", "{}"], Ok(SpecSource::Inline("{}".into())));
        check(
            &["-c", "/c.json"],
            Ok(SpecSource::ConfigFile("/c.json".into())),
        );
        check(&[], Ok(SpecSource::None));
        check(
            &["-p", "http://cp", "-i", "c1"],
            Ok(SpecSource::ControlPlane {
                base_url: "http://cp".into(),
                compute_id: "c1".into(),
            }),
        );
        check(&["-p", "http://cp"], Err("--compute-id"));
        check(
            &["-S", "/s.json", "-c", "/c.json"],
            Err("cannot be used with"),
        );
        check(
            &["--privileged-role-name", "Bad-Name"],
            Err("not a valid role name"),
        );
    }

    #[test]
    fn connstr_needs_a_user() {
        let cli = Cli::try_parse_from([
            "compute_ctl",
            "-D",
            "/x",
            "-C",
            "postgresql://h/db",
            "-b",
            "/p",
        ])
        .unwrap();
        let err = cli.into_options().unwrap_err();
        assert!(format!("{err:#}").contains("must name a user"));
    }

    #[test]
    fn help_shows_the_usage_example() {
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("-S /var/db/postgres/specs/current.json"),
            "{help}"
        );
    }
}
