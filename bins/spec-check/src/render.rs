//! Rendering of reports: the human `file:line:col: severity[code]: message (at /pointer)` form
//! and the JSON form. Pure: writes to any `Write`.

use std::io::Write;

use compute_spec::{Severity, codes};

use crate::FileReport;

/// Number of errors and warnings over all reports.
pub fn counts(reports: &[FileReport]) -> (usize, usize) {
    let all = reports.iter().flat_map(|r| &r.diagnostics);
    let errors = all
        .clone()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = all.filter(|d| d.severity == Severity::Warning).count();
    (errors, warnings)
}

/// One line per diagnostic: `file:line:col: severity[code]: message (at /pointer)`.
pub fn human(reports: &[FileReport], out: &mut dyn Write) -> std::io::Result<()> {
    for report in reports {
        for d in &report.diagnostics {
            let at = match d.location {
                Some(l) => format!("{}:{}:{}", report.file, l.line, l.column),
                None => report.file.clone(),
            };
            // Text-level problems (not JSON, not UTF-8, too large) have no pointer to show.
            let text_level = [
                codes::SYNTAX,
                codes::DUPLICATE_KEY,
                codes::INVALID_UTF8,
                codes::TOO_LARGE,
            ];
            let pointer = match d.pointer.as_str() {
                _ if text_level.contains(&d.code) => String::new(),
                "" => " (at the document root)".to_owned(),
                p => format!(" (at {p})"),
            };
            writeln!(
                out,
                "{at}: {}[{}]: {}{pointer}",
                d.severity, d.code, d.message
            )?;
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct JsonReport<'a> {
    files: &'a [FileReport],
    errors: usize,
    warnings: usize,
}

/// `{"files": [{"file", "diagnostics": [{code, severity, pointer, message, line, column}]}],
/// "errors", "warnings"}`.
pub fn json(reports: &[FileReport], out: &mut dyn Write) -> std::io::Result<()> {
    let (errors, warnings) = counts(reports);
    serde_json::to_writer_pretty(
        &mut *out,
        &JsonReport {
            files: reports,
            errors,
            warnings,
        },
    )?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use compute_spec::{Diagnostic, Location};

    use super::*;

    fn sample() -> Vec<FileReport> {
        vec![FileReport {
            file: "spec.json".to_owned(),
            diagnostics: vec![
                Diagnostic {
                    location: Some(Location { line: 3, column: 7 }),
                    ..Diagnostic::new(
                        "duplicate-role",
                        Severity::Error,
                        "/cluster/roles/1/name".to_owned(),
                        "role \"a\" is declared twice",
                    )
                },
                Diagnostic::new("unknown-field", Severity::Warning, String::new(), "x"),
            ],
        }]
    }

    #[test]
    fn renders_human() {
        let mut out = Vec::new();
        human(&sample(), &mut out).unwrap();
        expect_test::expect![[r#"
            spec.json:3:7: error[duplicate-role]: role "a" is declared twice (at /cluster/roles/1/name)
            spec.json: warning[unknown-field]: x (at the document root)
        "#]]
        .assert_eq(&String::from_utf8(out).unwrap());
    }

    #[test]
    fn renders_json() {
        let mut out = Vec::new();
        json(&sample(), &mut out).unwrap();
        expect_test::expect![[r#"
            {
              "files": [
                {
                  "file": "spec.json",
                  "diagnostics": [
                    {
                      "code": "duplicate-role",
                      "severity": "error",
                      "pointer": "/cluster/roles/1/name",
                      "message": "role \"a\" is declared twice",
                      "line": 3,
                      "column": 7
                    },
                    {
                      "code": "unknown-field",
                      "severity": "warning",
                      "pointer": "",
                      "message": "x"
                    }
                  ]
                }
              ],
              "errors": 1,
              "warnings": 1
            }
        "#]]
        .assert_eq(&String::from_utf8(out).unwrap());
    }
}
