//! `wabot sandbox`: the whole bot end to end without a Meta account. It starts the real server
//! and workers in-process against the configured Redis (or, when none answers, a private
//! `redis-server` it starts and stops itself), with an in-process fake Graph API; each typed line
//! is delivered as a signed webhook from a fake user and the bot's replies are printed as they
//! reach the fake Graph API.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::startup::Application;
use crate::config::Settings;
use crate::store::queue::Queue;

const SANDBOX_SECRET: &str = "sandbox-app-secret";
const SANDBOX_NUMBER: &str = "100000000000001";
/// How long a private `redis-server` may take to accept connections.
const PRIVATE_REDIS_START: Duration = Duration::from_secs(5);

/// Options of `wabot sandbox`.
pub struct SandboxOptions {
    /// Lines to send instead of reading the terminal; the transcript goes to stdout.
    pub script: Option<PathBuf>,
    /// The fake user's phone number.
    pub user: String,
}

/// Runs the sandbox until the script or stdin ends, or until Ctrl-C or SIGTERM.
pub async fn run(options: SandboxOptions) -> anyhow::Result<()> {
    // Before anything is started: without handlers a signal would end the process on the spot
    // and leave a private redis-server behind.
    let quit = CancellationToken::new();
    cancel_on_signals(quit.clone())?;
    let (replies_tx, replies) = mpsc::unbounded_channel::<String>();
    let flows = LastFlow::default();
    let graph = fake_graph_api(replies_tx, flows.clone())?;
    let mut settings = sandbox_settings(&format!("http://127.0.0.1:{}", graph.port))?;

    let redis = tokio::select! {
        biased;
        // A private server half started is stopped by its Drop.
        () = quit.cancelled() => None,
        redis = ensure_redis(&mut settings) => Some(redis),
    };
    let outcome = match redis {
        None => Ok(()),
        Some(Err(error)) => Err(error),
        Some(Ok(private)) => {
            let outcome = session(&options, settings, replies, &flows, &quit).await;
            // After the session: the server and workers stop cleanly while Redis still answers.
            if let Some(private) = private {
                private.stop().await;
            }
            outcome
        }
    };
    graph.handle.stop(true).await;
    outcome
}

/// The bot against the Redis in `settings`, until the input ends or `quit` is cancelled.
async fn session(
    options: &SandboxOptions,
    settings: Settings,
    mut replies: mpsc::UnboundedReceiver<String>,
    flows: &LastFlow,
    quit: &CancellationToken,
) -> anyhow::Result<()> {
    let app = tokio::select! {
        biased;
        () = quit.cancelled() => return Ok(()),
        app = Application::build(settings.clone()) => app?,
    };
    let address = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    let services = crate::app::startup::Services::new(&settings)?;
    // Every session starts a new conversation: one left by an earlier session (its language,
    // a handoff that still runs) would answer the same lines differently.
    if let (Some(pnid), Some(user)) = (
        crate::domain::PhoneNumberId::parse(SANDBOX_NUMBER),
        crate::domain::UserId::parse(&options.user),
    ) {
        services
            .conversations
            .delete(&pnid, &user)
            .await
            .context("could not clear the sandbox's conversation in Redis")?;
    }
    let (redis, queue) = (services.redis, services.queue);
    let interactive = options.script.is_none();
    let outcome = tokio::select! {
        outcome = chat(options, &settings, &address, &queue, &mut replies, flows) => outcome,
        () = quit.cancelled() => {
            if interactive {
                // The prompt is still on the line; the shell's should start on a fresh one.
                println!();
            }
            Ok(())
        }
    };
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    let _ = fred::prelude::ClientLike::quit(&redis).await;
    outcome
}

