//! neon_local's contract with compute_ctl, re-enacted: this file launches, polls, reconfigures
//! and stops the real `compute_ctl` exactly as Neon's local orchestrator does in
//! `control_plane/src/endpoint.rs` at neondatabase/neon `6a35a3e9f1` (cited below as
//! `endpoint.rs:LINE`), against the real PostgreSQL 15 and our pageserver and safekeeper
//! stand-ins. The facts come from reading that file; the code is ours.
//!
//! What neon_local does, and where this file does it:
//! - `neon_local init` makes an Ed25519 key pair with `openssl` (`local_env.rs:937-949`):
//!   [`NeonLocal::init`];
//! - `endpoint create` builds the JWK set from the public key (`endpoint.rs:166-193`) and the
//!   endpoint's `postgresql.conf` (`endpoint.rs:461-575`): [`NeonLocal::create_endpoint`];
//! - `endpoint start` deletes pgdata, writes `config.json` as `{spec, compute_ctl_config}` with
//!   every spec field (`endpoint.rs:702-864`), spawns compute_ctl with its argv, stdin null and
//!   output appended to `compute.log` (`endpoint.rs:866-917`), writes `compute_ctl.pid`
//!   (`endpoint.rs:933-937`) and polls `/status` every 100 ms with the compute token, giving up
//!   on any status but `init`/`running` (`endpoint.rs:939-991`): [`Endpoint::start`];
//! - `endpoint reconfigure` POSTs config.json's spec with the current postgresql.conf to
//!   `/configure` (`endpoint.rs:1052-1122`): [`Endpoint::reconfigure`];
//! - `endpoint stop` runs `pg_ctl -w -m MODE stop` with an emptied environment or
//!   `/terminate?mode=immediate` with the admin token, then SIGTERMs compute_ctl unless the mode
//!   is fast and waits 10 s for it to exit (`endpoint.rs:1140-1180`,
//!   `background_process.rs:221-251`): [`Endpoint::stop`].
//!
//! neon_local runs everything as one user; under root this file runs compute_ctl (and so
//! postgres and `pg_ctl`) as the unprivileged `postgres` user. Vanilla PostgreSQL refuses
//! neon_local's Neon-only settings; compute_ctl is told to drop them through the environment
//! neon_local passes on unchanged (`COMPUTE_CTL_DROP_UNSUPPORTED_SETTINGS`), so the argv stays
//! exactly upstream's. The one stand-in beyond the storage services is `postgres
//! --sync-safekeepers`, which vanilla PostgreSQL lacks: the `postgres` in the test's
//! distribution directory is a script that answers that mode and execs the real postgres
//! otherwise.

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const TENANT: &str = "1f2e3d4c5b6a79880f1e2d3c4b5a6978";
const TIMELINE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const ENDPOINT_ID: &str = "ep-main";
const SYNCED_LSN: &str = "0/16B3748";

/// The test's `neon_local` repository directory: keys, the Postgres distribution, endpoints.
struct NeonLocal {
    dir: tempfile::TempDir,
    private_key: PathBuf,
    jwks: Value,
}

