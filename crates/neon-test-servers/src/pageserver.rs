//! A stand-in pageserver: libpq startup with a cleartext token, `basebackup` answered with
//! a tar of a real data directory (or a prepared archive file), with fault injection, and
//! `lease lsn` answered as the pageserver does (see [`crate::lease`]).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use compute_spec::{Lsn, TenantId, TimelineId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::lease::{self, LeaseFault, LeaseRecord, LeaseSettings};
use crate::tarball::{HostileEntry, write_pgdata_tar};
use crate::wire::Conn;

/// A fault to inject in `basebackup` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection after this many bytes of archive data.
    CloseAfter(u64),
    /// Flip bytes of the (compressed) stream after its first KiB (not with `--archive`).
    Corrupt,
    /// Put an entry `../escape` in the archive.
    DotDot,
    /// Put an entry with this absolute path in the archive.
    Absolute(PathBuf),
    /// Put a symlink `escape_link -> ..` and a file under it in the archive.
    SymlinkEscape,
    /// Answer with an ErrorResponse instead of the data.
    ErrorBefore,
    /// Send all the data, then an ErrorResponse instead of CopyDone.
    ErrorAfter,
    /// Sleep this long between chunks.
    Slow(Duration),
    /// Sleep this long before answering at all (no CopyOutResponse, no archive byte), as a
    /// pageserver waiting for the LSN does.
    StallBefore(Duration),
}

/// The spellings of [`Fault`] on the command line, each with what it does: `--fault`'s
/// possible values, and the list an unknown fault is answered with.
pub const FAULT_VALUES: &[(&str, &str)] = &[
    (
        "close-after=N",
        "close the connection after N bytes of archive data",
    ),
    (
        "corrupt",
        "flip bytes of the stream after its first KiB (not with --archive)",
    ),
    ("dotdot", "put an entry ../escape in the archive"),
    (
        "absolute=/PATH",
        "put an entry with this absolute path in the archive",
    ),
    (
        "symlink-escape",
        "put a symlink escape_link -> .. and a file under it in the archive",
    ),
    (
        "error-before",
        "answer with an ErrorResponse instead of the data",
    ),
    (
        "error-after",
        "send all the data, then an ErrorResponse instead of CopyDone",
    ),
    ("slow=MS", "sleep MS milliseconds between chunks"),
    (
        "stall-before=MS",
        "sleep MS milliseconds before answering at all (no archive byte)",
    ),
];

/// `--fault`'s parser: [`Fault::from_str`], with [`FAULT_VALUES`] as the possible values
/// `--help` lists.
#[derive(Debug, Clone, Copy)]
pub struct FaultParser;

impl clap::builder::TypedValueParser for FaultParser {
    type Value = Fault;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Fault, clap::Error> {
        let text = value.to_string_lossy();
        text.parse().map_err(|message: String| {
            let arg = arg.map_or_else(|| "--fault".to_owned(), ToString::to_string);
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value for {arg}: {message}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(FAULT_VALUES.iter().map(|(value, help)| {
            clap::builder::PossibleValue::new(*value).help(*help)
        })))
    }
}

impl FromStr for Fault {
    type Err = String;

    /// One of [`FAULT_VALUES`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = s.split_once('=').unwrap_or((s, ""));
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("fault {s:?}: {e}"));
        Ok(match name {
            "close-after" => Fault::CloseAfter(number(value)?),
            "corrupt" => Fault::Corrupt,
            "dotdot" => Fault::DotDot,
            "absolute" if value.starts_with('/') => Fault::Absolute(PathBuf::from(value)),
            "symlink-escape" => Fault::SymlinkEscape,
            "error-before" => Fault::ErrorBefore,
            "error-after" => Fault::ErrorAfter,
            "slow" => Fault::Slow(Duration::from_millis(number(value)?)),
            "stall-before" => Fault::StallBefore(Duration::from_millis(number(value)?)),
            _ => {
                let known: Vec<&str> = FAULT_VALUES.iter().map(|(v, _)| *v).collect();
                return Err(format!(
                    "unknown fault {s:?} (one of: {})",
                    known.join(", ")
                ));
            }
        })
    }
}

/// Compression of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionMode {
    /// gzip when the command says `--gzip`, else plain tar (as the pageserver does).
    Auto,
    /// Always plain tar.
    None,
    /// Always gzip.
    Gzip,
    /// Always zstd (the pageserver's libpq API has no flag for it; for tests of the decoder).
    Zstd,
}

