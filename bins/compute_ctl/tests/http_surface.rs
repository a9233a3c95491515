//! The HTTP surface of the `compute_ctl` binary under load and for operators, against the
//! real PostgreSQL 15: the probes `/healthz` and `/readyz`; `/metrics` in both formats, checked
//! by `promtool check metrics` and the Python `prometheus_client` parsers; the listeners'
//! idle, header-read and connection bounds under a 1,024-descriptor limit; the catalog
//! routes' session budget (a storm of `/dbs_and_roles` beside user connections) and their
//! bounds when the postmaster is stopped or a table they write is locked.

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Args, Ctl, http_request};
use serde_json::{Value, json};

/// A standalone spec with role `alice` (a plain login role) and `settings` besides the usual.
fn spec(settings: &[Value]) -> Value {
    let mut all = vec![
        json!({"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"}),
        json!({"name": "fsync", "value": "off", "vartype": "bool"}),
    ];
    all.extend_from_slice(settings);
    json!({
        "format_version": 1.0,
        "cluster": {
            "roles": [{"name": "alice"}],
            "databases": [{"name": "app", "owner": "alice"}],
            "settings": all,
        }
    })
}

async fn get(port: u16, path: &str, headers: &[(&str, String)]) -> (u16, hyper::HeaderMap, String) {
    http_request(&format!("127.0.0.1:{port}"), "GET", path, "", headers)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The probes answer without a token on both listeners: in `empty` alive and not ready (the
/// body names the status); running, both 200; the authenticated routes still refuse.
#[tokio::test(flavor = "multi_thread")]
async fn probes_need_no_token_and_follow_the_status() {
    // No spec and no JWK set: every authenticated route is refused.
    let ctl = Ctl::start(Args {
        extra: vec!["--no-allow-unauthenticated".into()],
        ..Args::default()
    });
    let up = harness::eventually(Duration::from_secs(30), || async {
        ctl.try_request("GET", "/healthz", "", None).await.ok()
    })
    .await;
    assert_eq!(up.map(|r| r.0), Some(200), "{}", ctl.log());
    for port in [ctl.http_port, ctl.internal_http_port] {
        let (code, headers, body) = get(port, "/healthz", &[]).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"status": "empty"})
        );
        let (code, _, body) = get(port, "/readyz", &[]).await;
        assert_eq!(code, 503, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "empty", "{body}");
        assert!(body["reason"].as_str().unwrap().contains("empty"), "{body}");
    }
    // No bearer token: refused as malformed (400).
    assert_eq!(ctl.request("GET", "/status", "", None).await.0, 400);
    drop(ctl);

    let mut ctl = Ctl::start_running(&spec(&[]), &[]).await;
    for port in [ctl.http_port, ctl.internal_http_port] {
        for path in ["/healthz", "/readyz"] {
            let (code, _, body) = get(port, path, &[]).await;
            assert_eq!(code, 200, "{path}: {body}");
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap(),
                json!({"status": "running"}),
                "{path}"
            );
        }
    }
    // Stopping: no longer ready.
    let (code, body) = ctl.request("POST", "/terminate?mode=fast", "", None).await;
    assert_eq!(code, 200, "{body}");
    if let Ok((code, _, body)) = http_request(
        &format!("127.0.0.1:{}", ctl.internal_http_port),
        "GET",
        "/readyz",
        "",
        &[],
    )
    .await
    {
        assert_eq!(code, 503, "{body}");
    }
    ctl.wait_exit(Duration::from_secs(30)).await;
}

/// Runs `program` with `input` on standard input; returns (success, stdout + stderr).
fn run_with_stdin(program: &str, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program} (installed by .ci/run): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Debian's Python, which has Debian's `python3-prometheus-client` (installed by `.ci/run`).
const PYTHON: &str = "/usr/bin/python3";

/// Reads an exposition with the Python `prometheus_client` parser of `format` (`openmetrics`
/// or `text`) and prints each family as `name type`.
const PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families as text
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
parse = om if sys.argv[1] == "openmetrics" else text
for family in parse(sys.stdin.read()):
    print(family.name, family.type, len(family.samples))
"#;