/// Sends each input line as a webhook and prints the replies it caused.
async fn chat(
    options: &SandboxOptions,
    settings: &Settings,
    address: &str,
    queue: &Queue,
    replies: &mut mpsc::UnboundedReceiver<String>,
    flows: &LastFlow,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    // The sandbox plays the phone's part of a WhatsApp Flow, without Meta's encryption.
    let answerer = crate::bot::flows::FlowAnswerer::from_settings(settings)?;
    let mut open_flow: Option<OpenFlow> = None;
    let interactive = options.script.is_none();
    let mut lines = Input::open(options.script.as_deref()).await?;
    if interactive {
        println!(
            "wabot sandbox — you are +{} writing to the bot ({:?} responder). Ctrl-D to quit.",
            options.user, settings.responder.kind
        );
    }
    let mut counter = 0u64;
    loop {
        if interactive {
            print!("you> ");
            std::io::stdout().flush().ok();
        }
        let Some(line) = lines.next_line().await? else {
            return Ok(());
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !interactive {
            println!("you> {line}");
        }
        counter += 1;
        let wamid = format!("wamid.sandbox.{}.{counter}", uuid::Uuid::new_v4().simple());
        // `/tap <id>` taps a button or list row the bot sent, as a user would on the phone;
        // `/flow` opens the last flow and `/submit field=value ...` submits its screen.
        let body = if line == "/flow" {
            open_flow = open(&answerer, flows).await;
            continue;
        } else if let Some(fields) = line.strip_prefix("/submit") {
            let Some(flow) = open_flow.as_mut() else {
                println!("flow> no flow is open: /flow opens the last one the bot sent");
                continue;
            };
            match submit(&answerer, flow, fields).await {
                Some(answers) => {
                    open_flow = None;
                    completed(&options.user, &wamid, &answers)
                }
                None => continue,
            }
        } else {
            match line.strip_prefix("/tap ") {
                Some(id) => tap(&options.user, &wamid, id.trim()),
                None => delivery(&options.user, &wamid, line),
            }
        };
        let response = http
            .post(format!("{address}/webhook"))
            .header("Content-Type", "application/json")
            .header(
                crate::meta::webhook::SIGNATURE_HEADER,
                crate::meta::webhook::sign(SANDBOX_SECRET, &body),
            )
            .body(body)
            .send()
            .await
            .context("the sandbox server did not answer")?;
        anyhow::ensure!(
            response.status().is_success(),
            "the webhook answered {}",
            response.status()
        );
        // Everything this message causes is sent before its inbox entry is acknowledged.
        wait_until_drained(queue, Duration::from_secs(60)).await;
        while let Ok(reply) = replies.try_recv() {
            for (i, part) in reply.lines().enumerate() {
                println!("{}{part}", if i == 0 { "bot> " } else { "     " });
            }
        }
    }
}

/// Cancels `quit` on Ctrl-C or SIGTERM. The handlers are in place when this returns.
fn cancel_on_signals(quit: CancellationToken) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            quit.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        quit.cancel();
    });
    Ok(())
}

/// Settings from the usual layers, with the sandbox's own secrets, a local port, a prefix of
/// its own (sandbox data never mixes with a real deployment's) and no pacing.
fn sandbox_settings(graph_url: &str) -> anyhow::Result<Settings> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    for (key, value) in [
        ("WHATSAPP_APP_SECRET", SANDBOX_SECRET),
        ("WHATSAPP_VERIFY_TOKEN", "sandbox-verify-token"),
        ("WHATSAPP_ACCESS_TOKEN", "sandbox-access-token"),
        ("WHATSAPP_API_BASE_URL", graph_url),
        ("PORT", "0"),
        ("WABOT_SERVER__HOST", "127.0.0.1"),
        ("WABOT_REDIS__KEY_PREFIX", "wabot-sandbox"),
        ("WABOT_WHATSAPP__RECIPIENT_INTERVAL_MS", "0"),
        ("WABOT_WORKER__PARTITIONS", "4"),
    ] {
        env.insert(key.to_string(), value.to_string());
    }
    let dir = env
        .get("APP_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("config"));
    Ok(Settings::load_from(&dir, &env)?)
}

