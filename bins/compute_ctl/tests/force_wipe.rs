//! End-to-end tests of the data-directory guard: compute_ctl, even with `--force-wipe`, refuses
//! to wipe system directories and home directories (through symlinks either way), and without
//! it a planted `PG_VERSION` does not make a directory wipeable.
//!
//! System paths are never at risk: compute_ctl runs only inside a private mount namespace
//! (`unshare --mount --propagation private`) in which each system path is a bind mount of a
//! scratch directory, and only once the shell has seen the scratch's marker file at that path.
//! What is compared afterwards is the scratch copy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A file every scratch directory holds; the namespace's shell checks that it shows through
/// the bind mount before compute_ctl may run.
const MARKER: &str = ".guard-scratch-marker";

/// A bind mount inside the namespace: `scratch` (a directory holding [`MARKER`], or a file
/// holding the text `MARKER`) over `target`.
struct Bind<'a> {
    scratch: &'a Path,
    target: &'a str,
}

/// Every file below `dir` with its contents (symlinks as their targets).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            let rel = path.strip_prefix(dir).unwrap().to_owned();
            if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, format!("-> {}", target.display()));
            } else if kind.is_dir() {
                out.insert(rel, "dir".into());
                todo.push(path);
            } else {
                out.insert(rel, std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// A scratch directory with `files` (relative path, contents) and the marker.
fn scratch(parent: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(MARKER), "scratch").unwrap();
    for (file, contents) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    dir
}

/// Runs compute_ctl with `-D pgdata` (and `--force-wipe` when `force`) inside a private mount
/// namespace with `binds` in place, and `env`; returns its exit code and output. It fails at
/// the wipe, so it ends on its own after the linger; it is killed after 60 s.
fn compute_ctl_in_namespace(
    binds: &[Bind<'_>],
    pgdata: &Path,
    force: bool,
    env: &[(&str, &Path)],
    log: &Path,
) -> (Option<i32>, String) {
    let mut script = String::from("set -e\n");
    for (i, _) in binds.iter().enumerate() {
        script.push_str(&format!(
            "mount --bind \"$SCRATCH{i}\" \"$TARGET{i}\"\n\
             [ -e \"$TARGET{i}/{MARKER}\" ] || grep -q '{MARKER}' \"$TARGET{i}\" || exit 97\n"
        ));
    }
    script.push_str("exec \"$@\"\n");
    let spec = serde_json::json!({"format_version": 1.0, "cluster": {"roles": [], "databases": [],
        "settings": [{"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"}]}});
    let pg_port = test_postgres::free_port();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .arg(env!("CARGO_BIN_EXE_compute_ctl"))
    .arg("-D")
    .arg(pgdata)
    .arg("-C")
    .arg(format!(
        "postgresql://cloud_admin@127.0.0.1:{pg_port}/postgres"
    ))
    .arg("-b")
    .arg(test_postgres::pg_bin_dir().join("postgres"))
    .arg("-s")
    .arg(spec.to_string())
    .args(["--http-bind", "127.0.0.1", "--allow-unauthenticated"])
    .args(["--vm-informant", "/nonexistent/vm-informant"])
    .args(["--linger", "100ms"])
    .arg("--external-http-port")
    .arg(test_postgres::free_port().to_string())
    .arg("--internal-http-port")
    .arg(test_postgres::free_port().to_string())
    .args(force.then_some("--force-wipe"));
    for (i, bind) in binds.iter().enumerate() {
        cmd.env(format!("SCRATCH{i}"), bind.scratch)
            .env(format!("TARGET{i}"), bind.target);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = std::fs::File::create(log).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    (status.and_then(|s| s.code()), text)
}

/// Runs one refusal case: compute_ctl exits 1 naming `want`, and the scratch copies are
/// byte for byte what they were.
fn refused(
    case: &str,
    binds: &[Bind<'_>],
    pgdata: &Path,
    force: bool,
    env: &[(&str, &Path)],
    scratches: &[&Path],
    want: &str,
) {
    let before: Vec<_> = scratches.iter().map(|s| snapshot(s)).collect();
    let log = std::env::temp_dir().join(format!(
        "force-wipe-{}-{}.log",
        std::process::id(),
        case.replace(' ', "-")
    ));
    let (code, output) = compute_ctl_in_namespace(binds, pgdata, force, env, &log);
    let _ = std::fs::remove_file(&log);
    assert_ne!(
        code,
        Some(97),
        "{case}: a bind mount did not show its scratch"
    );
    assert_eq!(code, Some(1), "{case}: {output}");
    assert!(output.contains(want), "{case}: no {want:?} in\n{output}");
    let after: Vec<_> = scratches.iter().map(|s| snapshot(s)).collect();
    assert_eq!(before, after, "{case}: scratch content changed");
}

#[test]
fn system_directories_are_refused_even_with_force_wipe() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = scratch(
        tmp.path(),
        "usr-local-lib",
        &[
            ("libfoo.so.1", "\x7fELF"),
            ("python3/dist-packages/x.py", "print()"),
            ("PG_VERSION", "15\n"),
        ],
    );
    let ssh = scratch(
        tmp.path(),
        "etc-ssh",
        &[
            ("sshd_config", "PermitRootLogin no\n"),
            ("ssh_host_ed25519_key", "secret"),
        ],
    );
    let log = scratch(
        tmp.path(),
        "var-log",
        &[("PG_VERSION", "15\n"), ("syslog", "Dec  3 boot\n")],
    );
    let binds = [
        Bind {
            scratch: &lib,
            target: "/usr/local/lib",
        },
        Bind {
            scratch: &ssh,
            target: "/etc/ssh",
        },
        Bind {
            scratch: &log,
            target: "/var/log",
        },
    ];
    let all = [lib.as_path(), ssh.as_path(), log.as_path()];
    refused(
        "usr-local-lib",
        &binds,
        Path::new("/usr/local/lib"),
        true,
        &[],
        &all,
        "refusing to wipe /usr/local/lib: it is system content (under /usr)",
    );
    refused(
        "etc-ssh",
        &binds,
        Path::new("/etc/ssh"),
        true,
        &[],
        &all,
        "refusing to wipe /etc/ssh: it is system content (under /etc)",
    );
    for force in [false, true] {
        refused(
            "var-log",
            &binds,
            Path::new("/var/log"),
            force,
            &[],
            &all,
            "refusing to wipe /var/log: it is a system directory",
        );
    }
}

#[test]
fn home_directories_are_refused_through_symlinks_either_way() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let files = [(".bashrc", "alias ll='ls -l'\n"), ("PG_VERSION", "15\n")];
    // A user whose passwd home is a symlink to the directory given as -D.
    let real_home = scratch(&root, "real-home", &files);
    let home_link = root.join("home-link");
    std::os::unix::fs::symlink(&real_home, &home_link).unwrap();
    // A user whose home is a directory, given as -D through a symlink.
    let home2 = scratch(&root, "home2", &files);
    let pgdata_link = root.join("pgdata-link");
    std::os::unix::fs::symlink(&home2, &pgdata_link).unwrap();
    // $HOME is a symlink to -D.
    let home3 = scratch(&root, "home3", &files);
    let env_home_link = root.join("env-home-link");
    std::os::unix::fs::symlink(&home3, &env_home_link).unwrap();
    // A directory holding a user's home.
    let parent = root.join("users");
    let home4 = scratch(&parent, "carol", &files);
    std::fs::write(parent.join(MARKER), "scratch").unwrap();

    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    for (i, home) in [&home_link, &home2, &home4].iter().enumerate() {
        passwd.push_str(&format!(
            "guardwipe{i}:x:{}:{}::{}:/usr/sbin/nologin\n",
            64000 + i,
            64000 + i,
            home.display()
        ));
    }
    passwd.push_str(&format!(
        "{MARKER}:x:64100:64100::/nonexistent:/usr/sbin/nologin\n"
    ));
    let passwd_copy = root.join("passwd");
    std::fs::write(&passwd_copy, passwd).unwrap();
    let binds = [Bind {
        scratch: &passwd_copy,
        target: "/etc/passwd",
    }];
    let all = [
        real_home.as_path(),
        home2.as_path(),
        home3.as_path(),
        parent.as_path(),
    ];

    let home_message = |path: &Path| {
        format!(
            "refusing to wipe {}: it is a home directory",
            path.display()
        )
    };
    refused(
        "home-is-a-link-to-pgdata",
        &binds,
        &real_home,
        true,
        &[],
        &all,
        &home_message(&real_home),
    );
    refused(
        "pgdata-is-a-link-to-a-home",
        &binds,
        &pgdata_link,
        true,
        &[],
        &all,
        &home_message(&pgdata_link),
    );
    refused(
        "env-home-is-a-link-to-pgdata",
        &[],
        &home3,
        true,
        &[("HOME", &env_home_link)],
        &all,
        &home_message(&home3),
    );
    refused(
        "pgdata-holds-a-home",
        &binds,
        &parent,
        true,
        &[],
        &all,
        "it is a directory holding a home directory",
    );
}

/// A planted `PG_VERSION` beside files PostgreSQL would not make is refused, with
/// `--force-wipe` too (issue 14 item 6: it still refuses such a directory).
#[test]
fn a_planted_pg_version_does_not_make_a_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let planted = scratch(
        tmp.path(),
        "planted",
        &[
            ("PG_VERSION", "15\n"),
            ("syslog", "Dec  3 boot\n"),
            ("auth.log", "x"),
        ],
    );
    refused(
        "planted-pg-version",
        &[],
        &planted,
        false,
        &[],
        &[&planted],
        "it holds files PostgreSQL and compute_ctl do not make (.guard-scratch-marker, auth.log, syslog)",
    );
    // --force-wipe lifts only the missing-PG_VERSION rule: foreign files stay refused.
    refused(
        "planted-pg-version-forced",
        &[],
        &planted,
        true,
        &[],
        &[&planted],
        "it holds files PostgreSQL and compute_ctl do not make (.guard-scratch-marker, auth.log, syslog)",
    );
}
