//! Streaming, checked unpacking of a basebackup archive (plain tar, gzip or zstd) into PGDATA.
//!
//! Everything here is synchronous and works on any [`Read`]: the pageserver client feeds it
//! from the COPY stream on a blocking thread. Each tar entry is checked before it is written:
//! absolute paths, `..`, links that would resolve outside the destination, and device or fifo
//! entries are refused with an error that names the entry.
//!
//! Writing costs about the system calls GNU `tar -x` makes per file: the directories seen
//! inside the destination are remembered (a directory made or `lstat`ed here cannot become a
//! link: nothing in an archive replaces a directory), so only a path through a symbolic link
//! is resolved; files are created `O_EXCL` with their final mode (a `chmod` only when the
//! umask took bits away) and, when an owner is set, given to it on the open descriptor.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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

/// Options of [`unpack_archive_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// When set, the destination and every entry unpacked are given to this uid and gid as
    /// they are created (compute_ctl runs as root, PostgreSQL must not); the owners written
    /// in the archive are never used.
    pub owner: Option<(u32, u32)>,
}

/// Unpacks the archive read from `stream` into the existing directory `dest`, then reads
/// `stream` to its end (so that an error reported after the archive's end marker is seen by
/// the reader). File modes and modification times are kept; owners are not.
pub fn unpack_archive<R: Read>(stream: R, dest: &Path) -> Result<UnpackStats, UnpackError> {
    unpack_archive_with(stream, dest, &UnpackOptions::default())
}

/// [`unpack_archive`], with options.
pub fn unpack_archive_with<R: Read>(
    stream: R,
    dest: &Path,
    options: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let owner = options.owner;
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
        Compression::None => unpack_tar(&mut input, dest, owner, &mut stats.entries),
        Compression::Gzip => unpack_tar(
            flate2::bufread::GzDecoder::new(&mut input),
            dest,
            owner,
            &mut stats.entries,
        ),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(&mut input) {
            Ok(decoder) => unpack_tar(decoder.single_frame(), dest, owner, &mut stats.entries),
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

fn unpack_tar<R: Read>(
    decoded: R,
    dest: &Path,
    owner: Option<(u32, u32)>,
    entries: &mut u64,
) -> Result<(), EntryError> {
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
    let mut destination = Destination::new(dest, owner).map_err(write_error("."))?;
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
        match kind {
            EntryKind::File => {
                destination.write_file(&mut entry, &relative, &name, &mut copy_buf)?;
            }
            EntryKind::Directory => {
                let mode = entry.header().mode().map_err(EntryError::Stream)? & 0o7777;
                destination.make_dir(&relative, mode, &name)?;
            }
            _ => {
                if kind == EntryKind::Symlink {
                    links.insert(relative.clone());
                }
                unpack_link(&mut entry, &mut destination, &relative, &name, &failed)?;
            }
        }
        *entries += 1;
    }
    // Drain what the tar reader did not consume (padding, end marker, decoder trailer).
    let mut decoded = archive.into_inner();
    io::copy(&mut decoded, &mut io::sink()).map_err(EntryError::Stream)?;
    Ok(())
}

/// A symbolic or hard link (already checked), unpacked by the tar library, which resolves
/// the parent and, for a hard link, its target, inside the destination once more.
fn unpack_link<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    destination: &mut Destination<'_>,
    relative: &Path,
    name: &str,
    failed: &Cell<bool>,
) -> Result<(), EntryError> {
    destination.prepare_parent(relative, name)?;
    destination.forget(relative);
    let unpacked = entry.unpack_in(destination.root).map_err(|source| {
        if failed.get() {
            EntryError::Stream(source)
        } else {
            write_error(name)(source)
        }
    })?;
    if !unpacked {
        return Err(EntryError::Entry(UnpackError::UnsafeEntry {
            entry: name.to_owned(),
            reason: "the tar library refused to unpack it",
        }));
    }
    destination
        .chown(&destination.root.join(relative))
        .map_err(write_error(name))
}

/// Size of the buffer regular files are copied through: large writes keep the number of
/// system calls low.
const COPY_BUFFER: usize = 1 << 20;

/// The destination as this unpack has seen it: which directories below it are known to be
/// real directories (created here, or found by `lstat` to be directories, never symbolic
/// links), so that the entries inside them need no further check. Nothing in an archive can
/// turn a directory into something else: files and links refuse a directory in the way.
struct Destination<'a> {
    root: &'a Path,
    canonical_root: PathBuf,
    known_dirs: HashSet<PathBuf>,
    owner: Option<(u32, u32)>,
    umask: Option<u32>,
}

/// Where a directory was found on the way to an entry.
enum Found {
    /// A real directory (or one just created).
    Directory,
    /// A symbolic link: what lies beyond must be checked by resolving it.
    Link,
}

