//! Streaming, checked unpacking of a basebackup archive (plain tar, gzip or zstd) into PGDATA.
//!
//! Everything here is synchronous and works on any [`Read`]: the pageserver client feeds it
//! from the COPY stream on a blocking thread. Each tar entry is checked before it is written:
//! absolute paths, `..`, links that would resolve outside the destination, and device or fifo
//! entries are refused with an error that names the entry.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// Compression of a basebackup stream, recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A bare tar archive.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// Recognises the compression from the first bytes of a stream.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// An entry would be written outside the destination or is of a refused kind.
    #[error("refused archive entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The (decompressed) stream is not a valid archive, or ended early.
    #[error("corrupt {compression:?} basebackup stream after {bytes_in} bytes")]
    Corrupt {
        /// The compression detected.
        compression: Compression,
        /// Compressed bytes consumed when the error happened.
        bytes_in: u64,
        /// The decoder or tar error.
        source: io::Error,
    },
    /// Writing an entry to disk failed.
    #[error("unpack entry {entry:?}")]
    Write {
        /// The entry's path.
        entry: String,
        /// The filesystem error.
        source: io::Error,
    },
}

/// What an unpack did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// The compression detected.
    pub compression: Option<Compression>,
    /// Bytes read from the stream (compressed size).
    pub bytes_in: u64,
    /// Archive entries unpacked.
    pub entries: u64,
}

/// A [`Read`] that counts the bytes that pass through it.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Unpacks the archive read from `stream` into the existing directory `dest`, then reads
/// `stream` to its end (so that an error reported after the archive's end marker is seen by
/// the reader). File modes and modification times are kept; owners are not.
pub fn unpack_archive<R: Read>(stream: R, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let mut input = BufReader::with_capacity(
        64 * 1024,
        Counting {
            inner: stream,
            count: 0,
        },
    );
    let corrupt = |compression, input: &BufReader<Counting<R>>, source| UnpackError::Corrupt {
        compression,
        bytes_in: input.get_ref().count,
        source,
    };
    let head = match input.fill_buf() {
        Ok(head) => head,
        Err(e) => return Err(corrupt(Compression::None, &input, e)),
    };
    let compression = Compression::sniff(head);
    let mut stats = UnpackStats {
        compression: Some(compression),
        ..UnpackStats::default()
    };
    let result = match compression {
        Compression::None => unpack_tar(&mut input, dest, &mut stats.entries),
        Compression::Gzip => unpack_tar(
            flate2::bufread::GzDecoder::new(&mut input),
            dest,
            &mut stats.entries,
        ),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(&mut input) {
            Ok(decoder) => unpack_tar(decoder.single_frame(), dest, &mut stats.entries),
            Err(e) => Err(EntryError::Stream(e)),
        },
    };
    match result {
        Ok(()) => {}
        Err(EntryError::Stream(e)) => return Err(corrupt(compression, &input, e)),
        Err(EntryError::Entry(e)) => return Err(e),
    }
    // Anything after the compressed stream or archive: read it to the end so that a failure
    // of the underlying stream is reported, but do not accept trailing data.
    let mut rest = [0u8; 512];
    loop {
        match input.read(&mut rest) {
            Ok(0) => break,
            Ok(n) if compression == Compression::None && rest[..n].iter().all(|&b| b == 0) => {}
            Ok(_) => {
                return Err(corrupt(
                    compression,
                    &input,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "data after the end of the archive",
                    ),
                ));
            }
            Err(e) => return Err(corrupt(compression, &input, e)),
        }
    }
    stats.bytes_in = input.get_ref().count;
    Ok(stats)
}

enum EntryError {
    Stream(io::Error),
    Entry(UnpackError),
}

/// A [`Read`] that remembers whether a read failed, to tell stream errors from disk errors.
struct FailureFlag<R> {
    inner: R,
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for FailureFlag<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed.set(true))
    }
}

