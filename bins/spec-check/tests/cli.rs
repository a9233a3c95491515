//! End-to-end tests of the `spec-check` executable: exit codes, output forms, bad input,
//! `--pgbin` against the real PostgreSQL 15, `--print-schema`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn spec_check(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spec-check"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.unwrap_or_default().to_vec();
    // Write from a thread: a large input must not deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn write_temp(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_owned()
}

const GOOD: &str = r#"{"format_version": 1.0, "cluster": {"roles": [{"name": "alice"}],
  "databases": [{"name": "app", "owner": "alice"}]}}"#;

#[test]
fn upstream_specs_pass_and_the_invalid_upstream_fixture_fails() {
    let upstream: Vec<String> = std::fs::read_dir(repo().join("specs/upstream"))
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(upstream.len(), 5);
    let args: Vec<&str> = upstream.iter().map(String::as_str).collect();
    let out = spec_check(&args, None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(!stdout(&out).contains(": error["));
    // Warnings exist (md5 without prefix, placeholders): --deny-warnings turns them into exit 1.
    let mut deny = vec!["--deny-warnings"];
    deny.extend(&args);
    assert_eq!(spec_check(&deny, None).status.code(), Some(1));

    let out = spec_check(
        &[
            "crates/compute-spec/tests/fixtures/invalid/upstream_latest_compute_tools_tests_cluster_spec_dup_safekeeper@6a35a3e9f1.json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(
        "dup_safekeeper@6a35a3e9f1.json:95:18: error[duplicate-safekeeper]: duplicate entry in neon.safekeepers: \"127.0.0.1:6502\" (at /cluster/settings/4/value)"
    ), "{}", stdout(&out));
}

/// A field compute_ctl accepts but does not act on is a warning naming it: exit 0, or 1 under
/// `--deny-warnings`.
#[test]
fn fields_not_acted_on_are_warnings_naming_the_field() {
    let path = "crates/compute-spec/tests/fixtures/invalid/not-acted-on.json";
    let out = spec_check(&[path], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "not-acted-on.json:12:18: warning[not-acted-on]: `autoprewarm` is not acted on by this compute_ctl"
        ),
        "{text}"
    );
    assert_eq!(text.matches("warning[not-acted-on]").count(), 9, "{text}");
    assert_eq!(
        spec_check(&["--deny-warnings", path], None).status.code(),
        Some(1)
    );
}

#[test]
fn human_and_json_output_and_stdin() {
    let text = r#"{
  "format_version": 1.0,
  "cluster": {
    "roles": [{"name": "alice", "encrypted_pasword": "x"}],
    "databases": [{"name": "app", "owner": "bob"}]
  }
}"#;
    let out = spec_check(&["-"], Some(text.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
    expect_test::expect![[r#"
        <stdin>:4:33: warning[unknown-field]: unknown field `encrypted_pasword` in role; it is ignored (did you mean `encrypted_password`?) (at /cluster/roles/0/encrypted_pasword)
        <stdin>:5:44: error[unknown-owner]: owner "bob" of database "app" is neither a role of the spec nor a role the compute provides (at /cluster/databases/0/owner)
    "#]]
    .assert_eq(&stdout(&out));

    // --provided-role makes bob acceptable; the warning alone exits 0.
    let out = spec_check(&["--provided-role", "bob", "-"], Some(text.as_bytes()));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    let out = spec_check(&["--format", "json", "-"], Some(text.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["errors"], 1);
    assert_eq!(json["warnings"], 1);
    let d = &json["files"][0]["diagnostics"][1];
    assert_eq!(d["code"], "unknown-owner");
    assert_eq!(d["pointer"], "/cluster/databases/0/owner");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(5), Some(44))
    );

    let out = spec_check(&["-"], Some(GOOD.as_bytes()));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");
}

#[test]
fn bad_input_gets_a_located_error_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut deep = "[".repeat(10_000).into_bytes();
    deep.extend("]".repeat(10_000).bytes());
    let mut huge = b"{\"format_version\": 1.0, \"x\": \"".to_vec();
    huge.resize(100 << 20, b'a');
    let truncated = &GOOD.as_bytes()[..40];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), ":1:1: error[syntax]"),
        ("truncated", truncated.to_vec(), ":1:40: error[syntax]"),
        ("not-json", b"cluster: {}".to_vec(), ":1:1: error[syntax]"),
        (
            "invalid-utf8",
            b"{\"a\": \"\xc3\x28\"}".to_vec(),
            ":1:8: error[invalid-utf8]",
        ),
        (
            "wrong-types",
            br#"{"format_version": "one", "cluster": []}"#.to_vec(),
            ":1:20: error[invalid-type]",
        ),
        ("deep", deep, ":1:128: error[syntax]"),
        ("huge", huge, ":1:1: error[too-large]"),
    ];
    for (name, content, expect) in cases {
        let path = write_temp(&dir, name, &content);
        let out = spec_check(&[&path], None);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stdout(&out));
        assert!(
            stdout(&out).starts_with(&format!("{path}{expect}")),
            "{name}: {}",
            stdout(&out)
        );
        // The same through stdin.
        let out = spec_check(&["-"], Some(&content));
        assert_eq!(out.status.code(), Some(1), "{name} via stdin");
        assert!(
            stdout(&out).starts_with(&format!("<stdin>{expect}")),
            "{name}"
        );
    }
}

