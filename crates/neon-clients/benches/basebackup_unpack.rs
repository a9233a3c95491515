//! Benchmark: unpack throughput and peak memory of `fetch_basebackup` on a ~1 GiB data
//! directory served over loopback by the stand-in pageserver (plain tar, gzip, zstd), against
//! the same archive bytes piped into GNU `tar -x` (through `cat`, `gzip -dc` or `zstd -dc`), in
//! the same run.
//!
//! Run: `cargo bench -p neon-clients --bench basebackup_unpack` (release build). Settings:
//! `BENCH_SIZE_MIB` (default 1024), `BENCH_RUNS` (default 5), `BENCH_FORMATS` (default
//! `tar,gzip,zstd`). Needs `gzip`, `zstd` and GNU
//! `tar` on the PATH. The client runs in a child process (this executable with
//! `--child-fetch`), whose peak RSS (`VmHWM`) is reported.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use compute_spec::ComputeMode;
use neon_clients::{BasebackupConfig, BasebackupRequest, fetch_basebackup};
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
    let size_mib: usize = env_or("BENCH_SIZE_MIB", 1024);
    let runs: usize = env_or("BENCH_RUNS", 5);
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("basebackup-bench");
    std::fs::create_dir_all(&work)?;
    let source = generate_source(&work, size_mib)?;
    let source_bytes = dir_size(&source)?;
    println!(
        "source data directory: {} ({:.0} MiB)",
        source.display(),
        mib(source_bytes)
    );

    let runtime = tokio::runtime::Runtime::new()?;
    println!(
        "{:<6} {:>9} {:>12} {:>12} {:>12} {:>12} {:>8} {:>10}",
        "format", "archive", "client s", "client MiB/s", "tar s", "tar MiB/s", "ratio", "peak RSS"
    );
    let formats = std::env::var("BENCH_FORMATS").unwrap_or_else(|_| "tar,gzip,zstd".to_owned());
    for format in formats.split(',') {
        let archive = make_archive(&work, &source, format)?;
        let archive_bytes = std::fs::metadata(&archive)?.len();
        let mut config = PageserverConfig::new(source.clone(), TENANT.parse()?, TIMELINE.parse()?);
        config.pgdata_source = None;
        config.archive = Some(archive.clone());
        let server = runtime.block_on(TestPageserver::start(config))?;
        let (mut client_times, mut tar_times, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let dest = fresh_dir(&work.join("dest-client"))?;
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

            let dest = fresh_dir(&work.join("dest-tar"))?;
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
    let _ = std::fs::remove_dir_all(work.join("dest-client"));
    let _ = std::fs::remove_dir_all(work.join("dest-tar"));
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
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("source");
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

/// The measured process: fetch and unpack, then print the peak RSS in KiB.
fn child_fetch(connstr: &str, dest: &Path) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let request = BasebackupRequest {
        tenant_id: TENANT.parse()?,
        timeline_id: TIMELINE.parse()?,
        lsn: compute_spec::Lsn::INVALID,
        mode: ComputeMode::Primary,
        gzip: false,
    };
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