/// `/metrics` without an OpenMetrics `Accept` is the Prometheus text format 0.0.4, clean for
/// `promtool check metrics` and read as one family per metric; with it, OpenMetrics 1.0 that
/// the strict OpenMetrics parser reads, with the same families.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_pass_promtool_and_both_parsers() {
    let ctl = Ctl::start_running(&spec(&[]), &[]).await;
    // Something in every kind of family: counters (apply results), a histogram, gauges.
    assert_eq!(ctl.request("GET", "/dbs_and_roles", "", None).await.0, 200);
    let (code, headers, prometheus) = get(ctl.http_port, "/metrics", &[]).await;
    assert_eq!(code, 200);
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let (clean, report) = run_with_stdin("promtool", &["check", "metrics"], &prometheus);
    assert!(clean && report.trim().is_empty(), "{report}\n{prometheus}");
    let (parsed, families) = run_with_stdin(PYTHON, &["-c", PARSE, "text"], &prometheus);
    assert!(parsed, "{families}\n{prometheus}");
    let names: Vec<&str> = families
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "a metric in two families: {families}"
    );
    for (name, kind) in [
        ("compute_ctl_apply_operations", "counter"),
        ("compute_pg_downtime_seconds", "counter"),
        ("compute_pg_current_downtime_seconds", "gauge"),
        ("compute_ctl_startup_phase_seconds", "histogram"),
        ("compute_ctl_up", "gauge"),
    ] {
        assert!(
            families
                .lines()
                .any(|l| l.starts_with(&format!("{name} {kind} "))),
            "{name} {kind}: {families}"
        );
    }

    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (code, headers, openmetrics) =
        get(ctl.http_port, "/metrics", &[("accept", accept.to_owned())]).await;
    assert_eq!(code, 200);
    assert_eq!(
        headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    let (parsed, om_families) = run_with_stdin(PYTHON, &["-c", PARSE, "openmetrics"], &openmetrics);
    assert!(parsed, "{om_families}\n{openmetrics}");
    // The installed-extensions scan runs in the background: it may finish between the scrapes.
    let kinds = |text: &str| -> Vec<String> {
        let mut all: Vec<String> = text
            .lines()
            .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
            .filter(|family| !family.starts_with("compute_installed_extensions "))
            .collect();
        all.sort();
        all
    };
    assert_eq!(kinds(&om_families), kinds(&families));
}

/// Opens `count` connections to `port`; every other one sends the start of a request header.
fn crowd(port: u16, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let mut socket = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            if i % 2 == 1 {
                socket
                    .write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\n")
                    .unwrap();
            }
            socket
        })
        .collect()
}