#[test]
fn usage_and_io_errors_exit_2() {
    let out = spec_check(&["/nonexistent/spec.json"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/spec.json: cannot read"));
    assert_eq!(spec_check(&[], None).status.code(), Some(2));
    assert_eq!(
        spec_check(&["--format", "yaml", "-"], None).status.code(),
        Some(2)
    );
    let out = spec_check(
        &["--pgbin", "/nonexistent/postgres", "-"],
        Some(GOOD.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn pgbin_checks_settings_against_the_real_postgres() {
    let postgres = Path::new(
        &std::env::var("PG_BIN_DIR").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned()),
    )
    .join("postgres");
    let text = r##"{"format_version": 1.0, "cluster": {"roles": [], "databases": [],
  "postgresql_conf": "# verbatim\nwork_mem = 4MB\nmax_wal_size = '1 parsec'\nlisten_adresses = '*'\nshared_preload_libraries = 'auto_explain'\n",
  "settings": [
  {"name": "wal_level", "value": "logcal", "vartype": "enum"},
  {"name": "shared_buffers", "value": "1kB", "vartype": "integer"},
  {"name": "statement_timeout", "value": "5s", "vartype": "integer"},
  {"name": "work_mem", "value": "32MB", "vartype": "integer"},
  {"name": "max_conections", "value": "10", "vartype": "integer"},
  {"name": "random_page_cost", "value": "1.5", "vartype": "string"},
  {"name": "port", "value": "70000", "vartype": "integer"},
  {"name": "neon.pageserver_connstring_custom", "value": "x", "vartype": "string"},
  {"name": "test.escaping", "value": "a'b", "vartype": "string"},
  {"name": "shared_preload_libraries", "value": "pg_stat_statements, pg_stat_statments", "vartype": "string"}
]}}"##;
    let out = spec_check(
        &["--pgbin", postgres.to_str().unwrap(), "-"],
        Some(text.as_bytes()),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect_test::expect![[r#"
        <stdin>:2:22: error[invalid-setting-value]: line 3 of postgresql_conf: PostgreSQL rejects it: invalid value for parameter "max_wal_size": "1 parsec" (Valid units for this parameter are "B", "kB", "MB", "GB", and "TB") (at /cluster/postgresql_conf)
        <stdin>:2:22: error[unknown-setting]: line 4 of postgresql_conf: this PostgreSQL has no setting "listen_adresses" (did you mean `listen_addresses`?) (at /cluster/postgresql_conf)
        <stdin>:4:34: error[invalid-setting-value]: PostgreSQL rejects it: invalid value for parameter "wal_level": "logcal" (Available values: minimal, replica, logical); did you mean `logical`? (at /cluster/settings/0/value)
        <stdin>:5:39: error[invalid-setting-value]: PostgreSQL rejects it: 0 8kB is outside the valid range for parameter "shared_buffers" (16 .. 1073741823) (at /cluster/settings/1/value)
        <stdin>:8:12: error[unknown-setting]: this PostgreSQL has no setting "max_conections" (did you mean `max_connections`?) (at /cluster/settings/4/name)
        <stdin>:9:59: warning[pg-vartype-mismatch]: setting "random_page_cost" is of type REAL in this PostgreSQL; vartype "real" is expected, not "string" (at /cluster/settings/5/vartype)
        <stdin>:10:29: error[invalid-setting-value]: PostgreSQL rejects it: 70000 is outside the valid range for parameter "port" (1 .. 65535) (at /cluster/settings/6/value)
        <stdin>:13:49: error[unknown-library]: shared_preload_libraries entry "pg_stat_statments" is not installed: no pg_stat_statments.so in /usr/lib/postgresql/15/lib (did you mean `pg_stat_statements`?) (at /cluster/settings/9/value)
    "#]]
    .assert_eq(&stdout(&out));
}

/// README's quick start lints its example spec with the real PostgreSQL 15: not one finding,
/// warnings included.
#[test]
fn example_specs_are_clean_for_the_real_postgres() {
    let postgres = Path::new(
        &std::env::var("PG_BIN_DIR").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned()),
    )
    .join("postgres");
    let mut examples: Vec<String> = std::fs::read_dir(repo().join("specs/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.display().to_string())
        .collect();
    examples.sort();
    assert!(!examples.is_empty());
    let mut args = vec!["--deny-warnings", "--pgbin", postgres.to_str().unwrap()];
    args.extend(examples.iter().map(String::as_str));
    let out = spec_check(&args, None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "", "{examples:?}");
}

#[test]
fn print_schema_describes_the_spec() {
    let out = spec_check(&["--print-schema"], None);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let defs = &schema["$defs"];
    assert_eq!(
        defs["Lsn"]["pattern"],
        r"^\s*[0-9A-Fa-f]{1,8}\s*/\s*[0-9A-Fa-f]{1,8}\s*$"
    );
    assert_eq!(defs["TenantId"]["pattern"], "^[0-9A-Fa-f]{32}$");
    let required = defs["ComputeSpec"]["required"].as_array().unwrap();
    assert!(required.contains(&"cluster".into()), "{required:?}");
    assert!(defs["Role"]["properties"]["encrypted_password"].is_object());
}

/// Role and database options the reconciler would refuse are reported before any compute
/// starts, located at the option.
#[test]
fn options_off_the_reconcile_allow_list_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(
        &dir,
        "options.json",
        br#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice", "options": [
    {"name": "SUPERUSER", "vartype": "bool"},
    {"name": "CONNECTION LIMIT", "value": "lots", "vartype": "integer"}]}],
  "databases": [{"name": "app", "owner": "alice",
    "options": [{"name": "OID", "value": "1", "vartype": "integer"}]}]}}"#,
    );
    let out = spec_check(&[&file], None);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains(":3:"), "{text}");
    assert!(lines[0].contains("error[option-not-allowed]"), "{text}");
    assert!(
        lines[0].ends_with("(at /cluster/roles/0/options/0)"),
        "{text}"
    );
    assert!(lines[1].contains("error[bad-option-value]"), "{text}");
    assert!(lines[2].contains("error[option-not-allowed]"), "{text}");
    assert!(
        lines[2].contains("/cluster/databases/0/options/0"),
        "{text}"
    );
}

