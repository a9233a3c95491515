//! compute_ctl's own connections to the local Postgres: connecting as an admin session
//! (pg-reconcile's session guards), the writability check (its table is pg-reconcile's), and
//! the `/dbs_and_roles` listing (no password hashes).

use anyhow::Context;
use compute_spec::api::{DbsAndRoles, ListedDatabase, ListedRole};
use pg_reconcile::SessionGuards;

use crate::state::Compute;
use tokio_postgres::{Client, NoTls};

/// How long compute_ctl waits for one of its sessions to be ready, socket connect and
/// startup together.
const SESSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects with `config` as an admin session: `guards` (pg-reconcile's [`SessionGuards`],
/// against per-database and per-role traps such as `ALTER DATABASE … SET role = …`,
/// `default_transaction_read_only = on`, a tiny `statement_timeout`, a look-alike
/// `search_path`) first, the connstr's own options last (they win).
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    guards: SessionGuards,
    dbname: Option<&str>,
) -> anyhow::Result<Client> {
    connect_as(config, guards, dbname, "compute_ctl").await
}

/// [`connect`] with another `application_name`, sent in the startup packet (so the session
/// is named from its first moment, e.g. for the activity monitor to leave it out).
pub(crate) async fn connect_as(
    config: &tokio_postgres::Config,
    guards: SessionGuards,
    dbname: Option<&str>,
    application_name: &str,
) -> anyhow::Result<Client> {
    connect_within(config, guards, dbname, application_name, SESSION_TIMEOUT).await
}

/// The `application_name` of the catalog routes' sessions (`crate::catalog_sessions`).
pub(crate) const CATALOG_APPLICATION_NAME: &str = "compute_ctl:catalog";

/// [`connect`] bounded by `limit`, named [`CATALOG_APPLICATION_NAME`], with `options` (startup options such as
/// `-c statement_timeout=…`) after the guards and the connection string's own.
pub(crate) async fn connect_bounded(
    config: &tokio_postgres::Config,
    guards: SessionGuards,
    dbname: Option<&str>,
    limit: std::time::Duration,
    options: &str,
) -> anyhow::Result<(Client, tokio::task::JoinHandle<()>)> {
    let mut config = config.clone();
    guards.apply_to(&mut config);
    let all = format!("{} {options}", config.get_options().unwrap_or_default());
    config.options(all.trim());
    open(config, dbname, CATALOG_APPLICATION_NAME, limit).await
}

/// [`connect_as`] bounded by `limit` instead of [`SESSION_TIMEOUT`].
async fn connect_within(
    config: &tokio_postgres::Config,
    guards: SessionGuards,
    dbname: Option<&str>,
    application_name: &str,
    limit: std::time::Duration,
) -> anyhow::Result<Client> {
    let mut config = config.clone();
    guards.apply_to(&mut config);
    Ok(open(config, dbname, application_name, limit).await?.0)
}

async fn open(
    mut config: tokio_postgres::Config,
    dbname: Option<&str>,
    application_name: &str,
    limit: std::time::Duration,
) -> anyhow::Result<(Client, tokio::task::JoinHandle<()>)> {
    config
        .application_name(application_name)
        .connect_timeout(limit);
    if let Some(db) = dbname {
        config.dbname(db);
    }
    // `connect_timeout` bounds the socket connect only: a postmaster that accepted the socket
    // but does not answer (stopped, overloaded) would hold the startup forever.
    let (client, connection) = tokio::time::timeout(limit, config.connect(NoTls))
        .await
        .map_err(|_| anyhow::anyhow!("connect to postgres: no session within {limit:?}"))?
        .context("connect to postgres")?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok((client, connection))
}

/// The session guards for the compute's current spec (`pgaudit.log` only when it preloads
/// `pgaudit`).
pub(crate) fn guards(compute: &Compute) -> SessionGuards {
    compute
        .with(|s| s.spec.as_ref().map(SessionGuards::for_spec))
        .unwrap_or_default()
}

/// Works on the table pg-reconcile creates (identity `id`, nullable `updated_at`) and on the
/// older shape a basebackup may carry (plain integer `id`, `updated_at` NOT NULL).
const HEALTH_CHECK_UPSERT: &str = "INSERT INTO public.health_check (id, updated_at) \
     VALUES (1, pg_catalog.now()) ON CONFLICT (id) DO UPDATE SET updated_at = pg_catalog.now()";

/// Writes one row: fails when the compute cannot write. A full disk counts as writable (the
/// compute itself works; upstream does the same).
pub(crate) async fn check_writability(client: &Client) -> anyhow::Result<()> {
    match client.batch_execute(HEALTH_CHECK_UPSERT).await {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL) => Ok(()),
        Err(e) => Err(e).context("update public.health_check"),
    }
}

/// Lists user roles and databases.
pub(crate) async fn dbs_and_roles(client: &Client) -> anyhow::Result<DbsAndRoles> {
    let roles = client
        .query(
            "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname",
            &[],
        )
        .await
        .context("list roles")?
        .into_iter()
        .map(|row| ListedRole { name: row.get(0), encrypted_password: None, options: None })
        .collect();
    let databases = client
        .query(
            "SELECT d.datname::text, r.rolname::text, NOT d.datallowconn, d.datconnlimit = -2 \
             FROM pg_catalog.pg_database d JOIN pg_catalog.pg_roles r ON r.oid = d.datdba \
             WHERE NOT d.datistemplate ORDER BY d.datname",
            &[],
        )
        .await
        .context("list databases")?
        .into_iter()
        .map(|row| ListedDatabase {
            name: row.get(0),
            owner: row.get(1),
            options: None,
            restrict_conn: row.get(2),
            invalid: row.get(3),
        })
        .collect();
    Ok(DbsAndRoles { roles, databases })
}

#[cfg(test)]
mod session_tests {
    use super::*;

    /// A server that accepts the socket and never answers the startup message: the connect
    /// fails at the bound instead of hanging.
    #[tokio::test]
    async fn a_silent_server_fails_the_connect_at_the_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let config: tokio_postgres::Config = format!("host=127.0.0.1 port={port} user=admin")
            .parse()
            .unwrap();
        let limit = std::time::Duration::from_millis(300);
        let started = std::time::Instant::now();
        let error = connect_within(&config, SessionGuards::default(), None, "t", limit)
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("no session within 300ms"),
            "{error:#}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
