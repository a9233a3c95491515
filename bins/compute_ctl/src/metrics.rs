//! The Prometheus families of `GET /metrics` (the startup timings of `GET /metrics.json` are
//! `compute_spec::api::ComputeMetrics`) and their two expositions: OpenMetrics 1.0 text, and
//! the Prometheus text format 0.0.4 derived from it ([`Format`], negotiated on `Accept`).
//! Units are base units (seconds, bytes); only counters end in `_total`.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use compute_spec::api::{ComputeStatus, OperationOutcome};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A startup phase, for the Prometheus histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Wipe and recreate PGDATA.
    PreparePgdata,
    /// `initdb` (standalone).
    Initdb,
    /// Safekeeper fast path.
    SyncSkCheck,
    /// Full sync-safekeepers.
    SyncSafekeepers,
    /// Basebackup.
    Basebackup,
    /// Write config files.
    WriteConfig,
    /// Start postgres until ready.
    StartPostgres,
    /// Reconcile catalog.
    Config,
    /// Whole startup.
    Total,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::PreparePgdata => "prepare_pgdata",
            Phase::Initdb => "initdb",
            Phase::SyncSkCheck => "sync_sk_check",
            Phase::SyncSafekeepers => "sync_safekeepers",
            Phase::Basebackup => "basebackup",
            Phase::WriteConfig => "write_config",
            Phase::StartPostgres => "start_postgres",
            Phase::Config => "config",
            Phase::Total => "total",
        }
    }
}

type Labels = Vec<(String, String)>;

/// A label value written with OpenMetrics escapes (`\\`, `\"`, `\n`): prometheus-client writes
/// values as they are, and extension names and versions are not ours to trust.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct EscapedValue(pub(crate) String);

