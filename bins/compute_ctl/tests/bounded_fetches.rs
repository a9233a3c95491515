//! The start's waits on the outside world, through the real compute_ctl binary: the
//! control-plane request (SIGTERM ends it at once; its timeout fires with a message saying
//! what happened; https with a CA made by the real `openssl`, and an untrusted certificate
//! refused), spec and config files that are not regular files or are too large (refused
//! promptly), a hanging `--sync-safekeepers` (killed at its bound) and the pageserver's
//! permanent faults (not retried; the error chain printed once) and a stalled basebackup
//! (retried within the deadline, then the start fails at the stall timeout, not the stall's).

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::{Args, Ctl, TENANT, TIMELINE};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EMPTY_ANSWER: &str =
    r#"{"status": "empty", "spec": null, "compute_ctl_config": {"jwks": {"keys": []}}}"#;

/// How a stand-in control plane treats each connection.
#[derive(Clone, Copy)]
enum Peer {
    /// Accept and never answer (keep the socket open).
    Silent,
    /// Read the request, then close without answering.
    Close,
    /// Read the request, then answer 200 with a body that never ends.
    Endless,
}

/// A TCP listener playing a broken control plane; counts the connections it accepted.
async fn broken_control_plane(peer: Peer) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            match peer {
                Peer::Silent => held.push(socket),
                Peer::Close => {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    drop(socket);
                }
                Peer::Endless => {
                    tokio::spawn(endless_answer(socket));
                }
            }
        }
    });
    (port, accepted)
}