/// The configured Redis when it answers; otherwise a private `redis-server`, which `settings`
/// then points at. The caller stops it.
async fn ensure_redis(settings: &mut Settings) -> anyhow::Result<Option<PrivateRedis>> {
    if answers(settings).await? {
        return Ok(None);
    }
    let configured = crate::config::redact_url_userinfo(&settings.redis.url);
    let redis = match PrivateRedis::start().await {
        Ok(redis) => redis,
        Err(StartError::NotInstalled) => {
            let os_release = std::fs::read_to_string("/etc/os-release").ok();
            let how = match install_command(os_release.as_deref(), cfg!(target_os = "macos")) {
                Some(command) => format!("Install it with `{command}`"),
                None => "Install Redis with your system's package manager".to_string(),
            };
            anyhow::bail!(
                "no Redis answers at {configured} and `redis-server` is not installed.\n\
                 {how} and run this again, or point REDIS_URL at a running Redis."
            );
        }
        Err(StartError::Failed(error)) => {
            return Err(error.context(format!(
                "no Redis answers at {configured} and a private redis-server did not start"
            )))
        }
    };
    eprintln!(
        "wabot: no Redis at {configured}; started a private redis-server on 127.0.0.1:{} \
         (removed on exit)",
        redis.port
    );
    settings.redis.url = redis.url();
    // The private server has neither a password nor TLS.
    settings.redis.password = secrecy::SecretString::from("");
    settings.redis.tls_ca_file.clear();
    Ok(Some(redis))
}

/// Whether the configured Redis answers PING within a few seconds.
async fn answers(settings: &Settings) -> anyhow::Result<bool> {
    let client = crate::store::connect(&settings.redis)?;
    let answered = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if crate::store::connection::ping(&client).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    // Bounded: without a connection QUIT is never answered and would wait out the command
    // timeout (2 s by default) although the client is already closed.
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        fred::prelude::ClientLike::quit(&client),
    )
    .await;
    Ok(answered.is_ok())
}

/// The command that installs `redis-server` on this machine, from `/etc/os-release`.
fn install_command(os_release: Option<&str>, macos: bool) -> Option<&'static str> {
    if macos {
        return Some("brew install redis");
    }
    let field = |name: &str| {
        os_release
            .into_iter()
            .flat_map(str::lines)
            .filter_map(|line| line.split_once('='))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim().trim_matches(['"', '\'']).to_ascii_lowercase())
            .unwrap_or_default()
    };
    // ID first: a distribution's own name wins over the ones it is like.
    let ids = format!("{} {}", field("ID"), field("ID_LIKE"));
    ids.split_whitespace().find_map(|id| match id {
        "debian" | "ubuntu" => Some("sudo apt-get install redis-server"),
        "fedora" | "rhel" | "centos" => Some("sudo dnf install redis"),
        "alpine" => Some("apk add redis"),
        "arch" => Some("pacman -S redis"),
        _ => None,
    })
}

enum StartError {
    NotInstalled,
    Failed(anyhow::Error),
}

fn failed(error: impl Into<anyhow::Error>) -> StartError {
    StartError::Failed(error.into())
}