impl prometheus_client::encoding::EncodeLabelValue for EscapedValue {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

type EscapedLabels = Vec<(&'static str, EscapedValue)>;

/// The Prometheus registry and the families compute_ctl updates.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    up: Family<Labels, Gauge>,
    phases: Family<Labels, Histogram>,
    apply_operations: Family<Labels, Counter>,
    db_migration_failed: Family<Labels, Counter>,
    /// Current Postgres downtime seen by the monitor, seconds.
    pg_current_downtime: Gauge<f64, AtomicU64>,
    /// Total Postgres downtime seen by the monitor, seconds (a counter, as upstream's).
    pg_downtime_total: Counter<f64, AtomicU64>,
    /// Serialises [`Metrics::set_downtime`], which moves the counter by a difference.
    downtime_update: Mutex<()>,
    installed_extensions: Family<EscapedLabels, Gauge<u64, AtomicU64>>,
    service_config_failed: Family<Labels, Counter>,
    remote_ext_requests: Family<Labels, Counter>,
    /// Size of the audit files in `PGDATA/log`, bytes (compliance audit levels; `audit`).
    pub(crate) audit_log_dir_size: Gauge<u64, AtomicU64>,
}

fn phase_histogram() -> Histogram {
    // 1 ms .. ~65 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

impl Metrics {
    /// A registry with every family registered.
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::default();
        let up = Family::<Labels, Gauge>::default();
        registry.register(
            "compute_ctl_up",
            "Compute is up; the status label is the current status (one sample)",
            up.clone(),
        );
        let phases =
            Family::<Labels, Histogram>::new_with_constructor(phase_histogram as fn() -> Histogram);
        registry.register(
            "compute_ctl_startup_phase_seconds",
            "Duration of each startup phase",
            phases.clone(),
        );
        let apply_operations = Family::<Labels, Counter>::default();
        registry.register(
            "compute_ctl_apply_operations",
            "Reconciliation operations by result (ok, failed, not_run)",
            apply_operations.clone(),
        );
        // Rendered `compute_ctl_db_migration_failed_total`, as upstream's counter.
        let db_migration_failed = Family::<Labels, Counter>::default();
        registry.register(
            "compute_ctl_db_migration_failed",
            "Total number of failed database migrations",
            db_migration_failed.clone(),
        );
        // Upstream's `compute_pg_current_downtime_ms` and `compute_pg_downtime_ms_total`, in
        // the base unit.
        let pg_current_downtime = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "compute_pg_current_downtime_seconds",
            "Current Postgres downtime seen by the compute monitor, in seconds; 0 after a successful check",
            pg_current_downtime.clone(),
        );
        let pg_downtime_total = Counter::<f64, AtomicU64>::default();
        registry.register(
            "compute_pg_downtime_seconds",
            "Cumulative Postgres downtime seen by the compute monitor, in seconds",
            pg_downtime_total.clone(),
        );
        let installed_extensions = Family::<EscapedLabels, Gauge<u64, AtomicU64>>::default();
        registry.register(
            "compute_installed_extensions",
            "Number of databases where the version of extension is installed",
            installed_extensions.clone(),
        );
        // Rendered `compute_ctl_service_config_failed_total{service, step}`.
        let service_config_failed = Family::<Labels, Counter>::default();
        registry.register(
            "compute_ctl_service_config_failed",
            "Failed configurations of pgbouncer and local_proxy, by service and step",
            service_config_failed.clone(),
        );
        // Rendered `compute_ctl_remote_ext_requests_total`, as upstream's counter.
        let remote_ext_requests = Family::<Labels, Counter>::default();
        registry.register(
            "compute_ctl_remote_ext_requests",
            "Total number of requests made by compute_ctl to the remote extension server, by status",
            remote_ext_requests.clone(),
        );
        let audit_log_dir_size = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "compute_audit_log_dir_size",
            "Size of the audit log directory, in bytes",
            audit_log_dir_size.clone(),
        );
        Metrics {
            audit_log_dir_size,
            registry,
            up,
            phases,
            apply_operations,
            db_migration_failed,
            pg_current_downtime,
            pg_downtime_total,
            downtime_update: Mutex::new(()),
            installed_extensions,
            service_config_failed,
            remote_ext_requests,
        }
    }

    /// Counts a failed configuration step (`write`, `reload`, `signal`) of a service
    /// (`pgbouncer`, `local_proxy`).
    pub(crate) fn count_service_failure(&self, service: &str, step: &str) {
        self.service_config_failed
            .get_or_create(&vec![
                ("service".to_owned(), service.to_owned()),
                ("step".to_owned(), step.to_owned()),
            ])
            .inc();
    }

    /// Marks `status` as the current one: `compute_ctl_up` has one sample, labelled with the
    /// build tag and the status in upstream's kebab-case (`configuration-pending`).
    pub(crate) fn set_status(&self, status: ComputeStatus) {
        let labels = vec![
            ("build_tag".to_owned(), build_tag().to_owned()),
            ("status".to_owned(), status.to_string()),
        ];
        self.up.clear();
        self.up.get_or_create(&labels).set(1);
    }

    /// Records one phase duration.
    pub(crate) fn observe_phase(&self, phase: Phase, duration: Duration) {
        self.phases
            .get_or_create(&vec![("phase".to_owned(), phase.label().to_owned())])
            .observe(duration.as_secs_f64());
    }

    /// Counts one reconciliation operation outcome (`ok`, `failed`, `not_run`).
    pub(crate) fn count_apply(&self, result: OperationOutcome) {
        self.apply_operations
            .get_or_create(&vec![("result".to_owned(), result.as_str().to_owned())])
            .inc();
    }

    /// Counts a failed run of migration `id` (a run stops at its first failure).
    pub(crate) fn count_migration_failure(&self, id: i64) {
        self.db_migration_failed
            .get_or_create(&vec![("migration_id".to_owned(), id.to_string())])
            .inc();
    }

    /// Counts one request to the remote extension server: `http_status` as upstream spells it
    /// (`200 OK`, `404 Not Found`, `unknown` without an answer), `filename` the archive's.
    pub(crate) fn count_remote_ext_request(&self, http_status: &str, filename: &str) {
        let labels = vec![
            ("http_status".to_owned(), http_status.to_owned()),
            ("filename".to_owned(), filename.to_owned()),
        ];
        self.remote_ext_requests.get_or_create(&labels).inc();
    }

    /// Replaces `compute_installed_extensions` by the result of a scan: one sample per
    /// (extension, version, owner kind), the number of databases (upstream's labels).
    pub(crate) fn set_installed_extensions(
        &self,
        extensions: &[crate::installed_extensions::InstalledExtension],
    ) {
        self.installed_extensions.clear();
        for e in extensions {
            let labels = vec![
                ("extension_name", EscapedValue(e.extname.clone())),
                ("version", EscapedValue(e.version.clone())),
                (
                    "owned_by_superuser",
                    EscapedValue(e.owned_by_superuser.clone()),
                ),
            ];
            self.installed_extensions
                .get_or_create(&labels)
                .set(u64::from(e.n_databases));
        }
    }

    /// Sets the monitor's downtime figures (milliseconds, as the monitor keeps them): the
    /// current one, and the total, which never decreases.
    pub(crate) fn set_downtime(&self, current_ms: u64, total_ms: u64) {
        let _serial = self
            .downtime_update
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.pg_current_downtime.set(current_ms as f64 / 1000.0);
        let behind = total_ms as f64 / 1000.0 - self.pg_downtime_total.get();
        if behind > 0.0 {
            self.pg_downtime_total.inc_by(behind);
        }
    }

    /// The exposition in `format`.
    pub(crate) fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        match format {
            Format::OpenMetrics => out,
            Format::Prometheus => openmetrics_to_prometheus(&out),
        }
    }
}

