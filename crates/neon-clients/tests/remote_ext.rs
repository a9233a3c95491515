//! The remote extension client against the stand-in extension server, with a real archive of
//! Debian's PostgreSQL 15 `hstore` (SQL scripts and `hstore.so`): installed where
//! `pg_config` would look; every server fault and hostile archive gives a clear error and
//! changes nothing in the installation, the staging area or anywhere else.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use neon_clients::remote_ext::{
    ArchiveRef, DownloadError, FetchConfig, FetchError, InstallDirs, InstallError,
    download_extension, plan, write_control_files,
};
use neon_clients::unpack::UnpackError;
use neon_test_servers::ext_server::{
    archive_with_inner_link, extension_archive, hostile_extension_archive,
};
use neon_test_servers::{ExtFault, ExtServerConfig, HostileEntry, TestExtServer};
use tokio_util::sync::CancellationToken;

const SHAREDIR: &str = "/usr/share/postgresql/15";
const PKGLIBDIR: &str = "/usr/lib/postgresql/15/lib";

struct Setup {
    dir: tempfile::TempDir,
    dirs: InstallDirs,
    server: TestExtServer,
    base_url: url::Url,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let dirs = InstallDirs {
        extension_dir: dir.path().join("share/extension"),
        pkglibdir: dir.path().join("lib"),
        staging_root: dir.path().join("download_extensions"),
    };
    std::fs::create_dir_all(&dirs.extension_dir).unwrap();
    std::fs::create_dir_all(&dirs.pkglibdir).unwrap();
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    // Created by the first download; what matters is what lands in it and stays.
    std::fs::create_dir_all(&dirs.staging_root).unwrap();
    let server = TestExtServer::start(ExtServerConfig::default())
        .await
        .unwrap();
    let base_url = url::Url::parse(&server.base_url()).unwrap();
    Setup {
        dir,
        dirs,
        server,
        base_url,
    }
}

fn archive(extension: &str) -> ArchiveRef {
    ArchiveRef {
        extension: extension.to_owned(),
        path: plan::archive_path("latest", "amd64", "v15", extension),
    }
}

/// Every path below `root` with its size (directories: 0).
fn tree(root: &Path) -> BTreeMap<PathBuf, u64> {
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
            out.insert(path.strip_prefix(root).unwrap().to_owned(), size);
        }
    }
    out
}

async fn download(s: &Setup, ext: &str, config: &FetchConfig) -> Result<u64, DownloadError> {
    download_extension(
        &s.base_url,
        &archive(ext),
        &s.dirs,
        config,
        &CancellationToken::new(),
    )
    .await
    .map(|d| d.bytes)
}

