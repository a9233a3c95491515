//! A stand-in safekeeper answering `TIMELINE_STATUS` as the real one does: text columns
//! `flush_lsn` and `commit_lsn`, one row, or no row for an unknown timeline.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use compute_spec::{Lsn, TenantId, TimelineId};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::wire::Conn;

/// Settings of a [`TestSafekeeper`]; also the command line of `test-safekeeper`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "test-safekeeper",
    version,
    about = "A stand-in Neon safekeeper answering TIMELINE_STATUS"
)]
pub struct SafekeeperConfig {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The tenant it holds.
    #[arg(long)]
    pub tenant: TenantId,
    /// The timeline it holds; any other gets no row.
    #[arg(long)]
    pub timeline: TimelineId,
    /// Token expected as the password; no authentication when absent.
    #[arg(long, env = "TEST_SAFEKEEPER_TOKEN")]
    pub token: Option<String>,
    /// Flush LSN reported.
    #[arg(long, default_value = "0/16B3748")]
    pub flush_lsn: Lsn,
    /// Commit LSN reported.
    #[arg(long, default_value = "0/16B3748")]
    pub commit_lsn: Lsn,
    /// Accept connections and never answer.
    #[arg(long)]
    pub silent: bool,
}

impl SafekeeperConfig {
    /// A safekeeper holding one timeline with both LSNs equal to `lsn`.
    pub fn new(tenant: TenantId, timeline: TimelineId, lsn: Lsn) -> Self {
        SafekeeperConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tenant,
            timeline,
            token: None,
            flush_lsn: lsn,
            commit_lsn: lsn,
            silent: false,
        }
    }
}

/// A running stand-in safekeeper; stops when dropped.
pub struct TestSafekeeper {
    addr: SocketAddr,
    queries: Arc<Mutex<u32>>,
    cancel: CancellationToken,
}

impl TestSafekeeper {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(config: SafekeeperConfig) -> io::Result<TestSafekeeper> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let queries = Arc::new(Mutex::new(0));
        tokio::spawn(accept_loop(
            listener,
            Arc::new(config),
            queries.clone(),
            cancel.clone(),
        ));
        Ok(TestSafekeeper {
            addr,
            queries,
            cancel,
        })
    }

    /// `host:port`, as in the spec's `safekeeper_connstrings`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// `TIMELINE_STATUS` queries answered so far.
    pub fn queries(&self) -> u32 {
        self.queries.lock().map(|q| *q).unwrap_or(0)
    }

    /// Serves until `cancel` fires (for the standalone binary).
    pub async fn run(config: SafekeeperConfig, cancel: CancellationToken) -> io::Result<()> {
        let server = TestSafekeeper::start(config).await?;
        info!(addr = %server.addr, "test safekeeper listening");
        cancel.cancelled().await;
        Ok(())
    }
}

impl Drop for TestSafekeeper {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<SafekeeperConfig>,
    queries: Arc<Mutex<u32>>,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let (config, queries, cancel) = (config.clone(), queries.clone(), cancel.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        r = serve(stream, &config, &queries) => if let Err(e) = r {
                            info!("safekeeper connection ended: {e}");
                        },
                    }
                });
            }
            Err(e) => warn!("accept: {e}"),
        }
    }
}

/// `tenant_id` and `timeline_id` from the startup `options` (`-c timeline_id=… tenant_id=…`),
/// read as the safekeeper does: whitespace-separated `key=value` words.
pub fn ids_from_options(options: &str) -> (Option<String>, Option<String>) {
    let (mut tenant, mut timeline) = (None, None);
    for word in options.split_whitespace() {
        match word.split_once('=') {
            Some(("tenant_id" | "ztenantid", v)) => tenant = Some(v.to_owned()),
            Some(("timeline_id" | "ztimelineid", v)) => timeline = Some(v.to_owned()),
            _ => {}
        }
    }
    (tenant, timeline)
}

async fn serve(
    stream: TcpStream,
    config: &SafekeeperConfig,
    queries: &Mutex<u32>,
) -> io::Result<()> {
    if config.silent {
        // Hold the connection open and say nothing.
        let _held = stream;
        std::future::pending::<()>().await;
        return Ok(());
    }
    let mut conn = Conn::new(stream);
    let Some(params) = conn.startup().await? else {
        return Ok(());
    };
    let (tenant, timeline) = ids_from_options(params.get("options").map_or("", String::as_str));
    if !conn.authenticate(config.token.as_deref()).await? {
        return Ok(());
    }
    while let Some(query) = conn.next_query().await? {
        if !query.starts_with("TIMELINE_STATUS") {
            conn.error("XX000", &format!("unsupported command {query}"))?;
            conn.end_query().await?;
            continue;
        }
        let Some(tenant) = tenant.as_deref() else {
            conn.error("XX000", "tenantid is required")?;
            conn.end_query().await?;
            continue;
        };
        if timeline.is_none() {
            conn.error("XX000", "timelineid is required")?;
            conn.end_query().await?;
            continue;
        }
        if let Ok(mut q) = queries.lock() {
            *q += 1;
        }
        conn.row_description(&["flush_lsn", "commit_lsn"])?;
        let known = tenant.parse::<TenantId>().ok() == Some(config.tenant)
            && timeline
                .as_deref()
                .and_then(|t| t.parse::<TimelineId>().ok())
                == Some(config.timeline);
        if known {
            conn.data_row(&[
                &config.flush_lsn.to_string(),
                &config.commit_lsn.to_string(),
            ])?;
        }
        conn.command_complete("TIMELINE_STATUS")?;
        conn.end_query().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_from_options() {
        assert_eq!(
            ids_from_options("-c timeline_id=aa tenant_id=bb"),
            (Some("bb".to_owned()), Some("aa".to_owned()))
        );
        assert_eq!(ids_from_options(""), (None, None));
    }
}
