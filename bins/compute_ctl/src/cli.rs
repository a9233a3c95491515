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

Every start is a fresh start: the data directory is wiped and recreated.

Environment:
  An option shown with [env: COMPUTE_CTL_…] reads that variable when it is not given.
  Aliases, read only when the COMPUTE_CTL_ variable is unset:
    POSTGRES_PATH      --pgbin (the name upstream's compute_ctl reads)
    COMPUTE_ID         --compute-id         CONTROL_PLANE_URI  --control-plane-uri
    VM_INFORMANT_PATH  --vm-informant       LOCAL_PROXY_DIR    --local-proxy-dir
    PGBOUNCER_INI      --pgbouncer-ini      PGBOUNCER_CONNSTR  --pgbouncer-connstr
    PGBOUNCER_PATH     --pgbouncer          (earlier names of this build)
  Also read: RUST_LOG (log filter, default info), NEON_CONTROL_PLANE_TOKEN,
  PGBOUNCER_PASSWORD, AUTOSCALING.

Exit codes:
  0      stopped: postgres shut down cleanly, or compute_ctl was stopped before it ran
  1      the start failed (after --linger), or compute_ctl itself failed
  2      usage: a bad option, value or combination of options
  N      postgres exited with code N
  128+N  postgres was killed by signal N (137: SIGKILL)";

/// Environment variables read for an option when its `COMPUTE_CTL_` variable is unset:
/// (alias, the option's field). `POSTGRES_PATH` is upstream's; the others are the names this
/// build read before all took the `COMPUTE_CTL_` prefix.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("POSTGRES_PATH", "pgbin"),
    ("COMPUTE_ID", "compute_id"),
    ("CONTROL_PLANE_URI", "control_plane_uri"),
    ("VM_INFORMANT_PATH", "vm_informant"),
    ("PGBOUNCER_INI", "pgbouncer_ini"),
    ("PGBOUNCER_CONNSTR", "pgbouncer_connstr"),
    ("PGBOUNCER_PATH", "pgbouncer"),
    ("LOCAL_PROXY_DIR", "local_proxy_dir"),
];

/// `text` or `json` (no `ValueEnum`: its documented variants would turn the whole help into
/// the long layout).
fn log_format_parser() -> impl clap::builder::TypedValueParser<Value = LogFormat> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["text", "json"]).map(|v| match v.as_str() {
        "json" => LogFormat::Json,
        _ => LogFormat::Text,
    })
}