/// Whether the server closed `socket` before `deadline` (end of file or reset).
fn closed_by(socket: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.read(&mut buf) {
            Ok(0) => return true,
            // A partial header may get an answer (408/400) before the close.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

/// A running compute whose descriptors are limited to 1,024, crowded by 1,100 idle and
/// partial-header connections; returns it, the connections and how long `/status` then took.
async fn crowded_compute(timeouts: &[&str]) -> (Ctl, Vec<std::net::TcpStream>, Duration) {
    let ctl = Ctl::start_running(&spec(&[]), timeouts).await;
    let pid = ctl.pid().to_string();
    let limited = Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=1024:1024"])
        .status()
        .unwrap();
    assert!(limited.success());
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 1024 ")),
        "{limits}"
    );
    let port = ctl.http_port;
    let sockets = tokio::task::spawn_blocking(move || crowd(port, 1_100))
        .await
        .unwrap();
    let started = Instant::now();
    let (code, _, body) =
        tokio::time::timeout(Duration::from_secs(15), get(ctl.http_port, "/status", &[]))
            .await
            .expect("/status answers within 15 s");
    assert_eq!(code, 200, "{body}");
    (ctl, sockets, started.elapsed())
}

/// Under a 1,024-descriptor limit, 1,100 idle and partial-header connections do not keep
/// `/status` from answering long before any timeout could free a descriptor (idle 60 s,
/// header read 30 s): the connection cap closes the longest idle one for it.
#[tokio::test(flavor = "multi_thread")]
async fn a_crowd_of_idle_connections_does_not_starve_status() {
    let timeouts = [
        "--http-idle-timeout",
        "60s",
        "--http-header-read-timeout",
        "30s",
    ];
    let (ctl, _sockets, waited) = crowded_compute(&timeouts).await;
    println!("/status answered in {waited:?} behind 1,100 idle and partial connections");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let starved = ctl.log().matches("Too many open files").count();
    assert!(starved <= 3, "{starved} accept failures:\n{}", ctl.log());
}

/// Every one of 1,100 idle and partial-header connections is closed after the idle or
/// header-read timeout, and `accept` is not starved into a loop of errors.
#[tokio::test(flavor = "multi_thread")]
async fn idle_and_partial_connections_are_closed_at_their_timeouts() {
    let timeouts = [
        "--http-idle-timeout",
        "3s",
        "--http-header-read-timeout",
        "2s",
    ];
    let (ctl, mut sockets, _) = crowded_compute(&timeouts).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let open = tokio::task::spawn_blocking(move || {
        sockets
            .iter_mut()
            .filter_map(|s| (!closed_by(s, deadline)).then_some(()))
            .count()
    })
    .await
    .unwrap();
    assert_eq!(open, 0, "connections still open after the timeouts");
    let (code, _, _) = get(ctl.http_port, "/healthz", &[]).await;
    assert_eq!(code, 200);
    let starved = ctl.log().matches("Too many open files").count();
    assert!(starved <= 3, "{starved} accept failures:\n{}", ctl.log());
}

/// 150 concurrent `/dbs_and_roles`: each answered 200 or 429 (never 500), the server never
/// counts more than the budget's sessions (plus backends still exiting), and 10 user
/// connections made meanwhile all succeed on a compute with `max_connections = 20`.
#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_storm_leaves_user_slots_alone() {
    let settings = [json!({"name": "max_connections", "value": "20", "vartype": "integer"})];
    let ctl = Ctl::start_running(&spec(&settings), &["--catalog-queue-timeout", "2s"]).await;
    let addr = format!("127.0.0.1:{}", ctl.http_port);
    let storm: Vec<_> = (0..150)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                http_request(&addr, "GET", "/dbs_and_roles", "", &[])
                    .await
                    .map(|(code, _, body)| (code, body))
            })
        })
        .collect();
    // The catalog sessions open while the storm lasts, as PostgreSQL counts them.
    let admin = ctl.pg("postgres").await;
    let storm_over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let storm_over = storm_over.clone();
        tokio::spawn(async move {
            let mut most = 0;
            while !storm_over.load(std::sync::atomic::Ordering::Acquire) {
                let row = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE application_name = 'compute_ctl:catalog'",
                        &[],
                    )
                    .await
                    .unwrap();
                most = most.max(row.get::<_, i64>(0));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            most
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut users = Vec::new();
    for i in 0..10 {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(ctl.pg_port)
            .user("alice")
            .dbname("app");
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("user connection {i}: {e}"));
        tokio::spawn(conn);
        users.push(client);
    }
    let mut codes = std::collections::BTreeMap::new();
    for request in storm {
        let (code, body) = request.await.unwrap().unwrap();
        assert!(code == 200 || code == 429, "{code}: {body}");
        *codes.entry(code).or_insert(0) += 1;
    }
    assert!(codes.get(&200).is_some_and(|n| *n > 0), "{codes:?}");
    storm_over.store(true, std::sync::atomic::Ordering::Release);
    let most_sessions = sampler.await.unwrap();
    // compute_ctl holds at most 4 sessions; the backend of one it has just closed may still
    // be exiting (tokio-postgres does not wait for the server's end of the socket), so the
    // server may count a few more for an instant: at most one per slot in practice. Without
    // the budget it counted as many as the slots allowed (150 requests).
    assert!(
        (1..=8).contains(&most_sessions),
        "{most_sessions} catalog sessions at once"
    );
    for user in &users {
        user.query_one("SELECT 1", &[]).await.unwrap();
    }
    println!(
        "150 concurrent /dbs_and_roles: {codes:?}; at most {most_sessions} catalog sessions seen; \
         10 of 10 user connections made"
    );
}

