//! Benchmarks of compute_ctl's hot paths, each against a baseline measured in the same run:
//! (b) readiness detection latency after `postmaster.pid` says `ready` (the inotify watch
//! compute_ctl uses vs a 10 ms polling loop), and (c) `GET /status` latency under concurrent
//! load on loopback (the real compute_ctl binary, pre-launched without a spec, vs an axum
//! handler returning a constant in this process). Prints medians, p99 and ratios.
//!
//! Run: `cargo bench -p compute_ctl --bench api_and_readiness`.

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
#[path = "../tests/harness/mod.rs"]
mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use child_process::postmaster_pid::{ReadinessWatch, is_ready};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

const STARTING: &str = "1\n/d\n0\n5432\n/tmp\n*\n 1 2\nstarting\n";
const READY: &str = "1\n/d\n0\n5432\n/tmp\n*\n 1 2\nready   \n";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let (median, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "{name:<44} n={:<6} median {median:>10.1?}  p99 {p99:>10.1?}",
        samples.len()
    );
    median
}

/// Writes `ready` after a short pause and returns when it was written.
fn write_ready_later(pidfile: &Path) -> std::thread::JoinHandle<Instant> {
    let pidfile = pidfile.to_owned();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(3));
        std::fs::write(&pidfile, READY).unwrap();
        Instant::now()
    })
}

async fn readiness(iterations: usize) {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("postmaster.pid");
    let mut watched = Vec::new();
    let mut polled = Vec::new();
    for _ in 0..iterations {
        std::fs::write(&pidfile, STARTING).unwrap();
        let mut watch = ReadinessWatch::new(dir.path()).unwrap();
        let writer = write_ready_later(&pidfile);
        watch
            .wait_ready(std::future::pending(), Duration::from_secs(5))
            .await
            .unwrap();
        let done = Instant::now();
        watched.push(done - writer.join().unwrap());

        std::fs::write(&pidfile, STARTING).unwrap();
        let writer = write_ready_later(&pidfile);
        while !is_ready(&pidfile) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let done = Instant::now();
        polled.push(done - writer.join().unwrap());
    }
    println!("(b) readiness detection after postmaster.pid says ready");
    let ours = summary("inotify watch (compute_ctl)", watched);
    let base = summary("baseline: 10 ms polling loop", polled);
    println!(
        "    ratio median ours/baseline: {:.3}",
        ours.as_secs_f64() / base.as_secs_f64()
    );
}

async fn load(port: u16, connections: usize, per_connection: usize) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Empty<Bytes>>();
            let uri: hyper::Uri = format!("http://127.0.0.1:{port}/status").parse().unwrap();
            let mut samples = Vec::with_capacity(per_connection);
            for _ in 0..per_connection {
                let t = Instant::now();
                let resp = client.get(uri.clone()).await.unwrap();
                assert!(resp.status().is_success());
                resp.into_body().collect().await.unwrap();
                samples.push(t.elapsed());
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

async fn serve(router: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    port
}

async fn status_under_load(connections: usize, per_connection: usize) {
    let mut ctl = harness::Ctl::start(harness::Args::default());
    ctl.wait_status("empty").await;
    let ours = ctl.http_port;
    let constant = serve(axum::Router::new().route(
        "/status",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "running"})) }),
    ))
    .await;
    // Warm up both.
    load(ours, connections, 50).await;
    load(constant, connections, 50).await;
    let t = Instant::now();
    let samples = load(ours, connections, per_connection).await;
    let rps = samples.len() as f64 / t.elapsed().as_secs_f64();
    println!("(c) GET /status, {connections} connections x {per_connection} requests on loopback");
    let ours_median = summary(&format!("compute_ctl router ({rps:.0} req/s)"), samples);
    let t = Instant::now();
    let samples = load(constant, connections, per_connection).await;
    let rps = samples.len() as f64 / t.elapsed().as_secs_f64();
    let base_median = summary(
        &format!("baseline: constant handler ({rps:.0} req/s)"),
        samples,
    );
    println!(
        "    ratio median ours/baseline: {:.3}",
        ours_median.as_secs_f64() / base_median.as_secs_f64()
    );
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        readiness(if quick { 5 } else { 200 }).await;
        status_under_load(8, if quick { 20 } else { 2000 }).await;
    });
}