/// The admin path (compute_ctl's `-C` user and database) is guarded with upstream's defaults
/// or the flags that name another: located errors, as compute_ctl reports them.
#[test]
fn specs_that_lock_compute_ctl_out_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = |user: &str, db: &str| {
        format!(
            r#"{{"format_version": 1.0, "cluster": {{
  "roles": [{{"name": "{user}", "encrypted_password": "md5b2ad3f0a1c4e3e8e0d0f4c8ac2a1d9e7",
    "options": [{{"name": "NOLOGIN", "vartype": "bool"}}]}}], "databases": []}},
  "delta_operations": [{{"action": "rename_role", "name": "alice", "new_name": "{user}"}},
                       {{"action": "rename_db", "name": "{db}", "new_name": "elsewhere"}}]}}"#
        )
    };
    let defaults = write_temp(
        &dir,
        "defaults.json",
        text("cloud_admin", "postgres").as_bytes(),
    );
    let out = spec_check(&[&defaults], None);
    assert_eq!(out.status.code(), Some(1));
    let codes = |out: &Output| -> Vec<String> {
        stdout(out)
            .lines()
            .map(|l| {
                let (at, rest) = l.split_once(": ").unwrap();
                let at = at.rsplit_once(".json:").unwrap().1;
                format!("{at} {}", rest.split(':').next().unwrap())
            })
            .collect()
    };
    let expected = [
        "2:59 warning[admin-role-changed]",
        "3:17 error[admin-role-changed]",
        "4:79 error[delta-provided-role]",
        "5:56 error[system-database]",
        "5:80 warning[delta-rename-target-undeclared]",
    ];
    assert_eq!(codes(&out), expected, "{}", stdout(&out));

    // The same spec for another admin (names of the same lengths, so the same columns):
    // clean of the admin findings under the defaults,
    // refused under the flags (the password then too, when compute_ctl logs in with one).
    let custom = write_temp(
        &dir,
        "custom.json",
        text("cloud_owner", "admin_db").as_bytes(),
    );
    let out = spec_check(&[&custom], None);
    assert!(
        !stdout(&out).contains("admin-role-changed"),
        "{}",
        stdout(&out)
    );
    let flags = [
        "--admin-user",
        "cloud_owner",
        "--admin-database",
        "admin_db",
    ];
    let out = spec_check(&[&flags[..], &[&custom]].concat(), None);
    assert_eq!(codes(&out), expected, "{}", stdout(&out));
    let out = spec_check(
        &[&flags[..], &["--admin-password-login", &custom]].concat(),
        None,
    );
    assert_eq!(
        codes(&out)[0],
        "2:59 error[admin-role-changed]",
        "{}",
        stdout(&out)
    );
}

