//! The pure decisions about remote extensions, from the spec's `remote_extensions` alone: which
//! extensions this compute may use, which archive a requested file comes from, the archive's
//! path on the extension server, which control files to write and which preload libraries to
//! fetch before Postgres starts. Nothing here touches the network or the filesystem.

use std::collections::BTreeSet;

use compute_spec::RemoteExtSpec;

/// One extension archive on the extension server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArchiveRef {
    /// The extension whose archive it is (a key of `extension_data`).
    pub extension: String,
    /// Its path relative to the server's base URL:
    /// `{build_tag}/{arch}/{pg_major}/extensions/{extension}.tar.zst`.
    pub path: String,
}

impl ArchiveRef {
    /// The archive's file name, `{extension}.tar.zst` (the `filename` label of the request
    /// counter, as upstream).
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Why a requested file is not served from the extension server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// A library that `library_index` does not list.
    #[error("library {library:?} is not found in library_index")]
    LibraryNotIndexed {
        /// The library name, without its `.so…` suffix.
        library: String,
    },
    /// An extension neither in `public_extensions` nor in `custom_extensions`.
    #[error("extension {extension:?} is not allowed for this compute")]
    NotAllowed {
        /// The extension.
        extension: String,
    },
    /// An allowed extension without an `extension_data` entry.
    #[error("extension {extension:?} has no extension_data")]
    NoData {
        /// The extension.
        extension: String,
    },
    /// A name that cannot be part of an archive path (empty, too long, or with a character
    /// other than ASCII letters, digits, `_`, `-` and `.`, or starting with `.`).
    #[error("{name:?} is not a valid extension name")]
    BadName {
        /// The name as given.
        name: String,
    },
}