/// compute_ctl's log format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per record.
    Text,
    /// One JSON object per line.
    Json,
}

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
        hide_env_values = true,
        value_name = "DATABASE_URL"
    )]
    pub connstr: String,

    /// The `postgres` executable; `initdb` and `pg_ctl` are looked up beside it.
    #[arg(
        short = 'b',
        long,
        env = "COMPUTE_CTL_PGBIN",
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

    /// Inline spec JSON (either document shape). Unsafe for secrets: every local user can read
    /// it in /proc/PID/cmdline (a warning says so when the spec holds a token or password
    /// hashes); use -S FILE (mode 0600) or -S /dev/stdin.
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

    /// Id of this compute: checked against the `compute_id` claim of JWTs and used in the
    /// control-plane URL. Required with `--config` and `--control-plane-uri` (as upstream).
    #[arg(
        short = 'i',
        long,
        env = "COMPUTE_CTL_COMPUTE_ID",
        value_name = "COMPUTE_ID"
    )]
    pub compute_id: Option<String>,

    /// Control plane base URL (http or https: roots from the system store, or `SSL_CERT_FILE`);
    /// the spec is fetched from
    /// `{uri}/compute/api/v2/computes/{id}/spec` with `Authorization: Bearer
    /// $NEON_CONTROL_PLANE_TOKEN`.
    #[arg(
        short = 'p',
        long,
        env = "COMPUTE_CTL_CONTROL_PLANE_URI",
        value_name = "CONTROL_PLANE",
        requires = "compute_id",
        conflicts_with_all = ["config", "spec", "spec_path"]
    )]
    pub control_plane_uri: Option<String>,

    /// Port of the external HTTP API, with the internal API on the next port (the older
    /// single-port form; upstream honours it only with `--lakebase-mode`).
    #[arg(
        long,
        env = "COMPUTE_CTL_HTTP_PORT",
        conflicts_with_all = ["external_http_port", "internal_http_port"],
        value_name = "PORT"
    )]
    pub http_port: Option<u16>,

    /// Port of the external HTTP API (control plane, metrics scraper).
    #[arg(
        long,
        env = "COMPUTE_CTL_EXTERNAL_HTTP_PORT",
        default_value_t = 3080,
        value_name = "PORT"
    )]
    pub external_http_port: u16,

    /// Port of the internal HTTP API (status and metrics for processes inside the compute).
    #[arg(
        long,
        env = "COMPUTE_CTL_INTERNAL_HTTP_PORT",
        default_value_t = 3081,
        value_name = "PORT"
    )]
    pub internal_http_port: u16,

    /// Address the external HTTP API binds to. Default: `::` (IPv4 and IPv6, as upstream),
    /// `0.0.0.0` where IPv6 is unavailable.
    #[arg(long, env = "COMPUTE_CTL_HTTP_BIND", value_name = "ADDR")]
    pub http_bind: Option<IpAddr>,

    /// Address the internal HTTP API (never authenticated) binds to.
    #[arg(
        long,
        env = "COMPUTE_CTL_INTERNAL_HTTP_BIND",
        default_value = "127.0.0.1",
        value_name = "ADDR"
    )]
    pub internal_http_bind: IpAddr,

    /// Serve the external API's authenticated routes without a token when the config carries
    /// no JWK set (upstream answers every such call 401, as this build does without the flag).
    /// Only allowed when the external API is bound to a loopback address.
    #[arg(long)]
    pub allow_unauthenticated: bool,

    /// Base URL of the remote extension storage gateway (a trailing `/` is added; a query is
    /// refused; only http://). With `remote_extensions` in the spec, control files are written
    /// and preload libraries fetched before Postgres starts, and
    /// `POST /extension_server/{filename}` fetches the others.
    #[arg(short = 'r', long, env = "COMPUTE_CTL_REMOTE_EXT_BASE_URL", value_parser = parse_remote_ext_base_url, value_name = "URL")]
    pub remote_ext_base_url: Option<url::Url>,

    /// Development mode, as upstream's: termination signals spare the services compute_ctl
    /// does not start itself (pgbouncer, local_proxy). This build never signals those to stop
    /// (only a pgbouncer it started with `--pgbouncer` is stopped), so the flag changes
    /// nothing.
    #[arg(long)]
    pub dev: bool,

    /// Drop the settings of the spec that this postgres binary does not support instead of
    /// failing at start: names it does not know (without a dot), preload libraries missing
    /// from its library directory, `synchronous_standby_names` of a walproposer it lacks. Each
    /// drop is logged and listed in `/status` (`dropped_settings`). For running neon_local's
    /// specs on vanilla PostgreSQL.
    #[arg(long, env = "COMPUTE_CTL_DROP_UNSUPPORTED_SETTINGS")]
    pub drop_unsupported_settings: bool,

    /// Name of the privileged (non-superuser) role written as `neon.privileged_role_name`.
    #[arg(long, env = "COMPUTE_CTL_PRIVILEGED_ROLE_NAME", default_value = "neon_superuser", value_parser = parse_role_name)]
    pub privileged_role_name: String,

    /// Unprivileged user that runs `postgres`, `initdb` and sync-safekeepers when compute_ctl
    /// runs as root (PostgreSQL refuses root). Default `postgres` when root, the current user
    /// otherwise.
    #[arg(long, env = "COMPUTE_CTL_PG_USER", value_name = "USER")]
    pub pg_user: Option<String>,

    /// How long a failed compute keeps serving `/status` before exiting 1 (and a compute
    /// stopped by `/terminate?mode=fast` before exiting), e.g. `30s`, `500ms`.
    #[arg(long, env = "COMPUTE_CTL_LINGER", default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub linger: Duration,

    /// Timeout for Postgres to report `ready` in `postmaster.pid`.
    #[arg(long, env = "COMPUTE_CTL_PG_READY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub pg_ready_timeout: Duration,

    /// How long the pageserver may send nothing during a basebackup (before the archive
    /// starts or between two chunks) before the attempt fails and is retried. Upstream waits
    /// without bound; the default is above a pageserver's own 60 s wait for the LSN.
    #[arg(long, env = "COMPUTE_CTL_BASEBACKUP_STALL_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub basebackup_stall_timeout: Duration,

    /// Bound of one `postgres --sync-safekeepers` run: the child is killed after this long and
    /// the start fails (a run that hung this long is not run again). Upstream waits without
    /// bound; the default leaves a sync that must recover WAL from the safekeepers time to do
    /// it.
    #[arg(long, env = "COMPUTE_CTL_SYNC_SAFEKEEPERS_TIMEOUT", default_value = "300s", value_parser = parse_nonzero_duration, value_name = "DURATION")]
    pub sync_safekeepers_timeout: Duration,

    /// Total time the basebackup's retries may take: no attempt starts (and no wait before one)
    /// past it, and the last error is reported. The attempt in flight is not cut short (a
    /// healthy transfer of a large database may take longer): the connect timeout and
    /// --basebackup-stall-timeout bound it. Upstream's 10 retries, 500 ms × 1.5ⁿ apart, take
    /// about a minute.
    #[arg(long, env = "COMPUTE_CTL_STORAGE_RETRY_DEADLINE", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub storage_retry_deadline: Duration,

    /// Connect timeout of the control-plane request (`-p`).
    #[arg(long, env = "COMPUTE_CTL_CONTROL_PLANE_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration, value_name = "DURATION")]
    pub control_plane_connect_timeout: Duration,

    /// Total timeout of one control-plane request (`-p`), connection, TLS and body included;
    /// 3 attempts are made, as upstream (whose client has the same 30 s timeout).
    #[arg(long, env = "COMPUTE_CTL_CONTROL_PLANE_TIMEOUT", default_value = "30s", value_parser = parse_nonzero_duration, value_name = "DURATION")]
    pub control_plane_timeout: Duration,

    /// Installed-extensions statistics (`compute_installed_extensions` in `/metrics`): scanned
    /// when a Primary starts, then every 2 × this many seconds, or 2 × the spec's positive
    /// `suspend_timeout_seconds` (upstream's rule). At least 1.
    #[arg(
        long,
        env = "COMPUTE_CTL_INSTALLED_EXTENSIONS_COLLECTION_INTERVAL",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..),
        value_name = "SECONDS"
    )]
    pub installed_extensions_collection_interval: u64,

    /// The vm-informant executable; started (and restarted 5 s after each exit) if it exists.
    #[arg(
        long,
        env = "COMPUTE_CTL_VM_INFORMANT",
        default_value = "/bin/vm-informant",
        value_name = "PATH"
    )]
    pub vm_informant: PathBuf,

    /// How long the start waits for the TLS key and certificate named by
    /// `compute_ctl_config.tls` to be readable and to match, before failing (upstream waits
    /// without bound, looking every second).
    #[arg(long, env = "COMPUTE_CTL_TLS_WAIT_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub tls_wait_timeout: Duration,

    /// How often the TLS key and certificate are looked at for a renewal while postgres runs
    /// (upstream: every 60 s). Not zero.
    #[arg(long, env = "COMPUTE_CTL_TLS_WATCH_INTERVAL", default_value = "60s", value_parser = parse_nonzero_duration, value_name = "DURATION")]
    pub tls_watch_interval: Duration,

    /// Wipe the data directory even if it is non-empty and has no `PG_VERSION` (a data
    /// directory that lost it). Never `/`, system content, a home, a live postmaster's, or a
    /// directory holding files PostgreSQL and compute_ctl do not make.
    #[arg(long)]
    pub force_wipe: bool,

    /// pgbouncer's ini file, into whose `[pgbouncer]` section the spec's `pgbouncer_settings`
    /// are written (the file must exist). Default as upstream: `/etc/pgbouncer.ini` when
    /// `$AUTOSCALING` is set (a VM), else `/var/db/postgres/pgbouncer/pgbouncer.ini`.
    #[arg(long, env = "COMPUTE_CTL_PGBOUNCER_INI", value_name = "PATH")]
    pub pgbouncer_ini: Option<PathBuf>,

    /// Connection string of pgbouncer's admin console, where `RELOAD` is sent after the ini is
    /// written; dbname `pgbouncer` and the password `$PGBOUNCER_PASSWORD` unless it names
    /// them. Default as upstream: `host=/tmp port=6432 user=pgbouncer` when `$AUTOSCALING` is
    /// set, else `host=localhost port=6432 user=postgres sslmode=disable`.
    #[arg(
        long,
        env = "COMPUTE_CTL_PGBOUNCER_CONNSTR",
        hide_env_values = true,
        value_name = "CONNSTR"
    )]
    pub pgbouncer_connstr: Option<String>,

    /// A pgbouncer executable that compute_ctl starts on the ini file (as the Postgres user)
    /// once the spec is known, and stops when it exits. Without it pgbouncer is run by someone
    /// else and compute_ctl only writes its ini and sends `RELOAD`.
    #[arg(long, env = "COMPUTE_CTL_PGBOUNCER", value_name = "PATH")]
    pub pgbouncer: Option<PathBuf>,

    /// local_proxy's directory: `config.json` is written there from the spec's
    /// `local_proxy_config`, and the process whose pid is in its `pid` file, if it holds that
    /// file's lock, gets SIGHUP.
    #[arg(
        long,
        env = "COMPUTE_CTL_LOCAL_PROXY_DIR",
        default_value = "/etc/local_proxy",
        value_name = "DIR"
    )]
    pub local_proxy_dir: PathBuf,

    /// rsyslog's drop-in directory: the audit forwarding (`compute_audit_rsyslog.conf`) and
    /// log export (`postgres_logs.conf`) configs are written there (upstream's path).
    #[arg(
        long,
        env = "COMPUTE_CTL_RSYSLOG_CONFIG_DIR",
        default_value = "/etc/rsyslog.d",
        value_name = "DIR"
    )]
    pub rsyslog_config_dir: PathBuf,

    /// rsyslog's work directory, named in the audit forwarding config (where rsyslog keeps how
    /// far it read each audit file); upstream's path.
    #[arg(
        long,
        env = "COMPUTE_CTL_RSYSLOG_WORK_DIR",
        default_value = "/var/log/rsyslog",
        value_name = "DIR"
    )]
    pub rsyslog_work_dir: PathBuf,

    /// Program and arguments (split at spaces) run, within 5 s, after an rsyslog config was
    /// written. Default upstream's: `pkill rsyslogd`, then up to 5 s for `pgrep rsyslogd` to
    /// find it started again by its supervisor.
    #[arg(
        long,
        env = "COMPUTE_CTL_RSYSLOG_RESTART_COMMAND",
        value_name = "COMMAND"
    )]
    pub rsyslog_restart_command: Option<String>,

    /// Limits of the HTTP listeners and of the catalog routes' sessions.
    #[command(flatten)]
    pub http_limits: HttpLimits,

    /// Format of compute_ctl's log on standard error: `text` (one human-readable line per
    /// record) or `json` (one JSON object per line: `timestamp`, `level`, `target`, `message`,
    /// the record's fields and its spans). Postgres's lines are records too, at the level of
    /// the severity postgres wrote, with the fields `program`, `pid` and `severity`.
    #[arg(
        long,
        env = "COMPUTE_CTL_LOG_FORMAT",
        default_value = "text",
        value_parser = log_format_parser(),
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// Upstream flags this build refuses.
    #[command(flatten)]
    pub refused: RefusedFlags,
}

