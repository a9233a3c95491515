//! A stand-in remote extension server (upstream's S3 gateway): plain HTTP/1.1, `GET <path>`
//! answered `200` with the archive registered for that path (or read from a directory), `404`
//! otherwise, with faults per path: another status, a connection closed in the middle of the
//! body, a slow answer. Every request is recorded. Archives of real extensions of an
//! installation, and hostile ones, are built by [`extension_archive`] and
//! [`hostile_extension_archive`].

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::tarball::{HostileEntry, append_hostile};

/// Settings of a [`TestExtServer`]; also the command line of `test-ext-server`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "test-ext-server",
    version,
    about = "A stand-in Neon remote extension server (HTTP GET of .tar.zst archives)"
)]
pub struct ExtServerConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Serve the files below this directory at their relative paths.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Answer every request with this status and an empty body.
    #[arg(long)]
    pub status: Option<u16>,
}

impl Default for ExtServerConfig {
    fn default() -> Self {
        ExtServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: None,
            status: None,
        }
    }
}

/// A fault of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtFault {
    /// Answer this status with a short text body.
    Status(u16),
    /// Announce the whole archive, send half of it, close the connection.
    CloseMidBody,
    /// Wait this long before answering.
    Slow(Duration),
}

#[derive(Debug, Default)]
struct Served {
    archives: HashMap<String, Vec<u8>>,
    faults: HashMap<String, ExtFault>,
    requests: Vec<String>,
}

/// A running stand-in extension server; stops when dropped.
#[derive(Debug)]
pub struct TestExtServer {
    addr: SocketAddr,
    served: Arc<Mutex<Served>>,
    cancel: CancellationToken,
}

impl TestExtServer {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(config: ExtServerConfig) -> io::Result<TestExtServer> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(Mutex::new(Served::default()));
        let cancel = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            Arc::new(config),
            served.clone(),
            cancel.clone(),
        ));
        Ok(TestExtServer {
            addr,
            served,
            cancel,
        })
    }

    /// Serves until `cancel` (the standalone binary).
    pub async fn run(config: ExtServerConfig, cancel: CancellationToken) -> io::Result<()> {
        let server = TestExtServer::start(config).await?;
        tracing::info!(
            base_url = server.base_url(),
            "test extension server listening"
        );
        cancel.cancelled().await;
        Ok(())
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/`, the base URL to give compute_ctl.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Serves `archive` at `path` (relative to the base URL).
    pub fn serve(&self, path: &str, archive: Vec<u8>) {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        served.archives.insert(normalise(path), archive);
    }

    /// Answers requests for `path` with `fault` (`None`: normally again).
    pub fn set_fault(&self, path: &str, fault: Option<ExtFault>) {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        match fault {
            Some(fault) => served.faults.insert(normalise(path), fault),
            None => served.faults.remove(&normalise(path)),
        };
    }

    /// The paths requested so far (relative to the base URL), in order.
    pub fn requests(&self) -> Vec<String> {
        let served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        served.requests.clone()
    }
}

impl Drop for TestExtServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn normalise(path: &str) -> String {
    path.trim_start_matches('/').to_owned()
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<ExtServerConfig>,
    served: Arc<Mutex<Served>>,
    cancel: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    continue;
                }
            },
            () = cancel.cancelled() => return,
        };
        let (config, served, cancel) = (config.clone(), served.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                result = answer(stream, &config, &served) => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "extension server connection");
                    }
                }
                () = cancel.cancelled() => {}
            }
        });
    }
}

/// Reads one request head and answers it; the connection is closed afterwards.
async fn answer(
    mut stream: TcpStream,
    config: &ExtServerConfig,
    served: &Mutex<Served>,
) -> io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = normalise(target.split('?').next().unwrap_or(""));
    let (fault, archive) = {
        let mut served = served.lock().unwrap_or_else(|e| e.into_inner());
        served.requests.push(path.clone());
        (
            served.faults.get(&path).cloned(),
            served.archives.get(&path).cloned(),
        )
    };
    if method != "GET" {
        return respond(&mut stream, 405, b"only GET\n").await;
    }
    if let Some(status) = config.status {
        return respond(&mut stream, status, b"").await;
    }
    let archive = archive.or_else(|| config.dir.as_deref().and_then(|d| read_below(d, &path)));
    match (fault, archive) {
        (Some(ExtFault::Status(code)), _) => respond(&mut stream, code, b"injected fault\n").await,
        (Some(ExtFault::Slow(delay)), archive) => {
            tokio::time::sleep(delay).await;
            match archive {
                Some(body) => respond(&mut stream, 200, &body).await,
                None => respond(&mut stream, 404, b"not found\n").await,
            }
        }
        (Some(ExtFault::CloseMidBody), Some(body)) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body[..body.len() / 2]).await?;
            stream.shutdown().await
        }
        (_, Some(body)) => respond(&mut stream, 200, &body).await,
        (_, None) => respond(&mut stream, 404, b"not found\n").await,
    }
}

/// The file at `relative` below `dir`, unless the path leaves it.
fn read_below(dir: &Path, relative: &str) -> Option<Vec<u8>> {
    let path = Path::new(relative);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    std::fs::read(dir.join(path)).ok()
}

async fn respond(stream: &mut TcpStream, status: u16, body: &[u8]) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

/// The `.tar.zst` archive of extension `name` as the extension build ships it: its SQL scripts
/// (`<sharedir>/extension/<name>--*.sql`) under `share/extension/`, its library
/// (`<pkglibdir>/<name>.so`, when there is one) under `lib/`, and, with `with_control`, its
/// control file (upstream's archives leave it to the spec's `control_data`).
pub fn extension_archive(
    sharedir: &Path,
    pkglibdir: &Path,
    name: &str,
    with_control: bool,
) -> io::Result<Vec<u8>> {
    let ext_dir = sharedir.join("extension");
    let mut files = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&ext_dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| {
            (f.starts_with(&format!("{name}--")) && f.ends_with(".sql"))
                || (with_control && *f == format!("{name}.control"))
        })
        .collect();
    names.sort();
    for file in names {
        files.push((ext_dir.join(&file), format!("share/extension/{file}")));
    }
    let library = pkglibdir.join(format!("{name}.so"));
    if library.is_file() {
        files.push((library, format!("lib/{name}.so")));
    }
    if files.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no files of extension {name:?} in {}", ext_dir.display()),
        ));
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    for (source, archived) in &files {
        builder.append_path_with_name(source, archived)?;
    }
    zstd_compress(&builder.into_inner()?)
}

/// An extension archive with one harmless SQL script, then `hostile`: `../escape`, an absolute
/// path, or a symbolic link out of the staging directory with a file written through it.
pub fn hostile_extension_archive(hostile: &HostileEntry) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let script = b"SELECT 1;\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(script.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, "share/extension/hostile--1.0.sql", &script[..])?;
    append_hostile(&mut builder, hostile)?;
    zstd_compress(&builder.into_inner()?)
}

/// An archive holding a symbolic link that stays inside the archive (`lib/alias.so ->
/// real.so`): safe to unpack, but links are not installed.
pub fn archive_with_inner_link() -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, "lib/real.so", &b"\x7fELF"[..])?;
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    builder.append_link(&mut link, "lib/alias.so", "real.so")?;
    zstd_compress(&builder.into_inner()?)
}

fn zstd_compress(tar: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
    encoder.write_all(tar)?;
    encoder.finish()
}