/// A `redis-server` of this session only: loopback, a free port, a temporary directory, nothing
/// persisted. [`PrivateRedis::stop`] kills it, waits for it and removes the directory; `Drop`
/// does the same on the other ways out (a panic, a start-up cut short by a signal).
struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateRedis {
    async fn start() -> Result<PrivateRedis, StartError> {
        let dir = std::env::temp_dir().join(format!(
            "wabot-sandbox-redis-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))
            .map_err(failed)?;
        let mut redis = PrivateRedis {
            port: 0,
            dir,
            child: None,
        };
        // Another process can take the free port before redis-server binds it; then it exits
        // at once and the next port is tried.
        let mut attempts = 3;
        loop {
            redis.port = free_port().map_err(failed)?;
            match redis.spawn_and_wait().await {
                Ok(()) => return Ok(redis),
                Err(Exit::Early(status)) if attempts > 1 => {
                    tracing::debug!(%status, port = redis.port, "redis-server exited; another port");
                    attempts -= 1;
                }
                Err(Exit::Early(status)) => {
                    return Err(StartError::Failed(anyhow::anyhow!(
                        "redis-server exited with {status}: {}",
                        redis.log_tail()
                    )))
                }
                Err(Exit::Start(error)) => return Err(error),
            }
        }
    }

    async fn spawn_and_wait(&mut self) -> Result<(), Exit> {
        let log = std::fs::File::create(self.dir.join("redis.log"))
            .map_err(|e| Exit::Start(failed(e)))?;
        let log_err = log.try_clone().map_err(|e| Exit::Start(failed(e)))?;
        let mut command = tokio::process::Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        // Out of the terminal's process group: Ctrl-C reaches only wabot, which stops the
        // session while Redis still answers and then stops the server itself.
        #[cfg(unix)]
        command.process_group(0);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(Exit::Start(StartError::NotInstalled))
            }
            Err(error) => {
                return Err(Exit::Start(StartError::Failed(
                    anyhow::Error::new(error).context("cannot run redis-server"),
                )))
            }
        };
        let child = self.child.insert(child);
        let deadline = tokio::time::Instant::now() + PRIVATE_REDIS_START;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| Exit::Start(failed(e)))? {
                self.child = None;
                return Err(Exit::Early(status));
            }
            // PONG, not only an accepted connection: the port could belong to someone else.
            if pongs(self.port).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Exit::Start(StartError::Failed(anyhow::anyhow!(
                    "redis-server did not answer on 127.0.0.1:{} within {PRIVATE_REDIS_START:?}: {}",
                    self.port,
                    self.log_tail()
                ))));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The end of redis-server's log, for an error message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
        if tail.is_empty() {
            "no output".to_string()
        } else {
            tail
        }
    }

    async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            // Nothing is persisted, so there is nothing a gentler signal would save.
            let _ = child.kill().await;
        }
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // kill_on_drop only signals; wait here too so that no server outlives wabot.
            let _ = child.start_kill();
            for _ in 0..200 {
                match child.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                    _ => break,
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

enum Exit {
    /// redis-server ended before it answered (e.g. the port was taken meanwhile).
    Early(std::process::ExitStatus),
    Start(StartError),
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn pongs(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer == *b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Ok(true))
    )
}

/// Where the lines come from: the script, or the terminal.
enum Input {
    Script(std::vec::IntoIter<String>),
    Terminal(mpsc::UnboundedReceiver<std::io::Result<String>>),
}

impl Input {
    async fn open(script: Option<&Path>) -> anyhow::Result<Input> {
        match script {
            Some(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .with_context(|| format!("cannot open the script {}", path.display()))?;
                let lines: Vec<String> = text.lines().map(str::to_string).collect();
                Ok(Input::Script(lines.into_iter()))
            }
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                // A thread of its own rather than tokio's stdin: a read blocked on the terminal
                // cannot be cancelled, and in tokio's pool it would keep the runtime (and so the
                // process) from ending after Ctrl-C or SIGTERM until Enter is pressed.
                std::thread::Builder::new()
                    .name("sandbox-stdin".into())
                    .spawn(move || {
                        for line in std::io::stdin().lines() {
                            if tx.send(line).is_err() {
                                break;
                            }
                        }
                    })
                    .context("cannot read the terminal")?;
                Ok(Input::Terminal(rx))
            }
        }
    }

    async fn next_line(&mut self) -> anyhow::Result<Option<String>> {
        match self {
            Input::Script(lines) => Ok(lines.next()),
            Input::Terminal(lines) => lines
                .recv()
                .await
                .transpose()
                .context("cannot read the terminal"),
        }
    }
}

async fn wait_until_drained(queue: &Queue, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    // The message is in the inbox once the webhook answered; wait for it to be processed.
    while tokio::time::Instant::now() < deadline {
        let mut total = 0;
        for p in 0..queue.keys().partitions() {
            total += queue.depth(p).await.unwrap_or(1);
        }
        if total == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `parameters` of the last flow the bot sent (the fake Graph API keeps them).
#[derive(Clone, Default)]
struct LastFlow(std::sync::Arc<std::sync::Mutex<Option<serde_json::Value>>>);

impl LastFlow {
    fn set(&self, parameters: serde_json::Value) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(parameters);
        }
    }

    fn get(&self) -> Option<serde_json::Value> {
        self.0.lock().ok().and_then(|last| last.clone())
    }
}