impl NeonLocal {
    /// `neon_local init`: an Ed25519 key pair made by openssl (`local_env.rs:937-949`) and a
    /// Postgres distribution directory `pg_install/v15/{bin,lib}`.
    fn init() -> NeonLocal {
        let dir = tempfile::Builder::new()
            .prefix("neon-local-")
            .tempdir()
            .unwrap();
        let private_key = dir.path().join("auth_private_key.pem");
        let public_key = dir.path().join("auth_public_key.pem");
        run(Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&private_key));
        run(Command::new("openssl")
            .arg("pkey")
            .arg("-in")
            .arg(&private_key)
            .args(["-pubout", "-out"])
            .arg(&public_key));
        let jwks = jwks_from_public_pem(&std::fs::read_to_string(&public_key).unwrap());
        make_pg_distrib(&dir.path().join("pg_install/v15"), dir.path());
        test_postgres::chown_to_pg_user(dir.path()).unwrap();
        NeonLocal {
            dir,
            private_key,
            jwks,
        }
    }

    fn pg_bin_dir(&self) -> PathBuf {
        self.dir.path().join("pg_install/v15/bin")
    }

    /// `endpoint create` for a Primary with one safekeeper: ports, the JWK set, and the
    /// endpoint's postgresql.conf as `setup_pg_conf` writes it (`endpoint.rs:461-530`).
    fn create_endpoint(&self, pageserver: &str, safekeeper: &str) -> Endpoint {
        let ep = self.dir.path().join("endpoints").join(ENDPOINT_ID);
        std::fs::create_dir_all(&ep).unwrap();
        let pg_port = test_postgres::free_port();
        let conf = format!(
            "max_wal_senders=10\nwal_log_hints=off\nmax_replication_slots=10\nhot_standby=on\n\
             shared_buffers=1MB\neffective_io_concurrency=2\nfsync=off\nmax_connections=100\n\
             wal_level=logical\nwal_sender_timeout=5s\nlisten_addresses='127.0.0.1'\n\
             port={pg_port}\nwal_keep_size=0\nrestart_after_crash=off\n\
             shared_preload_libraries=neon\nmax_replication_write_lag=15MB\n\
             max_replication_flush_lag=10GB\nsynchronous_standby_names=walproposer\n\
             neon.safekeepers='{}'\n",
            safekeeper.replace("127.0.0.1", "localhost"),
        );
        std::fs::write(ep.join("postgresql.conf"), conf).unwrap();
        test_postgres::chown_to_pg_user(&ep).unwrap();
        Endpoint {
            ep,
            pg_bin_dir: self.pg_bin_dir(),
            private_key: self.private_key.clone(),
            jwks: self.jwks.clone(),
            pg_port,
            external_http_port: test_postgres::free_port(),
            internal_http_port: test_postgres::free_port(),
            pageserver: pageserver.to_owned(),
            safekeeper: safekeeper.to_owned(),
            child: None,
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

/// The JWK set of `endpoint.rs:166-193`: `x` is the raw 32-byte public key and `kid` its
/// SHA-256, both base64url without padding.
fn jwks_from_public_pem(pem: &str) -> Value {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::prelude::BASE64_STANDARD.decode(body).unwrap();
    let raw = &der[der.len() - 32..];
    let kid = <sha2::Sha256 as sha2::Digest>::digest(raw);
    json!({"keys": [{
        "use": "sig",
        "key_ops": ["verify"],
        "alg": "EdDSA",
        "kid": BASE64_URL_SAFE_NO_PAD.encode(kid),
        "kty": "OKP",
        "crv": "Ed25519",
        "x": BASE64_URL_SAFE_NO_PAD.encode(raw),
    }]})
}

/// `pg_install/v15`: the real PostgreSQL 15 programs, except that `postgres --sync-safekeepers`
/// prints [`SYNCED_LSN`] (recording each run in `<dir>/sync-runs`), or hangs while
/// `<dir>/safekeepers-down` exists.
fn make_pg_distrib(distrib: &Path, dir: &Path) {
    let bin = distrib.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(distrib.join("lib")).unwrap();
    let real = test_postgres::pg_bin_dir();
    for tool in ["initdb", "pg_ctl", "pg_config", "pg_dump", "pg_isready"] {
        std::os::unix::fs::symlink(real.join(tool), bin.join(tool)).unwrap();
    }
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = --sync-safekeepers ]; then\n\
           echo \"$PGDATA\" >> {dir}/sync-runs\n\
           if [ -e {dir}/safekeepers-down ]; then echo $$ > {dir}/sync.pid; exec sleep 600; fi\n\
           echo {SYNCED_LSN}; exit 0\n\
         fi\n\
         exec {real} \"$@\"\n",
        dir = dir.display(),
        real = real.join("postgres").display(),
    );
    std::fs::write(bin.join("postgres"), script).unwrap();
    std::fs::set_permissions(
        bin.join("postgres"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
}

/// How `endpoint stop` stops (`EndpointTerminateMode`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum StopMode {
    Fast,
    Immediate,
    ImmediateTerminate,
}

struct Endpoint {
    ep: PathBuf,
    pg_bin_dir: PathBuf,
    private_key: PathBuf,
    jwks: Value,
    pg_port: u16,
    external_http_port: u16,
    internal_http_port: u16,
    pageserver: String,
    safekeeper: String,
    child: Option<Child>,
}

impl Endpoint {
    fn pgdata(&self) -> PathBuf {
        self.ep.join("pgdata")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.ep.join("compute.log")).unwrap_or_default()
    }

    /// `endpoint.rs:688-700`: the compute token `{compute_id, scope: null, aud: null}` or the
    /// admin token `{compute_id: null, scope: "compute_ctl:admin", aud: ["compute"]}`; EdDSA,
    /// no `exp`.
    fn jwt(&self, admin: bool) -> String {
        let claims = if admin {
            json!({"compute_id": null, "scope": "compute_ctl:admin", "aud": ["compute"]})
        } else {
            json!({"compute_id": ENDPOINT_ID, "scope": null, "aud": null})
        };
        sign(&self.private_key, &claims)
    }

    /// The `ComputeConfig` that `endpoint.rs:769-864` writes: every ComputeSpec field, nulls
    /// included, in declaration order.
    fn config(&self) -> Value {
        let postgresql_conf = std::fs::read_to_string(self.ep.join("postgresql.conf")).unwrap();
        json!({
            "spec": {
                "format_version": 1.0,
                "operation_uuid": null,
                "features": [],
                "swap_size_bytes": null,
                "disk_quota_bytes": null,
                "disable_lfc_resizing": null,
                "cluster": {
                    "cluster_id": null,
                    "name": null,
                    "state": null,
                    "roles": [],
                    "databases": [],
                    "postgresql_conf": postgresql_conf,
                    "settings": null
                },
                "delta_operations": null,
                // `neon_local.rs:1431`: true unless `--update-catalog`.
                "skip_pg_catalog_updates": true,
                "tenant_id": TENANT,
                "timeline_id": TIMELINE,
                "pageserver_connection_info": {
                    "shard_count": 0,
                    "stripe_size": null,
                    "shards": {"0000": {"pageservers": [{
                        "id": 1,
                        "libpq_url": format!("postgres://no_user@{}", self.pageserver),
                        "grpc_url": null
                    }]}},
                    "prefer_protocol": "libpq"
                },
                "pageserver_connstring": format!("postgres://no_user@{}", self.pageserver),
                "shard_stripe_size": null,
                "project_id": null,
                "branch_id": null,
                "endpoint_id": ENDPOINT_ID,
                "safekeepers_generation": null,
                // `endpoint.rs:671-685`: Primary only, 127.0.0.1:<port>.
                "safekeeper_connstrings": [self.safekeeper],
                "mode": "Primary",
                "storage_auth_token": null,
                "remote_extensions": null,
                "pgbouncer_settings": null,
                "local_proxy_config": null,
                "reconfigure_concurrency": 1,
                "drop_subscriptions_before_start": false,
                "audit_log_level": "Disabled",
                "logs_export_host": null,
                "endpoint_storage_addr": "127.0.0.1:9993",
                "endpoint_storage_token": sign(&self.private_key, &json!({
                    "tenant_id": TENANT, "timeline_id": TIMELINE, "endpoint_id": ENDPOINT_ID,
                    "exp": 4_102_444_800_u64
                })),
                "autoprewarm": false,
                "offload_lfc_interval_seconds": null,
                // `endpoint.rs:828`: "Only used in neon_local."
                "suspend_timeout_seconds": -1,
                "databricks_settings": null
            },
            // `endpoint.rs:214-217`.
            "compute_ctl_config": {"jwks": self.jwks, "tls": null}
        })
    }

    /// `endpoint start`: wipe pgdata, write config.json, spawn compute_ctl as
    /// `endpoint.rs:879-917` does, write its pid file, then poll `/status`.
    async fn start(&mut self, env: &[(&str, &str)]) -> Result<Value, String> {
        let config = self.config();
        self.start_with(&config, env).await
    }

    /// [`Endpoint::start`] with a given config.json.
    async fn start_with(&mut self, config: &Value, env: &[(&str, &str)]) -> Result<Value, String> {
        if self.pgdata().exists() {
            std::fs::remove_dir_all(self.pgdata()).unwrap();
        }
        let config_path = self.ep.join("config.json");
        std::fs::write(&config_path, serde_json::to_string_pretty(config).unwrap()).unwrap();
        let logfile = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.ep.join("compute.log"))
            .unwrap();
        test_postgres::chown_to_pg_user(&self.ep).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_compute_ctl"));
        cmd.args(["--external-http-port", &self.external_http_port.to_string()])
            .args(["--internal-http-port", &self.internal_http_port.to_string()])
            .arg("--pgdata")
            .arg(self.pgdata())
            .args([
                "--connstr",
                &format!(
                    "postgresql://cloud_admin@127.0.0.1:{}/postgres",
                    self.pg_port
                ),
            ])
            .arg("--config")
            .arg(&config_path)
            .arg("--pgbin")
            .arg(self.pg_bin_dir.join("postgres"))
            .args(["--compute-id", ENDPOINT_ID])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(logfile.try_clone().unwrap())
            .stdout(logfile);
        if let Some((uid, gid)) = test_postgres::unprivileged_user().unwrap() {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let child = cmd.spawn().unwrap();
        std::fs::write(self.ep.join("compute_ctl.pid"), child.id().to_string()).unwrap();
        self.child = Some(child);
        let outcome = self.poll_until_running(Duration::from_secs(90)).await;
        if outcome.is_err() {
            // `endpoint.rs:919-931`: the scopeguard SIGKILLs compute_ctl when the start fails.
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        outcome
    }

    /// `endpoint.rs:939-991`: every 100 ms; a connection or HTTP error is retried until the
    /// timeout, `init` too; `running` ends the wait; `failed` and every other status are an
    /// immediate failure. Returns the first and the last answer.
    async fn poll_until_running(&self, start_timeout: Duration) -> Result<Value, String> {
        let started = Instant::now();
        let mut first = None;
        loop {
            let answer = self.request("GET", "/status", None, Some(false)).await;
            match answer {
                Ok((200, body)) => {
                    let status: Value = serde_json::from_str(&body).unwrap();
                    first.get_or_insert_with(|| status.clone());
                    match status["status"].as_str().unwrap() {
                        "init" if started.elapsed() > start_timeout => {
                            return Err(format!("still in init after {start_timeout:?}"));
                        }
                        "init" => {}
                        "running" => {
                            return Ok(json!({"first": first, "last": status}));
                        }
                        "failed" => {
                            return Err(format!("compute startup failed: {}", status["error"]));
                        }
                        other => return Err(format!("unexpected compute status: {other}")),
                    }
                }
                Ok(_) | Err(_) if started.elapsed() > start_timeout => {
                    return Err(format!("timed out: {answer:?}"));
                }
                Ok(_) | Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An HTTP request to `0.0.0.0:<external port>` as neon_local sends them (`token`:
    /// `Some(false)` the compute token, `Some(true)` the admin token). Returns the status code
    /// and body.
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        token: Option<bool>,
    ) -> Result<(u16, String), String> {
        let (code, _, body) = self.request_full(method, path, body, token, &[]).await?;
        Ok((code, body))
    }

    async fn request_full(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        token: Option<bool>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, hyper::HeaderMap, String), String> {
        let mut all: Vec<(&str, String)> =
            headers.iter().map(|(n, v)| (*n, v.to_string())).collect();
        if let Some(admin) = token {
            all.push(("authorization", format!("Bearer {}", self.jwt(admin))));
        }
        let addr = format!("0.0.0.0:{}", self.external_http_port);
        harness::http_request(&addr, method, path, &body.unwrap_or_default(), &all).await
    }

    /// `endpoint reconfigure` (`endpoint.rs:1052-1122`): config.json's spec with the endpoint's
    /// current postgresql.conf, posted with the compute token.
    async fn reconfigure(&self) -> Result<(u16, String), String> {
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(self.ep.join("config.json")).unwrap())
                .unwrap();
        let mut spec = config["spec"].clone();
        spec["cluster"]["postgresql_conf"] =
            json!(std::fs::read_to_string(self.ep.join("postgresql.conf")).unwrap());
        let body = json!({"spec": spec, "compute_ctl_config": config["compute_ctl_config"]});
        self.request("POST", "/configure", Some(body.to_string()), Some(false))
            .await
    }

    /// `endpoint stop` (`endpoint.rs:1140-1180`): returns the LSN answered by `/terminate` and
    /// compute_ctl's exit status, or an error when it was still alive after 10 s.
    async fn stop(&mut self, mode: StopMode) -> Result<(Value, std::process::ExitStatus), String> {
        let lsn = match mode {
            StopMode::ImmediateTerminate => {
                let (_, body) = self
                    .request("POST", "/terminate?mode=immediate", None, Some(true))
                    .await?;
                serde_json::from_str::<Value>(&body).unwrap()["lsn"].clone()
            }
            StopMode::Fast | StopMode::Immediate => {
                self.pg_ctl_stop(if mode == StopMode::Fast {
                    "fast"
                } else {
                    "immediate"
                });
                Value::Null
            }
        };
        let child = self.child.as_mut().unwrap();
        let pid: i32 = std::fs::read_to_string(self.ep.join("compute_ctl.pid"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(pid as u32, child.id());
        if mode != StopMode::Fast {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
        }
        // `background_process.rs:221-251`: 100 ms polls for 10 s (we reap our own child).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Ok((lsn, status));
            }
            if Instant::now() > deadline {
                return Err(format!("compute_ctl with pid {pid} did not stop in 10s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `endpoint.rs:598-640`: `pg_ctl -D <pgdata> -w -m <mode> stop`, environment emptied but
    /// for the library path.
    fn pg_ctl_stop(&self, mode: &str) {
        let mut cmd = test_postgres::command_as_pg_user(self.pg_bin_dir.join("pg_ctl")).unwrap();
        cmd.arg("-D")
            .arg(self.pgdata())
            .args(["-w", "-m", mode, "stop"])
            .env_clear()
            .env("LD_LIBRARY_PATH", self.pg_bin_dir.join("../lib"))
            .env("DYLD_LIBRARY_PATH", self.pg_bin_dir.join("../lib"));
        run(&mut cmd);
    }

    async fn pg(&self) -> tokio_postgres::Client {
        harness::admin_client(self.pg_port, "postgres")
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log()))
    }

    /// No process of this compute is left (within the harness's grace for backends).
    async fn assert_nothing_left(&self) {
        let left = harness::processes_left(&self.pgdata().display().to_string()).await;
        assert!(left.is_empty(), "{left:?}\n{}", self.log());
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A postmaster left by a failed test: stop it so the temporary directory can go.
        if self.pgdata().join("postmaster.pid").exists() {
            let mut cmd =
                test_postgres::command_as_pg_user(self.pg_bin_dir.join("pg_ctl")).unwrap();
            let _ = cmd
                .arg("-D")
                .arg(self.pgdata())
                .args(["-w", "-m", "immediate", "stop"])
                .output();
        }
    }
}

fn sign(private_key: &Path, claims: &Value) -> String {
    let pem = std::fs::read(private_key).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        claims,
        &key,
    )
    .unwrap()
}

/// The storage stand-ins of `neon_simple_env` (no auth on storage): a pageserver serving a
/// real data directory, a safekeeper whose commit and flush LSNs agree.
async fn storage() -> (
    neon_test_servers::TestPageserver,
    neon_test_servers::TestSafekeeper,
) {
    let source = tokio::task::spawn_blocking(|| {
        neon_test_servers::fixture::filled_pgdata("neon-local-contract")
    })
    .await
    .unwrap()
    .unwrap();
    let pageserver =
        neon_test_servers::TestPageserver::start(neon_test_servers::PageserverConfig::new(
            source,
            TENANT.parse().unwrap(),
            TIMELINE.parse().unwrap(),
        ))
        .await
        .unwrap();
    let safekeeper =
        neon_test_servers::TestSafekeeper::start(neon_test_servers::SafekeeperConfig::new(
            TENANT.parse().unwrap(),
            TIMELINE.parse().unwrap(),
            SYNCED_LSN.parse().unwrap(),
        ))
        .await
        .unwrap();
    (pageserver, safekeeper)
}

const DROP_UNSUPPORTED: (&str, &str) = ("COMPUTE_CTL_DROP_UNSUPPORTED_SETTINGS", "true");

/// The storage stand-ins (kept alive with the endpoint), neon_local's repository and an
/// endpoint of it, started with the unsupported settings dropped.
async fn running_endpoint() -> (
    (
        neon_test_servers::TestPageserver,
        neon_test_servers::TestSafekeeper,
    ),
    NeonLocal,
    Endpoint,
) {
    let (pageserver, safekeeper) = storage().await;
    let neon = NeonLocal::init();
    let mut ep = neon.create_endpoint(&pageserver.addr().to_string(), &safekeeper.addr());
    ep.start(&[DROP_UNSUPPORTED])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ep.log()));
    ((pageserver, safekeeper), neon, ep)
}

fn sync_runs(neon: &NeonLocal) -> usize {
    std::fs::read_to_string(neon.dir.path().join("sync-runs"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Start, reconfigure and `endpoint stop` (fast) of a Primary, as neon_local does them.
#[tokio::test(flavor = "multi_thread")]
async fn start_reconfigure_and_stop_fast() {
    let (pageserver, safekeeper) = storage().await;
    let neon = NeonLocal::init();
    let mut ep = neon.create_endpoint(&pageserver.addr().to_string(), &safekeeper.addr());
    let polled = ep
        .start(&[DROP_UNSUPPORTED])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ep.log()));

    // `endpoint.rs:946-978`: the very first answer already had to be `init` or `running`
    // (anything else ends the poll); it names the tenant and timeline of the spec.
    let first = &polled["first"];
    assert!(
        ["init", "running"].contains(&first["status"].as_str().unwrap()),
        "{first}"
    );
    assert_eq!(first["tenant"], TENANT);
    assert_eq!(first["timeline"], TIMELINE);
    // The settings vanilla PostgreSQL lacks were dropped, said in /status and the log.
    let dropped: Vec<&str> = polled["last"]["dropped_settings"]
        .as_array()
        .unwrap_or_else(|| panic!("{polled}"))
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for name in [
        "shared_preload_libraries",
        "max_replication_write_lag",
        "max_replication_flush_lag",
        "synchronous_standby_names",
    ] {
        assert!(dropped.contains(&name), "{name} not in {dropped:?}");
        assert!(ep.log().contains(name), "{name} not logged:\n{}", ep.log());
    }

    // The basebackup's data is served; `skip_pg_catalog_updates` (`neon_local.rs:1431`) left
    // the catalog as it was: no health-check table.
    let pg = ep.pg().await;
    let rows: i64 = pg
        .query_one("SELECT count(*) FROM fixture", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1000);
    let health: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'health_check'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        health, 0,
        "skip_pg_catalog_updates must not create public.health_check"
    );
    // Neon's own settings reach postgres (as placeholders on vanilla).
    let row = pg
        .query_one("SELECT current_setting('neon.tenant_id')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), TENANT);

    // `/metrics` is unauthenticated and `compute_ctl_up` is one sample labelled with the
    // current status (upstream `compute.rs:229-239`, `test_compute_reconfigure.py:74-89`).
    let (code, metrics) = ep.request("GET", "/metrics", None, None).await.unwrap();
    assert_eq!(code, 200);
    let up: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("compute_ctl_up{"))
        .collect();
    assert_eq!(
        up,
        [r#"compute_ctl_up{build_tag="latest",status="running"} 1"#],
        "{metrics}"
    );
    // `x-request-id` is kept when sent and made up when not (upstream
    // `http/middleware/request_id.rs:9-16`).
    let (_, headers, _) = ep
        .request_full(
            "GET",
            "/status",
            None,
            Some(false),
            &[("x-request-id", "abc-1")],
        )
        .await
        .unwrap();
    assert_eq!(headers["x-request-id"], "abc-1");
    let (_, headers, _) = ep
        .request_full("GET", "/status", None, Some(false), &[])
        .await
        .unwrap();
    assert_eq!(headers["x-request-id"].len(), 36, "{headers:?}");

    // `endpoint reconfigure` with a changed endpoint postgresql.conf.
    let conf = std::fs::read_to_string(ep.ep.join("postgresql.conf")).unwrap();
    std::fs::write(
        ep.ep.join("postgresql.conf"),
        format!("{conf}work_mem=7MB\n"),
    )
    .unwrap();
    let (code, body) = ep.reconfigure().await.unwrap();
    assert_eq!(code, 200, "{body}");
    let work_mem: String = pg.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_eq!(work_mem, "7MB");
    assert!(
        ep.log().contains("INFO request{method=POST uri=/configure"),
        "{}",
        ep.log()
    );

    // `endpoint stop` (fast): `pg_ctl stop -m fast`, no signal to compute_ctl, which must exit
    // within 10 s on its own — after the shutdown sync-safekeepers, with code 0, as upstream
    // (`compute.rs:1128-1165`, parity reference §1.7).
    let runs_before = sync_runs(&neon);
    let (lsn, status) = ep
        .stop(StopMode::Fast)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ep.log()));
    assert_eq!(lsn, Value::Null);
    assert_eq!(status.code(), Some(0), "{}", ep.log());
    assert_eq!(
        sync_runs(&neon),
        runs_before + 1,
        "the shutdown sync ran once"
    );
    ep.assert_nothing_left().await;
}

/// `endpoint stop --mode immediate` while the safekeepers are down: `pg_ctl stop -m
/// immediate`, then SIGTERM; compute_ctl must not wait on the safekeepers (`endpoint.rs:
/// 1164-1171` sends the signal for exactly that reason) and exits within 10 s.
#[tokio::test(flavor = "multi_thread")]
async fn stop_immediate_with_safekeepers_down_exits_in_time() {
    let (_storage, neon, mut ep) = running_endpoint().await;
    std::fs::write(neon.dir.path().join("safekeepers-down"), "").unwrap();
    let (lsn, status) = ep
        .stop(StopMode::Immediate)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ep.log()));
    assert_eq!(lsn, Value::Null);
    assert!(status.code().is_some(), "{status:?}");
    // neon_local sends SIGTERM as soon as `pg_ctl stop` returns, so compute_ctl may see the
    // signal before it noticed postgres' exit (then no shutdown sync runs, as upstream).
    // When the hanging sync did start, it was killed with compute_ctl; in any case nothing of
    // the compute remains.
    if let Ok(pid) = std::fs::read_to_string(neon.dir.path().join("sync.pid")) {
        let sync_pid: i32 = pid.trim().parse().unwrap();
        assert!(
            !Path::new(&format!("/proc/{sync_pid}")).exists(),
            "sync-safekeepers {sync_pid} outlived compute_ctl"
        );
    }
    ep.assert_nothing_left().await;
}

