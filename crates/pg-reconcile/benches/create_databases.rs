//! Benchmark: the cold start's dominant DDL, 20 × (`CREATE DATABASE … OWNER …` + the `GRANT`
//! the planner adds), issued in the ways compared for issue 17 item 5, against a real
//! PostgreSQL 15 (`fsync = off`, as the cold-start bench runs it):
//!
//! - `1 session`: every statement pipelined on one connection (what the reconciler did
//!   before: the server runs them one after another);
//! - `N sessions`: the databases dealt over N connections (N - 1 opened inside the timed
//!   section, as the apply opens them), each connection pipelining its share;
//! - each of those with the default `STRATEGY = WAL_LOG` and with `STRATEGY = FILE_COPY`;
//! - `psql -f` of the same script (connection included), the cold-start bench's baseline;
//! - the reconciler's own [`pg_reconcile::apply`] of its create-and-alter-databases phase
//!   (observed and planned untimed; the extra sessions it opens are timed).
//!
//! Each variant has its own cluster for the whole run, so nothing is deleted between rounds
//! (this machine's disk slows file creation for a while after large deletions); every round
//! creates fresh database names, after an untimed `CHECKPOINT` and `sync` so each round starts
//! with clean buffers, as a cold start does. Variants are interleaved, their order rotated
//! each round. Prints min/median/max per variant and the ratio of medians to the first
//! variant (the reconciler's former way).
//!
//! `cargo bench -p pg-reconcile --bench create_databases` (env: `BENCH_ROUNDS`, default 9;
//! `BENCH_DBS`, default 20). Without `--bench` (as `cargo test --benches` runs it): one round
//! of 2 databases.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compute_spec::ValidatedSpec;
use pg_reconcile::{
    Connector, Counters, PhaseKind, PlanOptions, SessionGuards, apply, observe_cluster, plan,
};
use test_postgres::TestPostgres;
use tokio_postgres::{Client, NoTls};

#[derive(Debug, Clone, Copy)]
enum Way {
    Sessions(usize),
    Psql,
    /// The reconciler's own apply of its create-and-alter-databases phase.
    Apply,
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    way: Way,
    file_copy: bool,
}

impl Variant {
    fn name(self) -> String {
        let strategy = if self.file_copy {
            "FILE_COPY"
        } else {
            "WAL_LOG"
        };
        match self.way {
            Way::Sessions(1) => format!("1 session pipelined, {strategy}"),
            Way::Sessions(n) => format!("{n} sessions pipelined, {strategy}"),
            Way::Psql => format!("psql -f, {strategy}"),
            Way::Apply => format!("pg_reconcile::apply, {strategy}"),
        }
    }
}

const VARIANTS: [Variant; 8] = [
    Variant {
        way: Way::Sessions(1),
        file_copy: false,
    },
    Variant {
        way: Way::Sessions(2),
        file_copy: false,
    },
    Variant {
        way: Way::Sessions(4),
        file_copy: false,
    },
    Variant {
        way: Way::Psql,
        file_copy: false,
    },
    Variant {
        way: Way::Apply,
        file_copy: false,
    },
    Variant {
        way: Way::Sessions(1),
        file_copy: true,
    },
    Variant {
        way: Way::Sessions(2),
        file_copy: true,
    },
    Variant {
        way: Way::Sessions(4),
        file_copy: true,
    },
];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The statements for database `i` of round `round`: create, then grant.
fn statements(round: usize, i: usize, file_copy: bool) -> [String; 2] {
    let strategy = if file_copy { " STRATEGY FILE_COPY" } else { "" };
    [
        format!("CREATE DATABASE db_r{round}_{i} OWNER role_{i}{strategy}"),
        format!("GRANT ALL PRIVILEGES ON DATABASE db_r{round}_{i} TO neon_superuser"),
    ]
}