/// The limits of the HTTP listeners (each listener has its own connection cap) and of the
/// PostgreSQL sessions of the catalog routes (`/dbs_and_roles`, `/check_writability`,
/// `/insights`, `/database_schema`, `/grants`, `/extensions`: one budget for all).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpLimits {
    /// A connection that has sent no complete request header this long after it opened or
    /// after its last answer is closed: covers idle keep-alive connections and partial headers.
    #[arg(long, env = "COMPUTE_CTL_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub http_idle_timeout: Duration,

    /// How long a request's header may take to arrive once its first byte did.
    #[arg(long, env = "COMPUTE_CTL_HTTP_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub http_header_read_timeout: Duration,

    /// Connections each listener keeps open at most (lowered to a quarter of the open-file
    /// limit); at the cap the longest-idle connection is closed for a new one, or, when all
    /// are busy, new ones wait in the kernel's queue.
    #[arg(long, env = "COMPUTE_CTL_HTTP_MAX_CONNECTIONS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub http_max_connections: u32,

    /// PostgreSQL sessions the catalog routes hold at once, all together.
    #[arg(long, env = "COMPUTE_CTL_CATALOG_MAX_SESSIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub catalog_max_sessions: u32,

    /// How long a catalog request waits for a session before it is answered 429.
    #[arg(long, env = "COMPUTE_CTL_CATALOG_QUEUE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub catalog_queue_timeout: Duration,

    /// `statement_timeout` of the catalog sessions (`lock_timeout` is half of it); their
    /// connect is bounded by it too, and a request's whole work by three times it (then 503).
    #[arg(long, env = "COMPUTE_CTL_CATALOG_STATEMENT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub catalog_statement_timeout: Duration,
}

