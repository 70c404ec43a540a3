//! Entry point: parse the command line and hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = wabot::app::cli::Cli::parse();
    match wabot::app::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "wabot: {}",
                wabot::ops::telemetry::error_chain(error.as_ref())
            );
            std::process::ExitCode::FAILURE
        }
    }
}
