//! Wake-up at the physical floor: compute_ctl resuming a compute whose catalog is already
//! converged, against the floor of the same work done by standard tools in the same run.
//!
//! Setup, once per size (2 and 20 databases, 50 roles): compute_ctl runs standalone with the
//! spec, then once from its basebackup with the storage spec, as a previous run of the same
//! compute; the data directory that leaves is archived three ways (plain tar, gzip, zstd), as
//! a pageserver's basebackup would ship it. One test pageserver per archive streams
//! it verbatim (a real pageserver compresses on its own cores); the test safekeeper gives the
//! commit LSN.
//!
//! Each round, interleaved (the order alternates between rounds):
//! - **compute_ctl**: spawn with the same spec plus the storage, until `/status` says
//!   `running`; its own phases are read from `/metrics.json` (`startup_phases`);
//! - **floor**: `tar -x` of the same archive (as the Postgres user), the same
//!   `postgresql.conf`, `postgres` until `postmaster.pid` says `ready` (inotify, as compute_ctl
//!   waits), one `select 1`.
//!
//! Every round unpacks into a fresh directory and nothing is deleted before the end: this
//! machine's disk slows file creation for up to a minute after large deletions. A probe
//! extraction is timed before the rounds (waiting, up to 120 s, until three in a row agree)
//! and after them; a slower probe at the end is reported. Let a minute pass between runs.
//!
//! Run: `cargo bench -p compute_ctl --bench wake_up` (9 rounds of every case). Options after
//! `--`: `--rounds N`, `--databases 2,20`, `--formats plain,gzip,zstd`; `WAKE_UP_LOG=FILE`
//! keeps compute_ctl's log at `info`; `WAKE_UP_COMPUTE_CTL=PATH` measures another build of
//! compute_ctl (an older one, for a before/after: without `startup_phases` it shows upstream's
//! per-step fields, which do not cover the whole start).
//! Without `--bench` (as `cargo test --benches` runs it): one round of the 2-database plain
//! case, as a smoke test.

mod json_get;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use json_get::get;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE: &str = "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d";
const ROLES: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Plain,
    Gzip,
    Zstd,
}

impl Format {
    const ALL: [Format; 3] = [Format::Plain, Format::Gzip, Format::Zstd];

    fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Plain => "tar",
            Format::Gzip => "tar.gz",
            Format::Zstd => "tar.zst",
        }
    }

    /// GNU tar's flags to extract this format.
    fn tar_flags(self) -> &'static [&'static str] {
        match self {
            Format::Plain => &["-xf"],
            Format::Gzip => &["-xzf"],
            Format::Zstd => &["--zstd", "-xf"],
        }
    }
}

/// The cluster part of the spec: 50 roles with passwords, `databases` databases.
fn cluster(databases: usize) -> serde_json::Value {
    let roles: Vec<_> = (0..ROLES)
        .map(|i| {
            json!({
                "name": format!("role_{i}"),
                "encrypted_password": format!("md5{:032x}", i as u128 * 7919),
                "options": [{"name": "LOGIN", "vartype": "bool"}],
            })
        })
        .collect();
    let dbs: Vec<_> = (0..databases)
        .map(|i| json!({"name": format!("db_{i}"), "owner": format!("role_{i}")}))
        .collect();
    json!({"roles": roles, "databases": dbs, "settings": [
        {"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"},
        {"name": "fsync", "value": "off", "vartype": "bool"}
    ]})
}

fn standalone_spec(databases: usize) -> serde_json::Value {
    json!({"format_version": 1.0, "cluster": cluster(databases)})
}

fn wake_spec(databases: usize, pageserver: &str, safekeeper: &str) -> serde_json::Value {
    json!({
        "format_version": 1.0,
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "pageserver_connstring": pageserver,
        "safekeeper_connstrings": [safekeeper],
        "cluster": cluster(databases),
    })
}

/// A compute_ctl process and its external HTTP port.
struct ComputeCtl {
    child: Child,
    http: u16,
}

