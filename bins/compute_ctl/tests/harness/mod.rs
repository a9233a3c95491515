//! Test harness: runs the real `compute_ctl` binary on a temporary data directory, free ports
//! on 127.0.0.1 and the real PostgreSQL 15, talks to its HTTP API, and waits for what the
//! tests wait for (a status, a log line, a pid file, the end of the compute's processes). Every
//! end-to-end test and bench of compute_ctl drives the binary through it; each includes it as
//! a module and uses a part.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

/// Polls `probe` every 20 ms until it yields `Some`, for at most `limit`.
pub(crate) async fn eventually<T, F>(limit: Duration, mut probe: impl FnMut() -> F) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The number in a pid file, once it has been written (within 10 s).
pub(crate) async fn read_pid_file(path: &Path) -> i32 {
    eventually(Duration::from_secs(10), || async {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
    })
    .await
    .unwrap_or_else(|| panic!("no pid in {} after 10 s", path.display()))
}

/// Waits (up to 2 s: backends notice the postmaster's exit on their own) until no process
/// mentions `needle`; returns those left.
pub(crate) async fn processes_left(needle: &str) -> Vec<String> {
    let gone = eventually(Duration::from_secs(2), || async {
        processes_mentioning(needle).is_empty().then_some(())
    })
    .await;
    match gone {
        Some(()) => Vec::new(),
        None => processes_mentioning(needle),
    }
}

/// An HTTP request to `addr` (`host:port`); a connection failure is an `Err`. POSTs carry
/// `content-type: application/json`. Returns the status code, the headers and the body.
pub(crate) async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, String)],
) -> Result<(u16, hyper::HeaderMap, String), String> {
    let content_type = (method == "POST").then_some("application/json");
    let body = Bytes::from(body.to_owned());
    http_request_bytes(addr, method, path, content_type, body, headers).await
}

/// Like [`http_request`], with the body's bytes (not necessarily UTF-8) and its
/// `content-type` (none: no such header) as given.
pub(crate) async fn http_request_bytes(
    addr: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
    headers: &[(&str, String)],
) -> Result<(u16, hyper::HeaderMap, String), String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(content_type) = content_type {
        req = req.header("content-type", content_type);
    }
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let req = req.body(Full::new(body)).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(120), client.request(req))
        .await
        .map_err(|_| format!("{method} {path}: no answer in 120 s"))?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

/// A connection as compute_ctl's admin user (`cloud_admin`) to `db` on `127.0.0.1:port`.
pub(crate) async fn admin_client(
    port: u16,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=cloud_admin dbname={db}"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(conn);
    Ok(client)
}

/// A running compute_ctl. SIGTERM, then SIGKILL, on drop.
pub(crate) struct Ctl {
    pub(crate) child: Child,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) pgdata: PathBuf,
    pub(crate) pg_port: u16,
    pub(crate) http_port: u16,
    /// The internal API (unauthenticated: `/grants`, `/extensions`).
    pub(crate) internal_http_port: u16,
    pub(crate) exited: Option<ExitStatus>,
}

/// Prepares the data directory before the start.
pub(crate) type PgdataSetup = Box<dyn FnOnce(&Path)>;

/// Arguments beyond the ones every run gets.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) extra: Vec<String>,
    /// Files to create in the temporary directory first: (name, contents), with `{dir}` and
    /// `{pg_port}` replaced by the directory and Postgres' port.
    pub(crate) files: Vec<(String, String)>,
    /// Prepare the data directory before the start.
    pub(crate) pgdata_setup: Option<PgdataSetup>,
    /// Environment variables for compute_ctl.
    pub(crate) env: Vec<(String, String)>,
    /// The data directory, instead of `pgdata` in the temporary directory (a second start on
    /// the directory of a first).
    pub(crate) pgdata: Option<PathBuf>,
    /// A program (and its arguments) that runs compute_ctl, e.g. `unshare`.
    pub(crate) wrapper: Vec<String>,
}