/// `endpoint stop --mode immediate-terminate`: `/terminate?mode=immediate` with the admin
/// token answers the shutdown sync's LSN; then SIGTERM and the 10 s wait.
#[tokio::test(flavor = "multi_thread")]
async fn immediate_terminate_answers_the_lsn() {
    let (_storage, neon, mut ep) = running_endpoint().await;

    // Bad tokens first: upstream's status codes and bodies, nothing changed.
    let wrong_key = {
        let other = neon.dir.path().join("other.pem");
        run(Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&other));
        sign(&other, &json!({"compute_id": ENDPOINT_ID}))
    };
    let admin_without_audience = sign(&ep.private_key, &json!({"scope": "compute_ctl:admin"}));
    let expired = sign(
        &ep.private_key,
        &json!({"compute_id": ENDPOINT_ID, "exp": 1000}),
    );
    let other_compute = sign(&ep.private_key, &json!({"compute_id": "ep-other"}));
    for (token, code, message) in [
        (
            wrong_key.as_str(),
            401,
            "failed to verify authorization token",
        ),
        (
            admin_without_audience.as_str(),
            401,
            "missing audience in authorization token claims",
        ),
        (
            expired.as_str(),
            401,
            "failed to verify authorization token",
        ),
        (
            other_compute.as_str(),
            403,
            "invalid compute ID in authorization token claims",
        ),
        ("not-a-jwt", 400, "invalid authorization token"),
    ] {
        let (got, _, body) = ep
            .request_full(
                "POST",
                "/terminate?mode=immediate",
                None,
                None,
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await
            .unwrap();
        assert_eq!(
            (got, body.as_str()),
            (code, json!({"error": message}).to_string().as_str())
        );
    }
    // A compute token may not be refused for its scope, but /terminate is still 200 only for
    // a valid token: nothing above stopped the compute.
    let (code, status) = ep
        .request("GET", "/status", None, Some(false))
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(status.contains(r#""status":"running""#), "{status}");

    let (lsn, status) = ep
        .stop(StopMode::ImmediateTerminate)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ep.log()));
    assert_eq!(lsn, SYNCED_LSN);
    assert!(status.code().is_some(), "{status:?}");
    ep.assert_nothing_left().await;
}