async fn connect(pg: &TestPostgres) -> Client {
    let (client, connection) = tokio_postgres::connect(&pg.connstr("postgres"), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// Sends every statement, then awaits every answer (tokio-postgres pipelines them).
async fn pipelined(client: &Client, statements: &[String]) {
    let all = statements.iter().map(|s| client.simple_query(s));
    for result in futures::future::join_all(all).await {
        result.expect("statement");
    }
}

async fn sessions(pg: &TestPostgres, first: &Client, n: usize, scripts: Vec<Vec<String>>) {
    let mut extra = Vec::new();
    for _ in 1..n {
        extra.push(connect(pg).await);
    }
    let clients: Vec<&Client> = std::iter::once(first).chain(&extra).collect();
    let mut shares: Vec<Vec<String>> = vec![Vec::new(); n];
    for (i, db) in scripts.into_iter().enumerate() {
        shares[i % n].extend(db);
    }
    let work = clients.iter().zip(&shares).map(|(c, s)| pipelined(c, s));
    futures::future::join_all(work).await;
}

fn psql_file(pg: &TestPostgres, script: &std::path::Path) {
    let out = Command::new(test_postgres::pg_bin_dir().join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(pg.connstr("postgres"))
        .arg("-f")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Cluster {
    pg: TestPostgres,
    first: Client,
}

async fn cluster(dbs: usize) -> Cluster {
    let pg = TestPostgres::start().expect("start postgres");
    let first = connect(&pg).await;
    let mut setup = String::from("CREATE ROLE neon_superuser CREATEDB CREATEROLE NOLOGIN;");
    for i in 0..dbs {
        setup.push_str(&format!(
            "CREATE ROLE role_{i} LOGIN IN ROLE neon_superuser;"
        ));
    }
    first.batch_execute(&setup).await.expect("roles");
    Cluster { pg, first }
}

async fn round(
    c: &Cluster,
    v: Variant,
    round: usize,
    dbs: usize,
    dir: &std::path::Path,
) -> Duration {
    c.first
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint");
    let _ = Command::new("sync").status();
    let scripts: Vec<Vec<String>> = (0..dbs)
        .map(|i| statements(round, i, v.file_copy).to_vec())
        .collect();
    match v.way {
        Way::Sessions(n) => {
            let start = Instant::now();
            sessions(&c.pg, &c.first, n, scripts).await;
            start.elapsed()
        }
        Way::Apply => apply_phase(&c.pg, round, dbs).await,
        Way::Psql => {
            let path = dir.join(format!("round{round}.sql"));
            let text: String = scripts.concat().iter().map(|s| format!("{s};\n")).collect();
            std::fs::write(&path, text).expect("write script");
            let start = Instant::now();
            psql_file(&c.pg, &path);
            start.elapsed()
        }
    }
}

/// Observes and plans a spec of this round's databases (untimed), then times the apply of
/// its create-and-alter-databases phase alone, on the observing session.
async fn apply_phase(pg: &TestPostgres, round: usize, dbs: usize) -> Duration {
    let databases: Vec<serde_json::Value> = (0..dbs)
        .map(|i| serde_json::json!({"name": format!("db_r{round}_{i}"), "owner": format!("role_{i}")}))
        .collect();
    let roles: Vec<serde_json::Value> = (0..dbs)
        .map(|i| serde_json::json!({"name": format!("role_{i}")}))
        .collect();
    let doc = serde_json::json!({"format_version": 1.0, "cluster": {"roles": roles, "databases": databases}});
    let spec = ValidatedSpec::from_json(&doc.to_string()).expect("valid spec");
    let config: tokio_postgres::Config = pg.connstr("postgres").parse().expect("config");
    let connector = Connector::new(&config, SessionGuards::default(), &Counters::default());
    let (catalog, sessions) = observe_cluster(&spec, &connector, "postgres")
        .await
        .expect("observe");
    let mut plan = plan(&spec, &catalog, &PlanOptions::default()).expect("plan");
    plan.phases
        .retain(|p| p.kind == PhaseKind::CreateAndAlterDatabases);
    assert_eq!(plan.operation_count(), 2 * dbs, "{plan}");
    let start = Instant::now();
    let report = apply(&plan, &connector, &sessions).await;
    let elapsed = start.elapsed();
    assert!(report.is_success(), "{:?}", report.errors().next());
    elapsed
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rounds = env("BENCH_ROUNDS", if bench { 9 } else { 1 });
    let dbs = env("BENCH_DBS", if bench { 20 } else { 2 });
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let clusters: Vec<Cluster> = VARIANTS
        .iter()
        .map(|_| runtime.block_on(cluster(dbs)))
        .collect();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); VARIANTS.len()];
    for r in 0..rounds {
        let mut line = format!("round {r}:");
        for k in 0..VARIANTS.len() {
            let i = (k + r) % VARIANTS.len();
            let t = runtime.block_on(round(&clusters[i], VARIANTS[i], r, dbs, dir.path()));
            times[i].push(t);
            line.push_str(&format!(" [{i}] {:.0}", ms(t)));
        }
        eprintln!("{line} ms");
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "create_databases: {dbs} x (CREATE DATABASE + GRANT), fresh names each round, \
         {rounds} interleaved rounds, fsync=off"
    );
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect();
    for (i, v) in VARIANTS.iter().enumerate() {
        let t = &times[i];
        println!(
            "  [{i}] {:34} min {:7.1} ms  median {:7.1} ms  max {:7.1} ms  ratio to [0] {:.2}",
            v.name(),
            ms(t[0]),
            ms(medians[i]),
            ms(t[t.len() - 1]),
            medians[i].as_secs_f64() / medians[0].as_secs_f64()
        );
    }
    println!("  load average at end: {}", loadavg.trim());
}