pub(crate) fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// An EdDSA JWT with `claims`, signed by the fixture key `pem` (`tests/fixtures`).
pub(crate) fn fixture_token(pem: &str, claims: serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_ed_pem(fixture(pem).as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

pub(crate) fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

impl Ctl {
    /// Starts a compute with `spec` (`-s`) and `extra` arguments and waits until it runs.
    pub(crate) async fn start_running(spec: &serde_json::Value, extra: &[&str]) -> Ctl {
        let mut args = vec!["-s".to_owned(), spec.to_string()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut ctl = Ctl::start(Args {
            extra: args,
            ..Args::default()
        });
        ctl.wait_status("running").await;
        ctl
    }

    pub(crate) fn start(args: Args) -> Ctl {
        let dir = tempfile::Builder::new()
            .prefix("compute-ctl-test-")
            .tempdir()
            .unwrap();
        test_postgres::chown_to_pg_user(dir.path()).unwrap();
        let pgdata = args.pgdata.unwrap_or_else(|| dir.path().join("pgdata"));
        let pg_port = test_postgres::free_port();
        for (name, contents) in &args.files {
            let contents = contents
                .replace("{dir}", &dir.path().display().to_string())
                .replace("{pg_port}", &pg_port.to_string());
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        if let Some(setup) = args.pgdata_setup {
            setup(&pgdata);
        }
        let http_port = test_postgres::free_port();
        let internal_port = test_postgres::free_port();
        let log = std::fs::File::create(dir.path().join("compute_ctl.log")).unwrap();
        let mut cmd = match args.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut cmd = Command::new(program);
                cmd.args(wrapper_args)
                    .arg(env!("CARGO_BIN_EXE_compute_ctl"));
                cmd
            }
            None => Command::new(env!("CARGO_BIN_EXE_compute_ctl")),
        };
        cmd.arg("-D")
            .arg(&pgdata)
            .arg("-C")
            .arg(format!(
                "postgresql://cloud_admin@127.0.0.1:{pg_port}/postgres"
            ))
            .args(if args.extra.iter().any(|a| a == "-b") {
                Vec::new()
            } else {
                vec![
                    "-b".to_owned(),
                    test_postgres::pg_bin_dir()
                        .join("postgres")
                        .display()
                        .to_string(),
                ]
            })
            .args(["--http-bind", "127.0.0.1"])
            .args(
                if args.extra.iter().any(|a| a == "--no-allow-unauthenticated") {
                    &[][..]
                } else {
                    &["--allow-unauthenticated"][..]
                },
            )
            .args(if args.extra.iter().any(|a| a == "--vm-informant") {
                &[][..]
            } else {
                &["--vm-informant", "/nonexistent/vm-informant"][..]
            })
            .args(if args.extra.iter().any(|a| a == "--linger") {
                &[][..]
            } else {
                &["--linger", "300ms"][..]
            })
            .arg("--external-http-port")
            .arg(http_port.to_string())
            .arg("--internal-http-port")
            .arg(internal_port.to_string())
            .args(
                args.extra
                    .iter()
                    .filter(|a| *a != "--no-allow-unauthenticated")
                    .map(|a| a.replace("{dir}", &dir.path().display().to_string())),
            )
            .envs(args.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().unwrap();
        Ctl {
            child,
            dir,
            pgdata,
            pg_port,
            http_port,
            internal_http_port: internal_port,
            exited: None,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("compute_ctl.log")).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> (u16, String) {
        self.try_request(method, path, body, token)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// Like `request`, but a connection failure is an `Err` (the server may not listen yet).
    pub(crate) async fn try_request(
        &self,
        method: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> Result<(u16, String), String> {
        let auth: Vec<(&str, String)> = token
            .map(|t| ("authorization", format!("Bearer {t}")))
            .into_iter()
            .collect();
        let addr = format!("127.0.0.1:{}", self.http_port);
        let (code, _, body) = http_request(&addr, method, path, body, &auth).await?;
        Ok((code, body))
    }

    /// A request to the internal API (`/grants`, `/extensions`): status code and body.
    pub(crate) async fn request_internal(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, String) {
        let addr = format!("127.0.0.1:{}", self.internal_http_port);
        let (code, _, body) = http_request(&addr, method, path, body, &[])
            .await
            .unwrap_or_else(|e| panic!("{method} {path} (internal): {e}\n{}", self.log()));
        (code, body)
    }

    pub(crate) async fn get_json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.request("GET", path, "", None).await;
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `/status` until its status is `want` (panics on `failed` unless wanted, and when
    /// compute_ctl exits first).
    pub(crate) async fn wait_status(&mut self, want: &str) -> serde_json::Value {
        let status = self
            .wait_status_where(want, |s| s["status"] == want || s["status"] == "failed")
            .await;
        if status["status"] == "failed" && want != "failed" {
            panic!(
                "compute failed while waiting for {want}: {status}\n{}",
                self.log()
            );
        }
        status
    }

    /// Polls `/status` (connection errors retried) until `done` holds, for up to 90 s;
    /// panics naming `what` when compute_ctl exits first or the time is over.
    pub(crate) async fn wait_status_where(
        &mut self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "compute_ctl exited ({status}) before {what}:\n{}",
                    self.log()
                );
            }
            if let Ok((200, body)) = self.try_request("GET", "/status", "", None).await
                && let Ok(json) = serde_json::from_str::<serde_json::Value>(&body)
                && done(&json)
            {
                return json;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} status in time:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 30 s) until the unauthenticated `/metrics` says `status` (for computes
    /// whose `/status` needs a token).
    pub(crate) async fn wait_metrics_status(&self, status: &str) {
        let sample = format!(r#"status="{status}"}} 1"#);
        let seen = eventually(Duration::from_secs(30), || async {
            let text = self
                .try_request("GET", "/metrics", "", None)
                .await
                .map(|r| r.1)
                .unwrap_or_default();
            text.contains(&sample).then_some(())
        })
        .await;
        assert!(seen.is_some(), "no {status} in /metrics:\n{}", self.log());
    }

    /// Waits (up to 20 s) until compute_ctl's log contains `needle`.
    pub(crate) async fn wait_log(&self, needle: &str) {
        let found = eventually(Duration::from_secs(20), || async {
            self.log().contains(needle).then_some(())
        })
        .await;
        assert!(found.is_some(), "{needle:?} never logged:\n{}", self.log());
    }

    /// Waits for the process to exit.
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.exited = Some(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "compute_ctl did not exit in {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn pg(&self, db: &str) -> tokio_postgres::Client {
        admin_client(self.pg_port, db)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log()))
    }

    pub(crate) fn postmaster_pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.pgdata.join("postmaster.pid")).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }
}

/// Processes whose command line mentions `needle` (e.g. a data directory).
pub(crate) fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

impl Drop for Ctl {
    fn drop(&mut self) {
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A copy of the PostgreSQL installation under a temporary root, keeping its absolute layout
/// (so that its programs find their share and library directories relative to themselves).
pub(crate) struct Installation {
    pub(crate) root: tempfile::TempDir,
    pub(crate) bindir: PathBuf,
    pub(crate) sharedir: PathBuf,
    pub(crate) pkglibdir: PathBuf,
}

pub(crate) fn pg_config(bindir: &Path, flag: &str) -> PathBuf {
    let out = Command::new(bindir.join("pg_config"))
        .arg(flag)
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_config {flag}");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Hard-links the installation into a temporary root (`cp -al`, else `cp -a`) and removes the files of
/// `removed` extensions (control and script files, shared library) from the copy (unlinking a
/// hard link leaves the system file alone).
pub(crate) fn relocated_installation(removed: &[&str]) -> Installation {
    use std::os::unix::fs::PermissionsExt;
    let system_bindir = test_postgres::pg_bin_dir();
    let system_libroot = system_bindir.parent().unwrap().to_owned();
    let system_sharedir = pg_config(&system_bindir, "--sharedir");
    let root = tempfile::Builder::new()
        .prefix("relocated-pg-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let inside = |p: &Path| root.path().join(p.strip_prefix("/").unwrap());
    for dir in [&system_libroot, &system_sharedir] {
        let target = inside(dir);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let mut parent = target.parent().unwrap().to_owned();
        while parent != root.path() {
            std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
            parent = parent.parent().unwrap().to_owned();
        }
        // Hard links; a plain copy where they are not allowed (protected_hardlinks, not root).
        let copied = ["-al", "-a"].iter().any(|flags| {
            let _ = std::fs::remove_dir_all(&target);
            Command::new("cp")
                .arg(flags)
                .arg(dir)
                .arg(&target)
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
        });
        assert!(copied, "cp -a {} {}", dir.display(), target.display());
    }
    let bindir = inside(&system_bindir);
    let sharedir = pg_config(&bindir, "--sharedir");
    let pkglibdir = pg_config(&bindir, "--pkglibdir");
    assert_eq!(
        sharedir,
        inside(&system_sharedir),
        "the copy is relocatable"
    );
    assert!(
        pkglibdir.starts_with(root.path()),
        "{}",
        pkglibdir.display()
    );
    for name in removed {
        for entry in std::fs::read_dir(sharedir.join("extension")).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_str().unwrap();
            if file == format!("{name}.control") || file.starts_with(&format!("{name}--")) {
                std::fs::remove_file(&path).unwrap();
            }
        }
        let _ = std::fs::remove_file(pkglibdir.join(format!("{name}.so")));
    }
    Installation {
        root,
        bindir,
        sharedir,
        pkglibdir,
    }
}

/// The tenant the stand-in pageservers of the end-to-end tests serve.
pub(crate) const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
/// The timeline the stand-in pageservers of the end-to-end tests serve.
pub(crate) const TIMELINE: &str = "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d";

/// A stand-in pageserver's settings: [`TENANT`]/[`TIMELINE`] backed by a filled data
/// directory (the fixture `name`, made once per name), asking for `token`.
pub(crate) async fn pageserver_config(
    name: &'static str,
    token: &str,
) -> neon_test_servers::PageserverConfig {
    let source =
        tokio::task::spawn_blocking(move || neon_test_servers::fixture::filled_pgdata(name))
            .await
            .unwrap()
            .unwrap();
    let mut config = neon_test_servers::PageserverConfig::new(
        source,
        TENANT.parse().unwrap(),
        TIMELINE.parse().unwrap(),
    );
    config.token = Some(token.to_owned());
    config
}

/// A `-b` directory in `dir` whose `postgres` hangs in `--sync-safekeepers` (writing its pid
/// to `dir/sync.pid` and `syncing` to standard error) and is the real postgres otherwise;
/// `initdb` and `pg_ctl` are the real ones. Returns the `postgres` path.
pub(crate) fn hanging_sync_bindir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let real = test_postgres::pg_bin_dir();
    for tool in ["initdb", "pg_ctl"] {
        std::os::unix::fs::symlink(real.join(tool), bin.join(tool)).unwrap();
    }
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --sync-safekeepers ]; then echo $$ > {}/sync.pid; echo syncing >&2; exec sleep 600; fi\nexec {} \"$@\"\n",
        dir.display(),
        real.join("postgres").display()
    );
    std::fs::write(bin.join("postgres"), script).unwrap();
    std::fs::set_permissions(
        bin.join("postgres"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    test_postgres::chown_to_pg_user(dir).unwrap();
    bin.join("postgres")
}
