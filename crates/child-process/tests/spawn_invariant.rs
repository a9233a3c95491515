//! The architecture invariant "only `child-process` spawns programs (outside tests and test
//! doubles)": every `.rs` file under `crates/` and `bins/`, except `tests/` and `benches/`
//! folders, the test-only crates and this crate, is searched for std's or Tokio's `Command`.

use std::path::{Path, PathBuf};

/// Crates that may spawn programs themselves: this one, and the test-only ones.
const ALLOWED_CRATES: &[&str] = &[
    "crates/child-process",
    "crates/test-postgres",
    "crates/neon-test-servers",
];

/// Folders of test and benchmark code, anywhere.
const SKIPPED_DIRS: &[&str] = &["tests", "benches", "target"];

#[test]
fn only_child_process_spawns_programs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for top in ["crates", "bins"] {
        rust_files(&root, &root.join(top), &mut files);
    }
    assert!(files.len() > 20, "found only {files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for (line, code) in spawns(&text) {
            found.push(format!("{}:{line}: {}", file.display(), code.trim()));
        }
    }
    assert!(
        found.is_empty(),
        "programs are started only through the child-process crate \
         (child_process::Command); these lines use std's or Tokio's Command:\n{}",
        found.join("\n")
    );
}

/// The `.rs` files under `dir`, relative to `root`, outside the allowed crates and skipped
/// folders.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let relative = path.strip_prefix(root).unwrap().to_owned();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&&*name)
                && !ALLOWED_CRATES.iter().any(|c| relative == Path::new(c))
            {
                rust_files(root, &path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(relative);
        }
    }
}

/// The lines (1-based, with their text) of `text` that name std's or Tokio's `Command`:
/// `process::Command…` paths, `process::{…Command…}` imports, and a bare `Command::new(`
/// in a file that does not import `child_process`'s `Command`. Comment lines are skipped.
fn spawns(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let code: String = lines
        .iter()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let line_of = |offset: usize| code[..offset].matches('\n').count();
    let mut hits = Vec::new();
    let mut imports_ours = false;
    for (at, _) in code.match_indices("process::") {
        let ours = code[..at].ends_with("child_");
        let rest = &code[at + "process::".len()..];
        let names = if let Some(group) = rest.strip_prefix('{') {
            &group[..group.find('}').unwrap_or(group.len())]
        } else {
            rest.split(|c: char| !is_ident(c)).next().unwrap_or("")
        };
        let names_command = names
            .split(|c: char| !is_ident(c))
            .any(|word| word == "Command" || word == "CommandExt");
        if names_command && ours {
            imports_ours = true;
        } else if names_command {
            hits.push(line_of(at));
        }
    }
    if !imports_ours {
        for (at, _) in code.match_indices("Command::new(") {
            let before = code[..at].chars().next_back();
            if !before.is_some_and(|c| is_ident(c) || c == ':') {
                hits.push(line_of(at));
            }
        }
    }
    hits.sort_unstable();
    hits.dedup();
    hits.into_iter()
        .map(|i| (i + 1, lines[i].to_owned()))
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` → the line numbers [`spawns`] reports.
fn check(text: &str, expect: &[usize]) {
    let got: Vec<usize> = spawns(text).into_iter().map(|(line, _)| line).collect();
    assert_eq!(got, expect, "{text}");
}

#[test]
fn finds_std_and_tokio_commands() {
    check("let c = std::process::Command::new(\"x\");", &[1]);
    check("let c = tokio::process::Command::new(\"x\");", &[1]);
    check(
        "use std::process::{ExitStatus,\n    Command};\nCommand::new(p);",
        &[1, 3],
    );
    check("use std::os::unix::process::CommandExt;", &[1]);
    check(
        "use std::process::{ExitStatus, Stdio};\nstd::process::exit(1);",
        &[],
    );
    check("use child_process::Command;\nCommand::new(p);", &[]);
    check(
        "use child_process::{Child, Command};\nlet c = Command::new(p);",
        &[],
    );
    check("let c = child_process::Command::new(p);", &[]);
    check("// std::process::Command::new(p)\n/// Command::new(p)", &[]);
    check("use clap::CommandFactory;\nclap::Command::new(\"x\");", &[]);
    check("let c = Command::new(p);", &[1]);
}
