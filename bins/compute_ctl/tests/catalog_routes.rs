//! The catalog routes of the `compute_ctl` binary against the real PostgreSQL 15:
//! `GET /database_schema` (streamed `pg_dump`, its failures, a client that leaves),
//! `GET /insights` (`pg_stat_statements` missing, not preloaded, present), the internal
//! `POST /grants` and `POST /extensions` (412, 201, every 4xx, hostile names), and the
//! periodic installed-extensions scan behind `compute_installed_extensions`.

#[allow(
    dead_code,
    reason = "the harness is shared by every end-to-end test and bench; each uses a part"
)]
mod harness;

use std::time::Duration;

use harness::{Args, Ctl, eventually};
use pg_quote::quote_ident;
use serde_json::{Value, json};

/// A standalone spec with `roles`, `databases` (name, owner) and extra settings.
fn spec(roles: &[String], databases: &[(String, String)], settings: &[Value]) -> Value {
    let mut all = vec![
        json!({"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"}),
        json!({"name": "fsync", "value": "off", "vartype": "bool"}),
    ];
    all.extend_from_slice(settings);
    json!({
        "format_version": 1.0,
        "cluster": {
            "roles": roles.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
            "databases": databases.iter().map(|(n, o)| json!({"name": n, "owner": o})).collect::<Vec<_>>(),
            "settings": all,
        }
    })
}

/// A connection as compute_ctl's user to `db`; the name goes through the connection config.
async fn connect(ctl: &Ctl, db: &str) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(ctl.pg_port)
        .user("cloud_admin")
        .dbname(db);
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {db:?}: {e}"));
    tokio::spawn(conn);
    client
}

