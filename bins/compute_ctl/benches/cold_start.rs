//! Cold start to `running` from the test pageserver (a freshly initdb'd data directory with a
//! 1000-row table) with a spec of 50 roles and 20 databases, against the baseline of the same
//! steps done by standard tools in the same run: `tar -xzf` of the same gzip stream, the same
//! `postgresql.conf`, `pg_ctl start -w`, `psql -f` of the same reconcile SQL. Prints medians
//! with the per-phase breakdown and the ratio.
//!
//! Run: `cargo bench -p compute_ctl --bench cold_start`.

mod json_get;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use json_get::get;
use serde_json::json;

const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE: &str = "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d";

fn spec(pageserver: &str, safekeeper: &str) -> serde_json::Value {
    let roles: Vec<_> = (0..50)
        .map(|i| json!({"name": format!("role_{i}"), "encrypted_password": null, "options": [{"name": "LOGIN", "vartype": "bool"}]}))
        .collect();
    let dbs: Vec<_> = (0..20)
        .map(|i| json!({"name": format!("db_{i}"), "owner": format!("role_{i}")}))
        .collect();
    json!({
        "format_version": 1.0,
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "pageserver_connstring": pageserver,
        "safekeeper_connstrings": [safekeeper],
        "cluster": {"roles": roles, "databases": dbs, "settings": [
            {"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"},
            {"name": "fsync", "value": "off", "vartype": "bool"}
        ]}
    })
}

