//! Entry point: parse the command line and hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = wabot::cli::Cli::parse();
    match wabot::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wabot: {}", wabot::error::error_chain(error.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
