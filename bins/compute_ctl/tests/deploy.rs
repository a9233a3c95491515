//! The operator's side of compute_ctl: the deployment files in `deploy/` agree with the code
//! (their command lines parse with compute_ctl's own CLI, their user, stop signal, probes and
//! stop timeouts match its defaults and bounds), README's quick start works as root and as an
//! unprivileged user, and README's table of signals and exit codes is what the binary does.
//! The validators themselves (hadolint, `systemd-analyze verify`, kubernetes-validate) run in
//! `deploy/check`, from `.ci/run`.

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use compute_ctl::cli::{Cli, Options};
use harness::{Args, Ctl, eventually, http_request, processes_left, repo_file};
use nix::sys::signal::Signal;

/// compute_ctl's options for `args` (after the program name), as its `main` would get them.
fn options(args: &[String]) -> Options {
    let argv = std::iter::once("compute_ctl".to_owned()).chain(args.iter().cloned());
    Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .into_options()
        .unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
}

/// The default port of the external HTTP API, where the probes are.
fn default_external_port() -> u16 {
    options(&[
        "-D".into(),
        "/x".into(),
        "-C".into(),
        "postgresql://cloud_admin@127.0.0.1:1/postgres".into(),
        "-b".into(),
        "/usr/lib/postgresql/15/bin/postgres".into(),
    ])
    .external_http_port
}

/// `const NAME: Duration = Duration::from_secs(N);` in compute_ctl's supervisor.
fn supervisor_seconds(name: &str) -> u64 {
    let source = std::fs::read_to_string(repo_file("bins/compute_ctl/src/supervisor.rs")).unwrap();
    let prefix = format!("const {name}: Duration = Duration::from_secs(");
    let line = source
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix}…) in supervisor.rs"));
    line.trim_end_matches(");").parse().unwrap()
}

/// The longest a single SIGTERM keeps compute_ctl up: an interrupted start is given 10 s to
/// hand over its postmaster (supervisor `run_compute`), then the fast and immediate stop
/// limits, then 2 s for the runtime's shutdown (`main`).
fn stop_bound() -> Duration {
    Duration::from_secs(
        10 + supervisor_seconds("FAST_STOP_LIMIT") + supervisor_seconds("IMMEDIATE_STOP_LIMIT") + 2,
    )
}

/// Room a grace period leaves above [`stop_bound`] (a loaded machine, a slow checkpoint).
const GRACE_MARGIN: Duration = Duration::from_secs(5);

/// One Dockerfile instruction: keyword (upper case) and its text, continuation lines joined
/// and comment lines left out, as Docker reads them.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

fn json_args(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not a JSON array: {text}: {e}"))
}

#[test]
fn dockerfile_agrees_with_the_code() {
    let text = std::fs::read_to_string(repo_file("deploy/Dockerfile")).unwrap();
    let all = dockerfile_instructions(&text);
    // The runtime stage: everything after the last FROM.
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").unwrap();
    assert_eq!(all[last_from].1, "debian:bookworm-slim");
    let builder: Vec<&String> = all[..last_from]
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, v)| v)
        .collect();
    assert!(
        builder
            .iter()
            .any(|r| r.contains("cargo build --release --locked -p compute_ctl")),
        "{builder:?}"
    );
    let runtime: BTreeMap<&str, &str> = all[last_from..]
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    // Non-root, by number, and that number is the postgres user the image creates.
    assert_eq!(runtime["USER"], "999:999");
    let runs: Vec<&str> = all[last_from..]
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        runs.iter()
            .any(|r| r.contains("groupadd --system --gid 999 postgres")
                && r.contains("useradd --system --uid 999 --gid postgres")),
        "{runs:?}"
    );
    assert!(runs.iter().any(|r| r.contains("postgresql-15")), "{runs:?}");

    // SIGTERM is compute_ctl's fast stop.
    assert_eq!(runtime["STOPSIGNAL"], "SIGTERM");

    // The health check asks /readyz on the default external port.
    let port = default_external_port();
    let (flags, command) = runtime["HEALTHCHECK"].split_once("CMD ").unwrap();
    assert!(flags.contains("--start-period="), "{flags}");
    let command = json_args(command);
    assert_eq!(
        command.last().unwrap(),
        &format!("http://127.0.0.1:{port}/readyz")
    );
    let exposed: Vec<&str> = runtime["EXPOSE"].split_whitespace().collect();
    assert!(exposed.contains(&port.to_string().as_str()), "{exposed:?}");

    // ENTRYPOINT + CMD is a valid compute_ctl command line, with Postgres' port exposed.
    let mut argv = json_args(runtime["ENTRYPOINT"]);
    assert_eq!(argv.remove(0), "/usr/local/bin/compute_ctl");
    argv.extend(json_args(runtime["CMD"]));
    let opts = options(&argv);
    assert_eq!(opts.pgdata, Path::new("/var/db/postgres/compute"));
    assert_eq!(opts.pgbin, Path::new("/usr/lib/postgresql/15/bin/postgres"));
    let pg_port = opts.pg_config.get_ports()[0].to_string();
    assert!(exposed.contains(&pg_port.as_str()), "{exposed:?}");
    assert_eq!(opts.external_http_port, port);
}