/// Whether an entry's parent directory is known, or reached through a symbolic link.
#[derive(PartialEq)]
enum Parent {
    Known,
    ThroughLink,
}

impl<'a> Destination<'a> {
    fn new(root: &'a Path, owner: Option<(u32, u32)>) -> io::Result<Destination<'a>> {
        let canonical_root = root.canonicalize()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(root, Some(uid), Some(gid))?;
        }
        Ok(Destination {
            root,
            canonical_root,
            known_dirs: HashSet::new(),
            owner,
            umask: process_umask(),
        })
    }

    /// Whether a file or directory created with `mode` needs a `chmod` to get it: the umask
    /// may have taken bits away, and set-id or sticky bits are set explicitly.
    fn needs_chmod(&self, mode: u32) -> bool {
        mode & 0o7000 != 0 || self.umask.is_none_or(|umask| mode & umask != 0)
    }

    fn chown(&self, path: &Path) -> io::Result<()> {
        match self.owner {
            Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid)),
            None => Ok(()),
        }
    }

    /// Makes sure the parent directory of `relative` exists inside the destination, creating
    /// the missing ones (given to the owner). A parent reached through a symbolic link is
    /// resolved, and must stay inside, before anything is created beyond the link.
    fn prepare_parent(&mut self, relative: &Path, name: &str) -> Result<Parent, EntryError> {
        let parent = relative.parent().unwrap_or(Path::new(""));
        if parent.as_os_str().is_empty() || self.known_dirs.contains(parent) {
            return Ok(Parent::Known);
        }
        let mut prefix = PathBuf::new();
        let mut parts = parent.components();
        while let Some(part) = parts.next() {
            prefix.push(part);
            if self.known_dirs.contains(&prefix) {
                continue;
            }
            match self
                .find_or_create_dir(&prefix)
                .map_err(write_error(name))?
            {
                Found::Directory => {
                    self.known_dirs.insert(prefix.clone());
                }
                Found::Link => {
                    self.check_beyond_link(&mut prefix, parts, name)?;
                    return Ok(Parent::ThroughLink);
                }
            }
        }
        Ok(Parent::Known)
    }

    /// `mkdir`, or `lstat` of what is there already.
    fn find_or_create_dir(&self, relative: &Path) -> io::Result<Found> {
        let path = self.root.join(relative);
        match std::fs::create_dir(&path) {
            Ok(()) => {
                self.chown(&path)?;
                return Ok(Found::Directory);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let kind = std::fs::symlink_metadata(&path)?.file_type();
        if kind.is_dir() {
            Ok(Found::Directory)
        } else if kind.is_symlink() {
            Ok(Found::Link)
        } else {
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is in the way and not a directory", relative.display()),
            ))
        }
    }

    /// The slow path: `link` (relative) is a symbolic link; it and every directory beyond it
    /// on the way to the entry must resolve inside the destination, each checked before
    /// the next is created.
    fn check_beyond_link(
        &self,
        link: &mut PathBuf,
        rest: std::path::Components<'_>,
        name: &str,
    ) -> Result<(), EntryError> {
        self.resolves_inside(link, name)?;
        for part in rest {
            link.push(part);
            let path = self.root.join(&*link);
            match std::fs::create_dir(&path) {
                Ok(()) => self.chown(&path).map_err(write_error(name))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(write_error(name)(e)),
            }
            self.resolves_inside(link, name)?;
        }
        Ok(())
    }

    fn resolves_inside(&self, relative: &Path, name: &str) -> Result<(), EntryError> {
        let resolved = self
            .root
            .join(relative)
            .canonicalize()
            .map_err(write_error(name))?;
        if resolved.starts_with(&self.canonical_root) {
            return Ok(());
        }
        Err(EntryError::Entry(UnpackError::UnsafeEntry {
            entry: name.to_owned(),
            reason: "its directory is a symbolic link that leads outside the data directory",
        }))
    }

    /// A directory entry (already checked): created with its mode, or an existing directory
    /// (not a link) given that mode.
    fn make_dir(&mut self, relative: &Path, mode: u32, name: &str) -> Result<(), EntryError> {
        let parent = self.prepare_parent(relative, name)?;
        let path = self.root.join(relative);
        let created = match std::fs::DirBuilder::new().mode(mode).create(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let meta = std::fs::symlink_metadata(&path).map_err(write_error(name))?;
                if !meta.is_dir() {
                    return Err(write_error(name)(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "something other than a directory is in the way",
                    )));
                }
                false
            }
            Err(e) => return Err(write_error(name)(e)),
        };
        if !created || self.needs_chmod(mode) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(write_error(name))?;
        }
        self.chown(&path).map_err(write_error(name))?;
        if parent == Parent::Known {
            self.known_dirs.insert(relative.to_owned());
        }
        Ok(())
    }

    /// After a link was unpacked at `relative`: nothing at or below it is known any more.
    fn forget(&mut self, relative: &Path) {
        self.known_dirs.retain(|dir| !dir.starts_with(relative));
    }

    /// Writes a regular file entry (already checked) at `relative` with its mode, mtime and
    /// owner. Done here rather than by the tar library to copy through a large buffer and
    /// skip the library's per-entry path resolution: the parent is known (or checked) by
    /// [`Destination::prepare_parent`], and the file is created exclusively (`O_EXCL` never
    /// follows a link), an existing file or link at the path being replaced, never followed.
    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        relative: &Path,
        name: &str,
        buf: &mut [u8],
    ) -> Result<(), EntryError> {
        self.prepare_parent(relative, name)?;
        let mode = entry.header().mode().map_err(EntryError::Stream)? & 0o7777;
        let mtime = entry.header().mtime().map_err(EntryError::Stream)?;
        let target = self.root.join(relative);
        let create = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&target)
        };
        let mut file = match create() {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                clear_the_way(&target).map_err(write_error(name))?;
                create().map_err(write_error(name))?
            }
            Err(e) => return Err(write_error(name)(e)),
        };
        copy_entry(entry, &mut file, buf, name)?;
        if self.needs_chmod(mode) {
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(write_error(name))?;
        }
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(write_error(name))?;
        }
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))
            .map_err(write_error(name))?;
        Ok(())
    }
}