/// An exposition format of `GET /metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenMetrics 1.0 text: counter families named without `_total`, `# EOF` last.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: a counter family is named as its sample (`_total`).
    Prometheus,
}

impl Format {
    /// The format a client asks for: OpenMetrics when `Accept` lists
    /// `application/openmetrics-text` (with a non-zero `q`), else the Prometheus text format.
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let wants_openmetrics = accept.into_iter().flat_map(|a| a.split(',')).any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .is_some_and(|q| q.parse::<f64>().is_ok_and(|q| q <= 0.0))
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` of a body in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Rewrites prometheus-client's OpenMetrics text as the Prometheus text format 0.0.4: the
/// `# HELP` and `# TYPE` lines of a counter name the sample (`x_total`), so that the text
/// parser sees one family; `# UNIT` and `# EOF` go (0.0.4 has neither). Samples, label
/// escapes (`\\`, `\"`, `\n`) and the other families read the same in both formats.
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The build tag reported in `compute_ctl_up`: `$BUILD_TAG` at compile time, else `latest`.
pub(crate) fn build_tag() -> &'static str {
    option_env!("BUILD_TAG").unwrap_or("latest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_status_phases_and_apply_results() {
        let m = Metrics::new();
        m.set_status(ComputeStatus::TerminationPendingFast);
        m.set_status(ComputeStatus::Running);
        m.observe_phase(Phase::StartPostgres, Duration::from_millis(30));
        m.count_apply(OperationOutcome::Ok);
        let text = m.encode(Format::OpenMetrics);
        assert!(
            text.contains(r#"compute_ctl_up{build_tag="latest",status="running"} 1"#),
            "{text}"
        );
        assert_eq!(text.matches("compute_ctl_up{").count(), 1, "{text}");
        m.set_status(ComputeStatus::ConfigurationPending);
        assert!(
            m.encode(Format::OpenMetrics)
                .contains(r#"compute_ctl_up{build_tag="latest",status="configuration-pending"} 1"#),
        );
        assert!(
            text.contains(r#"compute_ctl_startup_phase_seconds_count{phase="start_postgres"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"compute_ctl_apply_operations_total{result="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("compute_pg_downtime_seconds_total 0"),
            "{text}"
        );
        assert_valid_openmetrics(&text);
        assert!(
            !text.contains("compute_ctl_db_migration_failed_total{"),
            "{text}"
        );
    }

    #[test]
    fn accept_chooses_the_format() {
        use Format::*;
        for (accept, want) in [
            (None, Prometheus),
            (Some("*/*"), Prometheus),
            (Some("text/plain; version=0.0.4"), Prometheus),
            (Some("application/openmetrics-text"), OpenMetrics),
            // What Prometheus 2.x sends.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            (
                Some("Application/OpenMetrics-Text; q=0, text/plain"),
                Prometheus,
            ),
            (
                Some("text/plain, application/openmetrics-text; q=0.2"),
                OpenMetrics,
            ),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }

    /// The 0.0.4 text names each counter family as its sample, has HELP and TYPE for every
    /// family and no OpenMetrics-only line; the downtime is a counter in seconds.
    #[test]
    fn prometheus_text_has_one_family_per_metric() {
        let m = Metrics::new();
        m.count_apply(OperationOutcome::Ok);
        m.count_migration_failure(2);
        m.set_downtime(1500, 2500);
        m.set_downtime(0, 2000);
        let text = m.encode(Format::Prometheus);
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains("# TYPE compute_ctl_apply_operations_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP compute_ctl_apply_operations_total Reconciliation"),
            "{text}"
        );
        assert!(
            text.contains("compute_pg_downtime_seconds_total 2.5\n"),
            "{text}"
        );
        assert!(
            text.contains("compute_pg_current_downtime_seconds 0.0\n"),
            "{text}"
        );
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let helped: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# HELP "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(typed, helped);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = typed.iter().any(|f| {
                name == *f
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(f))
            });
            assert!(family, "{line}: no family in {typed:?}");
        }
        for (name, kind) in text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
        {
            assert_eq!(name.ends_with("_total"), kind == "counter", "{name} {kind}");
            assert!(!name.contains("_ms"), "{name}: not a base unit");
        }
    }

    #[test]
    fn migration_failures_are_counted_per_migration_id() {
        let m = Metrics::new();
        m.count_migration_failure(4);
        let text = m.encode(Format::OpenMetrics);
        assert!(
            text.contains("# TYPE compute_ctl_db_migration_failed counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"compute_ctl_db_migration_failed_total{migration_id="4"} 1"#),
            "{text}"
        );
    }

    /// Whether every line is OpenMetrics text: `# HELP`/`# TYPE` metadata, `# EOF` last, or a
    /// sample `name{label="value",…} number` whose label values use only the three escapes.
    fn assert_valid_openmetrics(text: &str) {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last(), Some(&"# EOF"), "{text}");
        for line in &lines[..lines.len() - 1] {
            if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let (name, mut labels) = series.split_once('{').unwrap_or((series, "}"));
            let name_chars = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
            assert!(!name.is_empty() && name.chars().all(name_chars), "{line}");
            while labels != "}" {
                let (key, rest) = labels.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                assert!(key.chars().all(name_chars), "{line}");
                let mut chars = rest.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => {
                            let escaped = chars.next().map(|(_, c)| c);
                            assert!(matches!(escaped, Some('\\' | '"' | 'n')), "{line}");
                        }
                        Some((i, '"')) => break i,
                        Some((_, '\n')) | None => panic!("unterminated label value: {line}"),
                        Some(_) => {}
                    }
                };
                labels = rest[end + 1..].trim_start_matches(',');
            }
        }
    }

    #[test]
    fn installed_extensions_are_replaced_and_escaped() {
        use crate::installed_extensions::InstalledExtension;
        let ext = |name: &str, version: &str, n| InstalledExtension {
            extname: name.to_owned(),
            version: version.to_owned(),
            n_databases: n,
            owned_by_superuser: "1".to_owned(),
        };
        let m = Metrics::new();
        m.set_installed_extensions(&[ext("gone", "1", 1)]);
        m.set_installed_extensions(&[
            ext("plpgsql", "1.0", 3),
            ext("we\"ird\\ext\nname 🐘", "1.0\"", 1),
        ]);
        let text = m.encode(Format::OpenMetrics);
        assert_valid_openmetrics(&text);
        assert!(
            text.contains(
                r#"compute_installed_extensions{extension_name="plpgsql",version="1.0",owned_by_superuser="1"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"extension_name="we\"ird\\ext\nname 🐘",version="1.0\"""#),
            "{text}"
        );
        assert!(!text.contains("gone"), "{text}");
        assert!(
            text.contains("# TYPE compute_installed_extensions gauge"),
            "{text}"
        );
    }

    #[test]
    fn metrics_json_has_every_upstream_key() {
        let json = serde_json::to_value(compute_spec::api::ComputeMetrics::default()).unwrap();
        for key in [
            "wait_for_spec_ms",
            "sync_safekeepers_ms",
            "sync_sk_check_ms",
            "pageserver_connect_micros",
            "basebackup_ms",
            "basebackup_bytes",
            "start_postgres_ms",
            "config_ms",
            "total_startup_ms",
        ] {
            assert_eq!(json[key], 0, "{key}");
        }
    }
}
