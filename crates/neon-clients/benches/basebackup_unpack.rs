//! Benchmark: unpacking a basebackup with `fetch_basebackup`, against GNU `tar -x` of the same
//! archive bytes, in the same run.
//!
//! Two kinds of data directories:
//! - real ones (`initdb`, `converged`): a fresh `initdb`, and a cluster with 50 roles and
//!   `BENCH_DATABASES` (default 20) databases; about 1,000 to 6,000 small files. Plain tar and
//!   gzip. Ours is `fetch_basebackup` in this process from the stand-in pageserver over
//!   loopback, giving the files to the unprivileged user as compute_ctl does when root; GNU
//!   `tar -xf` / `tar -xzf` reads the same archive file, run as that user. Interleaved rounds
//!   (`BENCH_ROUNDS`, default 11, after one unmeasured probe round each), each into a fresh
//!   directory; nothing is deleted until the end. Prints min/median/max and the ratio of the
//!   medians, ours/tar (below 1: ours is faster).
//! - `1gib`: a ~1 GiB directory (the fixture plus 64 MiB relation segments), plain tar, gzip
//!   and zstd, throughput and peak memory; the client runs in a child process (this
//!   executable with `--child-fetch`), whose peak RSS (`VmHWM`) is reported, against the
//!   archive piped into GNU `tar -x` (through `cat`, `gzip -dc` or `zstd -dc`).
//!
//! Run: `cargo bench -p neon-clients --bench basebackup_unpack` (release build). Settings:
//! `BENCH_CASES` (default `initdb,converged,1gib`), `BENCH_ROUNDS`, `BENCH_DATABASES`;
//! for `1gib`: `BENCH_SIZE_MIB` (default 1024), `BENCH_RUNS` (default 5), `BENCH_FORMATS`
//! (default `tar,gzip,zstd`), `BENCH_SETTLE_SECS` (default 60: the wait after a format's
//! trees are deleted, before the next is measured). Needs `gzip`, `zstd` and GNU `tar` on the PATH.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use compute_spec::ComputeMode;
use neon_clients::{BasebackupConfig, BasebackupRequest, fetch_basebackup};
use neon_test_servers::fixture::PostgresOnDir;
use neon_test_servers::{PageserverConfig, TestPageserver, write_pgdata_tar};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE: &str = "a1c33a4e8f0e4b3c9f5d2e7f3a9b1c2d";
const SEGMENT: usize = 64 << 20;

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-fetch") {
        return child_fetch(&args[2], Path::new(&args[3]));
    }
    if args.iter().any(|a| a == "--list") {
        return Ok(());
    }
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("basebackup-bench");
    std::fs::create_dir_all(&work)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let cases = std::env::var("BENCH_CASES").unwrap_or_else(|_| "initdb,converged,1gib".to_owned());
    for case in cases.split(',') {
        match case {
            "initdb" | "converged" => bench_real(&runtime, &work, case)?,
            "1gib" => bench_synthetic(&runtime, &work)?,
            other => return Err(format!("unknown case {other:?} in BENCH_CASES").into()),
        }
    }
    Ok(())
}

