//! `compute_ctl`: turns a bare container or VM into a running PostgreSQL compute node. Wiring
//! only: CLI, logging, runtime, exit code; everything else is in the library.

use clap::Parser;
use compute_ctl::cli::Cli;

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(compute_ctl::log_filter(
            std::env::var("RUST_LOG").ok().as_deref(),
        ))
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let opts = match cli.into_options() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("compute_ctl: {e:#}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("compute_ctl: start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(compute_ctl::run(opts)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}
