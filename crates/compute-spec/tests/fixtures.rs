//! Fixture tests: every upstream spec validates and round-trips; every broken spec in
//! `tests/fixtures/invalid/` yields the diagnostics recorded beside it (`UPDATE_EXPECT=1` to
//! re-record).

use std::path::{Path, PathBuf};

use compute_spec::{ComputeConfig, ComputeSpec, Severity, ValidationOptions, validate_json};

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn render(text: &str) -> String {
    let validation = validate_json(text, &ValidationOptions::default());
    let mut out = String::new();
    for d in &validation.report.diagnostics {
        let at = d
            .location
            .map_or("-".to_owned(), |l| format!("{}:{}", l.line, l.column));
        out.push_str(&format!(
            "{at}: {}[{}]: {} (at {:?})\n",
            d.severity, d.code, d.message, d.pointer
        ));
    }
    out
}

#[test]
fn upstream_specs_validate_and_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/upstream");
    for path in json_files(&dir) {
        let text = std::fs::read_to_string(&path).unwrap();
        let validation = validate_json(&text, &ValidationOptions::default());
        let errors: Vec<_> = validation
            .report
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        let spec = validation.spec.expect("typed spec");
        // Round trip through the document's own shape.
        if validation.spec_pointer == "/spec" {
            let config: ComputeConfig = serde_json::from_str(&text).unwrap();
            let again: ComputeConfig =
                serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
            assert_eq!(config, again, "{}", path.display());
            assert_eq!(config.spec.as_ref(), Some(&spec));
        }
        let again: ComputeSpec =
            serde_json::from_str(&serde_json::to_string_pretty(&spec).unwrap()).unwrap();
        assert_eq!(spec, again, "{}", path.display());
    }
}

#[test]
fn broken_specs_match_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    for path in json_files(&dir) {
        let text = std::fs::read_to_string(&path).unwrap();
        let rendered = render(&text);
        assert!(!rendered.is_empty(), "{}: nothing reported", path.display());
        // Messages speak JSON, not Rust: no `expected u64`, `expected a sequence`.
        for rust in [
            "f32",
            "f64",
            "i32",
            "i64",
            "u8",
            "u16",
            "u32",
            "u64",
            "usize",
            "a sequence",
            "a map",
            "struct ",
        ] {
            assert!(
                !rendered.contains(&format!("expected {rust}")),
                "{}: {rendered}",
                path.display()
            );
        }
        expect_test::expect_file![path.with_extension("expected")].assert_eq(&rendered);
        // Every broken fixture still round-trips when it parses at all.
        if let Ok(spec) = serde_json::from_str::<ComputeSpec>(&text) {
            let again: ComputeSpec =
                serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
            assert_eq!(spec, again, "{}", path.display());
        }
    }
}

/// Every truncation and many single-byte corruptions of a real spec: never a panic, always at
/// least one error once the text is broken, and every diagnostic located.
#[test]
fn corrupted_specs_get_located_diagnostics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../specs/upstream/latest_docker-compose_config@6a35a3e9f1.json");
    let text = std::fs::read_to_string(path).unwrap();
    let options = ValidationOptions::default();
    let check = |input: &str, what: &str| {
        let validation = validate_json(input, &options);
        for d in &validation.report.diagnostics {
            assert!(d.location.is_some(), "{what}: unlocated {d:?}");
        }
        validation
    };
    for end in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
        let validation = check(&text[..end], &format!("truncated at {end}"));
        if text[..end].trim_end() != text.trim_end() {
            assert!(validation.report.has_errors(), "truncated at {end}");
        }
    }
    let bytes = text.as_bytes();
    for i in (0..bytes.len()).filter(|&i| bytes[i].is_ascii()) {
        for replacement in [b'"', b'{', b']', b'x'] {
            let mut corrupted = bytes.to_vec();
            corrupted[i] = replacement;
            let corrupted = String::from_utf8(corrupted).unwrap();
            check(&corrupted, &format!("byte {i} → {}", replacement as char));
        }
    }
}
