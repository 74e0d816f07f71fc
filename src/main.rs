//! The `fleet-delete-guard` binary: parses the command line and runs a subcommand.

#![forbid(unsafe_code)]

use clap::Parser;
use fleet_delete_guard::{
    app,
    cli::{Cli, Command, LogFormat},
    tls,
};
use tracing_subscriber::EnvFilter;

/// Lines are written synchronously to stderr: a non-blocking writer thread was
/// measured and not adopted (BENCHMARKS.md, "Measured and not adopted").
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tls::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            match app::serve(*args).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "fleet-delete-guard stopped");
                    eprintln!("fleet-delete-guard: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Audit(args) => match fleet_delete_guard::auditlog::run(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fleet-delete-guard audit: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Verify(args) => {
            std::process::ExitCode::from(fleet_delete_guard::verify::run(args).await)
        }
        Command::Certs(args) => match fleet_delete_guard::certs::run_certs(&args.options()) {
            Ok(report) => {
                print!("{report}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fleet-delete-guard certs: {e}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