/// Settings of a [`TestPageserver`]; also the command line of `test-pageserver`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "test-pageserver",
    version,
    about = "A stand-in Neon pageserver serving basebackups"
)]
pub struct PageserverConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Data directory (made by initdb, server shut down) to serve as a tar.
    #[arg(long, required_unless_present = "archive")]
    pub pgdata_source: Option<PathBuf>,
    /// A prepared archive (tar, tar.gz or tar.zst) to stream verbatim instead.
    #[arg(long, conflicts_with = "pgdata_source")]
    pub archive: Option<PathBuf>,
    /// The only tenant served.
    #[arg(long)]
    pub tenant: TenantId,
    /// The only timeline served.
    #[arg(long)]
    pub timeline: TimelineId,
    /// Token expected as the password; no authentication when absent.
    #[arg(long, env = "TEST_PAGESERVER_TOKEN")]
    pub token: Option<String>,
    /// Compression of the answers.
    #[arg(long, value_enum, default_value = "auto")]
    pub compression: CompressionMode,
    /// Fault to inject in basebackup answers.
    #[arg(long, value_parser = FaultParser, value_name = "FAULT")]
    pub fault: Option<Fault>,
    /// Inject the fault in the first N basebackups only (0: in all).
    #[arg(long, default_value_t = 0)]
    pub fault_count: u32,
    /// Size of the CopyData messages.
    #[arg(long, default_value_t = 64 * 1024)]
    pub chunk_size: usize,
    /// Length of the LSN leases granted, in milliseconds (the pageserver's default: 10 min).
    #[arg(long = "lease-length-ms", value_parser = parse_millis, default_value = "600000")]
    pub lease_length: Duration,
    /// Leases of LSNs below this are refused (NULL), as below the pageserver's GC cutoff.
    #[arg(long)]
    pub gc_cutoff: Option<Lsn>,
    /// Fault to inject in `lease lsn` answers: `error` (an ErrorResponse) or `stall` (no
    /// answer).
    #[arg(long, value_parser = lease_fault_parser())]
    pub lease_fault: Option<LeaseFault>,
}

fn lease_fault_parser() -> impl clap::builder::TypedValueParser<Value = LeaseFault> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["error", "stall"])
        .try_map(|v| v.parse::<LeaseFault>())
}

fn parse_millis(text: &str) -> Result<Duration, String> {
    text.parse()
        .map(Duration::from_millis)
        .map_err(|e| format!("{text:?} is not a number of milliseconds: {e}"))
}

impl PageserverConfig {
    /// A config serving `pgdata_source` for one tenant and timeline, no token, no fault.
    pub fn new(pgdata_source: PathBuf, tenant: TenantId, timeline: TimelineId) -> Self {
        PageserverConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            pgdata_source: Some(pgdata_source),
            archive: None,
            tenant,
            timeline,
            token: None,
            compression: CompressionMode::Auto,
            fault: None,
            fault_count: 0,
            chunk_size: 64 * 1024,
            lease_length: lease::DEFAULT_LEASE_LENGTH,
            gc_cutoff: None,
            lease_fault: None,
        }
    }
}

/// What the server saw of one connection (no secrets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// Startup parameters (user, application_name, options, …).
    pub params: std::collections::BTreeMap<String, String>,
    /// Whether the password matched the token (`None` without authentication).
    pub password_ok: Option<bool>,
    /// Queries received.
    pub queries: Vec<String>,
}

struct Shared {
    config: PageserverConfig,
    basebackups: AtomicU32,
    records: Mutex<Vec<ConnectionRecord>>,
    lease_settings: Mutex<LeaseSettings>,
    leases: Mutex<Vec<LeaseRecord>>,
}

