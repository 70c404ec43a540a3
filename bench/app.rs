//! The app under test: by default a child process (this binary again, in its hidden `--serve-app`
//! role, configured only by the environment the bench builds), so that its RSS and CPU are its own;
//! with `--in-process`, inside the bench's process as before.

use std::collections::HashMap;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use wabot::app::startup::Application;
use wabot::config::Settings;

/// Settings are taken from the environment only: no `config/` directory is read.
const NO_CONFIG_DIR: &str = "/nonexistent-wabot-bench-config";
/// The child's first stdout line: `PORT_LINE<port>`.
const PORT_LINE: &str = "wabot-bench-app port=";
/// Passed to the child besides the app's settings: logging and the allocator's tuning.
const PASSED_THROUGH: &[&str] = &["PATH", "HOME", "RUST_LOG", "RUST_BACKTRACE"];

pub enum AppUnderTest {
    Child(Child),
    InProcess {
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), std::io::Error>>,
    },
}

pub fn settings(env: &HashMap<String, String>) -> anyhow::Result<Settings> {
    Settings::load_from(Path::new(NO_CONFIG_DIR), env).context("app settings")
}

/// Starts `wabot-bench --serve-app` with exactly `env` (plus PATH, HOME, RUST_LOG and MALLOC_*)
/// and waits for the port it listens on.
pub async fn start_child(env: &HashMap<String, String>) -> anyhow::Result<(u16, AppUnderTest)> {
    let exe = std::env::current_exe().context("locating wabot-bench itself")?;
    let inherited = std::env::vars()
        .filter(|(key, _)| PASSED_THROUGH.contains(&key.as_str()) || key.starts_with("MALLOC_"));
    let mut child = Command::new(exe)
        .arg("--serve-app")
        .env_clear()
        .envs(inherited)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the app process")?;
    let stdout = child.stdout.take().context("the app's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // The app's log lines share stdout with the port line: skip them.
    let port_line = async {
        loop {
            match lines.next_line().await? {
                Some(line) if line.starts_with(PORT_LINE) => return Ok(Some(line)),
                Some(_) => continue,
                None => return Ok::<_, std::io::Error>(None),
            }
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(15), port_line)
        .await
        .context("the app process did not report its port within 15 s")?
        .context("reading the app's stdout")?;
    let Some(port) = first
        .as_deref()
        .and_then(|line| line.strip_prefix(PORT_LINE))
        .and_then(|port| port.trim().parse::<u16>().ok())
    else {
        let status = child.try_wait().ok().flatten();
        bail!("the app process did not start (port line {first:?}, exit {status:?})");
    };
    // Keep draining stdout so that the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((port, AppUnderTest::Child(child)))
}

pub async fn start_in_process(settings: Settings) -> anyhow::Result<(u16, AppUnderTest)> {
    let app = Application::build(settings)
        .await
        .context("building the app")?;
    let port = app.port();
    let shutdown = app.shutdown_token();
    let task = tokio::spawn(app.run_until_stopped());
    Ok((port, AppUnderTest::InProcess { shutdown, task }))
}

impl AppUnderTest {
    /// The app's own process, when it has one.
    pub fn pid(&self) -> Option<u32> {
        match self {
            AppUnderTest::Child(child) => child.id(),
            AppUnderTest::InProcess { .. } => None,
        }
    }

    /// Graceful stop (the app finishes what it holds), then a kill after 15 s.
    pub async fn stop(self) {
        const GRACE: Duration = Duration::from_secs(15);
        match self {
            AppUnderTest::Child(mut child) => {
                // Closing its stdin is the child's signal to shut down.
                drop(child.stdin.take());
                match tokio::time::timeout(GRACE, child.wait()).await {
                    Ok(Ok(status)) if status.success() => {}
                    Ok(Ok(status)) => eprintln!("wabot-bench: the app process ended with {status}"),
                    Ok(Err(error)) => eprintln!("wabot-bench: waiting for the app failed: {error}"),
                    Err(_) => {
                        eprintln!("wabot-bench: the app did not stop within 15 s; killing it");
                        let _ = child.kill().await;
                    }
                }
            }
            AppUnderTest::InProcess { shutdown, task } => {
                shutdown.cancel();
                match tokio::time::timeout(GRACE, task).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(error))) => {
                        eprintln!("wabot-bench: the app stopped with an error: {error}")
                    }
                    Ok(Err(error)) => eprintln!("wabot-bench: the app task failed: {error}"),
                    Err(_) => eprintln!("wabot-bench: the app did not stop within 15 s"),
                }
            }
        }
    }
}

/// The child's side: what `wabot serve` does (a default multi-thread runtime, as `#[tokio::main]`
/// builds it), configured from the environment, until its stdin closes.
pub fn serve_child() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wabot-bench app: cannot start the Tokio runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wabot-bench app: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = settings(&env)?;
    // Always, as `wabot serve` does: without a subscriber, tracing's `log` compatibility makes
    // every disabled span evaluate its fields (masking a number, formatting ids) for a logger
    // that is not there, a cost the real process never pays. Its lines go to the drained stdout.
    wabot::ops::telemetry::init(settings.log.format);
    let app = Application::build(settings)
        .await
        .context("building the app")?;
    println!("{PORT_LINE}{}", app.port());
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        shutdown.cancel();
    });
    app.run_until_stopped().await.context("the app")?;
    Ok(())
}