impl ComputeCtl {
    /// Spawns compute_ctl; its log goes to the file `WAKE_UP_LOG` names (appended), if set.
    fn spawn(pgdata: &Path, spec: &Path) -> ComputeCtl {
        let log = std::env::var_os("WAKE_UP_LOG").map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open WAKE_UP_LOG")
        });
        let (pg_port, http) = (test_postgres::free_port(), test_postgres::free_port());
        let program = std::env::var_os("WAKE_UP_COMPUTE_CTL")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_compute_ctl").into());
        let child = Command::new(program)
            .arg("-D")
            .arg(pgdata)
            .arg("-C")
            .arg(format!(
                "postgresql://cloud_admin@127.0.0.1:{pg_port}/postgres"
            ))
            .arg("-b")
            .arg(test_postgres::pg_bin_dir().join("postgres"))
            .arg("-S")
            .arg(spec)
            .args(["--http-bind", "127.0.0.1", "--allow-unauthenticated"])
            .args(["--linger", "0s", "--external-http-port"])
            .arg(http.to_string())
            .arg("--internal-http-port")
            .arg(test_postgres::free_port().to_string())
            .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.map_or_else(Stdio::null, Stdio::from))
            .spawn()
            .expect("spawn compute_ctl");
        ComputeCtl { child, http }
    }

    /// Polls `/status` every millisecond (on a kept-alive connection) until `running`.
    async fn wait_running(&mut self) {
        loop {
            if let Some(s) = get(self.http, "/status").await {
                match s["status"].as_str() {
                    Some("running") => return,
                    Some("failed") => panic!("compute failed: {s}"),
                    _ => {}
                }
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "compute_ctl exited"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Stops compute_ctl with `signal` and waits for it.
    fn stop(mut self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
        self.child.wait().unwrap();
    }
}

/// The data directory a previous run of this compute leaves: compute_ctl standalone with the
/// spec of `databases` databases (initdb, the catalog created), stopped fast; then one wake-up
/// from its basebackup with the storage spec (the catalog as that spec converges it, which
/// compute_ctl records), stopped fast.
async fn converge(dir: &Path, databases: usize, safekeeper: &str) -> PathBuf {
    let first = dir.join(format!("first-run-{databases}"));
    let spec = dir.join(format!("standalone-{databases}.json"));
    std::fs::write(&spec, standalone_spec(databases).to_string()).unwrap();
    let mut ctl = ComputeCtl::spawn(&first, &spec);
    ctl.wait_running().await;
    ctl.stop(Signal::SIGTERM);
    let archive = archive(&first, dir, databases, Format::Plain);
    let pageserver = pageserver(&archive).await;
    let pgdata = dir.join(format!("converged-{databases}"));
    let spec = dir.join(format!("second-run-{databases}.json"));
    let wake = wake_spec(databases, &pageserver.connstr(), safekeeper);
    std::fs::write(&spec, wake.to_string()).unwrap();
    let mut ctl = ComputeCtl::spawn(&pgdata, &spec);
    ctl.wait_running().await;
    ctl.stop(Signal::SIGTERM);
    std::fs::remove_file(&archive).unwrap();
    pgdata
}

/// A test pageserver streaming `archive` verbatim.
async fn pageserver(archive: &Path) -> neon_test_servers::TestPageserver {
    let mut config = neon_test_servers::PageserverConfig::new(
        archive.to_owned(),
        TENANT.parse().unwrap(),
        TIMELINE.parse().unwrap(),
    );
    config.pgdata_source = None;
    config.archive = Some(archive.to_owned());
    neon_test_servers::TestPageserver::start(config)
        .await
        .unwrap()
}

/// Writes the archive of `source` in `format`, readable by the Postgres user.
fn archive(source: &Path, dir: &Path, databases: usize, format: Format) -> PathBuf {
    let path = dir.join(format!("basebackup-{databases}.{}", format.extension()));
    let file = std::fs::File::create(&path).unwrap();
    match format {
        Format::Plain => {
            neon_test_servers::write_pgdata_tar(source, file, None).unwrap();
        }
        Format::Gzip => {
            let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            neon_test_servers::write_pgdata_tar(source, gz, None)
                .unwrap()
                .finish()
                .unwrap();
        }
        Format::Zstd => {
            let zst = zstd::stream::write::Encoder::new(file, 1).unwrap();
            neon_test_servers::write_pgdata_tar(source, zst, None)
                .unwrap()
                .finish()
                .unwrap();
        }
    }
    test_postgres::chown_to_pg_user(&path).unwrap();
    path
}

/// One wake-up case: a size, a format, its archive, pageserver and spec.
struct Case {
    databases: usize,
    format: Format,
    archive: PathBuf,
    spec: PathBuf,
    conf: String,
    _pageserver: neon_test_servers::TestPageserver,
}

/// A run of compute_ctl: wall time and its own phases (name, microseconds).
struct Ours {
    wall: Duration,
    phases: Vec<(String, u64)>,
}

async fn ours(dir: &Path, case: &Case, round: usize) -> Ours {
    let pgdata = dir.join(format!(
        "ours-{}-{}-{round}",
        case.databases,
        case.format.name()
    ));
    let t = Instant::now();
    let mut ctl = ComputeCtl::spawn(&pgdata, &case.spec);
    ctl.wait_running().await;
    let wall = t.elapsed();
    let metrics = get(ctl.http, "/metrics.json").await.unwrap();
    let phases = metrics["startup_phases"]
        .as_array()
        .map(|phases| {
            phases
                .iter()
                .map(|p| {
                    let name = p["phase"].as_str().unwrap_or("?").to_owned();
                    (name, p["duration_us"].as_u64().unwrap_or(0))
                })
                .collect()
        })
        .unwrap_or_else(|| legacy_phases(&metrics));
    ctl.stop(Signal::SIGQUIT);
    Ours { wall, phases }
}

/// The per-step fields of `/metrics.json` (milliseconds) where `startup_phases` is absent: they
/// do not cover the whole start.
fn legacy_phases(metrics: &serde_json::Value) -> Vec<(String, u64)> {
    let fields = [
        "sync_sk_check_ms",
        "basebackup_ms",
        "start_postgres_ms",
        "config_ms",
    ];
    fields
        .iter()
        .map(|f| {
            (
                f.trim_end_matches("_ms").to_owned(),
                metrics[f].as_u64().unwrap_or(0) * 1000,
            )
        })
        .collect()
}

/// A run of the floor: wall time, untar, postgres until ready, `select 1`.
struct Floor {
    wall: Duration,
    untar: Duration,
    postgres: Duration,
    query: Duration,
}

fn untar(archive: &Path, format: Format, pgdata: &Path) {
    std::fs::create_dir(pgdata).unwrap();
    std::fs::set_permissions(pgdata, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    test_postgres::chown_to_pg_user(pgdata).unwrap();
    let out = test_postgres::command_as_pg_user("/usr/bin/tar")
        .unwrap()
        .args(format.tar_flags())
        .arg(archive)
        .arg("-C")
        .arg(pgdata)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn floor(dir: &Path, case: &Case, round: usize) -> Floor {
    let pgdata = dir.join(format!(
        "floor-{}-{}-{round}",
        case.databases,
        case.format.name()
    ));
    let port = test_postgres::free_port();
    let t = Instant::now();
    untar(&case.archive, case.format, &pgdata);
    let conf = pgdata.join("postgresql.conf");
    std::fs::write(&conf, &case.conf).unwrap();
    test_postgres::chown_to_pg_user(&conf).unwrap();
    let untar = t.elapsed();
    let t1 = Instant::now();
    let mut watch = child_process::postmaster_pid::ReadinessWatch::new(&pgdata).unwrap();
    let mut postgres =
        test_postgres::command_as_pg_user(test_postgres::pg_bin_dir().join("postgres"))
            .unwrap()
            .arg("-D")
            .arg(&pgdata)
            .args(["-p", &port.to_string()])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    watch
        .wait_ready(
            std::future::pending::<std::process::ExitStatus>(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let postgres_ready = t1.elapsed();
    let t2 = Instant::now();
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=cloud_admin dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    client.simple_query("select 1").await.unwrap();
    let query = t2.elapsed();
    let wall = t.elapsed();
    drop(client);
    let _ = connection.await;
    kill(Pid::from_raw(postgres.id() as i32), Signal::SIGQUIT).unwrap();
    postgres.wait().unwrap();
    Floor {
        wall,
        untar,
        postgres: postgres_ready,
        query,
    }
}

/// Times extractions of `archive` (plain) into fresh directories, 2 s apart, until the last
/// three are within 20 % of each other, for at most 120 s; returns the last time.
fn steady_probe(dir: &Path, archive: &Path, label: &str) -> Duration {
    let started = Instant::now();
    let mut times: Vec<Duration> = Vec::new();
    loop {
        let target = dir.join(format!("probe-{label}-{}", times.len()));
        let t = Instant::now();
        untar(archive, Format::Plain, &target);
        let took = t.elapsed();
        times.push(took);
        let last: Vec<f64> = times
            .iter()
            .rev()
            .take(3)
            .map(Duration::as_secs_f64)
            .collect();
        let spread = last.iter().cloned().fold(0.0, f64::max)
            / last.iter().cloned().fold(f64::INFINITY, f64::min);
        let steady = last.len() == 3 && spread <= 1.2;
        if steady || started.elapsed() > Duration::from_secs(120) {
            let list: Vec<String> = times.iter().map(|t| format!("{}", t.as_millis())).collect();
            println!(
                "probe extraction ({label}): {} ms{}",
                list.join(", "),
                if steady {
                    ""
                } else {
                    " (not steady after 90 s)"
                }
            );
            return took;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn stats_ms(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn line(label: &str, values: &[f64]) -> String {
    let (min, median, max) = stats_ms(values);
    format!("  {label:<44} min {min:>7.1}  median {median:>7.1}  max {max:>7.1} ms")
}

fn report(case: &Case, ours: &[Ours], floors: &[Floor]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "wake-up, {} databases, {} roles, {} stream ({} rounds, interleaved)",
        case.databases,
        ROLES,
        case.format.name(),
        ours.len()
    );
    let our_walls: Vec<f64> = ours.iter().map(|o| ms(o.wall)).collect();
    let floor_walls: Vec<f64> = floors.iter().map(|f| ms(f.wall)).collect();
    println!(
        "{}",
        line("compute_ctl, spawn to /status running", &our_walls)
    );
    println!(
        "{}",
        line("floor: untar + postgres ready + select 1", &floor_walls)
    );
    let ratios: Vec<f64> = our_walls
        .iter()
        .zip(&floor_walls)
        .map(|(o, f)| o / f)
        .collect();
    let (rmin, rmed, rmax) = stats_ms(&ratios);
    println!(
        "  ratio of medians {:.3}; per-round ratios min {rmin:.3} median {rmed:.3} max {rmax:.3}",
        stats_ms(&our_walls).1 / stats_ms(&floor_walls).1
    );
    println!(
        "  floor parts (median): untar + conf {:.1} ms, postgres to ready {:.1} ms, select 1 {:.1} ms",
        stats_ms(&floors.iter().map(|f| ms(f.untar)).collect::<Vec<_>>()).1,
        stats_ms(&floors.iter().map(|f| ms(f.postgres)).collect::<Vec<_>>()).1,
        stats_ms(&floors.iter().map(|f| ms(f.query)).collect::<Vec<_>>()).1,
    );
    let Some(first) = ours.first() else { return };
    let mut parts = Vec::new();
    let mut sum = 0.0;
    for (i, (name, _)) in first.phases.iter().enumerate() {
        let values: Vec<f64> = ours
            .iter()
            .map(|o| o.phases.get(i).map_or(0.0, |p| p.1 as f64 / 1000.0))
            .collect();
        let median = stats_ms(&values).1;
        sum += median;
        parts.push(format!("{name} {median:.1}"));
    }
    if !parts.is_empty() {
        println!("  compute_ctl phases (median ms): {}", parts.join(", "));
        let accounted: Vec<f64> = ours
            .iter()
            .map(|o| o.phases.iter().map(|p| p.1 as f64 / 1000.0).sum())
            .collect();
        let unaccounted: Vec<f64> = our_walls
            .iter()
            .zip(&accounted)
            .map(|(w, a)| w - a)
            .collect();
        println!(
            "  sum of phase medians {sum:.1} ms; per round, wall minus phases (exec before main, /status poll): median {:.1} ms",
            stats_ms(&unaccounted).1
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let value = |flag: &str| {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).cloned()
    };
    let sizes: Vec<usize> = match value("--databases") {
        Some(list) => list
            .split(',')
            .map(|n| n.parse().expect("--databases N,M"))
            .collect(),
        None if full => vec![2, 20],
        None => vec![2],
    };
    let formats: Vec<Format> = match value("--formats") {
        Some(list) => list
            .split(',')
            .map(|f| {
                *Format::ALL
                    .iter()
                    .find(|x| x.name() == f)
                    .expect("--formats plain,gzip,zstd")
            })
            .collect(),
        None if full => Format::ALL.to_vec(),
        None => vec![Format::Plain],
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rounds = value("--rounds")
        .map(|n| n.parse().expect("--rounds N"))
        .unwrap_or(if full { 9 } else { 1 });
    runtime.block_on(run(rounds, &sizes, &formats));
}

async fn run(rounds: usize, sizes: &[usize], formats: &[Format]) {
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", load.trim());
    }
    let dir = tempfile::Builder::new()
        .prefix("wake-up-bench-")
        .tempdir()
        .unwrap();
    test_postgres::chown_to_pg_user(dir.path()).unwrap();
    let safekeeper =
        neon_test_servers::TestSafekeeper::start(neon_test_servers::SafekeeperConfig::new(
            TENANT.parse().unwrap(),
            TIMELINE.parse().unwrap(),
            "0/16B3748".parse().unwrap(),
        ))
        .await
        .unwrap();
    let mut cases = Vec::new();
    for &databases in sizes {
        let source = converge(dir.path(), databases, &safekeeper.addr()).await;
        for &format in formats {
            let archive = archive(&source, dir.path(), databases, format);
            let pageserver = pageserver(&archive).await;
            let spec = wake_spec(databases, &pageserver.connstr(), &safekeeper.addr());
            let validated = compute_spec::ValidatedSpec::from_json(&spec.to_string()).unwrap();
            let conf =
                pg_config::render_postgresql_conf(&validated, &pg_config::ConfigOptions::default());
            let spec_path = dir
                .path()
                .join(format!("wake-{databases}-{}.json", format.name()));
            std::fs::write(&spec_path, spec.to_string()).unwrap();
            cases.push(Case {
                databases,
                format,
                archive,
                spec: spec_path,
                conf,
                _pageserver: pageserver,
            });
        }
    }
    let probe_archive = cases[0].archive.clone();
    let before = steady_probe(dir.path(), &probe_archive, "before");
    let mut results: Vec<(Vec<Ours>, Vec<Floor>)> =
        cases.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for round in 0..rounds {
        for (case, (o, f)) in cases.iter().zip(results.iter_mut()) {
            if round % 2 == 0 {
                o.push(ours(dir.path(), case, round).await);
                f.push(floor(dir.path(), case, round).await);
            } else {
                f.push(floor(dir.path(), case, round).await);
                o.push(ours(dir.path(), case, round).await);
            }
        }
    }
    let after = steady_probe_once(dir.path(), &probe_archive);
    for (case, (o, f)) in cases.iter().zip(&results) {
        report(case, o, f);
    }
    let slowed = after.as_secs_f64() > before.as_secs_f64() * 1.5;
    println!(
        "probe extraction after the rounds: {} ms (before: {} ms){}",
        after.as_millis(),
        before.as_millis(),
        if slowed {
            " — the disk slowed during the run: ratios are unreliable"
        } else {
            ""
        }
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at end: {}", load.trim());
    }
}

fn steady_probe_once(dir: &Path, archive: &Path) -> Duration {
    let target = dir.join("probe-after");
    let t = Instant::now();
    untar(archive, Format::Plain, &target);
    t.elapsed()
}