/// `key=value` lines of a unit file; a key given twice keeps its last value.
fn unit_keys(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn systemd_unit_agrees_with_the_code() {
    let text = std::fs::read_to_string(repo_file("deploy/compute_ctl.service")).unwrap();
    let unit = unit_keys(&text);
    assert_eq!(unit["User"], "postgres");
    assert_eq!(unit["Type"], "exec");
    // SIGTERM to compute_ctl only; it stops postgres in order.
    assert_eq!(unit["KillMode"], "mixed");
    assert_eq!(unit["KillSignal"], "SIGTERM");
    let timeout = Duration::from_secs(unit["TimeoutStopSec"].parse().unwrap());
    assert!(
        timeout >= stop_bound() + GRACE_MARGIN,
        "TimeoutStopSec {timeout:?}, compute_ctl's bound {:?}",
        stop_bound()
    );
    assert_eq!(unit["Restart"], "on-failure");
    // A usage error (exit 2) is not retried: the same command line would fail again.
    assert_eq!(unit["RestartPreventExitStatus"], "2");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
    ] {
        assert_eq!(unit[key], value, "{key}");
    }

    let argv: Vec<String> = unit["ExecStart"]
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(argv[0], "/usr/local/bin/compute_ctl");
    let opts = options(&argv[1..]);
    // PGDATA is below the state directory, the only writable place besides the private /tmp
    // (ProtectSystem=strict), where postgres's socket goes by default.
    let state = Path::new("/var/lib").join(&unit["StateDirectory"]);
    assert!(
        opts.pgdata.starts_with(&state) && opts.pgdata != state,
        "{} not below {}",
        opts.pgdata.display(),
        state.display()
    );
    assert_eq!(opts.pgbin, Path::new("/usr/lib/postgresql/15/bin/postgres"));
}

fn yaml(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(repo_file(&format!("deploy/kubernetes/{name}"))).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The entries of a list of objects with a `name` (env, ports, mounts), by name.
fn by_name(list: &serde_json::Value) -> BTreeMap<&str, &serde_json::Value> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["name"].as_str().unwrap(), entry))
        .collect()
}

/// Kubernetes' `$(NAME)` expansion of container arguments from the container's env.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    env.iter()
        .fold(arg.to_owned(), |a, (k, v)| a.replace(&format!("$({k})"), v))
}

