//! ARCHITECTURE.md's invariants that no compiler checks, checked over the source tree: what
//! each crate may depend on, where I/O may happen, compute_ctl's public surface, and that
//! pg-config writes each setting once. Each test names the invariant it enforces.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The source lines of `files` (test modules at the end of a file excluded) that contain any
/// of `needles`, as `file:line: text`.
fn lines_with(files: &[PathBuf], needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let product = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in product.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if needles.iter().any(|needle| code.contains(needle)) {
                hits.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    hits
}

/// The names in the `[dependencies]` table of a manifest (not dev- or build-dependencies).
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut in_deps = false;
    let mut names = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once('=') {
            names.push(name.trim().trim_end_matches(".workspace").to_owned());
        }
    }
    names
}

/// Every member's manifest, by package directory.
fn members() -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    for group in ["crates", "bins"] {
        for entry in std::fs::read_dir(root().join(group)).unwrap().flatten() {
            let manifest = entry.path().join("Cargo.toml");
            if manifest.is_file() {
                found.insert(
                    format!("{group}/{}", entry.file_name().to_string_lossy()),
                    manifest,
                );
            }
        }
    }
    found
}

const WORKSPACE_CRATES: &[&str] = &[
    "compute-spec",
    "pg-quote",
    "pg-config",
    "pg-binary",
    "pg-reconcile",
    "child-process",
    "neon-clients",
    "neon-test-servers",
    "compute-monitor",
    "test-postgres",
];

/// "`compute-spec` does no I/O and depends on no other workspace crate."
#[test]
fn compute_spec_is_pure() {
    let deps = dependencies(&root().join("crates/compute-spec/Cargo.toml"));
    let internal: Vec<&String> = deps
        .iter()
        .filter(|d| WORKSPACE_CRATES.contains(&d.as_str()))
        .collect();
    assert!(internal.is_empty(), "{internal:?}");
    let io = lines_with(
        &rust_files(&root().join("crates/compute-spec/src")),
        &[
            "std::fs",
            "std::net",
            "std::process",
            "tokio",
            "std::env::var",
        ],
    );
    assert!(io.is_empty(), "{io:#?}");
}

/// "`pg-config` does no I/O except `write_file_atomically`" (in `files.rs`), "and depends on no
/// crate that runs programs".
#[test]
fn pg_config_does_io_only_in_files_rs() {
    let files: Vec<PathBuf> = rust_files(&root().join("crates/pg-config/src"))
        .into_iter()
        .filter(|f| !f.ends_with("files.rs"))
        .collect();
    let io = lines_with(
        &files,
        &["std::fs", "std::io::Write", "File::", "std::process"],
    );
    assert!(io.is_empty(), "{io:#?}");
    let deps = dependencies(&root().join("crates/pg-config/Cargo.toml"));
    for runner in ["pg-binary", "child-process", "tokio"] {
        assert!(
            !deps.iter().any(|d| d == runner),
            "pg-config depends on {runner}"
        );
    }
}

/// "`pg-config` writes each config name at most once": every upstream spec, rendered with
/// every option, has no setting twice.
#[test]
fn pg_config_writes_each_name_once() {
    let options = pg_config::ConfigOptions {
        extension_server_port: Some(3081),
        strict_overcommit: true,
        tls: true,
        unix_socket_directories: Some("/tmp".to_owned()),
        ..pg_config::ConfigOptions::default()
    };
    let mut rendered = 0;
    for (path, text) in common::upstream_specs() {
        let Ok(spec) = compute_spec::ValidatedSpec::from_json(&text) else {
            continue;
        };
        rendered += 1;
        let conf = pg_config::render_postgresql_conf(&spec, &options);
        let mut seen = BTreeMap::new();
        for line in pg_config::parse_conf(&conf) {
            let name = line.name.to_ascii_lowercase();
            if let Some(first) = seen.insert(name.clone(), line.line) {
                panic!(
                    "{}: {name} on lines {first} and {}:\n{conf}",
                    path.display(),
                    line.line
                );
            }
        }
    }
    assert!(rendered >= 3, "only {rendered} upstream specs rendered");
}

/// "`pg_reconcile::plan` does no I/O": the planner's files use no database client, file or
/// network.
#[test]
fn planning_does_no_io() {
    let mut files = rust_files(&root().join("crates/pg-reconcile/src/plan"));
    files.push(root().join("crates/pg-reconcile/src/plan.rs"));
    files.retain(|f| f.exists());
    let io = lines_with(
        &files,
        &["tokio_postgres", "Client", "std::fs", "std::net", ".await"],
    );
    assert!(io.is_empty(), "{io:#?}");
}

/// "Only `bins/*` use `anyhow`; libraries return `thiserror` enums" and "`test-postgres` and
/// `neon-test-servers` are never dependencies of product code".
#[test]
fn library_and_product_dependencies() {
    for (member, manifest) in members() {
        let deps = dependencies(&manifest);
        if member.starts_with("crates/") {
            assert!(
                !deps.iter().any(|d| d == "anyhow"),
                "{member} depends on anyhow"
            );
        }
        if member != "crates/neon-test-servers" {
            for double in ["test-postgres", "neon-test-servers"] {
                assert!(
                    !deps.iter().any(|d| d == double),
                    "{member} depends on {double} outside dev-dependencies"
                );
            }
        }
    }
}

/// "compute_ctl's public surface is its CLI and `run`": every other module of its library is
/// private (the `unreachable_pub` lint then keeps their items `pub(crate)`).
#[test]
fn compute_ctl_public_surface() {
    let lib = std::fs::read_to_string(root().join("bins/compute_ctl/src/lib.rs")).unwrap();
    let public: Vec<&str> = lib
        .lines()
        .filter(|l| l.starts_with("pub "))
        .map(str::trim)
        .collect();
    assert_eq!(
        public,
        [
            "pub mod cli;",
            "pub use crate::startup_phases::note_launch;",
            "pub fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {",
            "pub async fn run(opts: Options) -> anyhow::Result<i32> {",
        ]
    );
}