/// A running stand-in pageserver; stops when dropped.
pub struct TestPageserver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl TestPageserver {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(config: PageserverConfig) -> io::Result<TestPageserver> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let lease_settings = LeaseSettings {
            length: config.lease_length,
            gc_cutoff: config.gc_cutoff,
            fault: config.lease_fault,
        };
        let shared = Arc::new(Shared {
            config,
            basebackups: AtomicU32::new(0),
            records: Mutex::new(Vec::new()),
            lease_settings: Mutex::new(lease_settings),
            leases: Mutex::new(Vec::new()),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), cancel.clone()));
        Ok(TestPageserver {
            addr,
            shared,
            cancel,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `postgresql://` connection string without password.
    pub fn connstr(&self) -> String {
        format!("postgresql://no_user@{}", self.addr)
    }

    /// What was seen of each connection so far.
    pub fn records(&self) -> Vec<ConnectionRecord> {
        self.shared
            .records
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The `lease lsn` requests received so far, in order.
    pub fn leases(&self) -> Vec<LeaseRecord> {
        self.shared
            .leases
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Changes how the next `lease lsn` requests are answered.
    pub fn set_lease_settings(&self, change: impl FnOnce(&mut LeaseSettings)) {
        if let Ok(mut settings) = self.shared.lease_settings.lock() {
            change(&mut settings);
        }
    }

    /// Serves until `cancel` fires (for the standalone binary).
    pub async fn run(config: PageserverConfig, cancel: CancellationToken) -> io::Result<()> {
        let server = TestPageserver::start(config).await?;
        info!(addr = %server.addr, "test pageserver listening");
        cancel.cancelled().await;
        Ok(())
    }
}

impl Drop for TestPageserver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let shared = shared.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        r = serve(stream, shared) => if let Err(e) = r {
                            info!("pageserver connection ended: {e}");
                        },
                    }
                });
            }
            Err(e) => warn!("accept: {e}"),
        }
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    let mut conn = Conn::new(stream);
    let Some(params) = conn.startup().await? else {
        return Ok(());
    };
    let index = {
        let mut records = shared
            .records
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        records.push(ConnectionRecord {
            params,
            ..ConnectionRecord::default()
        });
        records.len() - 1
    };
    let record = |f: &dyn Fn(&mut ConnectionRecord)| {
        if let Ok(mut records) = shared.records.lock() {
            f(&mut records[index]);
        }
    };
    let ok = conn.authenticate(shared.config.token.as_deref()).await?;
    if shared.config.token.is_some() {
        record(&|r| r.password_ok = Some(ok));
    }
    if !ok {
        return Ok(());
    }
    while let Some(query) = conn.next_query().await? {
        record(&|r| r.queries.push(query.clone()));
        if lease::is_lease(&query) {
            let password_ok = shared.config.token.as_ref().map(|_| ok);
            if !answer_lease(&mut conn, &shared, &query, password_ok).await? {
                return Ok(());
            }
            conn.end_query().await?;
            continue;
        }
        match parse_basebackup(&query) {
            Err(message) => conn.error("XX000", &message)?,
            Ok(cmd) if cmd.tenant != shared.config.tenant => {
                conn.error(
                    "XX000",
                    &format!("Not found: Tenant {} not found", cmd.tenant),
                )?;
            }
            Ok(cmd) if cmd.timeline != shared.config.timeline => conn.error(
                "XX000",
                &format!(
                    "Not found: Timeline {}/{} was not found",
                    cmd.tenant, cmd.timeline
                ),
            )?,
            Ok(cmd) => {
                let n = shared.basebackups.fetch_add(1, Ordering::SeqCst);
                let fault = match shared.config.fault_count {
                    0 => shared.config.fault.clone(),
                    count if n < count => shared.config.fault.clone(),
                    _ => None,
                };
                info!(query, ?fault, "basebackup");
                if !send_basebackup(&mut conn, &shared.config, &cmd, fault).await? {
                    // The fault closed the connection.
                    return Ok(());
                }
            }
        }
        conn.end_query().await?;
    }
    Ok(())
}

/// Answers one `lease lsn` query and records it; `false` when the connection is over.
async fn answer_lease(
    conn: &mut Conn,
    shared: &Shared,
    query: &str,
    password_ok: Option<bool>,
) -> io::Result<bool> {
    let now = SystemTime::now();
    let answer = match lease::parse_lease(query) {
        Err(message) => lease::LeaseAnswer::Error(message),
        Ok(cmd) if cmd.tenant != shared.config.tenant => {
            lease::LeaseAnswer::Error(format!("Not found: Tenant {} not found", cmd.tenant))
        }
        Ok(cmd) if cmd.timeline != shared.config.timeline => lease::LeaseAnswer::Error(format!(
            "Not found: Timeline {}/{} was not found",
            cmd.tenant, cmd.timeline
        )),
        Ok(cmd) => {
            let settings = shared
                .lease_settings
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            lease::decide(&cmd, &settings, now)
        }
    };
    let mut words = query.split_whitespace().skip(2);
    let mut word = || words.next().unwrap_or_default().to_owned();
    let entry = LeaseRecord {
        query: query.to_owned(),
        tenant_shard_id: word(),
        timeline_id: word(),
        lsn: word(),
        password_ok,
        answer: answer.clone(),
        at: now,
    };
    info!(query, answer = ?entry.answer, "lease lsn");
    if let Ok(mut leases) = shared.leases.lock() {
        leases.push(entry);
    }
    lease::send(conn, &answer).await
}

