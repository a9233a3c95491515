//! compute_ctl's own connections to the local Postgres: connecting with safe session options,
//! the writability check table, and the `/dbs_and_roles` listing (no password hashes).

use anyhow::Context;
use compute_spec::api::{DbsAndRoles, ListedDatabase, ListedRole};
use tokio_postgres::{Client, NoTls};

/// Connects with `config` plus options that guard against per-database and per-role traps
/// (`ALTER DATABASE ... SET role = …`, `default_transaction_read_only = on`, a tiny
/// `statement_timeout`, a `search_path` with a look-alike `pg_catalog`); the connstr's own
/// options come last and win.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    dbname: Option<&str>,
) -> anyhow::Result<Client> {
    let mut config = config.clone();
    let user_options = config.get_options().unwrap_or_default().to_owned();
    config
        .options(format!(
            "-c role=none -c default_transaction_read_only=off -c statement_timeout=0 \
             -c search_path=pg_catalog {user_options}"
        ))
        .application_name("compute_ctl")
        .connect_timeout(std::time::Duration::from_secs(10));
    if let Some(db) = dbname {
        config.dbname(db);
    }
    let (client, connection) = config.connect(NoTls).await.context("connect to postgres")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

const HEALTH_CHECK_TABLE: &str = "CREATE TABLE IF NOT EXISTS public.health_check (\
     id integer PRIMARY KEY, updated_at timestamptz NOT NULL DEFAULT now())";
const HEALTH_CHECK_UPSERT: &str = "INSERT INTO public.health_check (id, updated_at) VALUES (1, now()) \
     ON CONFLICT (id) DO UPDATE SET updated_at = now()";

/// Creates the table `/check_writability` updates.
pub(crate) async fn create_writability_check_data(client: &Client) -> anyhow::Result<()> {
    client
        .batch_execute(HEALTH_CHECK_TABLE)
        .await
        .context("create public.health_check")?;
    client
        .batch_execute(HEALTH_CHECK_UPSERT)
        .await
        .context("write public.health_check")?;
    Ok(())
}

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
