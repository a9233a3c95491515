//! Benchmark: 5,000 roles and 100 databases applied to an empty cluster, then the steady state
//! (unchanged spec) on the same cluster, against a baseline of the same minimal DDL run as one
//! `psql -f` script on a fresh cluster in the same run.
//!
//! `cargo bench -p pg-reconcile --bench reconcile` (env: `BENCH_ROLES`, `BENCH_DBS`,
//! `BENCH_REPS` fresh-cluster repetitions, `BENCH_STEADY` steady-state repetitions).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compute_spec::ValidatedSpec;
use pg_reconcile::{
    Connector, Counters, PhaseKind, PlanOptions, SessionGuards, observe_cluster, plan, reconcile,
};
use test_postgres::TestPostgres;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn md5(i: usize) -> String {
    format!("{i:032x}")
}

fn spec(roles: usize, dbs: usize) -> ValidatedSpec {
    let roles_json: Vec<serde_json::Value> = (0..roles)
        .map(|i| serde_json::json!({"name": format!("role {i}"), "encrypted_password": md5(i)}))
        .collect();
    let dbs_json: Vec<serde_json::Value> = (0..dbs)
        .map(|i| serde_json::json!({"name": format!("db {i}"), "owner": format!("role {i}")}))
        .collect();
    let doc = serde_json::json!({"format_version": 1.0,
        "cluster": {"roles": roles_json, "databases": dbs_json}});
    ValidatedSpec::from_json(&doc.to_string()).expect("valid spec")
}

/// The same statements the reconciler sends on a fresh cluster, without the pipelining and
/// without the log-suppressing transactions: roles, then databases (two scripts, so the two
/// parts can be compared separately; the baseline is their sum).
fn baseline_scripts(roles: usize, dbs: usize) -> [String; 2] {
    let mut r = String::from(
        "CREATE ROLE neon_superuser CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS \
         IN ROLE pg_read_all_data, pg_write_all_data;\n",
    );
    for i in 0..roles {
        r.push_str(&format!(
            "CREATE ROLE \"role {i}\" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION LOGIN \
             IN ROLE neon_superuser PASSWORD 'md5{}';\n",
            md5(i)
        ));
    }
    let mut d = String::new();
    for i in 0..dbs {
        d.push_str(&format!(
            "CREATE DATABASE \"db {i}\" OWNER \"role {i}\";\n\
             GRANT ALL PRIVILEGES ON DATABASE \"db {i}\" TO neon_superuser;\n"
        ));
    }
    [r, d]
}