/// The parsed `basebackup` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasebackupCommand {
    /// Tenant.
    pub tenant: TenantId,
    /// Timeline.
    pub timeline: TimelineId,
    /// LSN, when given.
    pub lsn: Option<Lsn>,
    /// `--gzip`.
    pub gzip: bool,
    /// `--replica`.
    pub replica: bool,
}

/// Parses `basebackup <tenant> <timeline> [<lsn>|latest] [--gzip] [--replica]` as the
/// pageserver does; the error is the message to send.
pub fn parse_basebackup(query: &str) -> Result<BasebackupCommand, String> {
    let mut words = query.split_whitespace();
    match words.next() {
        Some(w) if w.eq_ignore_ascii_case("basebackup") => {}
        _ => return Err(format!("unsupported command {query}")),
    }
    let args: Vec<&str> = words.collect();
    if args.len() < 2 {
        return Err(format!(
            "invalid number of parameters for basebackup command: {query}"
        ));
    }
    let tenant = args[0]
        .parse()
        .map_err(|e| format!("Failed to parse tenant id: {e}"))?;
    let timeline = args[1]
        .parse()
        .map_err(|e| format!("Failed to parse timeline id: {e}"))?;
    let mut flags = &args[2..];
    let mut lsn = None;
    if let Some(first) = flags.first() {
        if *first == "latest" {
            flags = &flags[1..];
        } else if !first.starts_with("--") {
            lsn = Some(
                first
                    .parse()
                    .map_err(|e| format!("Failed to parse lsn: {e}"))?,
            );
            flags = &flags[1..];
        }
    }
    let (mut gzip, mut replica) = (false, false);
    for flag in flags {
        let seen = match *flag {
            "--gzip" => &mut gzip,
            "--replica" => &mut replica,
            other => return Err(format!("invalid parameter for basebackup command: {other}")),
        };
        if *seen {
            return Err(format!(
                "duplicate parameter for basebackup command: {flag}"
            ));
        }
        *seen = true;
    }
    Ok(BasebackupCommand {
        tenant,
        timeline,
        lsn,
        gzip,
        replica,
    })
}

/// A [`Write`] that sends fixed-size chunks into a channel (from a blocking thread).
struct ChunkSender {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    chunk_size: usize,
    written: u64,
    corrupt: bool,
}

