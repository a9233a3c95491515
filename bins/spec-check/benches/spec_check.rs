//! Benchmark of the whole `spec-check` process on a generated spec of 10,000 roles, 1,000
//! databases and 500 settings: median wall time and peak RSS over several runs, against
//! baselines measured in the same run (`python3 -m json.tool` and `jq .` over the same file,
//! when installed). Target: under 100 ms and under 50 MiB.
//!
//! Run: `cargo bench -p spec-check`. `SPEC_CHECK_BENCH_RUNS` sets the number of runs (default
//! 15); `SPEC_CHECK_BENCH_WRITE=path` also writes the generated spec there.
//!
//! Each measured process is started by a fresh copy of this binary acting as a one-child
//! wrapper, so `getrusage(RUSAGE_CHILDREN)` in the wrapper is exactly that process's peak RSS.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::sys::resource::{UsageWho, getrusage};

const CHILD_ENV: &str = "SPEC_CHECK_BENCH_CHILD";

/// A valid spec of the benchmark's size, every role with a SCRAM verifier.
fn generate_spec(roles: usize, databases: usize, settings: usize) -> String {
    let scram = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$\
                 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let mut s = String::with_capacity(roles * 200 + databases * 100 + settings * 100);
    s.push_str("{\n  \"format_version\": 1.0,\n  \"suspend_timeout_seconds\": 3600,\n");
    s.push_str("  \"cluster\": {\n    \"cluster_id\": \"bench\",\n    \"roles\": [\n");
    for i in 0..roles {
        let sep = if i + 1 < roles { "," } else { "" };
        let _ = writeln!(
            s,
            "      {{\"name\": \"role_{i:05}\", \"encrypted_password\": \"{scram}\", \"options\": null}}{sep}"
        );
    }
    s.push_str("    ],\n    \"databases\": [\n");
    for i in 0..databases {
        let sep = if i + 1 < databases { "," } else { "" };
        let owner = (i * 10) % roles.max(1);
        let _ = writeln!(
            s,
            "      {{\"name\": \"db_{i:04}\", \"owner\": \"role_{owner:05}\", \"options\": null}}{sep}"
        );
    }
    s.push_str("    ],\n    \"settings\": [\n");
    for i in 0..settings {
        let sep = if i + 1 < settings { "," } else { "" };
        let (value, vartype) = match i % 4 {
            0 => (format!("{i}"), "integer"),
            1 => ("on".to_owned(), "bool"),
            2 => (format!("{i}MB"), "integer"),
            _ => (format!("value number {i}"), "string"),
        };
        let _ = writeln!(
            s,
            "      {{\"name\": \"bench.setting_{i:03}\", \"value\": \"{value}\", \"vartype\": \"{vartype}\"}}{sep}"
        );
    }
    s.push_str("    ]\n  }\n}\n");
    s
}

/// Wrapper mode: run the command once, print `wall_ns max_rss_kib exit_code cpu_us`.
fn child_main(args: Vec<String>) {
    let start = Instant::now();
    let status = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn measured command");
    let wall = start.elapsed();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() * 1_000_000 + t.tv_usec();
    println!(
        "{} {} {} {}",
        wall.as_nanos(),
        usage.max_rss(),
        status.code().unwrap_or(-1),
        micros(usage.user_time()) + micros(usage.system_time())
    );
}

struct Stats {
    wall_ms: f64,
    cpu_ms: f64,
    rss_mib: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn measure(runs: usize, command: &[&str], expect_exit: i32) -> Stats {
    let me = std::env::current_exe().expect("current exe");
    let (mut walls, mut cpus, mut rsss) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let out = Command::new(&me)
            .env(CHILD_ENV, "1")
            .args(command)
            .output()
            .expect("run wrapper");
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<i64> = text
            .split_whitespace()
            .map(|f| f.parse().expect("wrapper output"))
            .collect();
        assert_eq!(fields.len(), 4, "wrapper output {text:?}");
        assert_eq!(
            fields[2],
            i64::from(expect_exit),
            "exit code of {command:?}"
        );
        walls.push(fields[0] as f64 / 1e6);
        rsss.push(fields[1] as f64 / 1024.0);
        cpus.push(fields[3] as f64 / 1e3);
    }
    Stats {
        wall_ms: median(walls),
        cpu_ms: median(cpus),
        rss_mib: median(rsss),
    }
}

fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var_os(CHILD_ENV).is_some() {
        return child_main(args);
    }
    let runs: usize = std::env::var("SPEC_CHECK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big-spec.json");
    let spec = generate_spec(10_000, 1_000, 500);
    std::fs::write(&path, &spec).expect("write spec");
    if let Some(copy) = std::env::var_os("SPEC_CHECK_BENCH_WRITE") {
        std::fs::write(Path::new(&copy), &spec).expect("write copy");
    }
    let file = path.to_str().expect("utf-8 path");
    println!(
        "spec: 10000 roles, 1000 databases, 500 settings, {:.2} MiB; {runs} runs each; medians",
        spec.len() as f64 / (1 << 20) as f64
    );
    let spec_check = env!("CARGO_BIN_EXE_spec-check");
    let ours = measure(runs, &[spec_check, file], 0);
    println!(
        "{:<24} {:>12} {:>12} {:>10}",
        "command", "wall (ms)", "cpu (ms)", "peak RSS (MiB)"
    );
    println!(
        "{:<24} {:>12.1} {:>12.1} {:>10.1}",
        "spec-check", ours.wall_ms, ours.cpu_ms, ours.rss_mib
    );
    let baselines: [(&str, &[&str]); 2] = [
        (
            "python3 -m json.tool",
            &["python3", "-m", "json.tool", file],
        ),
        ("jq .", &["jq", ".", file]),
    ];
    for (name, command) in baselines {
        if !available(command[0]) {
            println!("{name:<24} (not installed)");
            continue;
        }
        let base = measure(runs, command, 0);
        println!(
            "{name:<24} {:>12.1} {:>12.1} {:>10.1}   spec-check/this: wall {:.2}x, cpu {:.2}x, memory {:.2}x",
            base.wall_ms,
            base.cpu_ms,
            base.rss_mib,
            ours.wall_ms / base.wall_ms,
            ours.cpu_ms / base.cpu_ms,
            ours.rss_mib / base.rss_mib
        );
    }
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "targets: wall < 100 ms {}; peak RSS < 50 MiB {}",
        verdict(ours.wall_ms < 100.0),
        verdict(ours.rss_mib < 50.0)
    );
}