/// The ~1 GiB case: throughput and peak memory of a child process running the client.
fn bench_synthetic(runtime: &tokio::runtime::Runtime, work: &Path) -> Result<(), BoxError> {
    let size_mib: usize = env_or("BENCH_SIZE_MIB", 1024);
    let runs: usize = env_or("BENCH_RUNS", 5);
    let source = generate_source(work, size_mib)?;
    let source_bytes = dir_size(&source)?;
    println!(
        "source data directory: {} ({:.0} MiB)",
        source.display(),
        mib(source_bytes)
    );

    println!(
        "{:<6} {:>9} {:>12} {:>12} {:>12} {:>12} {:>8} {:>10}",
        "format", "archive", "client s", "client MiB/s", "tar s", "tar MiB/s", "ratio", "peak RSS"
    );
    let formats = std::env::var("BENCH_FORMATS").unwrap_or_else(|_| "tar,gzip,zstd".to_owned());
    for format in formats.split(',') {
        let archive = make_archive(work, &source, format)?;
        let archive_bytes = std::fs::metadata(&archive)?.len();
        let mut config = PageserverConfig::new(source.clone(), TENANT.parse()?, TIMELINE.parse()?);
        config.pgdata_source = None;
        config.archive = Some(archive.clone());
        let server = runtime.block_on(TestPageserver::start(config))?;
        let (mut client_times, mut tar_times, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        // Each run into new directories: deleting a large tree slows file creation on some
        // disks for up to a minute, so a format's trees go only after all its runs.
        let dests = work.join(format!("runs-1gib-{}-{format}", std::process::id()));
        for run in 0..runs {
            let dest = fresh_dir(&dests.join(format!("client-{run}")))?;
            sync();
            let started = Instant::now();
            let out = Command::new(std::env::current_exe()?)
                .args(["--child-fetch", &server.connstr()])
                .arg(&dest)
                .output()?;
            client_times.push(started.elapsed());
            if !out.status.success() {
                return Err(
                    format!("client failed: {}", String::from_utf8_lossy(&out.stderr)).into(),
                );
            }
            rss.push(String::from_utf8_lossy(&out.stdout).trim().parse::<u64>()?);

            let dest = fresh_dir(&dests.join(format!("tar-{run}")))?;
            sync();
            let started = Instant::now();
            let script = match format {
                // Piped like the others: the client too gets the archive as a stream.
                "tar" => format!(
                    "cat '{}' | tar -x -C '{}'",
                    archive.display(),
                    dest.display()
                ),
                "gzip" => format!(
                    "gzip -dc '{}' | tar -x -C '{}'",
                    archive.display(),
                    dest.display()
                ),
                _ => format!(
                    "zstd -q -dc '{}' | tar -x -C '{}'",
                    archive.display(),
                    dest.display()
                ),
            };
            let status = Command::new("sh").args(["-ec", &script]).status()?;
            tar_times.push(started.elapsed());
            if !status.success() {
                return Err(format!("baseline failed: {script}").into());
            }
        }
        drop(server);
        std::fs::remove_dir_all(&dests)?;
        // Let the disk recover from the deletion before the next format is measured.
        std::thread::sleep(Duration::from_secs(env_or("BENCH_SETTLE_SECS", 60) as u64));
        let client = median(&mut client_times);
        let tar = median(&mut tar_times);
        rss.sort_unstable();
        println!(
            "{:<6} {:>7.0}Mi {:>12.2} {:>12.0} {:>12.2} {:>12.0} {:>8.2} {:>7.1}MiB",
            format,
            mib(archive_bytes),
            client.as_secs_f64(),
            mib(source_bytes) / client.as_secs_f64(),
            tar.as_secs_f64(),
            mib(source_bytes) / tar.as_secs_f64(),
            tar.as_secs_f64() / client.as_secs_f64(),
            rss[rss.len() - 1] as f64 / 1024.0,
        );
        println!(
            "       runs: client {:?} tar {:?} rss KiB {:?}",
            secs(&client_times),
            secs(&tar_times),
            rss
        );
    }
    println!("ratio = client throughput / GNU tar throughput (medians); peak RSS = max over runs");
    Ok(())
}

/// One real data directory: for plain tar and gzip, interleaved rounds of ours and GNU tar.
fn bench_real(runtime: &tokio::runtime::Runtime, work: &Path, case: &str) -> Result<(), BoxError> {
    let source = real_source(work, case)?;
    let rounds = env_or("BENCH_ROUNDS", 11).max(1);
    let runs = work.join(format!("runs-{case}-{}", std::process::id()));
    std::fs::create_dir_all(&runs)?;
    test_postgres::chown_to_pg_user(&runs)?;
    let listing = tree_listing(&source)?;
    println!(
        "{case}: {} ({} entries, {:.0} MiB)",
        source.display(),
        listing.len(),
        mib(dir_size(&source)?)
    );
    for format in ["tar", "gzip"] {
        let archive = make_archive(work, &source, format)?;
        let sides = Sides::start(runtime, &archive, format, &runs)?;
        // A probe round, not counted: warms the caches, and both trees must be the same.
        let ours_dir = sides.ours("probe")?.1;
        let tar_dir = sides.tar("probe")?.1;
        same_tree(&ours_dir, &tar_dir)?;
        let (mut ours, mut tar, mut direct) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let name = round.to_string();
            if round % 2 == 0 {
                ours.push(sides.ours(&name)?.0);
                tar.push(sides.tar(&name)?.0);
                direct.push(sides.direct(&name)?);
            } else {
                direct.push(sides.direct(&name)?);
                tar.push(sides.tar(&name)?.0);
                ours.push(sides.ours(&name)?.0);
            }
        }
        let (o, t, d) = (spread(&mut ours), spread(&mut tar), spread(&mut direct));
        println!(
            "{case:<9} {format:<4} ours ms {:.1}/{:.1}/{:.1}  GNU tar ms {:.1}/{:.1}/{:.1}  \
             (min/median/max)  ours/tar {:.2}  {rounds} rounds",
            o.0,
            o.1,
            o.2,
            t.0,
            t.1,
            t.2,
            o.1 / t.1
        );
        println!(
            "{case:<9} {format:<4} unpack_archive_with from the file, no network: ms \
             {:.1}/{:.1}/{:.1}  unpack/tar {:.2}",
            d.0,
            d.1,
            d.2,
            d.1 / t.1
        );
    }
    std::fs::remove_dir_all(&runs)?;
    Ok(())
}

