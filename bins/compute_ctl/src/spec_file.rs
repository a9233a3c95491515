//! Reading the file named by `-S` or `--config`: a regular file, or compute_ctl's own standard
//! input when it is a pipe (`-S /dev/stdin`), never more than the size limit, and never
//! blocking on a FIFO that has no writer.
//!
//! The file is opened with `O_NONBLOCK` (opening a FIFO for reading otherwise waits for a
//! writer), its type is checked on the open descriptor, and the limit is applied while
//! reading, so `-S /dev/zero` fails at once instead of filling memory.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a spec file gave no text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpecFileError {
    /// Opening or reading failed.
    #[error("read {path}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a regular file (and not compute_ctl's standard input).
    #[error(
        "read {path}: it is {kind}, not a regular file (give a regular file, or pipe the spec \
         into compute_ctl's standard input and pass -S /dev/stdin)"
    )]
    NotRegular {
        /// The file.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// More bytes than the limit.
    #[error("read {path}: larger than the {limit}-byte limit")]
    TooLarge {
        /// The file.
        path: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The bytes are not UTF-8 text.
    #[error("read {path}: not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// The file.
        path: String,
        /// Offset of the first invalid byte.
        offset: usize,
    },
}

/// Reads `path` whole, refusing more than `limit` bytes. Only a regular file is read, or a
/// pipe or FIFO that is this process's standard input (the documented `-S /dev/stdin`).
pub(crate) async fn read_spec_file(path: &Path, limit: usize) -> Result<String, SpecFileError> {
    let shown = path.display().to_string();
    let io = |source| SpecFileError::Io {
        path: shown.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let bytes = if meta.file_type().is_file() {
        read_limited(tokio::fs::File::from_std(file), limit, &shown).await?
    } else if meta.file_type().is_fifo() && is_standard_input(&meta) {
        let pipe = tokio::net::unix::pipe::Receiver::from_file(file).map_err(io)?;
        read_limited(pipe, limit, &shown).await?
    } else {
        return Err(SpecFileError::NotRegular {
            path: shown,
            kind: kind_of(&meta),
        });
    };
    String::from_utf8(bytes).map_err(|e| SpecFileError::NotUtf8 {
        path: shown,
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Reads to the end, failing as soon as more than `limit` bytes arrived.
async fn read_limited(
    reader: impl AsyncRead + Unpin,
    limit: usize,
    shown: &str,
) -> Result<Vec<u8>, SpecFileError> {
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut bytes)
        .await
        .map_err(|source| SpecFileError::Io {
            path: shown.to_owned(),
            source,
        })?;
    if bytes.len() > limit {
        return Err(SpecFileError::TooLarge {
            path: shown.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// Whether the open file is the object behind this process's descriptor 0.
fn is_standard_input(meta: &Metadata) -> bool {
    let stdin = std::fs::metadata("/proc/self/fd/0");
    stdin.is_ok_and(|s| s.dev() == meta.dev() && s.ino() == meta.ino())
}

/// What a non-regular file is, for the message.
fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    const LIMIT: usize = 64 << 20;

    /// Each refusal is prompt and names the file and the reason; a regular file within the
    /// limit reads whole.
    #[tokio::test]
    async fn only_regular_files_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; 1000]).unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, "{}").unwrap();
        let bad_utf8 = dir.path().join("latin1.json");
        std::fs::write(&bad_utf8, b"{\"a\": \"\xe9\"}").unwrap();

        let check = async |path: &Path, limit: usize, expect: &str| {
            let started = Instant::now();
            let got = match read_spec_file(path, limit).await {
                Ok(text) => format!("ok {text}"),
                Err(e) => e.to_string(),
            };
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{path:?} took {:?}",
                started.elapsed()
            );
            let got = got.replace(&dir.path().display().to_string(), "DIR");
            assert!(got.starts_with(expect), "{got}");
        };
        check(
            Path::new("/dev/zero"),
            LIMIT,
            "read /dev/zero: it is a character device, not a regular file",
        )
        .await;
        check(
            &fifo,
            LIMIT,
            "read DIR/fifo: it is a FIFO, not a regular file",
        )
        .await;
        check(
            dir.path(),
            LIMIT,
            "read DIR: it is a directory, not a regular file",
        )
        .await;
        check(
            &big,
            999,
            "read DIR/big.json: larger than the 999-byte limit",
        )
        .await;
        check(&big, 1000, "ok ").await;
        check(&good, LIMIT, "ok {}").await;
        check(
            &bad_utf8,
            LIMIT,
            "read DIR/latin1.json: not UTF-8 text (invalid byte at offset 7)",
        )
        .await;
        check(&dir.path().join("missing"), LIMIT, "read DIR/missing").await;
    }
}