const REFUSED: &str = "Upstream flags this build refuses";

/// Flags of upstream's compute_ctl that cannot apply to this build. Each is parsed (so its
/// value is checked as upstream does) and then refused with the reason, never ignored.
#[derive(Debug, Default, clap::Args)]
pub struct RefusedFlags {
    /// Databricks mode (refused when true).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL", help_heading = REFUSED)]
    pub lakebase_mode: bool,
    /// Lakebase start deadline in seconds (see `--pg-ready-timeout`).
    #[arg(long, value_name = "SECONDS", help_heading = REFUSED)]
    pub pg_init_timeout: Option<u64>,
    /// vm-monitor's cgroup.
    #[arg(long, value_name = "NAME", help_heading = REFUSED)]
    pub cgroup: Option<String>,
    /// vm-monitor's file cache connection string.
    #[arg(long, value_name = "CONNSTR", help_heading = REFUSED)]
    pub filecache_connstr: Option<String>,
    /// vm-monitor's listen address.
    #[arg(long, value_name = "ADDR", help_heading = REFUSED)]
    pub vm_monitor_addr: Option<String>,
    /// Resize swap to the spec's `swap_size_bytes`.
    #[arg(long, help_heading = REFUSED)]
    pub resize_swap_on_bind: bool,
    /// Set a disk quota from the spec's `disk_quota_bytes` on this mount point.
    #[arg(long, value_name = "MOUNTPOINT", help_heading = REFUSED)]
    pub set_disk_quota_for_fs: Option<String>,
}

impl Cli {
    /// Parses `args` as [`clap::Parser::try_parse_from`] does, with the aliases of
    /// [`ENV_ALIASES`] looked up through `env`: an alias's value is used for an option given
    /// neither on the command line nor by its `COMPUTE_CTL_` variable.
    pub fn try_parse_with_env<I, T>(
        args: I,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let mut command = Cli::command();
        for (alias, id) in ENV_ALIASES {
            let canonical = command
                .get_arguments()
                .find(|a| a.get_id() == *id)
                .and_then(|a| a.get_env())
                .map(|name| name.to_string_lossy().into_owned());
            let Some(value) = env(alias) else { continue };
            if canonical.is_some_and(|name| env(&name).is_some()) {
                continue;
            }
            // The lowest precedence: below the command line and the canonical variable. clap
            // keeps defaults as static text; at most one small leak per alias and parse.
            let value: &'static std::ffi::OsStr = Box::leak(value.into_boxed_os_str());
            command = command.mut_arg(*id, |arg| arg.default_value(value));
        }
        let matches = command.try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }

    /// [`Cli::try_parse_with_env`] over the process's arguments and environment; on an error
    /// prints it and exits (2 for usage errors, 0 for `--help` and `--version`).
    pub fn parse_with_env() -> Cli {
        Cli::try_parse_with_env(std::env::args_os(), |name| std::env::var_os(name))
            .unwrap_or_else(|e| e.exit())
    }
}