fn unpack_tar<R: Read>(decoded: R, dest: &Path, entries: &mut u64) -> Result<(), EntryError> {
    let failed = Rc::new(Cell::new(false));
    let mut archive = tar::Archive::new(FailureFlag {
        inner: decoded,
        failed: failed.clone(),
    });
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    // Zero blocks are skipped instead of ending the archive: the whole stream is read.
    archive.set_ignore_zeros(true);
    let mut links = HashSet::new();
    let canonical_dest = dest.canonicalize().map_err(|source| {
        EntryError::Entry(UnpackError::Write {
            entry: ".".to_owned(),
            source,
        })
    })?;
    let mut copy_buf = vec![0u8; COPY_BUFFER];
    for entry in archive.entries().map_err(EntryError::Stream)? {
        let mut entry = entry.map_err(EntryError::Stream)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = entry.link_name().map_err(EntryError::Stream)?;
        let kind = EntryKind::of(entry.header().entry_type());
        let relative =
            check_entry(&name, kind, link.as_deref(), &links).map_err(EntryError::Entry)?;
        if relative.as_os_str().is_empty() {
            // The archive's root (`./`): the destination exists already.
            continue;
        }
        if kind == EntryKind::Symlink {
            links.insert(relative.clone());
        }
        if kind == EntryKind::File {
            write_file(
                &mut entry,
                dest,
                &canonical_dest,
                &relative,
                &name,
                &mut copy_buf,
            )?;
            *entries += 1;
            continue;
        }
        let unpacked = entry.unpack_in(dest).map_err(|source| {
            if failed.get() {
                EntryError::Stream(source)
            } else {
                EntryError::Entry(UnpackError::Write {
                    entry: name.clone(),
                    source,
                })
            }
        })?;
        if !unpacked {
            return Err(EntryError::Entry(UnpackError::UnsafeEntry {
                entry: name,
                reason: "the tar library refused to unpack it",
            }));
        }
        *entries += 1;
    }
    // Drain what the tar reader did not consume (padding, end marker, decoder trailer).
    let mut decoded = archive.into_inner();
    io::copy(&mut decoded, &mut io::sink()).map_err(EntryError::Stream)?;
    Ok(())
}

/// Size of the buffer regular files are copied through: large writes keep the number of
/// system calls low.
const COPY_BUFFER: usize = 1 << 20;

/// Writes a regular file entry (already checked) at `dest/relative` with its mode. Done here
/// rather than by the tar library to copy through a large buffer; the library's guard against
/// writing through a symbolic link is repeated: the parent directory must resolve inside the
/// destination, and an existing file or link at the path is replaced, never followed.
fn write_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
    canonical_dest: &Path,
    relative: &Path,
    name: &str,
    buf: &mut [u8],
) -> Result<(), EntryError> {
    let write_err = |source| {
        EntryError::Entry(UnpackError::Write {
            entry: name.to_owned(),
            source,
        })
    };
    let target = dest.join(relative);
    let parent = target.parent().unwrap_or(dest);
    std::fs::create_dir_all(parent).map_err(write_err)?;
    if !parent
        .canonicalize()
        .map_err(write_err)?
        .starts_with(canonical_dest)
    {
        return Err(EntryError::Entry(UnpackError::UnsafeEntry {
            entry: name.to_owned(),
            reason: "its directory is a symbolic link that leads outside the data directory",
        }));
    }
    match std::fs::symlink_metadata(&target) {
        Ok(meta) if meta.is_dir() => {
            return Err(write_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a directory is in the way",
            )));
        }
        Ok(_) => std::fs::remove_file(&target).map_err(write_err)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(e)),
    }
    let mode = entry.header().mode().map_err(EntryError::Stream)? & 0o7777;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&target)
        .map_err(write_err)?;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EntryError::Stream(e)),
        };
        file.write_all(&buf[..n]).map_err(write_err)?;
    }
    // Set after writing: the mode given at creation is reduced by the umask.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(write_err)?;
    let mtime = entry.header().mtime().map_err(EntryError::Stream)?;
    file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))
        .map_err(write_err)?;
    Ok(())
}

/// The kinds of entries the checks distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A hard link.
    HardLink,
    /// Character or block device, fifo, or anything else.
    Other,
}

impl EntryKind {
    fn of(t: tar::EntryType) -> EntryKind {
        match t {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::HardLink,
            _ => EntryKind::Other,
        }
    }
}

/// Checks one entry (pure: no filesystem access) and returns its normalised relative path.
/// `symlinks` holds the paths of symbolic links unpacked so far: a link target is not allowed
/// to go up (`..`) through one of them, because the lexical check would then be wrong.
pub fn check_entry(
    name: &str,
    kind: EntryKind,
    link: Option<&Path>,
    symlinks: &HashSet<PathBuf>,
) -> Result<PathBuf, UnpackError> {
    let refuse = |reason| UnpackError::UnsafeEntry {
        entry: name.to_owned(),
        reason,
    };
    if kind == EntryKind::Other {
        return Err(refuse(
            "device, fifo and other special files are not allowed",
        ));
    }
    let path = Path::new(name);
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("absolute paths are not allowed"));
            }
            Component::ParentDir => return Err(refuse("'..' is not allowed in entry paths")),
        }
    }
    match kind {
        EntryKind::Symlink => {
            let target = link.ok_or_else(|| refuse("symbolic link without a target"))?;
            let parent = relative.parent().unwrap_or(Path::new(""));
            if resolve_inside(parent, target, symlinks).is_none() {
                return Err(refuse("symbolic link points outside the data directory"));
            }
        }
        EntryKind::HardLink => {
            let target = link.ok_or_else(|| refuse("hard link without a target"))?;
            if resolve_inside(Path::new(""), target, &HashSet::new()).is_none() {
                return Err(refuse("hard link points outside the data directory"));
            }
        }
        _ => {}
    }
    Ok(relative)
}