struct Run {
    total: Duration,
    phases: Vec<(&'static str, u64)>,
}

async fn ours(dir: &Path, spec_path: &Path) -> Run {
    let pgdata = dir.join("ours");
    // A fresh machine: no previous data directory to wipe (the baseline starts empty too).
    let _ = std::fs::remove_dir_all(&pgdata);
    let (pg_port, http) = (test_postgres::free_port(), test_postgres::free_port());
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_compute_ctl"))
        .arg("-D")
        .arg(&pgdata)
        .arg("-C")
        .arg(format!(
            "postgresql://cloud_admin@127.0.0.1:{pg_port}/postgres"
        ))
        .arg("-b")
        .arg(test_postgres::pg_bin_dir().join("postgres"))
        .arg("-S")
        .arg(spec_path)
        .args([
            "--http-bind",
            "127.0.0.1",
            "--allow-unauthenticated",
            "--linger",
            "0s",
            "--external-http-port",
        ])
        .arg(http.to_string())
        .arg("--internal-http-port")
        .arg(test_postgres::free_port().to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    loop {
        if let Some(s) = get(http, "/status").await {
            match s["status"].as_str() {
                Some("running") => break,
                Some("failed") => panic!("compute failed: {s}"),
                _ => {}
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "compute_ctl exited");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let total = t.elapsed();
    let m = get(http, "/metrics.json").await.unwrap();
    let ms = |k: &str| m[k].as_u64().unwrap_or(0);
    let phases = vec![
        ("sync_sk_check", ms("sync_sk_check_ms")),
        ("basebackup", ms("basebackup_ms")),
        ("start_postgres", ms("start_postgres_ms")),
        ("config (reconcile)", ms("config_ms")),
        ("total_startup (internal)", ms("total_startup_ms")),
    ];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGQUIT,
    )
    .unwrap();
    child.wait().unwrap();
    Run { total, phases }
}

fn run_as_pg(program: &Path, args: &[&str]) {
    let out = test_postgres::command_as_pg_user(program)
        .unwrap()
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn baseline(dir: &Path, tarball: &Path, conf: &str, sql: &Path) -> Run {
    let pgdata = dir.join("baseline");
    let _ = std::fs::remove_dir_all(&pgdata);
    let port = test_postgres::free_port();
    let bin = test_postgres::pg_bin_dir();
    let t = Instant::now();
    std::fs::create_dir(&pgdata).unwrap();
    std::fs::set_permissions(&pgdata, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    test_postgres::chown_to_pg_user(&pgdata).unwrap();
    run_as_pg(
        Path::new("/usr/bin/tar"),
        &[
            "-xzf",
            tarball.to_str().unwrap(),
            "-C",
            pgdata.to_str().unwrap(),
        ],
    );
    let tar = t.elapsed();
    std::fs::write(pgdata.join("postgresql.conf"), conf).unwrap();
    test_postgres::chown_to_pg_user(&pgdata.join("postgresql.conf")).unwrap();
    let t1 = Instant::now();
    let opts = format!("-p {port}");
    run_as_pg(
        &bin.join("pg_ctl"),
        &[
            "start",
            "-w",
            "-D",
            pgdata.to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            dir.join("baseline.log").to_str().unwrap(),
        ],
    );
    let start = t1.elapsed();
    let t2 = Instant::now();
    let out = Command::new(bin.join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "cloud_admin",
            "-d",
            "postgres",
            "-f",
        ])
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let psql = t2.elapsed();
    let total = t.elapsed();
    run_as_pg(
        &bin.join("pg_ctl"),
        &["stop", "-m", "immediate", "-D", pgdata.to_str().unwrap()],
    );
    let ms = |d: Duration| d.as_millis() as u64;
    Run {
        total,
        phases: vec![
            ("tar -xzf", ms(tar)),
            ("pg_ctl start -w", ms(start)),
            ("psql -f", ms(psql)),
        ],
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let iterations = if quick { 1 } else { 7 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let source = neon_test_servers::fixture::filled_pgdata("compute-ctl-bench").unwrap();
        let ps = neon_test_servers::TestPageserver::start(neon_test_servers::PageserverConfig::new(
            source.clone(),
            TENANT.parse().unwrap(),
            TIMELINE.parse().unwrap(),
        ))
        .await
        .unwrap();
        let sk = neon_test_servers::TestSafekeeper::start(neon_test_servers::SafekeeperConfig::new(
            TENANT.parse().unwrap(),
            TIMELINE.parse().unwrap(),
            "0/16B3748".parse().unwrap(),
        ))
        .await
        .unwrap();
        let dir = tempfile::Builder::new().prefix("cold-start-bench-").tempdir().unwrap();
        test_postgres::chown_to_pg_user(dir.path()).unwrap();
        let spec = spec(&ps.connstr(), &sk.addr());
        let spec_path = dir.path().join("spec.json");
        std::fs::write(&spec_path, spec.to_string()).unwrap();

        // The baseline's inputs: the same stream (gzip tar of the same directory), the same
        // postgresql.conf, the same SQL (the plan against the fresh catalog).
        let tarball = dir.path().join("basebackup.tar.gz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&tarball).unwrap(), flate2::Compression::fast());
        neon_test_servers::write_pgdata_tar(&source, gz, None).unwrap().finish().unwrap();
        test_postgres::chown_to_pg_user(&tarball).unwrap();
        let validated = compute_spec::ValidatedSpec::from_json(&spec.to_string()).unwrap();
        let conf = pg_config::render_postgresql_conf(&validated, &pg_config::ConfigOptions::default());
        let plan = pg_reconcile::plan(&validated, &pg_reconcile::Catalog::default(), &pg_reconcile::PlanOptions::default()).unwrap();
        let mut sql = String::new();
        for phase in &plan.phases {
            sql.push_str(&format!("\\connect {}\n", phase.database));
            for op in &phase.operations {
                sql.push_str(op.statement.expose_sql());
                sql.push_str(";\n");
            }
        }
        let sql_path = dir.path().join("reconcile.sql");
        std::fs::write(&sql_path, sql).unwrap();

        let (mut our_runs, mut base_runs) = (Vec::new(), Vec::new());
        for _ in 0..iterations {
            our_runs.push(ours(dir.path(), &spec_path).await);
            base_runs.push(baseline(dir.path(), &tarball, &conf, &sql_path));
        }
        println!("(a) cold start, 50 roles + 20 databases, basebackup of a 1000-row initdb'd cluster, {iterations} runs each");
        for (name, runs) in [("compute_ctl (spawn to /status running)", &our_runs), ("baseline: tar, pg_ctl start -w, psql -f", &base_runs)] {
            println!("  {name}: median total {:?}", median(runs.iter().map(|r| r.total).collect()));
            for (i, (phase, _)) in runs[0].phases.iter().enumerate() {
                let mut v: Vec<u64> = runs.iter().map(|r| r.phases[i].1).collect();
                v.sort();
                println!("      {phase:<28} median {} ms", v[v.len() / 2]);
            }
        }
        let ratio = median(our_runs.iter().map(|r| r.total).collect()).as_secs_f64()
            / median(base_runs.iter().map(|r| r.total).collect()).as_secs_f64();
        println!("  ratio median compute_ctl/baseline: {ratio:.3} (target <= 1.1)");
    });
}