/// A flow open on the fake phone: its token and the screen shown.
struct OpenFlow {
    token: String,
    screen: String,
}

/// Opens the last flow at its first screen (the one the message names, or the `INIT` answer).
async fn open(answerer: &crate::bot::flows::FlowAnswerer, flows: &LastFlow) -> Option<OpenFlow> {
    let Some(parameters) = flows.get() else {
        println!("flow> the bot has not sent a flow");
        return None;
    };
    let token = parameters["flow_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let first = match parameters["flow_action_payload"]["screen"].as_str() {
        Some(screen) => serde_json::json!({
            "screen": screen,
            "data": parameters["flow_action_payload"].get("data").cloned().unwrap_or_default(),
        }),
        None => {
            let request =
                serde_json::json!({"version": "3.0", "action": "INIT", "flow_token": token});
            shown_answer(answerer.answer(&request).await)?
        }
    };
    show_screen(&first);
    Some(OpenFlow {
        token,
        screen: first["screen"].as_str().unwrap_or_default().to_string(),
    })
}

/// Submits the open screen with `field=value` pairs; the completed flow's answers when the
/// endpoint closed it.
async fn submit(
    answerer: &crate::bot::flows::FlowAnswerer,
    flow: &mut OpenFlow,
    fields: &str,
) -> Option<serde_json::Value> {
    let data: serde_json::Map<String, serde_json::Value> = fields
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    let request = serde_json::json!({"version": "3.0", "action": "data_exchange",
        "flow_token": flow.token, "screen": flow.screen, "data": data});
    let answer = shown_answer(answerer.answer(&request).await)?;
    if let Some(params) = answer["data"]["extension_message_response"]["params"].as_object() {
        println!("flow> done");
        return Some(serde_json::Value::Object(params.clone()));
    }
    show_screen(&answer);
    flow.screen = answer["screen"].as_str().unwrap_or_default().to_string();
    None
}

fn shown_answer(
    answer: Result<crate::bot::flows::FlowAnswer, crate::bot::flows::FlowError>,
) -> Option<serde_json::Value> {
    match answer {
        Ok(crate::bot::flows::FlowAnswer::Screen(screen)) => Some(screen),
        Ok(crate::bot::flows::FlowAnswer::TokenInvalid(answer)) => {
            println!(
                "flow> closed: {}",
                answer["error_msg"].as_str().unwrap_or_default()
            );
            None
        }
        Err(error) => {
            println!("flow> {error}");
            None
        }
    }
}

fn show_screen(answer: &serde_json::Value) {
    println!(
        "flow> {} {}",
        answer["screen"].as_str().unwrap_or_default(),
        answer.get("data").cloned().unwrap_or_default()
    );
}

/// The completed flow's `nfm_reply`, as the phone sends it.
fn completed(user: &str, wamid: &str, answers: &serde_json::Value) -> Vec<u8> {
    message_delivery(
        user,
        serde_json::json!({"id": wamid, "type": "interactive", "interactive": {
            "type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                "response_json": answers.to_string()}
        }}),
    )
}

/// A text message webhook from the fake user, in Meta's format.
fn delivery(user: &str, wamid: &str, text: &str) -> Vec<u8> {
    message_delivery(
        user,
        serde_json::json!({"id": wamid, "type": "text", "text": {"body": text}}),
    )
}

/// A tap on a reply button or list row with this id (the id doubles as the title).
fn tap(user: &str, wamid: &str, id: &str) -> Vec<u8> {
    message_delivery(
        user,
        serde_json::json!({"id": wamid, "type": "interactive", "interactive": {
            "type": "list_reply", "list_reply": {"id": id, "title": id}
        }}),
    )
}

fn message_delivery(user: &str, mut message: serde_json::Value) -> Vec<u8> {
    message["from"] = serde_json::json!(user);
    message["timestamp"] = serde_json::json!(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().to_string())
        .unwrap_or_default());
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "0", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": SANDBOX_NUMBER},
            "contacts": [{"profile": {"name": "Sandbox user"}, "wa_id": user}],
            "messages": [message]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

