//! Remote extensions end to end: the real compute_ctl with `--remote-ext-base-url` pointing at
//! the stand-in extension server, which serves real archives of Debian's PostgreSQL 15
//! contrib extensions (`hstore`: SQL scripts and library; `auto_explain`: a library preloaded
//! at start). Postgres runs from a relocated copy of the installation (hard links in a
//! temporary directory, the extensions under test removed from it), so that nothing is ever
//! written into the system's installation: compute_ctl writes new files only, and the test
//! checks that each is a new file (one link) and that the system files are unchanged.

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use harness::{Args, Ctl, pg_config, relocated_installation};
use neon_test_servers::ext_server::{extension_archive, hostile_extension_archive};
use neon_test_servers::{ExtFault, ExtServerConfig, HostileEntry, TestExtServer};
use serde_json::json;

/// Path → (size, link count) of everything below `root`.
fn tree(root: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let size = if meta.is_dir() { 0 } else { meta.len() };
            out.insert(path, (size, meta.nlink()));
        }
    }
    out
}

/// What identifies a system file's content: size, modification time, inode.
fn fingerprint(path: &Path) -> (u64, i64, u64) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.len(), meta.mtime(), meta.ino())
}

fn archive_path(extension: &str) -> String {
    let build_tag = option_env!("BUILD_TAG").unwrap_or("latest");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{build_tag}/{arch}/v15/extensions/{extension}.tar.zst")
}

fn spec(remote_extensions: serde_json::Value, preload: Option<&str>) -> String {
    let mut settings = vec![
        json!({"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"}),
        json!({"name": "fsync", "value": "off", "vartype": "bool"}),
    ];
    if let Some(preload) = preload {
        settings.push(
            json!({"name": "shared_preload_libraries", "value": preload, "vartype": "string"}),
        );
    }
    json!({
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": [], "settings": settings},
        "remote_extensions": remote_extensions
    })
    .to_string()
}

fn remote_extensions(hstore_control: &str, trgm_control: &str) -> serde_json::Value {
    let data = |control: serde_json::Value| json!({"control_data": control, "archive_path": ""});
    json!({
        "public_extensions": ["hstore", "auto_explain", "missing", "hostile"],
        "custom_extensions": ["ltree"],
        "library_index": {
            "hstore": "hstore", "auto_explain": "auto_explain", "pg_trgm": "pg_trgm",
            "hostile": "hostile", "ltree": "ltree"
        },
        "extension_data": {
            "hstore": data(json!({"hstore.control": hstore_control})),
            "auto_explain": data(json!({})),
            "ltree": data(json!({})),
            "pg_trgm": data(json!({"pg_trgm.control": trgm_control})),
            "missing": data(json!({})),
            "hostile": data(json!({}))
        }
    })
}

async fn execute(ctl: &Ctl, sql: &str) -> Result<(), String> {
    let client = ctl.pg("postgres").await;
    client
        .batch_execute(sql)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        })
}