impl RefusedFlags {
    /// The first refused flag given, with the reason.
    fn refusal(&self) -> Option<(&'static str, &'static str)> {
        const VM: &str = "NeonVM autoscaling (vm-monitor) is not part of this build";
        let given = [
            (
                self.lakebase_mode,
                "--lakebase-mode",
                "Databricks/Lakebase mode is not part of this build",
            ),
            (
                self.pg_init_timeout.is_some(),
                "--pg-init-timeout",
                "it is a Lakebase deadline; use --pg-ready-timeout",
            ),
            (self.cgroup.is_some(), "--cgroup", VM),
            (self.filecache_connstr.is_some(), "--filecache-connstr", VM),
            (self.vm_monitor_addr.is_some(), "--vm-monitor-addr", VM),
            (
                self.resize_swap_on_bind,
                "--resize-swap-on-bind",
                "swap resizing needs NeonVM's resize-swap helper",
            ),
            (
                self.set_disk_quota_for_fs.is_some(),
                "--set-disk-quota-for-fs",
                "disk quotas need NeonVM's set-disk-quota helper",
            ),
        ];
        given
            .into_iter()
            .find(|(on, ..)| *on)
            .map(|(_, flag, why)| (flag, why))
    }
}

/// Upstream's normalisation: trailing slashes become one, a query string is refused.
fn parse_remote_ext_base_url(value: &str) -> Result<url::Url, String> {
    let normalised = format!("{}/", value.trim_end_matches('/'));
    let url = url::Url::parse(&normalised).map_err(|e| format!("{value:?}: {e}"))?;
    if url.query().is_some() {
        return Err(format!(
            "{value:?}: a query string is not allowed in the base URL"
        ));
    }
    Ok(url)
}

fn parse_nonzero_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Err(format!("{value:?}: must be more than zero")),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{value:?}: {e}")),
    }
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
    /// Bind address of the external listener; `None`: `::`, else `0.0.0.0`.
    pub http_bind: Option<IpAddr>,
    /// Bind address of the internal listener.
    pub internal_http_bind: IpAddr,
    /// Serve authenticated routes without a token when there is no JWK set.
    pub allow_unauthenticated: bool,
    /// The remote extension gateway.
    pub remote_ext_base_url: Option<url::Url>,
    /// `--dev`.
    pub dev: bool,
    /// Drop settings the postgres binary does not support (`--drop-unsupported-settings`).
    pub drop_unsupported_settings: bool,
    /// `neon.privileged_role_name`.
    pub privileged_role_name: String,
    /// User to run Postgres programs as, by name (`None`: the current user).
    pub pg_user: Option<String>,
    /// Linger time after a failed start.
    pub linger: Duration,
    /// Readiness timeout.
    pub pg_ready_timeout: Duration,
    /// Stall bound of a basebackup transfer.
    pub basebackup_stall_timeout: Duration,
    /// Bound of one `--sync-safekeepers` run.
    pub sync_safekeepers_timeout: Duration,
    /// Total time the basebackup's retries may take.
    pub storage_retry_deadline: Duration,
    /// Connect timeout of the control-plane request.
    pub control_plane_connect_timeout: Duration,
    /// Total timeout of one control-plane request.
    pub control_plane_timeout: Duration,
    /// Half the default time between installed-extensions scans.
    pub installed_extensions_collection_interval: Duration,
    /// vm-informant executable.
    pub vm_informant: PathBuf,
    /// Wipe a non-empty directory without `PG_VERSION`.
    pub force_wipe: bool,
    /// Bound of the start's wait for the TLS files.
    pub tls_wait_timeout: Duration,
    /// Time between two looks at the TLS files while postgres runs.
    pub tls_watch_interval: Duration,
    /// pgbouncer's ini file, admin console and (optionally) executable.
    pub pgbouncer: PgbouncerOptions,
    /// local_proxy's directory (`config.json`, `pid`).
    pub local_proxy_dir: PathBuf,
    /// rsyslog's drop-in directory (absolute).
    pub rsyslog_config_dir: PathBuf,
    /// rsyslog's work directory (absolute).
    pub rsyslog_work_dir: PathBuf,
    /// The rsyslog restart program and its arguments; empty: upstream's pkill/pgrep.
    pub rsyslog_restart_command: Vec<String>,
    /// Limits of the HTTP listeners and the catalog sessions.
    pub http_limits: HttpLimits,
}

/// Where pgbouncer's settings go and how it is reloaded.
#[derive(Debug, Clone)]
pub struct PgbouncerOptions {
    /// The ini file (absolute).
    pub ini: PathBuf,
    /// The admin console (dbname `pgbouncer`; the password, if any, is redacted by `Debug`).
    pub admin: tokio_postgres::Config,
    /// The executable compute_ctl starts and supervises, if any (absolute).
    pub binary: Option<PathBuf>,
}

/// Upstream's defaults: the ini file and admin console of a VM (`$AUTOSCALING` set) or a pod.
pub fn pgbouncer_defaults(autoscaling: bool) -> (&'static str, &'static str) {
    if autoscaling {
        ("/etc/pgbouncer.ini", "host=/tmp port=6432 user=pgbouncer")
    } else {
        (
            "/var/db/postgres/pgbouncer/pgbouncer.ini",
            "host=localhost port=6432 user=postgres sslmode=disable",
        )
    }
}

