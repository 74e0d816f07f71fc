use clap::Parser;
use fleet_delete_guard::{
    app,
    cli::{Cli, Command, LogFormat},
    tls,
};
use tracing_subscriber::EnvFilter;

/// Log lines go to a writer thread that writes what has queued up in one go and
/// flushes when the queue is empty: no `write(2)` per review on the request path.
/// Not lossy — when the writer falls behind, logging waits rather than dropping
/// lines. The guard flushes what is left when `main` returns.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tls::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let logs = init_logging(args.log_format);
            let result = app::serve(*args).await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "fleet-delete-guard stopped");
            }
            // Log lines first, then the plain message last on stderr.
            drop(logs);
            match result {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
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
        Command::Certs(args) => match fleet_delete_guard::certs::run_certs(&args) {
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