#[test]
fn kubernetes_manifests_agree_with_the_code_and_the_image() {
    let set = yaml("statefulset.yaml");
    assert_eq!(set["kind"], "StatefulSet");
    assert_eq!(set["spec"]["replicas"], 1);
    let pod = &set["spec"]["template"]["spec"];
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    assert!(
        grace >= stop_bound() + GRACE_MARGIN,
        "grace {grace:?}, compute_ctl's bound {:?}",
        stop_bound()
    );
    // The image's user (deploy/Dockerfile: USER 999:999).
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 999);
    assert_eq!(security["runAsGroup"], 999);

    let container = &pod["containers"][0];
    let env: BTreeMap<String, String> = by_name(&container["env"])
        .into_iter()
        .map(|(name, e)| (name.to_owned(), e["value"].as_str().unwrap().to_owned()))
        .collect();
    // The image's ENTRYPOINT, then these arguments: a valid command line.
    let mut argv: Vec<String> = vec![
        "--pgdata".into(),
        "/var/db/postgres/compute".into(),
        "--pgbin".into(),
        "/usr/lib/postgresql/15/bin/postgres".into(),
    ];
    argv.extend(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| expand(a.as_str().unwrap(), &env)),
    );
    assert!(!argv.iter().any(|a| a.contains("$(")), "{argv:?}");
    let opts = options(&argv);

    let ports = by_name(&container["ports"]);
    let port = |name: &str| ports[name]["containerPort"].as_u64().unwrap();
    assert_eq!(port("http"), u64::from(opts.external_http_port));
    assert_eq!(port("postgres"), u64::from(opts.pg_config.get_ports()[0]));
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "http", "{probe}");
        let (readme_path, settings) = readme_probe_row(probe);
        assert_eq!(readme_path, path, "README's {probe} row");
        let manifest: Vec<(String, u64)> = container[probe]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(key, value)| Some((key.clone(), value.as_u64()?)))
            .collect();
        let sorted = |mut v: Vec<(String, u64)>| {
            v.sort();
            v
        };
        assert_eq!(
            sorted(settings),
            sorted(manifest),
            "README's {probe} row and the manifest's numbers"
        );
    }
    assert!(
        container["lifecycle"].is_null(),
        "no preStop: SIGTERM is the stop"
    );

    // PGDATA lies below the emptyDir (compute_ctl removes and recreates it), the spec file in
    // the Secret's mount, and /tmp (the socket) is writable on the read-only root.
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let mounts: BTreeMap<&str, &str> = by_name(&container["volumeMounts"])
        .into_iter()
        .map(|(name, m)| (name, m["mountPath"].as_str().unwrap()))
        .collect();
    assert!(
        opts.pgdata.starts_with(mounts["pgdata"]) && opts.pgdata != Path::new(mounts["pgdata"])
    );
    assert_eq!(mounts["tmp"], "/tmp");
    let spec_path = match &opts.spec_source {
        compute_ctl::cli::SpecSource::File(path) => path.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(spec_path.parent().unwrap(), Path::new(mounts["spec"]));
    let volumes = pod["volumes"].as_array().unwrap();
    let secret_name =
        volumes.iter().find(|v| v["name"] == "spec").unwrap()["secret"]["secretName"].clone();

    // The Secret holds that file, a spec compute_ctl accepts.
    let secret = yaml("secret.yaml");
    assert_eq!(secret["metadata"]["name"], secret_name);
    let file = spec_path.file_name().unwrap().to_str().unwrap();
    let spec = secret["stringData"][file].as_str().unwrap();
    compute_spec::ValidatedSpec::from_json(spec).unwrap();

    let service = yaml("service.yaml");
    assert_eq!(service["metadata"]["name"], set["spec"]["serviceName"]);
    assert_eq!(
        service["spec"]["selector"],
        set["spec"]["template"]["metadata"]["labels"]
    );
}

/// A compute_ctl stopped when a failed assertion unwinds past it: SIGTERM (so that it stops
/// its postgres), SIGKILL 15 s later.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// README's Kubernetes probe table row for `probe`: its path and its `key: number` settings.
fn readme_probe_row(probe: &str) -> (String, Vec<(String, u64)>) {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let start = format!("| `{probe}` |");
    let row = readme
        .lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("README has no {probe} row"));
    let cells: Vec<&str> = row.split(" | ").collect();
    let settings = cells[2]
        .split(", ")
        .map(|s| {
            let (key, value) = s.trim_matches('`').split_once(": ").unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect();
    (cells[1].trim_matches('`').to_owned(), settings)
}

/// README's quick start command: the arguments after `cargo run … --`.
fn readme_quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("cargo run --release -p compute_ctl -- "))
        .expect("README's quick start command");
    let (_, args) = line.split_once(" -- ").unwrap();
    args.split_whitespace().map(str::to_owned).collect()
}

/// The value after `flag` in `argv`.
fn flag_value<'a>(argv: &'a [String], flag: &str) -> &'a str {
    let at = argv.iter().position(|a| a == flag).unwrap();
    &argv[at + 1]
}