/// Min, median and max in milliseconds.
fn spread(v: &mut [Duration]) -> (f64, f64, f64) {
    v.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[0]), ms(v[v.len() / 2]), ms(v[v.len() - 1]))
}

/// The two ways of unpacking one archive, each into a new directory under `runs`.
struct Sides<'a> {
    runtime: &'a tokio::runtime::Runtime,
    server: TestPageserver,
    archive: PathBuf,
    format: &'static str,
    runs: &'a Path,
    owner: Option<(u32, u32)>,
}

impl<'a> Sides<'a> {
    fn start(
        runtime: &'a tokio::runtime::Runtime,
        archive: &Path,
        format: &'static str,
        runs: &'a Path,
    ) -> Result<Sides<'a>, BoxError> {
        let mut config =
            PageserverConfig::new(archive.to_owned(), TENANT.parse()?, TIMELINE.parse()?);
        config.pgdata_source = None;
        config.archive = Some(archive.to_owned());
        let server = runtime.block_on(TestPageserver::start(config))?;
        let owner = test_postgres::unprivileged_user()?.map(|(u, g)| (u.as_raw(), g.as_raw()));
        Ok(Sides {
            runtime,
            server,
            archive: archive.to_owned(),
            format,
            runs,
            owner,
        })
    }

    /// A new empty directory owned by the unprivileged user (as compute_ctl creates PGDATA).
    fn fresh(&self, side: &str, round: &str) -> Result<PathBuf, BoxError> {
        let dir = self.runs.join(format!("{}-{side}-{round}", self.format));
        std::fs::create_dir(&dir)?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        Ok(dir)
    }

    /// `fetch_basebackup` as compute_ctl runs it (the files given to the owner when root).
    fn ours(&self, round: &str) -> Result<(Duration, PathBuf), BoxError> {
        let dest = self.fresh("ours", round)?;
        let request = request()?;
        let config = BasebackupConfig {
            owner: self.owner,
            ..BasebackupConfig::default()
        };
        sync();
        let started = Instant::now();
        self.runtime.block_on(fetch_basebackup(
            &self.server.connstr(),
            None,
            &request,
            &dest,
            &config,
            &CancellationToken::new(),
        ))?;
        Ok((started.elapsed(), dest))
    }

    /// The unpacker alone, reading the archive file (the owner as in [`Sides::ours`]): what
    /// the network and the pipeline around it add.
    fn direct(&self, round: &str) -> Result<Duration, BoxError> {
        let dest = self.fresh("direct", round)?;
        let options = neon_clients::UnpackOptions { owner: self.owner };
        sync();
        let started = Instant::now();
        let file = std::fs::File::open(&self.archive)?;
        neon_clients::unpack::unpack_archive_with(file, &dest, &options)?;
        Ok(started.elapsed())
    }

    /// GNU `tar -xf` (or `-xzf`) of the same archive file, as the unprivileged user.
    fn tar(&self, round: &str) -> Result<(Duration, PathBuf), BoxError> {
        let dest = self.fresh("tar", round)?;
        let mut cmd = test_postgres::command_as_pg_user("tar")?;
        cmd.arg(if self.format == "gzip" { "-xzf" } else { "-xf" })
            .arg(&self.archive)
            .arg("-C")
            .arg(&dest)
            .stdin(std::process::Stdio::null());
        sync();
        let started = Instant::now();
        let status = cmd.status()?;
        let elapsed = started.elapsed();
        if !status.success() {
            return Err(format!("tar -x of {} failed: {status}", self.archive.display()).into());
        }
        Ok((elapsed, dest))
    }
}