fn error_of(body: &str) -> String {
    let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// `POST /grants` on the internal API.
async fn grant(
    ctl: &Ctl,
    database: &str,
    schema: &str,
    privileges: Value,
    role: &str,
) -> (u16, String) {
    let body =
        json!({"database": database, "schema": schema, "privileges": privileges, "role": role});
    ctl.request_internal("POST", "/grants", &body.to_string())
        .await
}

/// `POST /extensions` on the internal API.
async fn install(ctl: &Ctl, database: &str, extension: &str, version: &str) -> (u16, String) {
    let body = json!({"extension": extension, "database": database, "version": version});
    ctl.request_internal("POST", "/extensions", &body.to_string())
        .await
}

/// The privileges granted to `role` in the ACL of `schema`, sorted (what `/grants` changes;
/// `has_schema_privilege` would also count the USAGE that `pg_read_all_data` implies).
async fn schema_acl(client: &tokio_postgres::Client, role: &str, schema: &str) -> Vec<String> {
    client
        .query(
            "SELECT a.privilege_type::text FROM pg_namespace n \
             CROSS JOIN LATERAL aclexplode(n.nspacl) a JOIN pg_roles r ON r.oid = a.grantee \
             WHERE r.rolname::text = $1 AND n.nspname::text = $2 ORDER BY 1",
            &[&role, &schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn extension_version(
    client: &tokio_postgres::Client,
    name: &str,
) -> Option<(String, String)> {
    client
        .query_opt(
            "SELECT e.extversion, n.nspname::text FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname::text = $1",
            &[&name],
        )
        .await
        .unwrap()
        .map(|row| (row.get(0), row.get(1)))
}

/// Before `running`, every catalog route answers 412 with upstream's text.
#[tokio::test(flavor = "multi_thread")]
async fn catalog_routes_need_a_running_compute() {
    let mut ctl = Ctl::start(Args::default());
    ctl.wait_status("empty").await;
    let (code, body) = grant(&ctl, "postgres", "public", json!(["USAGE"]), "cloud_admin").await;
    assert_eq!(
        (code, error_of(&body).as_str()),
        (412, "invalid compute status: empty")
    );
    let (code, body) = install(&ctl, "postgres", "hstore", "1.8").await;
    assert_eq!(
        (code, error_of(&body).as_str()),
        (412, "invalid compute status: empty")
    );
    let (code, body) = ctl.request("GET", "/insights", "", None).await;
    assert_eq!(
        (code, error_of(&body).as_str()),
        (412, "invalid compute status: empty")
    );
    // A body of the wrong shape is refused first, whatever the status.
    let (code, _) = ctl
        .request_internal(
            "POST",
            "/grants",
            r#"{"database":"d","schema":"s","privileges":["ALL"],"role":"r"}"#,
        )
        .await;
    assert_eq!(code, 422);
}

/// Bodies `/grants` and `/extensions` refuse before anything else (the status does not
/// matter): not JSON, of the wrong shape, not UTF-8, without the JSON content type. Each
/// answer keeps axum's status and has the `{"error"}` body of every other refusal, as JSON.
#[tokio::test(flavor = "multi_thread")]
async fn refused_bodies_of_grants_and_extensions_are_json_errors() {
    let mut ctl = Ctl::start(Args::default());
    ctl.wait_status("empty").await;
    let addr = format!("127.0.0.1:{}", ctl.internal_http_port);
    let json = Some("application/json");
    // What the body is, its content type, its bytes; the status and a word of the message.
    type Case = (
        &'static str,
        Option<&'static str>,
        &'static [u8],
        u16,
        &'static str,
    );
    let cases: [Case; 6] = [
        ("not JSON", json, b"{\"database\":", 400, "failed to parse"),
        ("wrong shape", json, b"{}", 422, "missing field"),
        (
            "not UTF-8",
            json,
            b"{\"database\": \"\xff\"}",
            400,
            "unicode",
        ),
        ("text/plain", Some("text/plain"), b"{}", 415, "content-type"),
        ("no content type", None, b"{}", 415, "content-type"),
        ("not an object", json, b"[1]", 422, "invalid type"),
    ];
    for path in ["/grants", "/extensions"] {
        for (case, content_type, body, code, reason) in cases {
            let (got, headers, answer) = harness::http_request_bytes(
                &addr,
                "POST",
                path,
                content_type,
                body.to_vec().into(),
                &[],
            )
            .await
            .unwrap();
            assert_eq!(got, code, "{path} {case}: {answer}");
            assert_eq!(headers["content-type"], "application/json", "{path} {case}");
            let error: Value = serde_json::from_str(&answer)
                .unwrap_or_else(|e| panic!("{path} {case}: {e}: {answer}"));
            let message = error["error"].as_str().unwrap_or_default().to_lowercase();
            assert!(message.contains(reason), "{path} {case}: {answer}");
            assert_eq!(error.as_object().map(|o| o.len()), Some(1), "{answer}");
        }
    }
}

/// Grants and extensions in databases, schemas and roles with every hostile name: each
/// request answers 201 with upstream's payload and has exactly its effect; unknown objects
/// and bad values answer 4xx with the reason and change nothing.
#[tokio::test(flavor = "multi_thread")]
async fn grants_and_extensions_with_hostile_names() {
    let names = test_postgres::hostile_names();
    let databases: Vec<(String, String)> = names.iter().map(|n| (n.clone(), n.clone())).collect();
    let ctl = Ctl::start_running(&spec(&names, &databases, &[]), &[]).await;

    for name in &names {
        let client = connect(&ctl, name).await;
        client
            .batch_execute(&format!("CREATE SCHEMA {}", quote_ident(name)))
            .await
            .unwrap();
        let (code, body) = grant(&ctl, name, name, json!(["USAGE"]), name).await;
        assert_eq!(code, 201, "{name:?}: {body}");
        assert_eq!(schema_acl(&client, name, name).await, ["USAGE"], "{name:?}");
        let (code, body) = grant(&ctl, name, name, json!(["USAGE", "CREATE"]), name).await;
        assert_eq!(code, 201, "{name:?}: {body}");
        let echoed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            echoed,
            json!({"database": name, "schema": name, "privileges": ["USAGE", "CREATE"], "role": name})
        );
        assert_eq!(
            schema_acl(&client, name, name).await,
            ["CREATE", "USAGE"],
            "{name:?}"
        );

        let (code, body) = install(&ctl, name, "hstore", "1.7").await;
        assert_eq!(code, 201, "{name:?}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"extension": "hstore", "version": "1.7"})
        );
        assert_eq!(
            extension_version(&client, "hstore").await,
            Some(("1.7".to_owned(), "public".to_owned())),
            "{name:?}"
        );
    }

    // Update, then nothing to do; a version without an update path, an unknown version or
    // extension, a bad version text: refused, the installed version unchanged.
    let db = names[0].as_str();
    let client = connect(&ctl, db).await;
    for _ in 0..2 {
        let (code, body) = install(&ctl, db, "hstore", "1.8").await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(extension_version(&client, "hstore").await.unwrap().0, "1.8");
    }
    let long_extension = "x".repeat(64);
    let long_schema = "s".repeat(64);
    let refusals = [
        ("hstore", "1.7", 400, "no update path"),
        (
            "hstore",
            "9.9",
            404,
            "extension \"hstore\" version \"9.9\" is not available",
        ),
        (
            "no_such_extension",
            "1.0",
            404,
            "is not available on this compute",
        ),
        ("hstore", "", 400, "invalid version \"\": empty"),
        (long_extension.as_str(), "1.0", 400, "longer than 63 bytes"),
    ];
    for (extension, version, want, reason) in refusals {
        let (code, body) = install(&ctl, db, extension, version).await;
        let error = error_of(&body);
        assert_eq!(code, want, "{extension} {version}: {body}");
        assert!(
            error.starts_with("failed to install extension: "),
            "{error}"
        );
        assert!(error.contains(reason), "{error}");
    }
    assert_eq!(extension_version(&client, "hstore").await.unwrap().0, "1.8");
    let (code, body) = install(&ctl, "no such database", "hstore", "1.8").await;
    assert_eq!(code, 404, "{body}");
    assert!(
        error_of(&body).contains("database \"no such database\" does not exist"),
        "{body}"
    );

    let grant_refusals = [
        (
            "no such database",
            db,
            json!(["USAGE"]),
            db,
            404,
            "database \"no such database\" does not exist",
        ),
        (
            db,
            "no such schema",
            json!(["USAGE"]),
            db,
            404,
            "schema \"no such schema\" does not exist",
        ),
        (
            db,
            db,
            json!(["USAGE"]),
            "no such role",
            404,
            "role \"no such role\" does not exist",
        ),
        (
            db,
            db,
            json!(["SELECT"]),
            db,
            400,
            "invalid privilege type SELECT for schema",
        ),
        (
            db,
            db,
            json!(["USAGE"]),
            "a\u{0}b",
            400,
            "contains a NUL character",
        ),
        (
            db,
            long_schema.as_str(),
            json!(["USAGE"]),
            db,
            400,
            "longer than 63 bytes",
        ),
        (
            db,
            db,
            json!(["USAGE"]),
            "",
            400,
            "invalid role \"\": empty",
        ),
    ];
    for (database, schema, privileges, role, want, reason) in grant_refusals {
        let (code, body) = grant(&ctl, database, schema, privileges, role).await;
        let error = error_of(&body);
        assert_eq!(code, want, "{database:?} {schema:?} {role:?}: {body}");
        assert!(
            error.starts_with("failed to grant role privileges to the schema: "),
            "{error}"
        );
        assert!(error.contains(reason), "{error}");
    }
    let (code, _) = grant(&ctl, db, db, json!(["ALL"]), db).await;
    assert_eq!(code, 422, "an unknown privilege is not in the enum");
    assert_eq!(
        schema_acl(&client, db, db).await,
        ["CREATE", "USAGE"],
        "nothing changed"
    );
}

/// The processes whose environment holds `PGDATABASE=<db>` (a `pg_dump` of `db`): pid, uid.
fn pg_dumps_of(db: &str) -> Vec<(u32, u32)> {
    let needle = format!("PGDATABASE={db}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(u32::MAX);
            found.push((pid, uid));
        }
    }
    found
}

/// A client that reads the beginning of a big dump and goes away: `pg_dump`, which ran as the
/// Postgres user, is killed and reaped. Also: 409 for a database that refuses connections,
/// 400 without `database`, and a dump holds no password hash.
#[tokio::test(flavor = "multi_thread")]
async fn database_schema_streams_and_a_departed_client_stops_pg_dump() {
    let roles = vec!["owner".to_owned()];
    let big = format!("bigdump_{}", std::process::id());
    let databases = vec![
        (big.clone(), "owner".to_owned()),
        ("closed".to_owned(), "owner".to_owned()),
    ];
    let ctl = Ctl::start_running(&spec(&roles, &databases, &[]), &[]).await;
    let admin = ctl.pg("postgres").await;
    admin
        .batch_execute(
            "ALTER ROLE owner PASSWORD 'SCRAM-SHA-256$4096:c2FsdHNhbHQ=$aGFzaA==:a2V5'; \
             ALTER DATABASE closed ALLOW_CONNECTIONS false",
        )
        .await
        .unwrap();
    // 32 MB of comments: far more than the pipe and the sockets hold.
    connect(&ctl, &big)
        .await
        .batch_execute(
            "CREATE TABLE big (id int); \
             DO $$ BEGIN EXECUTE format('COMMENT ON TABLE big IS %L', repeat('x', 32000000)); END $$",
        )
        .await
        .unwrap();

    let (code, body) = ctl
        .request("GET", "/database_schema?database=closed", "", None)
        .await;
    assert_eq!(
        (code, error_of(&body).as_str()),
        (409, "database \"closed\" does not allow connections")
    );
    let (code, _) = ctl.request("GET", "/database_schema", "", None).await;
    assert_eq!(code, 400);

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", ctl.http_port))
        .await
        .unwrap();
    let request = format!("GET /database_schema?database={big} HTTP/1.1\r\nHost: test\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(60), socket.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let running = pg_dumps_of(&big);
    assert_eq!(running.len(), 1, "one pg_dump, still writing: {running:?}");
    if nix::unistd::Uid::effective().is_root() {
        let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        assert_eq!(
            running[0].1,
            postgres.uid.as_raw(),
            "pg_dump runs as the Postgres user"
        );
    }
    drop(socket);
    let gone = eventually(Duration::from_secs(10), || async {
        pg_dumps_of(&big).is_empty().then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "pg_dump left running: {:?}\n{}",
        pg_dumps_of(&big),
        ctl.log()
    );

    // A whole dump through the harness: complete, and no role's password hash in it.
    connect(&ctl, &big)
        .await
        .batch_execute("DROP TABLE big")
        .await
        .unwrap();
    let (code, ddl) = ctl
        .request("GET", &format!("/database_schema?database={big}"), "", None)
        .await;
    assert_eq!(code, 200, "{ddl}");
    assert!(
        ddl.contains("-- PostgreSQL database dump complete"),
        "{ddl}"
    );
    assert!(!ddl.contains("SCRAM-SHA-256"), "{ddl}");
}

/// `-b` in a directory without `pg_dump`, then with a `pg_dump` that fails: 500 with the
/// reason each time.
#[tokio::test(flavor = "multi_thread")]
async fn database_schema_reports_a_missing_or_failing_pg_dump() {
    let bin = tempfile::tempdir().unwrap();
    // The Postgres user runs initdb and postgres from here.
    std::fs::set_permissions(
        bin.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for entry in std::fs::read_dir(test_postgres::pg_bin_dir())
        .unwrap()
        .flatten()
    {
        if entry.file_name() != "pg_dump" {
            std::os::unix::fs::symlink(entry.path(), bin.path().join(entry.file_name())).unwrap();
        }
    }
    let postgres = bin.path().join("postgres").display().to_string();
    let ctl = Ctl::start_running(&spec(&[], &[], &[]), &["-b", &postgres]).await;
    let (code, body) = ctl
        .request("GET", "/database_schema?database=postgres", "", None)
        .await;
    assert_eq!(code, 500, "{body}");
    assert!(error_of(&body).starts_with("start pg_dump: "), "{body}");

    let script = bin.path().join("pg_dump");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'pg_dump: error: out of luck' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, body) = ctl
        .request("GET", "/database_schema?database=postgres", "", None)
        .await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        error_of(&body),
        "pg_dump failed (exit status: 1): pg_dump: error: out of luck"
    );
}

/// `/insights`: 404 without the extension, 409 when its library is not preloaded, else the
/// top statements as a JSON string, compute_ctl's own left out.
#[tokio::test(flavor = "multi_thread")]
async fn insights_from_pg_stat_statements() {
    let ctl = Ctl::start_running(&spec(&[], &[], &[]), &[]).await;
    let (code, body) = ctl.request("GET", "/insights", "", None).await;
    assert_eq!(code, 404, "{body}");
    assert!(
        error_of(&body).starts_with("pg_stat_statements is not installed in database \"postgres\""),
        "{body}"
    );
    ctl.pg("postgres")
        .await
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    let (code, body) = ctl.request("GET", "/insights", "", None).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        error_of(&body).contains("shared_preload_libraries"),
        "{body}"
    );
    drop(ctl);

    let preload = json!({"name": "shared_preload_libraries", "value": "pg_stat_statements", "vartype": "string"});
    let ctl = Ctl::start_running(&spec(&["app".to_owned()], &[], &[preload]), &[]).await;
    let admin = ctl.pg("postgres").await;
    // Preloaded, so the reconciler created it (in `public`); moved to a hostile schema here.
    admin
        .batch_execute(
            "CREATE SCHEMA \"my \"\"stats\"; \
             ALTER EXTENSION pg_stat_statements SET SCHEMA \"my \"\"stats\"",
        )
        .await
        .unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(ctl.pg_port)
        .user("app")
        .dbname("postgres");
    let (app, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    app.batch_execute("SELECT pg_sleep(0.05); SELECT 1")
        .await
        .unwrap();
    let (code, body) = ctl.request("GET", "/insights", "", None).await;
    assert_eq!(code, 200, "{body}");
    let text: String = serde_json::from_str(&body).expect("a JSON string");
    let insights: Value = serde_json::from_str(&text).expect("holding JSON");
    let rows = insights["pg_stat_statements"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["query"].as_str().unwrap_or("").contains("pg_sleep")),
        "{text}"
    );
    let admin_oid: u32 = admin
        .query_one(
            "SELECT oid FROM pg_roles WHERE rolname = 'cloud_admin'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        rows.iter().all(|r| r["userid"] != json!(admin_oid)),
        "{text}"
    );
    let means: Vec<f64> = rows
        .iter()
        .map(|r| r["mean_exec_time"].as_f64().unwrap() + r["mean_plan_time"].as_f64().unwrap())
        .collect();
    assert!(means.windows(2).all(|w| w[0] >= w[1]), "{means:?}");
}

/// With `--installed-extensions-collection-interval 1` the scan repeats every 2 s and sees a
/// new extension, in a database with a hostile name too; the scan is not activity; the task
/// stops with the compute.
#[tokio::test(flavor = "multi_thread")]
async fn installed_extensions_are_rescanned_periodically() {
    let name = test_postgres::hostile_names()[3].clone();
    let autovacuum_off = json!({"name": "autovacuum", "value": "off", "vartype": "bool"});
    let mut ctl = Ctl::start_running(
        &spec(
            &["app".to_owned()],
            &[(name.clone(), "app".to_owned())],
            &[autovacuum_off],
        ),
        &["--installed-extensions-collection-interval", "1"],
    )
    .await;
    // The scan at start, then an extension only a later scan can see.
    ctl.wait_log("[NEON_EXT_STAT]").await;
    connect(&ctl, &name)
        .await
        .batch_execute("CREATE EXTENSION hstore VERSION '1.7'")
        .await
        .unwrap();
    let sample = r#"compute_installed_extensions{extension_name="hstore",version="1.7",owned_by_superuser="1"} 1"#;
    let plpgsql = r#"compute_installed_extensions{extension_name="plpgsql",version="1.0",owned_by_superuser="1"} 3"#;
    let seen = eventually(Duration::from_secs(20), || async {
        let (_, text) = ctl.request("GET", "/metrics", "", None).await;
        (text.contains(sample) && text.contains(plpgsql)).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "{}",
        ctl.request("GET", "/metrics", "", None).await.1
    );
    assert!(
        ctl.log().matches("[NEON_EXT_STAT]").count() >= 2,
        "{}",
        ctl.log()
    );
    let status = ctl.get_json("/status").await;
    assert_eq!(
        status["last_active"],
        Value::Null,
        "the scans are not activity: {status}"
    );

    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = ctl.wait_exit(Duration::from_secs(20)).await;
    assert!(exit.success(), "{exit}\n{}", ctl.log());
}
