//! `compute_ctl`: turns a bare container or VM into a running PostgreSQL compute node. Wiring
//! only: CLI, logging, runtime, exit code; everything else is in the library.

use compute_ctl::cli::{Cli, LogFormat};

fn main() {
    compute_ctl::note_launch();
    let cli = Cli::parse_with_env();
    init_logging(cli.log_format);
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

/// The log on standard error, filtered by `RUST_LOG` ([`compute_ctl::log_filter`]): text lines,
/// or one JSON object per line with the event's fields at the top level and its spans.
fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(compute_ctl::log_filter(
            std::env::var("RUST_LOG").ok().as_deref(),
        ))
        .with_ansi(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
