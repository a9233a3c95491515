//! `test-pageserver`: the stand-in pageserver as a standalone process.

use clap::Parser;
use neon_test_servers::{PageserverConfig, TestPageserver, init_logging};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    let config = PageserverConfig::parse();
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    TestPageserver::run(config, cancel).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli() {
        use clap::CommandFactory;
        neon_test_servers::PageserverConfig::command().debug_assert();
    }
}