struct FakeGraph {
    port: u16,
    handle: actix_web::dev::ServerHandle,
}

/// Answers sends like Meta does and forwards the text of each to the chat.
fn fake_graph_api(
    replies: mpsc::UnboundedSender<String>,
    flows: LastFlow,
) -> anyhow::Result<FakeGraph> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let replies = web::Data::new(replies);
    let flows = web::Data::new(flows);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(replies.clone())
            .app_data(flows.clone())
            .route("/{version}/{number}/messages", web::post().to(fake_send))
    })
    .listen(listener)?
    .workers(1)
    .disable_signals()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(FakeGraph { port, handle })
}

async fn fake_send(
    body: web::Json<serde_json::Value>,
    replies: web::Data<mpsc::UnboundedSender<String>>,
    flows: web::Data<LastFlow>,
) -> HttpResponse {
    if body["interactive"]["type"] == "flow" {
        flows.set(body["interactive"]["action"]["parameters"].clone());
    }
    if body.get("status").is_some() {
        return HttpResponse::Ok().json(serde_json::json!({ "success": true }));
    }
    let shown = match body.get("type").and_then(|t| t.as_str()) {
        Some("text") => body
            .pointer("/text/body")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string(),
        Some("interactive") => show_interactive(&body["interactive"]),
        Some(other) => format!(
            "[{other}] {}",
            body.get(other).map(|v| v.to_string()).unwrap_or_default()
        ),
        None => body.to_string(),
    };
    let _ = replies.send(shown);
    HttpResponse::Ok().json(serde_json::json!({
        "messaging_product": "whatsapp",
        "messages": [{ "id": format!("wamid.sandbox.out.{}", uuid::Uuid::new_v4().simple()) }]
    }))
}

/// A button or list message as the terminal shows it: the body, then each choice with the id
/// `/tap` takes.
fn show_interactive(interactive: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut shown = text(&interactive["body"]["text"]);
    if interactive["type"] == "flow" {
        let cta = text(&interactive["action"]["parameters"]["flow_cta"]);
        return format!("{shown}\n  [{cta}]  /flow");
    }
    let choices: Vec<(String, String)> = match interactive["type"].as_str() {
        Some("button") => interactive["action"]["buttons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| (text(&b["reply"]["id"]), text(&b["reply"]["title"])))
            .collect(),
        _ => interactive["action"]["sections"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["rows"].as_array())
            .flatten()
            .map(|r| (text(&r["id"]), text(&r["title"])))
            .collect(),
    };
    for (id, title) in choices {
        shown.push_str(&format!("\n  [{title}]  /tap {id}"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::install_command;

    #[test]
    fn install_command_follows_os_release() {
        let cases = [
            ("ID=debian\n", Some("sudo apt-get install redis-server")),
            (
                "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n",
                Some("sudo apt-get install redis-server"),
            ),
            (
                "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n",
                Some("sudo apt-get install redis-server"),
            ),
            ("ID=fedora\n", Some("sudo dnf install redis")),
            (
                "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n",
                Some("sudo dnf install redis"),
            ),
            ("ID=alpine\n", Some("apk add redis")),
            ("ID=manjaro\nID_LIKE=arch\n", Some("pacman -S redis")),
            ("ID=arch\n", Some("pacman -S redis")),
            ("ID=opensuse-tumbleweed\nID_LIKE=\"opensuse suse\"\n", None),
            ("", None),
        ];
        for (os_release, expected) in cases {
            assert_eq!(
                install_command(Some(os_release), false),
                expected,
                "{os_release:?}"
            );
        }
        assert_eq!(install_command(None, false), None);
    }

    #[test]
    fn install_command_on_macos_is_brew() {
        assert_eq!(
            install_command(Some("ID=debian\n"), true),
            Some("brew install redis")
        );
        assert_eq!(install_command(None, true), Some("brew install redis"));
    }
}