async fn query_text(ctl: &Ctl, sql: &str) -> Result<String, String> {
    let client = ctl.pg("postgres").await;
    client
        .query_one(sql, &[])
        .await
        .map(|row| row.get::<_, String>(0))
        .map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn control_files_and_preload_libraries_at_start_libraries_on_demand() {
    let system_sharedir = pg_config(&test_postgres::pg_bin_dir(), "--sharedir");
    let system_libdir = pg_config(&test_postgres::pg_bin_dir(), "--pkglibdir");
    let system_files = [
        system_libdir.join("hstore.so"),
        system_libdir.join("auto_explain.so"),
        system_sharedir.join("extension/hstore.control"),
        system_sharedir.join("extension/hstore--1.4.sql"),
    ];
    let before: Vec<_> = system_files.iter().map(|p| fingerprint(p)).collect();
    let hstore_control =
        std::fs::read_to_string(system_sharedir.join("extension/hstore.control")).unwrap();

    let install = relocated_installation(&["hstore", "auto_explain", "pg_trgm", "ltree"]);
    let server = TestExtServer::start(ExtServerConfig::default())
        .await
        .unwrap();
    let hstore = extension_archive(&system_sharedir, &system_libdir, "hstore", false).unwrap();
    let auto_explain =
        extension_archive(&system_sharedir, &system_libdir, "auto_explain", false).unwrap();
    server.serve(&archive_path("hstore"), hstore.clone());
    server.serve(&archive_path("auto_explain"), auto_explain.clone());
    // ltree's archive carries its control file (the spec has none for it).
    let ltree = extension_archive(&system_sharedir, &system_libdir, "ltree", true).unwrap();
    server.serve(&archive_path("ltree"), ltree);

    let mut ctl = Ctl::start(Args {
        extra: vec![
            "-b".into(),
            install.bindir.join("postgres").display().to_string(),
            "--remote-ext-base-url".into(),
            server.base_url(),
            "-S".into(),
            "{dir}/spec.json".into(),
        ],
        files: vec![(
            "spec.json".into(),
            spec(
                remote_extensions(&hstore_control, "comment = 'not allowed'\n"),
                Some("auto_explain"),
            ),
        )],
        ..Args::default()
    });
    // Postgres started with `auto_explain` preloaded: its library was fetched before.
    ctl.wait_status("running").await;
    assert_eq!(
        query_text(&ctl, "SHOW shared_preload_libraries").await,
        Ok("auto_explain".to_owned())
    );
    let ext_dir = install.sharedir.join("extension");
    let control = ext_dir.join("hstore.control");
    assert_eq!(std::fs::read_to_string(&control).unwrap(), hstore_control);
    assert!(
        !ext_dir.join("pg_trgm.control").exists(),
        "control file of an extension that is not allowed"
    );
    let metrics = ctl.get_json("/metrics.json").await;
    assert_eq!(metrics["num_ext_downloaded"], 1, "{metrics}");
    assert_eq!(
        metrics["largest_ext_size"],
        auto_explain.len() as u64,
        "{metrics}"
    );
    assert_eq!(
        metrics["total_ext_download_size"],
        auto_explain.len() as u64,
        "{metrics}"
    );
    assert!(metrics["load_ext_ms"].is_u64(), "{metrics}");

    // The control file alone does not make the extension installable.
    let err = execute(&ctl, "CREATE EXTENSION hstore").await.unwrap_err();
    assert!(err.contains("has no installation script"), "{err}");
    let (code, body) = ctl
        .request_internal("POST", "/extension_server/hstore.so?is_library=true", "")
        .await;
    assert_eq!((code, body.as_str()), (200, ""), "{}", ctl.log());
    let library = install.pkglibdir.join("hstore.so");
    let script = ext_dir.join("hstore--1.4.sql");
    for file in [&library, &script, &control] {
        let meta = std::fs::metadata(file).unwrap();
        assert_eq!(meta.nlink(), 1, "{} is a new file", file.display());
        assert!(file.starts_with(install.root.path()));
    }
    assert_eq!(execute(&ctl, "CREATE EXTENSION hstore").await, Ok(()));
    assert_eq!(
        query_text(&ctl, "SELECT ('a=>1'::hstore -> 'a')::text").await,
        Ok("1".to_owned())
    );
    // Again, by extension name: already there, not downloaded again.
    let (code, _) = ctl
        .request_internal("POST", "/extension_server/hstore", "")
        .await;
    assert_eq!(code, 200);
    let hstore_requests = server
        .requests()
        .iter()
        .filter(|p| **p == archive_path("hstore"))
        .count();
    assert_eq!(hstore_requests, 1, "{:?}", server.requests());

    // Two requests for the same archive at once: the second waits for the first, one GET.
    server.set_fault(
        &archive_path("ltree"),
        Some(ExtFault::Slow(std::time::Duration::from_millis(800))),
    );
    let (first, second) = tokio::join!(
        ctl.request_internal("POST", "/extension_server/ltree", ""),
        ctl.request_internal("POST", "/extension_server/ltree.so?is_library=true", ""),
    );
    assert_eq!((first.0, second.0), (200, 200), "{first:?} {second:?}");
    let ltree_requests = server
        .requests()
        .iter()
        .filter(|p| **p == archive_path("ltree"))
        .count();
    assert_eq!(ltree_requests, 1, "{:?}", server.requests());
    assert_eq!(execute(&ctl, "CREATE EXTENSION ltree").await, Ok(()));

    // Not served by the spec: 404, nothing asked of the server.
    let asked = server.requests().len();
    for path in [
        "/extension_server/pg_trgm.so?is_library=true",
        "/extension_server/pg_trgm",
        "/extension_server/unknown.so?is_library=true",
        "/extension_server/..%2Fup",
    ] {
        let (code, body) = ctl.request_internal("POST", path, "").await;
        assert_eq!(code, 404, "{path}: {body}");
    }
    assert_eq!(server.requests().len(), asked);

    // The server's 404 and 500, a cut body and hostile archives: 500, nothing written.
    let snapshot = tree(install.root.path());
    let (code, body) = ctl
        .request_internal("POST", "/extension_server/missing", "")
        .await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("answered 404"), "{body}");
    server.serve(&archive_path("hostile"), hstore.clone());
    for fault in [ExtFault::Status(500), ExtFault::CloseMidBody] {
        server.set_fault(&archive_path("hostile"), Some(fault.clone()));
        let (code, body) = ctl
            .request_internal("POST", "/extension_server/hostile.so?is_library=true", "")
            .await;
        assert_eq!(code, 500, "{fault:?}: {body}");
    }
    server.set_fault(&archive_path("hostile"), None);
    let outside = install.root.path().join("outside");
    for entry in [
        HostileEntry::DotDot,
        HostileEntry::Absolute(outside.clone()),
        HostileEntry::SymlinkEscape,
    ] {
        server.serve(
            &archive_path("hostile"),
            hostile_extension_archive(&entry).unwrap(),
        );
        let (code, body) = ctl
            .request_internal("POST", "/extension_server/hostile", "")
            .await;
        assert_eq!(code, 500, "{entry:?}: {body}");
        assert!(body.contains("refused archive entry"), "{entry:?}: {body}");
    }
    assert!(!outside.exists());
    assert_eq!(tree(install.root.path()), snapshot, "nothing written");

    let (_, text) = ctl.request("GET", "/metrics", "", None).await;
    for sample in [
        r#"compute_ctl_remote_ext_requests_total{http_status="200 OK",filename="hstore.tar.zst"} 1"#,
        r#"compute_ctl_remote_ext_requests_total{http_status="200 OK",filename="auto_explain.tar.zst"} 1"#,
        r#"compute_ctl_remote_ext_requests_total{http_status="404 Not Found",filename="missing.tar.zst"} 1"#,
        r#"compute_ctl_remote_ext_requests_total{http_status="500 Internal Server Error",filename="hostile.tar.zst"} 1"#,
    ] {
        assert!(text.contains(sample), "{sample} in\n{text}");
    }
    drop(ctl);
    let after: Vec<_> = system_files.iter().map(|p| fingerprint(p)).collect();
    assert_eq!(before, after, "the system installation is unchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn extension_server_route_needs_a_base_url_and_remote_extensions() {
    // Nothing is written on these paths: the system installation can be used.
    let remote = remote_extensions("comment = 'x'\n", "comment = 'y'\n");
    let mut no_url = Ctl::start(Args {
        extra: vec!["-S".into(), "{dir}/spec.json".into()],
        files: vec![("spec.json".into(), spec(remote, None))],
        ..Args::default()
    });
    let mut no_spec_field = Ctl::start(Args {
        extra: vec![
            "--remote-ext-base-url".into(),
            "http://127.0.0.1:1/".into(),
            "-S".into(),
            "{dir}/spec.json".into(),
        ],
        files: vec![("spec.json".into(), spec(serde_json::Value::Null, None))],
        ..Args::default()
    });
    no_url.wait_status("running").await;
    no_spec_field.wait_status("running").await;
    let (code, body) = no_url
        .request_internal("POST", "/extension_server/hstore", "")
        .await;
    assert_eq!(code, 412, "{body}");
    assert!(
        no_url
            .log()
            .contains("`remote_extensions` is not acted on: compute_ctl was started without --remote-ext-base-url"),
        "{}",
        no_url.log()
    );
    let (code, body) = no_spec_field
        .request_internal("POST", "/extension_server/hstore.so?is_library=true", "")
        .await;
    assert_eq!(code, 409, "{body}");
}
