//! `test-safekeeper`: the stand-in safekeeper as a standalone process.

use clap::Parser;
use neon_test_servers::{SafekeeperConfig, TestSafekeeper, init_logging};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    let config = SafekeeperConfig::parse();
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    TestSafekeeper::run(config, cancel).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli() {
        use clap::CommandFactory;
        neon_test_servers::SafekeeperConfig::command().debug_assert();
    }
}