/// Upstream's architecture names (Go's, for Kubernetes): `amd64`, `arm64`, else Rust's name.
pub fn arch_name(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The major version in upstream's spelling (`v15`) from `pg_config --version` output such
/// as `PostgreSQL 15.4 (Debian 15.4-1)` or `PostgreSQL 16beta2`.
pub fn pg_major(version_output: &str) -> Option<String> {
    let rest = version_output.trim().strip_prefix("PostgreSQL ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = rest[digits.len()..].chars().next();
    // "PostgreSQL 14" alone (no minor, no suffix) is not a release string.
    if digits.is_empty() || after.is_none() {
        return None;
    }
    Some(format!("v{digits}"))
}

/// `{build_tag}/{arch}/{pg_major}/extensions/{extension}.tar.zst`.
pub fn archive_path(build_tag: &str, arch: &str, pg_major: &str, extension: &str) -> String {
    format!("{build_tag}/{arch}/{pg_major}/extensions/{extension}.tar.zst")
}

/// Whether `name` can be an extension or library name in an archive path or a file name:
/// 1–63 bytes of ASCII letters, digits, `_`, `-` and `.`, not starting with `.`.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether the spec lets this compute use `extension`: it is in `public_extensions` or in
/// `custom_extensions`.
pub fn is_allowed(spec: &RemoteExtSpec, extension: &str) -> bool {
    let listed = |list: &Option<Vec<String>>| {
        list.as_ref()
            .is_some_and(|names| names.iter().any(|n| n == extension))
    };
    listed(&spec.public_extensions) || listed(&spec.custom_extensions)
}

/// A library name without its `.so` suffix and what follows it (`hstore.so.1` → `hstore`), as
/// `library_index` is keyed.
pub fn library_stem(file: &str) -> &str {
    file.find(".so").map_or(file, |at| &file[..at])
}

/// The archive that serves `filename`, as upstream's `get_ext`: a library (`is_library`,
/// `hstore.so`) is mapped through `library_index` to its extension, which must be allowed
/// and have `extension_data`.
pub fn lookup(
    spec: &RemoteExtSpec,
    filename: &str,
    is_library: bool,
    build_tag: &str,
    pg_major: &str,
) -> Result<ArchiveRef, LookupError> {
    let extension = if is_library {
        let library = library_stem(filename);
        spec.library_index
            .get(library)
            .ok_or_else(|| LookupError::LibraryNotIndexed {
                library: library.to_owned(),
            })?
            .as_str()
    } else {
        filename
    };
    if !is_safe_name(extension) {
        return Err(LookupError::BadName {
            name: extension.to_owned(),
        });
    }
    if !is_allowed(spec, extension) {
        return Err(LookupError::NotAllowed {
            extension: extension.to_owned(),
        });
    }
    if !spec.extension_data.contains_key(extension) {
        return Err(LookupError::NoData {
            extension: extension.to_owned(),
        });
    }
    let arch = arch_name(std::env::consts::ARCH);
    Ok(ArchiveRef {
        extension: extension.to_owned(),
        path: archive_path(build_tag, arch, pg_major, extension),
    })
}

/// A control file to write at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFile {
    /// The extension it belongs to.
    pub extension: String,
    /// Its file name in `<sharedir>/extension`.
    pub name: String,
    /// Its content.
    pub content: String,
}

/// A control file of the spec that is not written, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("control file {name:?} of extension {extension:?}: {reason}")]
pub struct RefusedControlFile {
    /// The extension.
    pub extension: String,
    /// The file name as given.
    pub name: String,
    /// Why it is not written.
    pub reason: &'static str,
}

/// The control files of the allowed extensions (others are skipped, as upstream), each name
/// checked to be a plain `<name>.control` file name; the refused ones are returned apart.
pub fn control_files(spec: &RemoteExtSpec) -> (Vec<ControlFile>, Vec<RefusedControlFile>) {
    let mut files = Vec::new();
    let mut refused = Vec::new();
    for (extension, data) in &spec.extension_data {
        if !is_allowed(spec, extension) {
            continue;
        }
        for (name, content) in &data.control_data {
            let reason = if !name.ends_with(".control") {
                Some("only <name>.control files are written")
            } else if !is_safe_name(name) {
                Some("not a plain file name")
            } else {
                None
            };
            match reason {
                Some(reason) => refused.push(RefusedControlFile {
                    extension: extension.clone(),
                    name: name.clone(),
                    reason,
                }),
                None => files.push(ControlFile {
                    extension: extension.clone(),
                    name: name.clone(),
                    content: content.clone(),
                }),
            }
        }
    }
    (files, refused)
}

/// Libraries that are never fetched: they come with the compute image.
const LOCAL_LIBRARIES: &[&str] = &["neon", "databricks_auth"];

/// The archives to fetch before Postgres starts, for the preload libraries `libraries` (from
/// `shared_preload_libraries`): only those `library_index` lists (the others are assumed to
/// be installed), each archive once. A listed library that does not resolve is returned apart.
pub fn preload_archives(
    spec: &RemoteExtSpec,
    libraries: &[String],
    build_tag: &str,
    pg_major: &str,
) -> (Vec<ArchiveRef>, Vec<LookupError>) {
    let mut archives = BTreeSet::new();
    let mut errors = Vec::new();
    for library in libraries {
        let library = library_stem(library);
        if LOCAL_LIBRARIES.contains(&library) || !spec.library_index.contains_key(library) {
            continue;
        }
        match lookup(spec, library, true, build_tag, pg_major) {
            Ok(archive) => {
                archives.insert(archive);
            }
            Err(e) => errors.push(e),
        }
    }
    (archives.into_iter().collect(), errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_spec::ExtensionData;

    fn spec() -> RemoteExtSpec {
        let data = |control: &[(&str, &str)]| ExtensionData {
            control_data: control
                .iter()
                .map(|(n, c)| ((*n).to_owned(), (*c).to_owned()))
                .collect(),
            archive_path: String::new(),
        };
        RemoteExtSpec {
            public_extensions: Some(vec!["hstore".into(), "nodata".into(), "../up".into()]),
            custom_extensions: Some(vec!["anon".into()]),
            library_index: [
                ("hstore", "hstore"),
                ("anon", "anon"),
                ("secret", "secret"),
                ("up", "../up"),
            ]
            .iter()
            .map(|(l, e)| ((*l).to_owned(), (*e).to_owned()))
            .collect(),
            extension_data: [
                ("hstore", data(&[("hstore.control", "comment = 'h'\n")])),
                (
                    "anon",
                    data(&[
                        ("anon.control", "a"),
                        ("anon--1.0.sql", "DROP TABLE x"),
                        ("../evil.control", "x"),
                    ]),
                ),
                ("secret", data(&[("secret.control", "s")])),
            ]
            .into_iter()
            .map(|(n, d)| (n.to_owned(), d))
            .collect(),
        }
    }

    #[test]
    fn lookups() {
        let spec = spec();
        let arch = arch_name(std::env::consts::ARCH);
        let check = |file: &str, is_library: bool, expect: &str| {
            let got = match lookup(&spec, file, is_library, "latest", "v15") {
                Ok(a) => format!("{} {} {}", a.extension, a.path, a.file_name()),
                Err(e) => e.to_string(),
            };
            assert_eq!(got, expect.replace("{arch}", arch), "{file} {is_library}");
        };
        check(
            "hstore",
            false,
            "hstore latest/{arch}/v15/extensions/hstore.tar.zst hstore.tar.zst",
        );
        check(
            "hstore.so",
            true,
            "hstore latest/{arch}/v15/extensions/hstore.tar.zst hstore.tar.zst",
        );
        check(
            "anon.so.3",
            true,
            "anon latest/{arch}/v15/extensions/anon.tar.zst anon.tar.zst",
        );
        check(
            "pg_trgm.so",
            true,
            "library \"pg_trgm\" is not found in library_index",
        );
        check(
            "secret.so",
            true,
            "extension \"secret\" is not allowed for this compute",
        );
        check(
            "secret",
            false,
            "extension \"secret\" is not allowed for this compute",
        );
        check(
            "nodata",
            false,
            "extension \"nodata\" has no extension_data",
        );
        check("../up", false, "\"../up\" is not a valid extension name");
        check("up.so", true, "\"../up\" is not a valid extension name");
        check("", false, "\"\" is not a valid extension name");
    }

    #[test]
    fn control_files_of_allowed_extensions_with_plain_names() {
        let spec = spec();
        let (files, refused) = control_files(&spec);
        let names: Vec<_> = files
            .iter()
            .map(|f| (f.extension.as_str(), f.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [("anon", "anon.control"), ("hstore", "hstore.control")]
        );
        let refused: Vec<String> = refused.iter().map(ToString::to_string).collect();
        assert_eq!(
            refused,
            [
                "control file \"../evil.control\" of extension \"anon\": not a plain file name",
                "control file \"anon--1.0.sql\" of extension \"anon\": only <name>.control files are written",
            ]
        );
    }

    #[test]
    fn preload_archives_only_for_indexed_libraries_once_each() {
        let spec = spec();
        let libs: Vec<String> = [
            "neon",
            "pg_stat_statements",
            "hstore",
            "hstore.so",
            "secret",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let (archives, errors) = preload_archives(&spec, &libs, "5670669815", "v15");
        let got: Vec<_> = archives.iter().map(|a| a.extension.as_str()).collect();
        assert_eq!(got, ["hstore"]);
        assert_eq!(
            errors,
            [LookupError::NotAllowed {
                extension: "secret".into()
            }]
        );
    }

    #[test]
    fn versions_names_and_arches() {
        for (text, want) in [
            ("PostgreSQL 15.4", Some("v15")),
            ("PostgreSQL 15.14 (Debian 15.14-1.pgdg120+1)\n", Some("v15")),
            ("PostgreSQL 16beta2", Some("v16")),
            ("PostgreSQL 17devel", Some("v17")),
            ("PostgreSQL 14", None),
            ("postgres (PostgreSQL) 15.4", None),
            ("", None),
        ] {
            assert_eq!(pg_major(text).as_deref(), want, "{text:?}");
        }
        assert_eq!(arch_name("x86_64"), "amd64");
        assert_eq!(arch_name("aarch64"), "arm64");
        assert_eq!(arch_name("riscv64"), "riscv64");
        for (name, safe) in [
            ("hstore", true),
            ("pg_trgm-1.0", true),
            ("x.control", true),
            (".hidden", false),
            ("a/b", false),
            ("..", false),
            ("é", false),
            ("a b", false),
            (&"x".repeat(64), false),
        ] {
            assert_eq!(is_safe_name(name), safe, "{name:?}");
        }
        assert_eq!(library_stem("hstore.so.1.2"), "hstore");
        assert_eq!(library_stem("plain"), "plain");
    }
}
