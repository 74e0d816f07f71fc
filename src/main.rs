//! The `fleet-delete-guard` binary: parses the command line and runs a subcommand.

#![forbid(unsafe_code)]

use clap::Parser;
use fleet_delete_guard::{
    app,
    cli::{Cli, Command},
    logging, tls,
};

fn main() -> std::process::ExitCode {
    tls::install_crypto_provider();
    let cli = Cli::parse();
    let worker_threads = match &cli.command {
        Command::Serve(args) => args.worker_threads,
        _ => 1,
    };
    match runtime(worker_threads) {
        Ok(runtime) => {
            let code = runtime.block_on(run(cli));
            drop(runtime);
            logging::flush();
            code
        }
        Err(e) => {
            eprintln!("fleet-delete-guard: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The runtime that answers reviews (`serve --worker-threads`, default one thread: the
/// reviews are short, and a second worker costs CPU per review in wake-ups between the
/// two). Counting has a thread of its own (src/background.rs).
fn runtime(worker_threads: u16) -> std::io::Result<tokio::runtime::Runtime> {
    if worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(worker_threads))
            .enable_all()
            .build()
    }
}

async fn run(cli: Cli) -> std::process::ExitCode {
    match cli.command {
        Command::Serve(args) => {
            logging::init(args.log_format, args.log_flush_interval);
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