/// Without the flag, vanilla PostgreSQL refuses neon_local's settings: the poll ends at
/// `failed` with the postmaster's reason (`endpoint.rs:958-968`), PGDATA holds no running
/// server and compute_ctl is gone (neon_local SIGKILLs it).
#[tokio::test(flavor = "multi_thread")]
async fn vanilla_postgres_without_the_flag_fails_with_the_reason() {
    let (pageserver, safekeeper) = storage().await;
    let neon = NeonLocal::init();
    let mut ep = neon.create_endpoint(&pageserver.addr().to_string(), &safekeeper.addr());
    let err = ep.start(&[]).await.unwrap_err();
    assert!(err.starts_with("compute startup failed:"), "{err}");
    assert!(err.contains("neon"), "the missing library is named: {err}");
    ep.assert_nothing_left().await;
}

/// A config.json of the wrong shape (`cluster` missing, a role name that is a number): the
/// start fails with the located reasons, before anything is started or written into pgdata.
#[tokio::test(flavor = "multi_thread")]
async fn config_of_the_wrong_shape_changes_nothing() {
    let (pageserver, safekeeper) = storage().await;
    let neon = NeonLocal::init();
    let mut ep = neon.create_endpoint(&pageserver.addr().to_string(), &safekeeper.addr());
    let mut config = ep.config();
    config["spec"]["cluster"]["roles"] = json!([{"name": 5}]);
    config["spec"]["tenant_id"] = json!("not-hex");
    let err = ep.start_with(&config, &[]).await.unwrap_err();
    assert!(err.starts_with("compute startup failed:"), "{err}");
    assert!(err.contains("/spec/cluster/roles/0/name"), "{err}");
    assert!(err.contains("/spec/tenant_id"), "{err}");
    assert!(
        !ep.pgdata().exists(),
        "nothing is written before the spec is accepted"
    );
    assert!(
        pageserver.records().is_empty(),
        "the pageserver was never asked"
    );
}