fn psql_file(pg: &TestPostgres, script: &std::path::Path) -> Duration {
    let start = Instant::now();
    let out = Command::new(test_postgres::pg_bin_dir().join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(pg.connstr("postgres"))
        .arg("-f")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("run psql");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn sync() {
    let _ = Command::new("sync").status();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special. Run a tiny
    // configuration unless asked for the real one, so test runs stay fast.
    let bench = std::env::args().any(|a| a == "--bench");
    let roles = env("BENCH_ROLES", if bench { 5000 } else { 20 });
    let dbs = env("BENCH_DBS", if bench { 100 } else { 2 });
    let reps = env("BENCH_REPS", if bench { 3 } else { 1 });
    let steady_reps = env("BENCH_STEADY", if bench { 21 } else { 3 });
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let spec = spec(roles, dbs);
    let options = PlanOptions::default();
    let script_dir = tempfile::tempdir().expect("tempdir");
    let scripts = [
        script_dir.path().join("roles.sql"),
        script_dir.path().join("databases.sql"),
    ];
    for (path, text) in scripts.iter().zip(baseline_scripts(roles, dbs)) {
        std::fs::write(path, text).expect("write script");
    }
    let mut baseline_parts = Vec::new();
    let mut fresh_parts = Vec::new();

    let mut fresh = Vec::new();
    let mut baseline = Vec::new();
    let mut steady = Vec::new();
    let mut fresh_round_trips = 0;
    let mut steady_round_trips = Vec::new();
    let mut parts = Vec::new();
    for rep in 0..reps {
        // Alternate which goes first: the disk is still writing back the previous cluster's
        // files for a while, and that should not always hit the same side. `sync` before each
        // timed section for the same reason.
        for side in [rep % 2, 1 - rep % 2] {
            let pg = TestPostgres::start().expect("start postgres");
            sync();
            if side == 0 {
                let r = psql_file(&pg, &scripts[0]);
                let d = psql_file(&pg, &scripts[1]);
                baseline.push(r + d);
                baseline_parts.push([r, d]);
                continue;
            }
            // The reconciler on its fresh cluster, then the steady state on it.
            let config: tokio_postgres::Config = pg.connstr("postgres").parse().expect("config");
            let counters = Counters::default();
            let start = Instant::now();
            let done = runtime
                .block_on(reconcile(&spec, &options, &config, &counters))
                .expect("reconcile");
            fresh.push(start.elapsed());
            assert!(
                done.report.is_success(),
                "{:?}",
                done.report.errors().next()
            );
            // The privileged role, the roles, each database (create, grant, schema privileges), schema
            // neon and the health-check table (two statements).
            assert_eq!(done.plan.operation_count(), 1 + roles + 3 * dbs + 3);
            fresh_round_trips = counters.round_trips() + counters.connections();
            let phase = |kinds: &[PhaseKind]| -> Duration {
                done.report
                    .timings
                    .iter()
                    .filter(|t| kinds.contains(&t.kind))
                    .map(|t| t.elapsed)
                    .sum()
            };
            fresh_parts.push([
                phase(&[
                    PhaseKind::CreatePrivilegedRole,
                    PhaseKind::CreateAndAlterRoles,
                ]),
                phase(&[PhaseKind::CreateAndAlterDatabases]),
            ]);
            for t in &done.report.timings {
                eprintln!(
                    "  {} on {:?}: {} ops {:.1} ms",
                    t.kind.name(),
                    t.database,
                    t.operations,
                    ms(t.elapsed)
                );
            }
            sync();
            for _ in 0..steady_reps {
                let counters = Counters::default();
                let t0 = Instant::now();
                let connector = Connector::new(&config, SessionGuards::default(), &counters);
                let (catalog, sessions) = runtime
                    .block_on(observe_cluster(&spec, &connector, "postgres"))
                    .expect("observe");
                let t1 = Instant::now();
                let p = plan(&spec, &catalog, &options).expect("plan");
                let t2 = Instant::now();
                assert!(p.is_empty(), "{p}");
                drop(sessions);
                steady.push(t2 - t0);
                parts.push([t1 - t0, t2 - t1]);
                steady_round_trips.push((counters.round_trips(), counters.connections()));
            }
        }
        eprintln!(
            "rep {rep}: baseline {:.0} ms, fresh apply {:.0} ms",
            ms(*baseline.last().unwrap()),
            ms(*fresh.last().unwrap())
        );
    }
    let (b, f, s) = (median(baseline), median(fresh), median(steady.clone()));
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("roles={roles} databases={dbs} fresh-cluster reps={reps} steady reps={steady_reps}");
    println!("baseline psql -f (median):      {:9.1} ms", ms(b));
    println!(
        "fresh apply (median):           {:9.1} ms  ratio to baseline {:.2}  \
         ({fresh_round_trips} round trips incl. connections)",
        ms(f),
        f.as_secs_f64() / b.as_secs_f64()
    );
    println!(
        "steady state (median):          {:9.1} ms  min {:.1} ms max {:.1} ms  \
         round trips/connections {:?}",
        ms(s),
        ms(*steady.iter().min().unwrap()),
        ms(*steady.iter().max().unwrap()),
        steady_round_trips[0]
    );
    let bpart = |i: usize| {
        median(
            baseline_parts
                .iter()
                .map(|p: &[Duration; 2]| p[i])
                .collect(),
        )
    };
    let fpart = |i: usize| median(fresh_parts.iter().map(|p: &[Duration; 2]| p[i]).collect());
    for (i, what) in ["roles", "databases"].iter().enumerate() {
        println!(
            "  {what:9} part (medians):      psql {:9.1} ms, reconciler phases {:9.1} ms, ratio {:.2}",
            ms(bpart(i)),
            ms(fpart(i)),
            fpart(i).as_secs_f64() / bpart(i).as_secs_f64()
        );
    }
    let part = |i: usize| median(parts.iter().map(|p: &[Duration; 2]| p[i]).collect());
    println!(
        "steady state parts (medians):   connect and observe every database {:.1} ms, plan {:.1} ms",
        ms(part(0)),
        ms(part(1))
    );
    println!("load average at end: {}", loadavg.trim());
}
