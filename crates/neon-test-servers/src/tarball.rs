//! Writing a data directory as a tar stream, as a basebackup, with optional hostile entries.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A hostile entry to put in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostileEntry {
    /// A regular file named `../escape`.
    DotDot,
    /// A regular file with this absolute path.
    Absolute(PathBuf),
    /// A symbolic link `escape_link -> ..`, then a file `escape_link/escaped`.
    SymlinkEscape,
}

/// Files of a data directory that a basebackup does not ship: `postgresql.conf` is written by
/// compute_ctl before sync-safekeepers, the others belong to a running server.
const NOT_SHIPPED: &[&str] = &["postgresql.conf", "postmaster.pid", "postmaster.opts"];

/// Writes the tar of `source` (a data directory) into `out`, top-level names sorted, without
/// the files a basebackup does not ship. The hostile entry, if any, comes after the first
/// ten entries so that something was unpacked before it.
pub fn write_pgdata_tar<W: Write>(
    source: &Path,
    out: W,
    hostile: Option<&HostileEntry>,
) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    let mut paths = Vec::new();
    collect(source, Path::new(""), &mut paths)?;
    for (index, relative) in paths.iter().enumerate() {
        if index == 10
            && let Some(entry) = hostile
        {
            append_hostile(&mut builder, entry)?;
        }
        builder.append_path_with_name(source.join(relative), relative)?;
    }
    if paths.len() <= 10
        && let Some(entry) = hostile
    {
        append_hostile(&mut builder, entry)?;
    }
    builder.into_inner()
}

fn collect(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(root.join(relative))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        if relative.as_os_str().is_empty() && NOT_SHIPPED.iter().any(|n| name == *n) {
            continue;
        }
        let path = relative.join(&name);
        out.push(path.clone());
        if std::fs::symlink_metadata(root.join(&path))?.is_dir() {
            collect(root, &path, out)?;
        }
    }
    Ok(())
}

/// A header whose name is written raw, bypassing the tar crate's path checks.
fn raw_header(name: &str, kind: tar::EntryType, size: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_gnu();
    let bytes = name.as_bytes();
    let field = &mut header.as_old_mut().name;
    if bytes.len() >= field.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
    }
    field[..bytes.len()].copy_from_slice(bytes);
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(0);
    Ok(header)
}

/// Appends `entry` (also used by the extension server's hostile archives).
pub(crate) fn append_hostile<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &HostileEntry,
) -> io::Result<()> {
    let data = b"written by a hostile basebackup\n";
    let file = |builder: &mut tar::Builder<W>, name: &str| -> io::Result<()> {
        let mut header = raw_header(name, tar::EntryType::Regular, data.len() as u64)?;
        header.set_cksum();
        builder.append(&header, &data[..])
    };
    match entry {
        HostileEntry::DotDot => file(builder, "../escape"),
        HostileEntry::Absolute(path) => file(builder, &path.to_string_lossy()),
        HostileEntry::SymlinkEscape => {
            let mut link = raw_header("escape_link", tar::EntryType::Symlink, 0)?;
            link.set_link_name("..")?;
            link.set_cksum();
            builder.append(&link, io::empty())?;
            file(builder, "escape_link/escaped")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_sorted_entries_without_server_files_and_with_hostile_entry() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["base/1", "global", "pg_wal"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        for f in [
            "PG_VERSION",
            "postgresql.conf",
            "postmaster.pid",
            "base/1/1259",
            "global/pg_control",
        ] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        let tar =
            write_pgdata_tar(dir.path(), Vec::new(), Some(&HostileEntry::SymlinkEscape)).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                format!(
                    "{:?} {}",
                    e.header().entry_type(),
                    String::from_utf8_lossy(&e.path_bytes())
                )
            })
            .collect();
        expect_test::expect![[r#"
            [
                "Regular PG_VERSION",
                "Directory base",
                "Directory base/1",
                "Regular base/1/1259",
                "Directory global",
                "Regular global/pg_control",
                "Directory pg_wal",
                "Symlink escape_link",
                "Regular escape_link/escaped",
            ]
        "#]]
        .assert_debug_eq(&names);
    }
}
