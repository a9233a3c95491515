//! `test-ext-server`: the stand-in remote extension server as a standalone process.

use clap::Parser;
use neon_test_servers::{ExtServerConfig, TestExtServer, init_logging};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    let config = ExtServerConfig::parse();
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    TestExtServer::run(config, cancel).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli() {
        use clap::CommandFactory;
        neon_test_servers::ExtServerConfig::command().debug_assert();
    }
}
