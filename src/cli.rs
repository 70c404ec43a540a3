//! The command line: `wabot serve`, `wabot check-config`.

use clap::{Parser, Subcommand};

use crate::configuration::Settings;
use crate::startup::{cancel_on_signals, Application};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(name = "wabot", version, about = "WhatsApp Cloud API bot worker")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook receiver (and the workers).
    Serve,
    /// Load and validate the configuration, print it with secrets redacted.
    CheckConfig,
}

/// Runs one command; the exit code is derived from the result by `main`.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig => {
            let settings = Settings::load()?;
            print!("{}", settings.redacted_toml());
            eprintln!("configuration OK");
            Ok(())
        }
        Command::Serve => {
            let settings = Settings::load()?;
            telemetry::init(settings.log.format);
            let app = Application::build(settings.clone()).await?;
            tracing::info!(
                port = app.port(),
                redis = %crate::configuration::redact_url_userinfo(&settings.redis.url),
                "wabot listening"
            );
            cancel_on_signals(app.shutdown_token());
            app.run_until_stopped().await?;
            Ok(())
        }
    }
}