/// A real data directory, built once under `work`: a fresh `initdb`, or (`converged`) one
/// with 50 roles and `BENCH_DATABASES` databases, the server stopped cleanly.
fn real_source(work: &Path, case: &str) -> Result<PathBuf, BoxError> {
    let databases = env_or("BENCH_DATABASES", 20);
    let root = match case {
        "initdb" => work.join("real-initdb"),
        _ => work.join(format!("real-converged-{databases}")),
    };
    let pgdata = root.join("pgdata");
    if root.join("complete").exists() {
        return Ok(pgdata);
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    test_postgres::chown_to_pg_user(&root)?;
    test_postgres::initdb(&pgdata, "cloud_admin")?;
    if case == "converged" {
        converge(&pgdata, databases)?;
    }
    std::fs::write(root.join("complete"), "")?;
    Ok(pgdata)
}

fn converge(pgdata: &Path, databases: usize) -> Result<(), BoxError> {
    let role = |i: usize| pg_quote::quote_ident(&format!("bench_role_{i}"));
    let pg = PostgresOnDir::start(pgdata)?;
    let roles: String = (0..50)
        .map(|i| format!("create role {} login;", role(i)))
        .collect();
    pg.psql(&roles)?;
    for i in 0..databases {
        // One statement per call: CREATE DATABASE cannot run inside a transaction block.
        let name = pg_quote::quote_ident(&format!("bench_db_{i}"));
        pg.psql(&format!("create database {name} owner {}", role(i % 50)))?;
    }
    pg.psql("checkpoint")?;
    pg.stop()?;
    std::fs::remove_file(pgdata.join("server.log"))?;
    std::fs::remove_dir(pgdata.join("sock"))?;
    Ok(())
}

/// What must match between two unpacked trees: path, kind, mode, size, owner, and the
/// modification time of everything but directories (GNU tar sets those at the end, ours as
/// they come; PostgreSQL does not look at them).
type Listed = (PathBuf, u32, u64, u32, u32, Option<i64>);

fn tree_listing(root: &Path) -> std::io::Result<Vec<Listed>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(root.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            let meta = entry.metadata()?;
            let mtime = (!meta.is_dir()).then(|| meta.mtime());
            let size = if meta.is_dir() { 0 } else { meta.len() };
            if meta.is_dir() {
                pending.push(path.clone());
            }
            out.push((path, meta.mode(), size, meta.uid(), meta.gid(), mtime));
        }
    }
    out.sort();
    Ok(out)
}

fn same_tree(ours: &Path, tar: &Path) -> Result<(), BoxError> {
    let (a, b) = (tree_listing(ours)?, tree_listing(tar)?);
    if let Some((x, y)) = a.iter().zip(&b).find(|(x, y)| x != y) {
        return Err(format!("unpacked trees differ: ours {x:?}, GNU tar {y:?}").into());
    }
    if a.len() != b.len() {
        return Err(format!(
            "unpacked trees differ: {} entries, GNU tar {}",
            a.len(),
            b.len()
        )
        .into());
    }
    Ok(())
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn secs(v: &[Duration]) -> Vec<String> {
    v.iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn sync() {
    let _ = Command::new("sync").status();
}

fn fresh_dir(path: &Path) -> Result<PathBuf, BoxError> {
    let _ = std::fs::remove_dir_all(path);
    std::fs::create_dir_all(path)?;
    Ok(path.to_owned())
}

fn dir_size(path: &Path) -> std::io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += dir_size(&entry?.path())?;
    }
    Ok(total)
}