fn write_error(name: &str) -> impl FnOnce(io::Error) -> EntryError + '_ {
    move |source| {
        EntryError::Entry(UnpackError::Write {
            entry: name.to_owned(),
            source,
        })
    }
}

/// Removes the file or link at `path`; a directory there is an error.
fn clear_the_way(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        ));
    }
    std::fs::remove_file(path)
}

fn copy_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    file: &mut std::fs::File,
    buf: &mut [u8],
    name: &str,
) -> Result<(), EntryError> {
    loop {
        let n = match entry.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EntryError::Stream(e)),
        };
        file.write_all(&buf[..n]).map_err(write_error(name))?;
    }
}

/// The process' umask, from `/proc/self/status` (reading it with `umask(2)` would change it
/// for a moment, for every thread); `None` when unknown.
fn process_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(value.trim(), 8).ok()
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

    /// One entry of a test archive: a directory, a file with its mode, or a symbolic link.
    enum Item<'a> {
        Dir(&'a str, u32),
        File(&'a str, u32, &'a [u8]),
        Link(&'a str, &'a str),
    }

    fn archive_of(items: &[Item<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(1_700_000_000);
            match item {
                Item::Dir(name, mode) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    builder.append_data(&mut header, name, &[][..]).unwrap();
                }
                Item::File(name, mode, data) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, name, *data).unwrap();
                }
                Item::Link(name, target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder.append_link(&mut header, name, target).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    /// Unpacks into a new `pgdata` beside an empty `outside`; returns the outcome (`ok` or the
    /// error chain), the listing of `pgdata` (path, kind, mode) and whether `outside` is empty.
    fn unpack_items(items: &[Item<'_>]) -> (String, Vec<String>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let (dest, outside) = (dir.path().join("pgdata"), dir.path().join("outside"));
        std::fs::create_dir(&dest).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("out")).unwrap();
        let outcome = match unpack_archive(&archive_of(items)[..], &dest) {
            Ok(stats) => format!("ok {} entries", stats.entries),
            Err(e) => crate::Chain(&e).to_string(),
        };
        let outside_empty = std::fs::read_dir(&outside).unwrap().count() == 0;
        let (dest_text, outside_text) = (dest.display().to_string(), outside.display().to_string());
        let listing = listing(&dest)
            .iter()
            .map(|line| line.replace(&outside_text, "OUTSIDE"))
            .collect();
        (outcome.replace(&dest_text, "DEST"), listing, outside_empty)
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            for entry in std::fs::read_dir(root.join(&relative)).unwrap() {
                let path = relative.join(entry.unwrap().file_name());
                let meta = std::fs::symlink_metadata(root.join(&path)).unwrap();
                let kind = if meta.is_symlink() {
                    let target = std::fs::read_link(root.join(&path)).unwrap();
                    format!("-> {}", target.display())
                } else if meta.is_dir() {
                    pending.push(path.clone());
                    format!("dir {:o}", meta.permissions().mode() & 0o7777)
                } else {
                    format!("file {:o}", meta.permissions().mode() & 0o7777)
                };
                out.push(format!("{} {kind}", path.display()));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn directories_links_and_modes() {
        use Item::*;
        let check = |items: &[Item<'_>], expect: expect_test::Expect| {
            let (outcome, listing, outside_empty) = unpack_items(items);
            expect.assert_eq(&format!(
                "{outcome}\n{}\noutside empty: {outside_empty}\n",
                listing.join("\n")
            ));
        };
        // Modes the umask would cut, set-id and sticky bits, directories made implicitly.
        check(
            &[
                Dir("base/", 0o750),
                File("base/1/f", 0o666, b"x"),
                File("setuid", 0o4755, b"x"),
                Dir("sticky/", 0o1777),
                File("PG_VERSION", 0o600, b"15\n"),
            ],
            expect_test::expect![[r#"
                ok 5 entries
                PG_VERSION file 600
                base dir 750
                base/1 dir 755
                base/1/f file 666
                out -> OUTSIDE
                setuid file 4755
                sticky dir 1777
                outside empty: true
            "#]],
        );
        // A link in the archive to a directory inside, then files (and a new directory)
        // beneath it: written through it, inside.
        check(
            &[
                Dir("base/", 0o700),
                Dir("base/1/", 0o700),
                Link("ln", "base/1"),
                File("ln/f", 0o600, b"x"),
                File("ln/sub/g", 0o600, b"y"),
            ],
            expect_test::expect![[r#"
                ok 5 entries
                base dir 700
                base/1 dir 700
                base/1/f file 600
                base/1/sub dir 755
                base/1/sub/g file 600
                ln -> base/1
                out -> OUTSIDE
                outside empty: true
            "#]],
        );
        // A link over a directory already made (and known): refused, the directory stays.
        check(
            &[
                Dir("d/", 0o700),
                File("d/f", 0o600, b"x"),
                Link("d", "e"),
                File("d/g", 0o600, b"y"),
            ],
            expect_test::expect![[r#"
                unpack entry "d": failed to unpack `DEST/d`: Is a directory (os error 21) when symlinking e to DEST/d
                d dir 700
                d/f file 600
                out -> OUTSIDE
                outside empty: true
            "#]],
        );
        // A file over a known directory, a directory over a link: refused.
        check(
            &[Dir("d/", 0o700), File("d", 0o600, b"x")],
            expect_test::expect![[r#"
                unpack entry "d": a directory is in the way
                d dir 700
                out -> OUTSIDE
                outside empty: true
            "#]],
        );
        check(
            &[Link("l", "base"), Dir("l/", 0o700)],
            expect_test::expect![[r#"
                unpack entry "l/": something other than a directory is in the way
                l -> base
                out -> OUTSIDE
                outside empty: true
            "#]],
        );
        // Directories beyond a link that leads outside are never created.
        check(
            &[File("out/sub/deeper/f", 0o600, b"x")],
            expect_test::expect![[r#"
                refused archive entry "out/sub/deeper/f": its directory is a symbolic link that leads outside the data directory
                out -> OUTSIDE
                outside empty: true
            "#]],
        );
    }

    /// Every entry, the implicit directories and the destination itself belong to the owner
    /// (when not root, the owner is oneself: the test then shows only that it runs).
    #[test]
    fn entries_are_given_to_the_owner_as_they_are_made() {
        use Item::*;
        use std::os::unix::fs::MetadataExt;
        let owner = match test_postgres::unprivileged_user().unwrap() {
            Some((uid, gid)) => (uid.as_raw(), gid.as_raw()),
            None => (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            ),
        };
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("pgdata");
        std::fs::create_dir(&dest).unwrap();
        let items = [
            Dir("global/", 0o700),
            File("global/pg_control", 0o600, b"c"),
            File("base/1/2", 0o600, b"page"),
            Link("ln", "base/1"),
            File("ln/3", 0o600, b"page"),
        ];
        let options = UnpackOptions { owner: Some(owner) };
        unpack_archive_with(&archive_of(&items)[..], &dest, &options).unwrap();
        let mut owners = vec![format!(". {:?}", owner_of(&dest))];
        for path in listing(&dest) {
            let name = path.split(' ').next().unwrap();
            owners.push(format!("{name} {:?}", owner_of(&dest.join(name))));
        }
        let expected: Vec<String> = [".", "base", "base/1", "base/1/2", "base/1/3"]
            .iter()
            .chain(&["global", "global/pg_control", "ln"])
            .map(|name| format!("{name} {owner:?}"))
            .collect();
        assert_eq!(owners, expected);
        let meta = std::fs::metadata(dest.join("base/1/3")).unwrap();
        assert_eq!(meta.mtime(), 1_700_000_000);

        fn owner_of(path: &Path) -> (u32, u32) {
            let meta = std::fs::symlink_metadata(path).unwrap();
            (meta.uid(), meta.gid())
        }
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