impl Cli {
    /// Checks the combination of flags and resolves paths.
    pub fn into_options(self) -> anyhow::Result<Options> {
        self.check_combination()?;
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
        let spec_source = self.spec_source(&absolute);
        let pgbouncer = self.pgbouncer_options(&absolute)?;
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
            external_http_port: self.http_port.unwrap_or(self.external_http_port),
            internal_http_port: self
                .http_port
                .map_or(self.internal_http_port, |p| p.saturating_add(1)),
            http_bind: self.http_bind,
            internal_http_bind: self.internal_http_bind,
            allow_unauthenticated: self.allow_unauthenticated,
            remote_ext_base_url: self.remote_ext_base_url,
            dev: self.dev,
            drop_unsupported_settings: self.drop_unsupported_settings,
            privileged_role_name: self.privileged_role_name,
            pg_user,
            linger: self.linger,
            pg_ready_timeout: self.pg_ready_timeout,
            basebackup_stall_timeout: self.basebackup_stall_timeout,
            sync_safekeepers_timeout: self.sync_safekeepers_timeout,
            storage_retry_deadline: self.storage_retry_deadline,
            control_plane_connect_timeout: self.control_plane_connect_timeout,
            control_plane_timeout: self.control_plane_timeout,
            installed_extensions_collection_interval: Duration::from_secs(
                self.installed_extensions_collection_interval,
            ),
            vm_informant: self.vm_informant,
            force_wipe: self.force_wipe,
            tls_wait_timeout: self.tls_wait_timeout,
            tls_watch_interval: self.tls_watch_interval,
            pgbouncer,
            local_proxy_dir: absolute(&self.local_proxy_dir),
            rsyslog_config_dir: absolute(&self.rsyslog_config_dir),
            rsyslog_work_dir: absolute(&self.rsyslog_work_dir),
            rsyslog_restart_command: self
                .rsyslog_restart_command
                .iter()
                .flat_map(|c| c.split_whitespace())
                .map(str::to_owned)
                .collect(),
            http_limits: self.http_limits,
        })
    }

    /// The pgbouncer options: upstream's defaults, dbname `pgbouncer` and
    /// `$PGBOUNCER_PASSWORD` unless the connection string names them.
    fn pgbouncer_options(
        &self,
        absolute: &impl Fn(&Path) -> PathBuf,
    ) -> anyhow::Result<PgbouncerOptions> {
        let (ini, connstr) = pgbouncer_defaults(std::env::var_os("AUTOSCALING").is_some());
        let connstr = self.pgbouncer_connstr.as_deref().unwrap_or(connstr);
        let mut admin: tokio_postgres::Config =
            connstr.parse().context("parse --pgbouncer-connstr")?;
        if admin.get_dbname().is_none() {
            admin.dbname("pgbouncer");
        }
        if admin.get_password().is_none()
            && let Ok(password) = std::env::var("PGBOUNCER_PASSWORD")
        {
            admin.password(password);
        }
        Ok(PgbouncerOptions {
            ini: absolute(self.pgbouncer_ini.as_deref().unwrap_or(Path::new(ini))),
            admin,
            binary: self.pgbouncer.as_deref().map(absolute),
        })
    }

    /// Refused upstream flags, and combinations clap cannot express.
    fn check_combination(&self) -> anyhow::Result<()> {
        if let Some((flag, why)) = self.refused.refusal() {
            bail!("{flag}: not supported by this build: {why}");
        }
        if self.compute_id.is_none() && (self.config.is_some() || self.control_plane_uri.is_some())
        {
            bail!("--compute-id is required with --config and --control-plane-uri");
        }
        if self.allow_unauthenticated && !self.http_bind.is_some_and(|a| a.is_loopback()) {
            bail!(
                "--allow-unauthenticated needs --http-bind with a loopback address (127.0.0.1 or ::1)"
            );
        }
        Ok(())
    }

    /// Where the spec comes from (clap has made the sources exclusive).
    fn spec_source(&self, absolute: &impl Fn(&Path) -> PathBuf) -> SpecSource {
        match (
            &self.spec,
            &self.spec_path,
            &self.config,
            &self.control_plane_uri,
        ) {
            (Some(json), ..) => SpecSource::Inline(json.clone()),
            (None, Some(path), ..) => SpecSource::File(absolute(path)),
            (None, None, Some(path), _) => SpecSource::ConfigFile(absolute(path)),
            (None, None, None, Some(base_url)) => SpecSource::ControlPlane {
                base_url: base_url.clone(),
                compute_id: self.compute_id.clone().unwrap_or_default(),
            },
            (None, None, None, None) => SpecSource::None,
        }
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
            &["-c", "/c.json", "-i", "c1"],
            Ok(SpecSource::ConfigFile("/c.json".into())),
        );
        check(&["-c", "/c.json"], Err("--compute-id is required"));
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

    fn options(args: &[&str]) -> Result<Options, String> {
        let mut argv = vec![
            "compute_ctl",
            "-D",
            "/x",
            "-C",
            "postgresql://u@h/db",
            "-b",
            "/p",
        ];
        argv.extend_from_slice(args);
        Cli::try_parse_from(&argv)
            .map_err(|e| e.to_string())
            .and_then(|cli| cli.into_options().map_err(|e| format!("{e:#}")))
    }

    /// neon_local's flags are accepted; upstream flags that cannot apply are refused by name
    /// with the reason; `--lakebase-mode false` is upstream's default and accepted.
    #[test]
    fn upstream_flags_accepted_or_refused_with_the_reason() {
        let o = options(&["--dev", "--remote-ext-base-url", "http://ext.example//"]).unwrap();
        assert!(o.dev);
        assert_eq!(
            o.remote_ext_base_url.unwrap().as_str(),
            "http://ext.example/"
        );
        let o = options(&["-r", "https://example.com/subpath"]).unwrap();
        assert_eq!(
            o.remote_ext_base_url.unwrap().as_str(),
            "https://example.com/subpath/"
        );
        assert!(
            options(&["-r", "https://example.com?hello=world"])
                .unwrap_err()
                .contains("query string")
        );
        assert!(options(&["--lakebase-mode", "false"]).is_ok());
        let o = options(&["--installed-extensions-collection-interval", "60"]).unwrap();
        assert_eq!(
            o.installed_extensions_collection_interval,
            Duration::from_secs(60)
        );
        assert_eq!(
            options(&[])
                .unwrap()
                .installed_extensions_collection_interval,
            Duration::from_secs(3600)
        );
        assert!(options(&["--installed-extensions-collection-interval", "0"]).is_err());
        for (args, flag) in [
            (&["--lakebase-mode", "true"][..], "--lakebase-mode"),
            (&["--pg-init-timeout", "60"], "--pg-init-timeout"),
            (&["--cgroup", "neon-postgres"], "--cgroup"),
            (&["--filecache-connstr", "host=x"], "--filecache-connstr"),
            (&["--vm-monitor-addr", "0.0.0.0:10301"], "--vm-monitor-addr"),
            (&["--resize-swap-on-bind"], "--resize-swap-on-bind"),
            (&["--set-disk-quota-for-fs", "/"], "--set-disk-quota-for-fs"),
        ] {
            let err = options(args).unwrap_err();
            assert!(
                err.starts_with(&format!("{flag}: not supported by this build: ")),
                "{err}"
            );
        }
        // Wrong value types are clap errors, as upstream's.
        assert!(options(&["--pg-init-timeout", "soon"]).is_err());
        assert!(options(&["--external-http-port", "70000"]).is_err());
        // Ports: upstream defaults; `--http-port` puts the internal API on the next port.
        let o = options(&[]).unwrap();
        assert_eq!((o.external_http_port, o.internal_http_port), (3080, 3081));
        let o = options(&["--http-port", "5000"]).unwrap();
        assert_eq!((o.external_http_port, o.internal_http_port), (5000, 5001));
        assert!(options(&["--http-port", "5000", "--internal-http-port", "1"]).is_err());
        // Unauthenticated serving only on loopback.
        assert!(options(&["--allow-unauthenticated"]).is_err());
        assert!(options(&["--allow-unauthenticated", "--http-bind", "0.0.0.0"]).is_err());
        assert!(options(&["--allow-unauthenticated", "--http-bind", "127.0.0.1"]).is_ok());
        // TLS timings: upstream's 60 s watch interval by default; never a zero interval.
        let o = options(&[]).unwrap();
        assert_eq!(
            (o.tls_wait_timeout, o.tls_watch_interval),
            (Duration::from_secs(60), Duration::from_secs(60))
        );
        let o = options(&["--tls-watch-interval", "200ms", "--tls-wait-timeout", "2s"]).unwrap();
        assert_eq!(
            (o.tls_wait_timeout, o.tls_watch_interval),
            (Duration::from_secs(2), Duration::from_millis(200))
        );
        assert!(
            options(&["--tls-watch-interval", "0s"])
                .unwrap_err()
                .contains("more than zero")
        );
    }

    /// The internal API (never authenticated) listens on loopback unless told otherwise; the
    /// external one has no address of its own (`None`: `::`, dual stack, as README says).
    #[test]
    fn http_binds_default_to_dual_stack_external_and_loopback_internal() {
        let o = options(&[]).unwrap();
        assert_eq!(o.internal_http_bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(o.http_bind, None);
        let o = options(&["--http-bind", "0.0.0.0", "--internal-http-bind", "::1"]).unwrap();
        assert_eq!(o.http_bind, Some(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(o.internal_http_bind, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn basebackup_stall_timeout() {
        let o = options(&[]).unwrap();
        assert_eq!(o.basebackup_stall_timeout, Duration::from_secs(120));
        let o = options(&["--basebackup-stall-timeout", "750ms"]).unwrap();
        assert_eq!(o.basebackup_stall_timeout, Duration::from_millis(750));
    }

    /// The bounds of the start's network waits: defaults, and a zero timeout refused.
    #[test]
    fn network_bounds() {
        let o = options(&[]).unwrap();
        let secs = |d: Duration| d.as_secs();
        assert_eq!(
            [
                o.sync_safekeepers_timeout,
                o.storage_retry_deadline,
                o.control_plane_connect_timeout,
                o.control_plane_timeout
            ]
            .map(secs),
            [300, 60, 10, 30]
        );
        let o = options(&[
            "--sync-safekeepers-timeout",
            "2s",
            "--storage-retry-deadline",
            "0s",
            "--control-plane-connect-timeout",
            "1s",
            "--control-plane-timeout",
            "3s",
        ])
        .unwrap();
        assert_eq!(
            [
                o.sync_safekeepers_timeout,
                o.storage_retry_deadline,
                o.control_plane_connect_timeout,
                o.control_plane_timeout
            ]
            .map(secs),
            [2, 0, 1, 3]
        );
        for flag in [
            "--sync-safekeepers-timeout",
            "--control-plane-connect-timeout",
            "--control-plane-timeout",
        ] {
            assert!(
                options(&[flag, "0s"])
                    .unwrap_err()
                    .contains("more than zero")
            );
        }
    }

    #[test]
    fn pgbouncer_and_local_proxy_options() {
        let o = options(&[]).unwrap();
        assert_eq!(o.local_proxy_dir, Path::new("/etc/local_proxy"));
        assert_eq!(o.pgbouncer.admin.get_dbname(), Some("pgbouncer"));
        assert_eq!(o.pgbouncer.binary, None);
        let o = options(&[
            "--pgbouncer-ini",
            "/x/pgbouncer.ini",
            "--pgbouncer-connstr",
            "host=/run/pgb port=7000 user=admin dbname=other password=secret",
            "--pgbouncer",
            "/usr/sbin/pgbouncer",
            "--local-proxy-dir",
            "/lp",
        ])
        .unwrap();
        assert_eq!(o.pgbouncer.ini, Path::new("/x/pgbouncer.ini"));
        assert_eq!(o.pgbouncer.admin.get_ports(), [7000]);
        assert_eq!(o.pgbouncer.admin.get_user(), Some("admin"));
        assert_eq!(o.pgbouncer.admin.get_dbname(), Some("other"));
        assert_eq!(o.pgbouncer.admin.get_password(), Some(&b"secret"[..]));
        assert!(!format!("{o:?}").contains("secret"));
        assert_eq!(
            o.pgbouncer.binary.as_deref(),
            Some(Path::new("/usr/sbin/pgbouncer"))
        );
        assert_eq!(o.local_proxy_dir, Path::new("/lp"));
        assert!(options(&["--pgbouncer-connstr", "host=x port=notaport"]).is_err());
        for autoscaling in [false, true] {
            let (ini, connstr) = pgbouncer_defaults(autoscaling);
            assert!(ini.ends_with("pgbouncer.ini"));
            let admin: tokio_postgres::Config = connstr.parse().unwrap();
            assert_eq!(admin.get_ports(), [6432]);
        }
        assert_eq!(
            pgbouncer_defaults(false).0,
            "/var/db/postgres/pgbouncer/pgbouncer.ini"
        );
        assert_eq!(pgbouncer_defaults(true).0, "/etc/pgbouncer.ini");
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

    /// Every option that reads the environment reads `COMPUTE_CTL_` + its long name; only
    /// the inline spec (secrets), the safety switches and the refused upstream flags do not.
    #[test]
    fn one_env_prefix_for_every_option() {
        let without_env = [
            "spec",
            "allow_unauthenticated",
            "dev",
            "force_wipe",
            "help",
            "version",
        ];
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().as_str();
            let refused = arg.get_help_heading() == Some(REFUSED);
            let long = arg.get_long().unwrap_or_default();
            let want = format!("COMPUTE_CTL_{}", long.to_uppercase().replace('-', "_"));
            match arg.get_env() {
                Some(env) => assert_eq!(env.to_str(), Some(want.as_str()), "--{long}"),
                None => assert!(refused || without_env.contains(&id), "--{long} has no env"),
            }
        }
        for (_, id) in ENV_ALIASES {
            assert!(
                Cli::command().get_arguments().any(|a| a.get_id() == *id),
                "{id}"
            );
        }
    }

    #[test]
    fn env_aliases_are_read_below_the_canonical_names() {
        let parse = |args: &[&str], env: &[(&str, &str)]| {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let argv = ["compute_ctl", "-D", "/x", "-C", "postgresql://u@h/db"]
                .iter()
                .chain(args);
            Cli::try_parse_with_env(argv, |name| {
                env.iter().find(|(k, _)| k == name).map(|(_, v)| v.into())
            })
            .unwrap()
        };
        let cli = parse(&[], &[("POSTGRES_PATH", "/opt/pg/bin/postgres")]);
        assert_eq!(cli.pgbin, Path::new("/opt/pg/bin/postgres"));
        let cli = parse(&["-b", "/cmd/postgres"], &[("POSTGRES_PATH", "/alias")]);
        assert_eq!(cli.pgbin, Path::new("/cmd/postgres"));
        let cli = parse(&[], &[("COMPUTE_ID", "c-1"), ("LOCAL_PROXY_DIR", "/lp")]);
        assert_eq!(cli.compute_id.as_deref(), Some("c-1"));
        assert_eq!(cli.local_proxy_dir, Path::new("/lp"));
        // Not set at all: the documented default.
        assert_eq!(parse(&[], &[]).pgbin, Path::new("postgres"));
        assert_eq!(parse(&[], &[]).log_format, LogFormat::Text);
        assert_eq!(
            parse(&["--log-format", "json"], &[]).log_format,
            LogFormat::Json
        );
    }

    #[test]
    fn help_documents_defaults_environment_and_exit_codes() {
        let help = Cli::command().render_help().to_string();
        for needle in [
            "[env: COMPUTE_CTL_EXTERNAL_HTTP_PORT=] [default: 3080]",
            "[env: COMPUTE_CTL_LINGER=] [default: 30s]",
            "[env: COMPUTE_CTL_LOG_FORMAT=] [default: text] [possible values: text, json]",
            "POSTGRES_PATH      --pgbin",
            "Exit codes:",
            "128+N  postgres was killed by signal N",
        ] {
            assert!(help.contains(needle), "{needle:?} not in:\n{help}");
        }
        for (alias, _) in ENV_ALIASES {
            assert!(help.contains(alias), "{alias}");
        }
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
