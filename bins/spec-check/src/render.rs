//! Rendering of reports: the human `file:line:col: severity[code]: message (at /pointer)` form,
//! the JSON form and GitHub's workflow commands. Pure: writes to any `Write`.

use std::io::Write;

use compute_spec::{Diagnostic, Severity, codes};

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

/// The ` (at /pointer)` suffix of a message; nothing for text-level problems (not JSON, not
/// UTF-8, too large), which have no pointer to show.
fn pointer_suffix(d: &Diagnostic) -> String {
    let text_level = [
        codes::SYNTAX,
        codes::DUPLICATE_KEY,
        codes::INVALID_UTF8,
        codes::TOO_LARGE,
    ];
    match d.pointer.as_str() {
        _ if text_level.contains(&d.code) => String::new(),
        "" => " (at the document root)".to_owned(),
        p => format!(" (at {p})"),
    }
}

/// One line per diagnostic: `file:line:col: severity[code]: message (at /pointer)`. Files that
/// could not be read are reported on standard error by the caller.
pub fn human(reports: &[FileReport], out: &mut dyn Write) -> std::io::Result<()> {
    for report in reports {
        for d in &report.diagnostics {
            let at = match d.location {
                Some(l) => format!("{}:{}:{}", report.file, l.line, l.column),
                None => report.file.clone(),
            };
            writeln!(
                out,
                "{at}: {}[{}]: {}{}",
                d.severity,
                d.code,
                d.message,
                pointer_suffix(d)
            )?;
        }
    }
    Ok(())
}

/// The title of the annotation of a file that could not be read.
pub const IO_ERROR_TITLE: &str = "io-error";

/// One GitHub workflow command per diagnostic, `::error file=F,line=L,col=C,title=CODE::message
/// (at /pointer)` (`::warning` for warnings), and `::error file=F,title=io-error::…` per file
/// that could not be read; properties and message escaped as GitHub requires.
pub fn github(reports: &[FileReport], out: &mut dyn Write) -> std::io::Result<()> {
    for report in reports {
        if let Some(error) = &report.error {
            let properties = [
                ("file", report.file.clone()),
                ("title", IO_ERROR_TITLE.into()),
            ];
            writeln!(out, "{}", workflow_command("error", &properties, error))?;
        }
        for d in &report.diagnostics {
            let command = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let mut properties = vec![("file", report.file.clone())];
            if let Some(l) = d.location {
                properties.push(("line", l.line.to_string()));
                properties.push(("col", l.column.to_string()));
            }
            properties.push(("title", d.code.to_owned()));
            let message = format!("{}{}", d.message, pointer_suffix(d));
            writeln!(out, "{}", workflow_command(command, &properties, &message))?;
        }
    }
    Ok(())
}

/// `::command key=value,…::message`.
fn workflow_command(command: &str, properties: &[(&str, String)], message: &str) -> String {
    let properties: Vec<String> = properties
        .iter()
        .map(|(key, value)| format!("{key}={}", escape_property(value)))
        .collect();
    format!(
        "::{command} {}::{}",
        properties.join(","),
        escape_data(message)
    )
}

/// A workflow command's message: `%`, CR and LF percent-encoded.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: as a message, and `:` and `,` too.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
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
    use compute_spec::Location;

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
            error: None,
        }]
    }

    #[test]
    fn renders_github_workflow_commands() {
        let mut reports = sample();
        reports.push(FileReport {
            file: "dir,with:odd%name\n.json".to_owned(),
            diagnostics: vec![Diagnostic {
                location: Some(Location { line: 1, column: 2 }),
                ..Diagnostic::new(
                    "syntax",
                    Severity::Error,
                    String::new(),
                    "100% wrong:\r\nsecond line, really",
                )
            }],
            error: None,
        });
        reports.push(FileReport {
            file: "/missing.json".to_owned(),
            diagnostics: Vec::new(),
            error: Some("cannot read: No such file or directory (os error 2)".to_owned()),
        });
        let mut out = Vec::new();
        github(&reports, &mut out).unwrap();
        expect_test::expect![[r#"
            ::error file=spec.json,line=3,col=7,title=duplicate-role::role "a" is declared twice (at /cluster/roles/1/name)
            ::warning file=spec.json,title=unknown-field::x (at the document root)
            ::error file=dir%2Cwith%3Aodd%25name%0A.json,line=1,col=2,title=syntax::100%25 wrong:%0D%0Asecond line, really
            ::error file=/missing.json,title=io-error::cannot read: No such file or directory (os error 2)
        "#]]
        .assert_eq(&String::from_utf8(out).unwrap());
    }

    #[test]
    fn json_carries_read_errors() {
        let reports = [FileReport {
            file: "/missing.json".to_owned(),
            diagnostics: Vec::new(),
            error: Some("cannot read: gone".to_owned()),
        }];
        let mut out = Vec::new();
        json(&reports, &mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["files"][0]["error"], "cannot read: gone");
        assert_eq!(value["files"][0]["diagnostics"], serde_json::json!([]));
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