/// Sends SIGCONT to a stopped process when dropped (a failing test leaves nothing stopped).
struct Stopped(nix::unistd::Pid);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// With the postmaster SIGSTOPped, `/dbs_and_roles` and `/check_writability` answer 503
/// within the bound (the catalog connect is bounded by the 2 s statement timeout); after
/// SIGCONT they answer again.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_postmaster_is_an_answer_within_the_bound() {
    let ctl = Ctl::start_running(&spec(&[]), &["--catalog-statement-timeout", "2s"]).await;
    let postmaster = nix::unistd::Pid::from_raw(ctl.postmaster_pid());
    nix::sys::signal::kill(postmaster, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let stopped = Stopped(postmaster);
    for (method, path) in [("GET", "/dbs_and_roles"), ("POST", "/check_writability")] {
        let started = Instant::now();
        let (code, body) = ctl.request(method, path, "", None).await;
        let took = started.elapsed();
        assert_eq!(code, 503, "{path}: {body}");
        assert!(body.contains("postgres is unavailable"), "{body}");
        assert!(took < Duration::from_secs(10), "{path}: {took:?}");
        println!("{path} with the postmaster stopped: 503 in {took:?}");
    }
    drop(stopped);
    let (code, body) = ctl.request("GET", "/dbs_and_roles", "", None).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = ctl.request("POST", "/check_writability", "", None).await;
    assert_eq!((code, body.as_str()), (200, "true"));
}

/// Another session holding `public.health_check` (the table `/check_writability` writes) in
/// ACCESS EXCLUSIVE mode: the catalog session's `lock_timeout` (half the 2 s statement
/// timeout) fires and the answer is 503 with the server's reason and `Retry-After`, within
/// the bound instead of a hang; once the lock is gone, 200. Prints the time.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_health_check_table_is_a_503_at_the_lock_timeout() {
    let ctl = Ctl::start_running(&spec(&[]), &["--catalog-statement-timeout", "2s"]).await;
    let holder = ctl.pg("postgres").await;
    holder
        .batch_execute("BEGIN; LOCK TABLE public.health_check IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let addr = format!("127.0.0.1:{}", ctl.http_port);
    let started = Instant::now();
    let (code, headers, body) = http_request(&addr, "POST", "/check_writability", "", &[])
        .await
        .unwrap();
    let took = started.elapsed();
    println!("/check_writability with health_check locked: {code} in {took:?}");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("postgres did not answer in time"), "{body}");
    assert!(body.contains("lock timeout"), "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    holder.batch_execute("ROLLBACK").await.unwrap();
    let (code, body) = ctl.request("POST", "/check_writability", "", None).await;
    assert_eq!((code, body.as_str()), (200, "true"));
}

/// With a JWK set: a token valid only in an hour and one expired 15 s ago (past the 5 s
/// leeway) are refused (401) by `/configure`, which changes nothing; the probes and
/// `/metrics` need no token.
#[tokio::test(flavor = "multi_thread")]
async fn jwt_time_claims_are_checked_and_probes_stay_open() {
    let jwks: Value = serde_json::from_str(&harness::fixture("jwks.json")).unwrap();
    let config = json!({"spec": spec(&[]), "compute_ctl_config": {"jwks": jwks}});
    let ctl = Ctl::start(Args {
        extra: vec![
            "-c".into(),
            "{dir}/config.json".into(),
            "-i".into(),
            "compute-1".into(),
            "--no-allow-unauthenticated".into(),
        ],
        files: vec![("config.json".into(), config.to_string())],
        ..Args::default()
    });
    ctl.wait_metrics_status("running").await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(ctl.http_port, path, &[]).await.0, 200, "{path}");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut changed = spec(&[]);
    changed["cluster"]["roles"] = json!([{"name": "alice"}, {"name": "mallory"}]);
    let body = json!({"spec": changed}).to_string();
    for claims in [
        json!({"compute_id": "compute-1", "nbf": now + 3600}),
        json!({"compute_id": "compute-1", "exp": now - 15}),
    ] {
        let token = harness::fixture_token("ed25519.pem", claims.clone());
        let (code, answer) = ctl.request("POST", "/configure", &body, Some(&token)).await;
        assert_eq!(code, 401, "{claims}: {answer}");
    }
    let good = harness::fixture_token(
        "ed25519.pem",
        json!({"compute_id": "compute-1", "nbf": now - 1, "exp": now + 300}),
    );
    let (code, status) = ctl.request("GET", "/status", "", Some(&good)).await;
    assert_eq!(code, 200, "{status}");
    let roles: Vec<String> = ctl
        .pg("postgres")
        .await
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!roles.contains(&"mallory".to_owned()), "{roles:?}");
}