/// The fixture data directory (real initdb, filled by the real server) plus filler relation
/// segments of 64 MiB: half of them compressible page-like data, half incompressible.
fn generate_source(work: &Path, size_mib: usize) -> Result<PathBuf, BoxError> {
    let source = work.join(format!("source-{size_mib}"));
    if source.join("bench-complete").exists() {
        return Ok(source);
    }
    let _ = std::fs::remove_dir_all(&source);
    let fixture = neon_test_servers::fixture::filled_pgdata("bench")?;
    let status = Command::new("cp")
        .arg("-a")
        .arg(&fixture)
        .arg(&source)
        .status()?;
    if !status.success() {
        return Err("copy the fixture".into());
    }
    let filler = source.join("base/5");
    std::fs::create_dir_all(&filler)?;
    let segments = (size_mib << 20) / SEGMENT;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut page = vec![0u8; 8192];
    for segment in 0..segments {
        let name = match segment / 2 {
            0 => format!("{}", 900_000 + segment % 2),
            n => format!("{}.{n}", 900_000 + segment % 2),
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(filler.join(name))?);
        for pageno in 0..SEGMENT / page.len() {
            if segment % 2 == 0 {
                // Compressible: a page header, repetitive tuples, a little variation.
                page.fill(0);
                page[..8].copy_from_slice(&(pageno as u64).to_le_bytes());
                for (i, chunk) in page[64..].chunks_mut(64).enumerate() {
                    let row = format!("row {pageno:08} {i:04} name-{:04} ", next() % 1000);
                    let n = row.len().min(chunk.len());
                    chunk[..n].copy_from_slice(&row.as_bytes()[..n]);
                }
            } else {
                for chunk in page.chunks_mut(8) {
                    chunk.copy_from_slice(&next().to_le_bytes());
                }
            }
            out.write_all(&page)?;
        }
        out.flush()?;
    }
    std::fs::write(source.join("bench-complete"), "")?;
    Ok(source)
}

fn make_archive(work: &Path, source: &Path, format: &str) -> Result<PathBuf, BoxError> {
    let stem = source
        .strip_prefix(work)
        .unwrap_or(source)
        .to_string_lossy()
        .replace('/', "-");
    let path = work.join(format!("{stem}.{format}"));
    let done = work.join(format!("{stem}.{format}.complete"));
    if done.exists() {
        return Ok(path);
    }
    let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    match format {
        "tar" => {
            write_pgdata_tar(source, file, None)?.flush()?;
        }
        "gzip" => {
            let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            write_pgdata_tar(source, gz, None)?.finish()?.flush()?;
        }
        _ => {
            let zst = zstd::stream::write::Encoder::new(file, 3)?;
            write_pgdata_tar(source, zst, None)?.finish()?.flush()?;
        }
    }
    std::fs::write(done, "")?;
    Ok(path)
}

/// The request every fetch of the bench makes: the test timeline's latest LSN, a plain stream.
fn request() -> Result<BasebackupRequest, BoxError> {
    Ok(BasebackupRequest {
        tenant_id: TENANT.parse()?,
        timeline_id: TIMELINE.parse()?,
        lsn: compute_spec::Lsn::INVALID,
        mode: ComputeMode::Primary,
        gzip: false,
    })
}

/// The measured process: fetch and unpack, then print the peak RSS in KiB.
fn child_fetch(connstr: &str, dest: &Path) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let request = request()?;
    runtime.block_on(fetch_basebackup(
        connstr,
        None,
        &request,
        dest,
        &BasebackupConfig::default(),
        &CancellationToken::new(),
    ))?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmHWM in /proc/self/status")?;
    println!("{hwm}");
    Ok(())
}