/// `200 OK`, then JSON whitespace until the client goes away.
async fn endless_answer(mut socket: tokio::net::TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = socket.read(&mut buf).await;
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n[";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let chunk = vec![b' '; 1 << 20];
    while socket.write_all(&chunk).await.is_ok() {}
}

fn control_plane_args(url: String, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "-p".to_owned(),
        url,
        "-i".to_owned(),
        "compute-1".to_owned(),
        "--linger".to_owned(),
        "5s".to_owned(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// The `error` of a failed compute, once it failed.
async fn failure(ctl: &mut Ctl) -> String {
    let status = ctl.wait_status("failed").await;
    status["error"].as_str().unwrap_or_default().to_owned()
}

/// No `: `-separated segment of an error line comes twice.
fn assert_no_repeated_segment(text: &str) {
    let segments: Vec<&str> = text.split(": ").collect();
    for (i, segment) in segments.iter().enumerate() {
        assert!(
            !segments[i + 1..].contains(segment),
            "{segment:?} repeated in {text:?}"
        );
    }
}

/// A control plane that accepts and never answers: SIGTERM ends compute_ctl within about a
/// second (issue 10: two SIGTERMs were ignored for 17 s), and without a signal each of the 3
/// attempts ends at the request timeout with a message saying so.
#[tokio::test(flavor = "multi_thread")]
async fn an_unresponsive_control_plane_is_bounded_and_sigterm_ends_the_wait() {
    let (port, accepted) = broken_control_plane(Peer::Silent).await;
    let mut ctl = Ctl::start(Args {
        extra: control_plane_args(format!("http://127.0.0.1:{port}"), &[]),
        ..Args::default()
    });
    let connected = harness::eventually(Duration::from_secs(20), || async {
        (accepted.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    assert!(connected.is_some(), "no request came:\n{}", ctl.log());
    let signalled = Instant::now();
    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert_eq!(exit.code(), Some(0), "{}", ctl.log());
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    assert!(ctl.log().contains("stopped while obtaining the spec"));

    let (port, accepted) = broken_control_plane(Peer::Silent).await;
    let started = Instant::now();
    let mut ctl = Ctl::start(Args {
        extra: control_plane_args(
            format!("http://127.0.0.1:{port}"),
            &["--control-plane-timeout", "1s"],
        ),
        ..Args::default()
    });
    let error = failure(&mut ctl).await;
    assert!(
        error.contains("timed out after 1s waiting for the response (3 attempts)"),
        "{error}"
    );
    assert!(!error.contains("client error"), "{error}");
    assert_no_repeated_segment(&error);
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    // Three attempts of 1 s, not the default 3 × 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
}

/// A peer that accepts the connection and closes it without answering is named as such (it
/// was reported as `client error (Connect)`), and a refused connection as refused.
#[tokio::test(flavor = "multi_thread")]
async fn closed_and_refused_connections_are_named() {
    let (port, accepted) = broken_control_plane(Peer::Close).await;
    let mut ctl = Ctl::start(Args {
        extra: control_plane_args(format!("http://127.0.0.1:{port}"), &[]),
        ..Args::default()
    });
    let error = failure(&mut ctl).await;
    assert!(
        error.contains("accepted the connection, then closed it before responding"),
        "{error}"
    );
    assert_no_repeated_segment(&error);
    assert_eq!(accepted.load(Ordering::SeqCst), 3);

    let port = test_postgres::free_port();
    let mut ctl = Ctl::start(Args {
        extra: control_plane_args(format!("http://127.0.0.1:{port}"), &[]),
        ..Args::default()
    });
    let error = failure(&mut ctl).await;
    assert!(
        error.contains(&format!("could not connect to 127.0.0.1:{port}")),
        "{error}"
    );
    assert!(error.contains("Connection refused"), "{error}");
    assert_no_repeated_segment(&error);
}

/// A control plane whose answer never ends is read up to the spec size limit (64 MiB and
/// the envelope), then refused without another attempt: the body was read whole before.
#[tokio::test(flavor = "multi_thread")]
async fn an_endless_control_plane_answer_is_cut_at_the_size_limit() {
    let (port, accepted) = broken_control_plane(Peer::Endless).await;
    let started = Instant::now();
    let mut ctl = Ctl::start(Args {
        extra: control_plane_args(format!("http://127.0.0.1:{port}"), &[]),
        ..Args::default()
    });
    let error = failure(&mut ctl).await;
    assert!(
        error.contains("status 200 OK, then a body larger than the 68157440-byte limit"),
        "{error}"
    );
    assert_no_repeated_segment(&error);
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "retried: {error}");
    eprintln!(
        "time to fail, endless control-plane answer: {:?}",
        started.elapsed()
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, made by the real `openssl`.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test control plane CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            dir.path().join("san.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn der(&self, name: &str) -> Vec<u8> {
        let text = std::fs::read_to_string(self.path(name)).unwrap();
        pem::parse(text).unwrap().into_contents()
    }
}

/// An https control plane (rustls, the certificate of `pki`) answering every request with
/// `EMPTY_ANSWER`; records each request's first lines.
async fn https_control_plane(pki: &Pki) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let cert = rustls::pki_types::CertificateDer::from(pki.der("server.pem"));
    let key = rustls::pki_types::PrivateKeyDer::try_from(pki.der("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                recorded
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request).into_owned());
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{EMPTY_ANSWER}",
                    EMPTY_ANSWER.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, seen)
}

/// https: with the test CA as `SSL_CERT_FILE` the config is fetched (the token sent over
/// TLS); with the system's roots the certificate is refused, and the error says so.
#[tokio::test(flavor = "multi_thread")]
async fn https_control_plane_with_a_trusted_and_an_untrusted_certificate() {
    let pki = Pki::new();
    let (port, seen) = https_control_plane(&pki).await;
    let mut ctl = Ctl::start(Args {
        extra: control_plane_args(format!("https://127.0.0.1:{port}"), &[]),
        env: vec![
            (
                "SSL_CERT_FILE".into(),
                pki.path("ca.pem").display().to_string(),
            ),
            ("NEON_CONTROL_PLANE_TOKEN".into(), "cp-token".into()),
        ],
        ..Args::default()
    });
    ctl.wait_status("empty").await;
    let got = harness::eventually(Duration::from_secs(20), || async {
        seen.lock().unwrap().first().cloned()
    })
    .await
    .unwrap_or_else(|| panic!("no request over TLS:\n{}", ctl.log()));
    assert!(
        got.starts_with("GET /compute/api/v2/computes/compute-1/spec HTTP/1.1\r\n"),
        "{got}"
    );
    assert!(
        got.to_ascii_lowercase()
            .contains("authorization: bearer cp-token"),
        "{got}"
    );
    assert!(!ctl.log().contains("cp-token"), "the token is never logged");
    drop(ctl);

    // The system's roots do not include the test CA.
    let mut ctl = Ctl::start(Args {
        extra: control_plane_args(format!("https://127.0.0.1:{port}"), &[]),
        env: vec![(
            "SSL_CERT_FILE".into(),
            "/etc/ssl/certs/ca-certificates.crt".into(),
        )],
        ..Args::default()
    });
    let error = failure(&mut ctl).await;
    assert!(
        error.contains(&format!("TLS handshake with 127.0.0.1:{port} failed")),
        "{error}"
    );
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert_no_repeated_segment(&error);
    assert_eq!(seen.lock().unwrap().len(), 1, "no request got through");
}

/// `-S` and `--config` read only a regular file within the 64 MiB limit: a FIFO without a
/// writer (it hung, deaf to SIGTERM), `/dev/zero` (it grew to 2 GB), a directory and a file
/// over the limit are refused at once with the reason; compute_ctl fails and exits 1.
#[tokio::test(flavor = "multi_thread")]
async fn spec_files_that_are_not_regular_or_too_large_are_refused_at_once() {
    let scratch = tempfile::tempdir().unwrap();
    let fifo = scratch.path().join("spec.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let large = scratch.path().join("large.json");
    // Sparse: 65 MiB that take no disk space.
    std::fs::File::create(&large)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let path = |p: &Path| p.display().to_string();
    let cases = [
        ("-S", path(&fifo), "it is a FIFO, not a regular file"),
        ("-c", path(&fifo), "it is a FIFO, not a regular file"),
        ("-S", "/dev/zero".to_owned(), "it is a character device"),
        ("-S", path(scratch.path()), "it is a directory"),
        ("-S", path(&large), "larger than the 67108864-byte limit"),
    ];
    for (flag, file, expect) in cases {
        let started = Instant::now();
        let mut extra = vec![
            flag.to_owned(),
            file.clone(),
            "--linger".into(),
            "2s".into(),
        ];
        if flag == "-c" {
            extra.extend(["-i".to_owned(), "compute-1".to_owned()]);
        }
        let mut ctl = Ctl::start(Args {
            extra,
            ..Args::default()
        });
        let error = failure(&mut ctl).await;
        assert!(
            error.contains(&format!("read {file}: ")),
            "{flag} {file}: {error}"
        );
        assert!(error.contains(expect), "{flag} {file}: {error}");
        assert_no_repeated_segment(&error);
        assert_eq!(ctl.wait_exit(Duration::from_secs(20)).await.code(), Some(1));
        // Bounded: the linger (2 s) and the start, nothing like a hang.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{file}: {:?}",
            started.elapsed()
        );
    }
}

/// `-S /dev/stdin` with the spec piped in (the way to pass secrets off the command line)
/// still works: a pipe that is compute_ctl's standard input is read.
#[tokio::test(flavor = "multi_thread")]
async fn a_spec_piped_into_standard_input_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let http_port = test_postgres::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_compute_ctl"))
        .args(["-D", &dir.path().join("pgdata").display().to_string()])
        .args(["-C", "postgresql://cloud_admin@127.0.0.1:1/postgres"])
        .args(["-S", "/dev/stdin", "-i", "compute-1"])
        .args(["--http-bind", "127.0.0.1", "--allow-unauthenticated"])
        .args(["--vm-informant", "/nonexistent/vm-informant"])
        .args(["--external-http-port", &http_port.to_string()])
        .args([
            "--internal-http-port",
            &test_postgres::free_port().to_string(),
        ])
        .args([
            "-b",
            &test_postgres::pg_bin_dir()
                .join("postgres")
                .display()
                .to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(
        &mut stdin,
        EMPTY_ANSWER
            .replace("\"status\": \"empty\", ", "")
            .as_bytes(),
    )
    .unwrap();
    drop(stdin);
    let addr = format!("127.0.0.1:{http_port}");
    let status = harness::eventually(Duration::from_secs(30), || async {
        match harness::http_request(&addr, "GET", "/status", "", &[]).await {
            Ok((200, _, body)) => Some(body),
            _ => None,
        }
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = child.wait().unwrap();
    let status = status.expect("compute_ctl answered /status");
    assert!(status.contains(r#""status":"empty""#), "{status}");
    assert_eq!(exit.code(), Some(0));
}

fn storage_spec(pageserver: &str, safekeeper: &str) -> String {
    json!({
        "safekeeper_connstrings": [safekeeper],
        "format_version": 1.0,
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "pageserver_connstring": pageserver,
        "storage_auth_token": "storage-token",
        "cluster": {"roles": [], "databases": [], "settings": []}
    })
    .to_string()
}

async fn pageserver(fault: Option<neon_test_servers::Fault>) -> neon_test_servers::TestPageserver {
    let mut config = harness::pageserver_config("bounded-fetches", "storage-token").await;
    config.compression = neon_test_servers::CompressionMode::Gzip;
    config.fault = fault;
    neon_test_servers::TestPageserver::start(config)
        .await
        .unwrap()
}

/// A safekeeper whose commit and flush LSNs differ (`full`: the full sync must run) or agree.
async fn safekeeper(full: bool) -> neon_test_servers::TestSafekeeper {
    let mut config = neon_test_servers::SafekeeperConfig::new(
        TENANT.parse().unwrap(),
        TIMELINE.parse().unwrap(),
        "0/16B3748".parse().unwrap(),
    );
    config.token = Some("storage-token".into());
    if full {
        config.commit_lsn = "0/16B0000".parse().unwrap();
    }
    neon_test_servers::TestSafekeeper::start(config)
        .await
        .unwrap()
}

/// The pageserver's permanent faults fail the start after one attempt (they took 35–42 s
/// through 9 retries), with the error chain printed once. Prints the time to fail of each.
#[tokio::test(flavor = "multi_thread")]
async fn permanent_pageserver_faults_fail_at_once_with_the_chain_printed_once() {
    use neon_test_servers::Fault;
    let sk = safekeeper(false).await;
    for (fault, expect) in [
        (Fault::DotDot, "refused archive entry \"../escape\""),
        (Fault::Corrupt, "corrupt Gzip basebackup stream"),
        (Fault::ErrorAfter, "injected error after the data"),
    ] {
        let ps = pageserver(Some(fault.clone())).await;
        let started = Instant::now();
        let mut ctl = Ctl::start(Args {
            extra: vec![
                "-s".into(),
                storage_spec(&ps.connstr(), &sk.addr()),
                "--linger".into(),
                "5s".into(),
            ],
            ..Args::default()
        });
        let error = failure(&mut ctl).await;
        let took = started.elapsed();
        eprintln!("time to fail, {fault:?}: {took:?}");
        assert!(error.starts_with("fetch basebackup: "), "{error}");
        assert!(error.contains(expect), "{fault:?}: {error}");
        assert_no_repeated_segment(&error);
        assert_eq!(ps.records().len(), 1, "{fault:?} was not retried");
        assert!(took < Duration::from_secs(20), "{fault:?}: {took:?}");
    }
}

/// A pageserver that sends the first chunk and then nothing for 30 s: with
/// `--basebackup-stall-timeout 1s` each attempt fails after a second of silence, the stall is
/// retried within `--storage-retry-deadline 3s`, and the start fails well before the 30 s,
/// the error naming the stall. Prints the time to fail.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_basebackup_fails_the_start_at_the_stall_timeout() {
    let ps = pageserver(Some(neon_test_servers::Fault::Slow(Duration::from_secs(
        30,
    ))))
    .await;
    let sk = safekeeper(false).await;
    let started = Instant::now();
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-s".into(),
            storage_spec(&ps.connstr(), &sk.addr()),
            "--basebackup-stall-timeout".into(),
            "1s".into(),
            "--storage-retry-deadline".into(),
            "3s".into(),
            "--linger".into(),
            "5s".into(),
        ],
        ..Args::default()
    });
    let error = failure(&mut ctl).await;
    let took = started.elapsed();
    let attempts = ps.records().len();
    println!("time to fail, a basebackup stalled for 30 s: {took:?} ({attempts} attempts)");
    assert!(error.starts_with("fetch basebackup: "), "{error}");
    assert!(error.contains("sent nothing for 1s after "), "{error}");
    assert_no_repeated_segment(&error);
    assert!(attempts >= 2, "a stall is retried: {attempts} attempts");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
}

/// A `--sync-safekeepers` that hangs is killed at `--sync-safekeepers-timeout` and the start
/// fails with that reason, not retried (issue 14: still `init` after 60 s, 6 × 300 s allowed).
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_sync_safekeepers_fails_at_its_bound() {
    let ps = pageserver(None).await;
    let sk = safekeeper(true).await;
    let scratch = tempfile::tempdir().unwrap();
    let pgbin = harness::hanging_sync_bindir(scratch.path());
    let started = Instant::now();
    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-s".into(),
            storage_spec(&ps.connstr(), &sk.addr()),
            "-b".into(),
            pgbin.display().to_string(),
            "--sync-safekeepers-timeout".into(),
            "2s".into(),
            "--linger".into(),
            "5s".into(),
        ],
        ..Args::default()
    });
    let error = failure(&mut ctl).await;
    let took = started.elapsed();
    assert!(error.starts_with("sync safekeepers: "), "{error}");
    assert!(
        error.contains("--sync-safekeepers timed out after 2s"),
        "{error}"
    );
    assert!(error.contains("syncing"), "the child's last words: {error}");
    assert_no_repeated_segment(&error);
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let sync_pid = harness::read_pid_file(&scratch.path().join("sync.pid")).await;
    let gone = harness::eventually(Duration::from_secs(2), || async {
        (!Path::new(&format!("/proc/{sync_pid}")).exists()).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the hanging child was killed and reaped");
    assert!(ps.records().is_empty(), "no basebackup after a failed sync");
}