/// `--plan --connstr` prints what would run against a live server, and changes nothing.
#[test]
fn plan_against_a_live_server_changes_nothing() {
    let pg = test_postgres::TestPostgres::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(
        &dir,
        "spec.json",
        br#"{"format_version": 1.0, "cluster": {
  "roles": [{"name": "alice", "encrypted_password": "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}],
  "databases": [{"name": "app", "owner": "alice"}]}}"#,
    );
    let url = pg.url();
    let out = spec_check(&["--plan", "--connstr", &url, &file], None);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("CREATE ROLE \"alice\""), "{text}");
    assert!(text.contains("CREATE DATABASE \"app\""), "{text}");
    assert!(
        !text.contains("SCRAM-SHA-256$"),
        "password not redacted: {text}"
    );
    let roles = pg
        .psql(
            "postgres",
            "select count(*) from pg_roles where rolname = 'alice'",
        )
        .unwrap();
    assert_eq!(roles.trim(), "0");
    // --plan needs --connstr.
    assert_eq!(spec_check(&["--plan", &file], None).status.code(), Some(2));
}

/// `--format github`: one workflow command per finding, located, escaped; a file that cannot
/// be read is an `io-error` annotation too.
#[test]
fn github_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let owner = write_temp(
        &dir,
        "owner.json",
        br#"{"format_version": 1.0,
  "cluster": {"roles": [], "databases": [{"name": "app", "owner": "nobody"}]}}"#,
    );
    let negative = write_temp(
        &dir,
        "negative,swap.json",
        br#"{"format_version": 1.0, "cluster": {"roles": [], "databases": []},
  "swap_size_bytes": -5}"#,
    );
    let out = spec_check(
        &[
            "--format",
            "github",
            &owner,
            &negative,
            "/nonexistent/x.json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let escaped = negative.replace(',', "%2C");
    let expected = format!(
        "::error file={owner},line=2,col=67,title=unknown-owner::owner \"nobody\" of database \"app\" \
         is neither a role of the spec nor a role the compute provides (at /cluster/databases/0/owner)\n\
         ::error file={escaped},line=2,col=22,title=invalid-type::invalid value: integer `-5`, \
         expected a non-negative integer (at /swap_size_bytes)\n\
         ::error file=/nonexistent/x.json,title=io-error::cannot read: No such file or directory (os error 2)\n"
    );
    assert_eq!(stdout(&out), expected);
}

/// With `--format json`, a file that cannot be read is in the report (with its `error`), beside
/// the others' diagnostics; exit 2.
#[test]
fn json_reports_unreadable_files() {
    let out = spec_check(
        &["--format", "json", "/nonexistent/x.json", "-"],
        Some(GOOD.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{report}");
    assert_eq!(files[0]["file"], "/nonexistent/x.json");
    assert_eq!(
        files[0]["error"],
        "cannot read: No such file or directory (os error 2)"
    );
    assert_eq!(files[1]["file"], "<stdin>");
    assert!(files[1].get("error").is_none(), "{report}");
}