/// A free port whose socket lock file is not in `/tmp`: a postmaster killed by another test
/// leaves `/tmp/.s.PGSQL.PORT.lock` behind, owned by the postgres user, which an
/// unprivileged user's postgres may not remove (sticky `/tmp`) and so cannot listen on PORT.
fn port_without_a_socket_lock_in_tmp() -> u16 {
    (0..1000)
        .map(|_| test_postgres::free_port())
        .find(|port| !Path::new(&format!("/tmp/.s.PGSQL.{port}.lock")).exists())
        .expect("a free port without a socket lock in /tmp within 1,000 tries")
}

/// Runs README's quick start (ports and data directory swapped for free ones; the binary
/// and the example spec copied to a scratch directory as README's non-root recipe does) as
/// `user` (`None`: root, as the test runs), and checks what README says: `running`, the
/// example's roles over `psql`'s connection, a clean Ctrl-C. With `via_socket`, `-C` names a
/// Unix socket directory in the scratch directory instead of README's TCP address. Returns
/// the socket directory postgres used.
async fn quick_start_as(user: Option<&str>, via_socket: bool) -> String {
    let scratch = tempfile::Builder::new()
        .prefix("compute-ctl-quick-start-")
        .tempdir()
        .unwrap();
    let dir = scratch.path();
    let binary = dir.join("compute_ctl");
    std::fs::copy(env!("CARGO_BIN_EXE_compute_ctl"), &binary).unwrap();
    let mut argv = readme_quick_start();
    let spec = flag_value(&argv, "-S").to_owned();
    std::fs::copy(repo_file(&spec), dir.join("standalone.json")).unwrap();
    let account = user.map(|name| nix::unistd::User::from_name(name).unwrap().unwrap());
    let owner = account.as_ref().map(|u| (u.uid, u.gid));
    let give = |path: &Path| match owner {
        Some((uid, gid)) => nix::unistd::chown(path, Some(uid), Some(gid)).unwrap(),
        None => test_postgres::chown_to_pg_user(path).unwrap(),
    };
    give(dir);

    let pg_port = port_without_a_socket_lock_in_tmp();
    let http_port = test_postgres::free_port();
    let pgdata = dir.join("compute");
    let readme_connstr = flag_value(&argv, "-C").to_owned();
    let socket_dir = dir.join("sock");
    std::fs::create_dir(&socket_dir).unwrap();
    give(&socket_dir);
    for arg in &mut argv {
        if *arg == readme_connstr && via_socket {
            let dir = socket_dir.display();
            *arg = format!("host={dir} port={pg_port} user=cloud_admin dbname=postgres");
        } else if *arg == readme_connstr {
            *arg = arg.replace(":55432/", &format!(":{pg_port}/"));
        } else if *arg == spec {
            *arg = "standalone.json".into();
        } else if *arg == "/tmp/compute" {
            *arg = pgdata.display().to_string();
        }
    }
    argv.extend([
        "--external-http-port".into(),
        http_port.to_string(),
        "--internal-http-port".into(),
        test_postgres::free_port().to_string(),
    ]);
    let log = std::fs::File::create(dir.join("compute_ctl.log")).unwrap();
    let mut cmd = Command::new(&binary);
    cmd.args(&argv)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some((uid, gid)) = owner {
        // std drops root's supplementary groups when it switches the user.
        cmd.uid(uid.as_raw()).gid(gid.as_raw()).env("HOME", dir);
    }
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let child = &mut child.0;
    let log = || std::fs::read_to_string(dir.join("compute_ctl.log")).unwrap_or_default();

    let addr = format!("127.0.0.1:{http_port}");
    let status = eventually(Duration::from_secs(90), || async {
        let (_, _, body) = http_request(&addr, "GET", "/status", "", &[]).await.ok()?;
        let status: serde_json::Value = serde_json::from_str(&body).ok()?;
        matches!(status["status"].as_str(), Some("running" | "failed")).then_some(status)
    })
    .await;
    assert_eq!(
        status.as_ref().map(|s| s["status"].clone()),
        Some("running".into()),
        "{status:?}\n{}",
        log()
    );

    // compute_ctl's own connection (through the socket, with `via_socket`) works.
    let (code, _, body) = http_request(&addr, "POST", "/check_writability", "", &[])
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "true"), "{}", log());

    // README: `psql -h 127.0.0.1 -p 55432 -U cloud_admin -d postgres -c '\du'`.
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    assert!(
        readme.contains("psql -h 127.0.0.1 -p 55432 -U cloud_admin -d postgres -c '\\du'"),
        "README's psql line"
    );
    let client = harness::admin_client(pg_port, "postgres").await.unwrap();
    let roles: Vec<(String, bool, bool, Vec<String>)> = client
        .query(
            "SELECT r.rolname::text, r.rolcreaterole, r.rolcreatedb, \
                    ARRAY(SELECT m.rolname::text FROM pg_auth_members a \
                          JOIN pg_roles m ON m.oid = a.roleid WHERE a.member = r.oid) \
             FROM pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let names: Vec<&str> = roles.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["alice", "cloud_admin", "neon_superuser"]);
    // Every spec role joins neon_superuser, as upstream: README says so.
    assert_eq!(roles[0].3, ["neon_superuser"]);
    let socket_dir: String = client
        .query_one("SHOW unix_socket_directories", &[])
        .await
        .unwrap()
        .get(0);
    drop(client);
    let socket = Path::new(&socket_dir).join(format!(".s.PGSQL.{pg_port}"));
    assert!(socket.exists(), "no {}", socket.display());

    // Ctrl-C.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "no exit 30 s after SIGINT\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0), "{}", log());
    assert!(
        processes_left(&pgdata.display().to_string())
            .await
            .is_empty()
    );
    assert!(!socket.exists(), "{} left", socket.display());
    socket_dir
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_quick_start_works_as_root() {
    assert_eq!(quick_start_as(None, false).await, "/tmp");
}

/// A `-C` through a Unix socket directory: postgres puts its socket there, and compute_ctl's
/// own sessions go through it.
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_connstr_puts_the_socket_where_it_looks() {
    let used = quick_start_as(Some("nobody"), true).await;
    assert!(used.ends_with("/sock"), "{used}");
}

/// `nobody` cannot write Debian's `/var/run/postgresql` (which only Debian's `postgres` user
/// may): before the socket's default moved to `/tmp`, postgres failed here with `could not
/// create lock file "/var/run/postgresql/.s.PGSQL.N.lock": Permission denied`.
#[tokio::test(flavor = "multi_thread")]
async fn readme_quick_start_works_as_an_unprivileged_user() {
    assert_eq!(quick_start_as(Some("nobody"), false).await, "/tmp");
}

/// README's "Signals and exit codes": a command line compute_ctl refuses exits 2.
#[test]
fn usage_errors_exit_2() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_compute_ctl"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let connstr = "postgresql://cloud_admin@127.0.0.1:1/postgres";
    for args in [
        &["-D", "/x", "-C", connstr, "--no-such-flag"][..],
        &["-C", connstr],
        &["-D", "/x", "-C", connstr, "--lakebase-mode", "true"],
        &["-D", "/x", "-C", "postgresql://127.0.0.1:1/postgres"],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// README's "Signals and exit codes": SIGQUIT is an immediate stop (postgres gets SIGQUIT at
/// once, not SIGINT first), and compute_ctl exits with postgres's code.
#[tokio::test(flavor = "multi_thread")]
async fn sigquit_is_an_immediate_stop() {
    let example = repo_file("specs/examples/standalone.json");
    let mut ctl = Ctl::start(Args {
        extra: vec!["-S".into(), example.display().to_string()],
        ..Args::default()
    });
    ctl.wait_status("running").await;
    nix::sys::signal::kill(ctl.pid(), Signal::SIGQUIT).unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(30)).await;
    let log = ctl.log();
    assert!(log.contains("mode=Immediate signals=1"), "{log}");
    assert!(log.contains("signal=SIGQUIT"), "{log}");
    assert!(!log.contains("signal=SIGINT"), "{log}");
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(
        processes_left(&ctl.pgdata.display().to_string())
            .await
            .is_empty()
    );
}
