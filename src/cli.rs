//! The command line: `wabot serve`, `wabot check-config`.

use clap::{Parser, Subcommand};

use crate::configuration::Settings;
use crate::startup::{cancel_on_signals, spawn_workers, Application};
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
    /// Run only the workers (no HTTP): scale processing apart from intake.
    Worker,
    /// Exit 0 when the local server answers /health (for container HEALTHCHECKs without curl).
    Healthcheck {
        /// Port of the local server; defaults to the configured `server.port` (`PORT`).
        #[arg(long)]
        port: Option<u16>,
    },
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
        Command::Healthcheck { port } => {
            let port = match port {
                Some(port) => port,
                None => std::env::var("PORT")
                    .ok()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(8000),
            };
            let url = format!("http://127.0.0.1:{port}/health");
            let response = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(3))
                .build()?
                .get(&url)
                .send()
                .await?;
            anyhow::ensure!(response.status().is_success(), "{url} answered {}", response.status());
            Ok(())
        }
        Command::Worker => {
            let settings = Settings::load()?;
            telemetry::init(settings.log.format);
            let redis = crate::store::connect(&settings.redis)?;
            let workers = spawn_workers(&settings, &redis)?;
            tracing::info!(replica = workers.replica(), "wabot worker running");
            let stop = tokio_util::sync::CancellationToken::new();
            cancel_on_signals(stop.clone());
            stop.cancelled().await;
            workers.shutdown().await;
            Ok(())
        }
    }
}