/// Resolves `target` lexically from the directory `start` (both relative to the destination
/// root); `None` when it is absolute, leaves the root, or goes up through a known symlink.
fn resolve_inside(start: &Path, target: &Path, symlinks: &HashSet<PathBuf>) -> Option<PathBuf> {
    let mut parts: Vec<OsString> = start.iter().map(|p| p.to_os_string()).collect();
    let through_symlink = |parts: &[OsString]| {
        (1..=parts.len()).any(|n| symlinks.contains(&parts[..n].iter().collect::<PathBuf>()))
    };
    for component in target.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                if through_symlink(&parts) {
                    return None;
                }
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_compression() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"global/\0"), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }

    fn archive(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, mode, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_mtime(1_700_000_000);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn unpacks_files_with_modes_and_refuses_writing_through_an_outside_link() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("pgdata");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let tar = archive(&[
            ("global/pg_control", 0o600, b"control"),
            ("PG_VERSION", 0o644, b"15\n"),
        ]);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        };
        let stats = unpack_archive(&gz[..], &dest).unwrap();
        assert_eq!(
            (stats.compression, stats.entries, stats.bytes_in),
            (Some(Compression::Gzip), 2, gz.len() as u64)
        );
        let meta = std::fs::metadata(dest.join("global/pg_control")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(dest.join("PG_VERSION"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
        assert_eq!(
            meta.modified().unwrap(),
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
        );
        // A link already in the destination (not from the archive) leading outside.
        std::os::unix::fs::symlink(&outside, dest.join("ln")).unwrap();
        let err = unpack_archive(&archive(&[("ln/file", 0o600, b"x")])[..], &dest).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refused archive entry \"ln/file\": its directory is a symbolic link that leads outside the data directory"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // Trailing garbage after a compressed archive is an error, not ignored.
        let mut trailing = gz.clone();
        trailing.extend_from_slice(b"garbage");
        let err = unpack_archive(&trailing[..], &dest).unwrap_err();
        let chain = crate::Chain(&err).to_string();
        assert!(
            chain.contains("data after the end of the archive"),
            "{chain}"
        );
    }

    #[test]
    fn entry_checks() {
        let links: HashSet<PathBuf> = ["base/ln"].iter().map(PathBuf::from).collect();
        let check = |name: &str, kind: EntryKind, link: Option<&str>, expect: &str| {
            let got = match check_entry(name, kind, link.map(Path::new), &links) {
                Ok(path) => format!("ok {}", path.display()),
                Err(e) => e.to_string(),
            };
            assert_eq!(got, expect, "entry {name:?}");
        };
        check(
            "global/pg_control",
            EntryKind::File,
            None,
            "ok global/pg_control",
        );
        check("./PG_VERSION", EntryKind::File, None, "ok PG_VERSION");
        check("./", EntryKind::Directory, None, "ok ");
        check(
            "../escape",
            EntryKind::File,
            None,
            "refused archive entry \"../escape\": '..' is not allowed in entry paths",
        );
        check(
            "base/../../x",
            EntryKind::File,
            None,
            "refused archive entry \"base/../../x\": '..' is not allowed in entry paths",
        );
        check(
            "/etc/passwd",
            EntryKind::File,
            None,
            "refused archive entry \"/etc/passwd\": absolute paths are not allowed",
        );
        check(
            "dev/null",
            EntryKind::Other,
            None,
            "refused archive entry \"dev/null\": device, fifo and other special files are not allowed",
        );
        check(
            "pg_wal/a",
            EntryKind::Symlink,
            Some("../base/1"),
            "ok pg_wal/a",
        );
        check("a", EntryKind::Symlink, Some("base/./1"), "ok a");
        check(
            "pg_wal/b",
            EntryKind::Symlink,
            Some("../../outside"),
            "refused archive entry \"pg_wal/b\": symbolic link points outside the data directory",
        );
        check(
            "c",
            EntryKind::Symlink,
            Some("/tmp"),
            "refused archive entry \"c\": symbolic link points outside the data directory",
        );
        // Going up through a link unpacked earlier cannot be checked lexically.
        check(
            "d",
            EntryKind::Symlink,
            Some("base/ln/.."),
            "refused archive entry \"d\": symbolic link points outside the data directory",
        );
        check(
            "base/ln/e",
            EntryKind::Symlink,
            Some(".."),
            "refused archive entry \"base/ln/e\": symbolic link points outside the data directory",
        );
        check("f", EntryKind::HardLink, Some("base/1"), "ok f");
        check(
            "g",
            EntryKind::HardLink,
            Some("../x"),
            "refused archive entry \"g\": hard link points outside the data directory",
        );
    }
}