#[tokio::test]
async fn installs_a_real_extension_and_never_replaces_a_control_file() {
    let s = setup().await;
    let bytes =
        extension_archive(Path::new(SHAREDIR), Path::new(PKGLIBDIR), "hstore", true).unwrap();
    s.server.serve(&archive("hstore").path, bytes.clone());
    let control = s.dirs.extension_dir.join("hstore.control");
    std::fs::write(&control, "comment = 'the local one'\n").unwrap();

    let got = download_extension(
        &s.base_url,
        &archive("hstore"),
        &s.dirs,
        &FetchConfig::default(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(got.bytes, bytes.len() as u64);
    assert_eq!(got.installed.kept, std::slice::from_ref(&control));
    assert_eq!(
        std::fs::read_to_string(&control).unwrap(),
        "comment = 'the local one'\n"
    );
    let library = s.dirs.pkglibdir.join("hstore.so");
    let system = std::fs::read(Path::new(PKGLIBDIR).join("hstore.so")).unwrap();
    assert_eq!(std::fs::read(&library).unwrap(), system);
    let meta = std::fs::metadata(&library).unwrap();
    assert_eq!(
        (meta.permissions().mode() & 0o7777, meta.nlink()),
        (0o644, 1)
    );
    let script = s.dirs.extension_dir.join("hstore--1.4.sql");
    assert_eq!(
        std::fs::read(&script).unwrap(),
        std::fs::read(Path::new(SHAREDIR).join("extension/hstore--1.4.sql")).unwrap()
    );
    assert!(got.installed.written.contains(&library), "{got:?}");
    assert!(got.installed.written.contains(&script), "{got:?}");
    // The staging directory is gone; only the staging root is left.
    assert_eq!(tree(&s.dirs.staging_root), BTreeMap::new());
    assert_eq!(
        s.server.requests(),
        [archive("hstore").path],
        "one plain GET of the archive path"
    );
}

#[tokio::test]
async fn server_faults_are_errors_that_change_nothing() {
    let s = setup().await;
    let bytes =
        extension_archive(Path::new(SHAREDIR), Path::new(PKGLIBDIR), "hstore", false).unwrap();
    let path = archive("hstore").path;
    s.server.serve(&path, bytes);
    let before = tree(s.dir.path());
    let quick = FetchConfig {
        timeout: Duration::from_millis(300),
        ..FetchConfig::default()
    };
    // Absent archive: the server's 404.
    let err = download(&s, "missing", &quick).await.unwrap_err();
    assert_eq!(err.http_status(), Some(404), "{err}");
    assert!(
        neon_clients::Chain(&err)
            .to_string()
            .contains("answered 404"),
        "{err}"
    );
    for (fault, status) in [
        (ExtFault::Status(500), Some(500)),
        (ExtFault::Status(503), Some(503)),
        (ExtFault::Status(204), Some(204)),
        (ExtFault::CloseMidBody, Some(200)),
        (ExtFault::Slow(Duration::from_secs(3)), None),
    ] {
        s.server.set_fault(&path, Some(fault.clone()));
        let err = download(&s, "hstore", &quick).await.unwrap_err();
        assert_eq!(err.http_status(), status, "{fault:?}: {err}");
        if let ExtFault::Slow(_) = fault {
            assert!(
                matches!(
                    err,
                    DownloadError::Fetch {
                        source: FetchError::Timeout { .. },
                        ..
                    }
                ),
                "{err}"
            );
        }
        assert_eq!(tree(s.dir.path()), before, "{fault:?}");
    }
    // Too large, and cancelled.
    s.server.set_fault(&path, None);
    let small = FetchConfig {
        max_bytes: 100,
        ..FetchConfig::default()
    };
    let err = download(&s, "hstore", &small).await.unwrap_err();
    assert!(
        neon_clients::Chain(&err)
            .to_string()
            .contains("larger than 100 bytes"),
        "{err}"
    );
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = download_extension(
        &s.base_url,
        &archive("hstore"),
        &s.dirs,
        &FetchConfig::default(),
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(
        neon_clients::Chain(&err)
            .to_string()
            .ends_with("download cancelled"),
        "{err}"
    );
    assert_eq!(tree(s.dir.path()), before);
    // Not http.
    let https = url::Url::parse("https://127.0.0.1:1/").unwrap();
    let err = download_extension(
        &https,
        &archive("hstore"),
        &s.dirs,
        &FetchConfig::default(),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        neon_clients::Chain(&err)
            .to_string()
            .contains("only http://"),
        "{err}"
    );
}

#[tokio::test]
async fn hostile_archives_are_refused_and_write_nothing() {
    let s = setup().await;
    let outside = s.dir.path().join("outside");
    let before = tree(s.dir.path());
    let cases = [
        (
            HostileEntry::DotDot,
            "refused archive entry \"../escape\": '..' is not allowed in entry paths",
        ),
        (
            HostileEntry::Absolute(outside.join("absolute")),
            "absolute paths are not allowed",
        ),
        (
            HostileEntry::SymlinkEscape,
            "refused archive entry \"escape_link\": symbolic link points outside the data directory",
        ),
    ];
    for (entry, message) in cases {
        s.server.serve(
            &archive("hostile").path,
            hostile_extension_archive(&entry).unwrap(),
        );
        let err = download(&s, "hostile", &FetchConfig::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                DownloadError::Install {
                    source: InstallError::Unpack {
                        source: UnpackError::UnsafeEntry { .. },
                        ..
                    },
                    ..
                }
            ),
            "{entry:?}: {err}"
        );
        assert!(
            neon_clients::Chain(&err).to_string().contains(message),
            "{entry:?}: {err}"
        );
        assert_eq!(tree(s.dir.path()), before, "{entry:?}");
    }
    // A link that stays inside the archive unpacks, but is not installed: nothing moves.
    s.server
        .serve(&archive("linked").path, archive_with_inner_link().unwrap());
    let err = download(&s, "linked", &FetchConfig::default())
        .await
        .unwrap_err();
    assert!(
        neon_clients::Chain(&err).to_string()
            .ends_with("archive entry \"lib/alias.so\" refused: only regular files and directories are installed"),
        "{err}"
    );
    assert_eq!(tree(s.dir.path()), before);
}

#[test]
fn control_files_are_written_whole_and_never_over_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kept.control"), "local\n").unwrap();
    let files = [
        plan::ControlFile {
            extension: "kept".into(),
            name: "kept.control".into(),
            content: "remote\n".into(),
        },
        plan::ControlFile {
            extension: "new".into(),
            name: "new.control".into(),
            content: "comment = 'new'\n".into(),
        },
    ];
    let done = write_control_files(&files, dir.path()).unwrap();
    assert_eq!(done.kept, [dir.path().join("kept.control")]);
    assert_eq!(done.written, [dir.path().join("new.control")]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kept.control")).unwrap(),
        "local\n"
    );
    let new = dir.path().join("new.control");
    assert_eq!(std::fs::read_to_string(&new).unwrap(), "comment = 'new'\n");
    assert_eq!(
        std::fs::metadata(&new).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // No temporary file is left.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // A second run keeps both.
    let again = write_control_files(&files, dir.path()).unwrap();
    assert_eq!((again.written.len(), again.kept.len()), (0, 2));
}
