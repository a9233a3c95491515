//! What compute_ctl logs once the compute is running: the startup metrics as fields, and one
//! line telling the user how to connect (the connection string without a password).

use compute_spec::api::ComputeMetrics;
use tokio_postgres::config::Host;

/// Logs the startup metrics (one field each), the start's phases (`phases`: the clock's
/// summary) and the connection string.
pub(crate) fn report_running(metrics: &ComputeMetrics, phases: &str, pg: &tokio_postgres::Config) {
    let ComputeMetrics {
        wait_for_spec_ms,
        sync_safekeepers_ms,
        sync_sk_check_ms,
        pageserver_connect_micros,
        basebackup_ms,
        basebackup_bytes,
        start_postgres_ms,
        config_ms,
        total_startup_ms,
        load_ext_ms,
        num_ext_downloaded,
        largest_ext_size,
        total_ext_download_size,
        initdb_ms,
        startup_phases: _,
    } = *metrics;
    tracing::info!(
        total_startup_ms,
        wait_for_spec_ms,
        initdb_ms,
        sync_sk_check_ms,
        sync_safekeepers_ms,
        pageserver_connect_micros,
        basebackup_ms,
        basebackup_bytes,
        start_postgres_ms,
        config_ms,
        load_ext_ms,
        num_ext_downloaded,
        largest_ext_size,
        total_ext_download_size,
        "compute start finished"
    );
    tracing::info!(%phases, "startup phases from launch");
    if let Some(connstr) = connection_string(pg) {
        tracing::info!(%connstr, "compute is running: connect with psql '{connstr}'");
    }
}

/// compute_ctl's own connection settings as a URL without the password: user, first host
/// and port, database. A socket directory goes into the `host` parameter (and the user with
/// it).
fn connection_string(pg: &tokio_postgres::Config) -> Option<String> {
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let (authority, socket_dir) = match pg.get_hosts().first() {
        Some(Host::Tcp(host)) if host.contains(':') => (format!("[{host}]:{port}"), None),
        Some(Host::Tcp(host)) => (format!("{host}:{port}"), None),
        Some(Host::Unix(dir)) => (String::new(), Some(dir.display().to_string())),
        None => (String::new(), None),
    };
    let mut url = url::Url::parse(&format!("postgresql://{authority}/")).ok()?;
    if let Some(db) = pg.get_dbname() {
        url.path_segments_mut().ok()?.clear().push(db);
    }
    match (socket_dir, pg.get_user()) {
        // A URL without a host has no user part: libpq takes both as parameters.
        (Some(dir), user) => {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("host", &dir)
                .append_pair("port", &port.to_string());
            if let Some(user) = user {
                query.append_pair("user", user);
            }
        }
        (None, Some(user)) => url.set_username(user).ok()?,
        (None, None) => {}
    }
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(connstr: &str, want: &str) {
        let pg: tokio_postgres::Config = connstr.parse().unwrap();
        assert_eq!(connection_string(&pg).as_deref(), Some(want), "{connstr}");
    }

    #[test]
    fn connection_strings_name_no_password() {
        check(
            "postgresql://cloud_admin@127.0.0.1:55432/postgres",
            "postgresql://cloud_admin@127.0.0.1:55432/postgres",
        );
        check(
            "postgresql://cloud_admin:s3cret@localhost/postgres",
            "postgresql://cloud_admin@localhost:5432/postgres",
        );
        check(
            "host=::1 port=6000 user=admin password=s3cret dbname=postgres",
            "postgresql://admin@[::1]:6000/postgres",
        );
        check(
            "host=/var/run/postgresql port=55432 user=cloud_admin dbname='my db/x'",
            "postgresql:///my%20db%2Fx?host=%2Fvar%2Frun%2Fpostgresql&port=55432&user=cloud_admin",
        );
        check(
            "host=h user='we@ird:name' dbname=d",
            "postgresql://we%40ird%3Aname@h:5432/d",
        );
    }
}