impl ChunkSender {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk_size));
        self.tx
            .blocking_send(Bytes::from(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.chunk_size - self.buf.len();
        let n = data.len().min(room);
        let start = self.written;
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.corrupt {
            // Flip the bytes at offsets 1024..1088 of the stream.
            let from = self.buf.len() - n;
            for (i, byte) in self.buf[from..].iter_mut().enumerate() {
                if (1024..1088).contains(&(start + i as u64)) {
                    *byte ^= 0x5a;
                }
            }
        }
        if self.buf.len() == self.chunk_size {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

fn produce(
    config: &PageserverConfig,
    compression: CompressionMode,
    hostile: Option<HostileEntry>,
    mut out: ChunkSender,
) -> io::Result<()> {
    if let Some(archive) = &config.archive {
        // Read straight into the chunks sent: no intermediate copy.
        let mut file = std::fs::File::open(archive)?;
        out.flush()?;
        loop {
            let mut chunk = vec![0u8; out.chunk_size];
            let mut filled = 0;
            while filled < chunk.len() {
                match file.read(&mut chunk[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                return Ok(());
            }
            chunk.truncate(filled);
            out.buf = chunk;
            out.flush()?;
        }
    }
    let source = config
        .pgdata_source
        .as_deref()
        .ok_or_else(|| io::Error::other("no --pgdata-source"))?;
    match compression {
        CompressionMode::Gzip => {
            let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            write_pgdata_tar(source, gz, hostile.as_ref())?
                .finish()?
                .flush()
        }
        CompressionMode::Zstd => {
            let mut zst = zstd::stream::write::Encoder::new(out, 1)?;
            // With a checksum the decoder detects corrupted literals too.
            zst.include_checksum(true)?;
            write_pgdata_tar(source, zst, hostile.as_ref())?
                .finish()?
                .flush()
        }
        CompressionMode::None | CompressionMode::Auto => {
            write_pgdata_tar(source, out, hostile.as_ref())?.flush()
        }
    }
}

/// Streams the answer; `false` when the connection was closed on purpose.
async fn send_basebackup(
    conn: &mut Conn,
    config: &PageserverConfig,
    cmd: &BasebackupCommand,
    fault: Option<Fault>,
) -> io::Result<bool> {
    if fault == Some(Fault::ErrorBefore) {
        conn.error(
            "XX000",
            "invalid basebackup lsn: injected error before the data",
        )?;
        return Ok(true);
    }
    if let Some(Fault::StallBefore(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    let compression = match config.compression {
        CompressionMode::Auto if cmd.gzip => CompressionMode::Gzip,
        CompressionMode::Auto => CompressionMode::None,
        other => other,
    };
    let hostile = match &fault {
        Some(Fault::DotDot) => Some(HostileEntry::DotDot),
        Some(Fault::Absolute(p)) => Some(HostileEntry::Absolute(p.clone())),
        Some(Fault::SymlinkEscape) => Some(HostileEntry::SymlinkEscape),
        _ => None,
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let sender = ChunkSender {
        tx,
        buf: Vec::with_capacity(config.chunk_size),
        chunk_size: config.chunk_size.max(1),
        written: 0,
        corrupt: fault == Some(Fault::Corrupt),
    };
    let producer_config = config.clone();
    let producer = tokio::task::spawn_blocking(move || {
        produce(&producer_config, compression, hostile, sender)
    });

    conn.copy_out_response()?;
    conn.flush().await?;
    let mut sent = 0u64;
    while let Some(chunk) = rx.recv().await {
        if let Some(Fault::CloseAfter(limit)) = fault {
            let room = limit.saturating_sub(sent) as usize;
            if chunk.len() >= room {
                let partial = Conn::encode_copy_data(chunk.slice(..room))?;
                conn.write_raw(&partial).await?;
                info!(bytes = limit, "closing the connection (injected fault)");
                return Ok(false);
            }
        }
        sent += chunk.len() as u64;
        let encoded = Conn::encode_copy_data(chunk)?;
        conn.write_raw(&encoded).await?;
        if let Some(Fault::Slow(delay)) = fault {
            tokio::time::sleep(delay).await;
        }
    }
    match producer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            conn.error("XX000", &format!("basebackup failed: {e}"))?;
            return Ok(true);
        }
        Err(e) => return Err(io::Error::other(e.to_string())),
    }
    if let Some(Fault::CloseAfter(_)) = fault {
        // Fewer bytes than the limit: close anyway, before CopyDone.
        return Ok(false);
    }
    if fault == Some(Fault::ErrorAfter) {
        conn.error("XX000", "basebackup failed: injected error after the data")?;
        return Ok(true);
    }
    conn.copy_done()?;
    conn.command_complete("SELECT 1")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_like_the_pageserver() {
        let t = "b0554b632bd4d547a63b86c3630317e8";
        let check = |q: &str, expect: &str| {
            let got = match parse_basebackup(q) {
                Ok(c) => format!(
                    "lsn={:?} gzip={} replica={}",
                    c.lsn.map(|l| l.to_string()),
                    c.gzip,
                    c.replica
                ),
                Err(e) => e,
            };
            assert_eq!(got, expect, "{q}");
        };
        check(
            &format!("basebackup {t} {t}"),
            "lsn=None gzip=false replica=false",
        );
        check(
            &format!("basebackup {t} {t} 0/16B3748 --gzip"),
            "lsn=Some(\"0/16B3748\") gzip=true replica=false",
        );
        check(
            &format!("basebackup {t} {t} --gzip --replica"),
            "lsn=None gzip=true replica=true",
        );
        check(
            &format!("basebackup {t} {t} latest --replica"),
            "lsn=None gzip=false replica=true",
        );
        check(
            &format!("basebackup {t} {t} --zstd"),
            "invalid parameter for basebackup command: --zstd",
        );
        check(
            &format!("basebackup {t} {t} --gzip --gzip"),
            "duplicate parameter for basebackup command: --gzip",
        );
        check("select 1", "unsupported command select 1");
    }

    #[test]
    fn parses_faults() {
        assert_eq!("close-after=100".parse(), Ok(Fault::CloseAfter(100)));
        assert_eq!("slow=5".parse(), Ok(Fault::Slow(Duration::from_millis(5))));
        assert_eq!(
            "stall-before=7".parse(),
            Ok(Fault::StallBefore(Duration::from_millis(7)))
        );
        assert_eq!(
            "absolute=/tmp/x".parse(),
            Ok(Fault::Absolute("/tmp/x".into()))
        );
        assert!("absolute=tmp".parse::<Fault>().is_err());
        assert!("nope".parse::<Fault>().is_err());
    }
}
