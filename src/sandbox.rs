//! `wabot sandbox`: the whole bot end to end without a Meta account. It starts the real server
//! and workers in-process against the configured Redis, with an in-process fake Graph API; each
//! typed line is delivered as a signed webhook from a fake user and the bot's replies are printed
//! as they reach the fake Graph API.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::configuration::Settings;
use crate::startup::Application;
use crate::store::queue::Queue;
use crate::store::Keys;

const SANDBOX_SECRET: &str = "sandbox-app-secret";
const SANDBOX_NUMBER: &str = "100000000000001";

/// Options of `wabot sandbox`.
pub struct SandboxOptions {
    /// Lines to send instead of reading the terminal; the transcript goes to stdout.
    pub script: Option<PathBuf>,
    /// The fake user's phone number.
    pub user: String,
}

/// Runs the sandbox until the script or stdin ends.
pub async fn run(options: SandboxOptions) -> anyhow::Result<()> {
    let (replies_tx, mut replies) = mpsc::unbounded_channel::<String>();
    let graph = fake_graph_api(replies_tx)?;
    let graph_url = format!("http://127.0.0.1:{}", graph.port);

    let settings = sandbox_settings(&graph_url)?;
    ensure_redis(&settings).await?;
    let app = Application::build(settings.clone()).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    let redis = crate::store::connect(&settings.redis)?;
    let queue = Queue::new(
        redis,
        Keys::new(&settings.redis.key_prefix, settings.worker.partitions),
        settings.worker.lease_ttl_ms,
    );
    let http = reqwest::Client::new();
    let interactive = options.script.is_none();
    let mut lines = input(options.script.as_deref()).await?;
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
            break;
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
        let body = delivery(&options.user, &wamid, line);
        let response = http
            .post(format!("{address}/webhook"))
            .header("Content-Type", "application/json")
            .header(
                crate::webhook::SIGNATURE_HEADER,
                crate::webhook::sign(SANDBOX_SECRET, &body),
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
        wait_until_drained(&queue, Duration::from_secs(60)).await;
        while let Ok(reply) = replies.try_recv() {
            for (i, part) in reply.lines().enumerate() {
                println!("{}{part}", if i == 0 { "bot> " } else { "     " });
            }
        }
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    graph.handle.stop(true).await;
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

async fn ensure_redis(settings: &Settings) -> anyhow::Result<()> {
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
    let _ = fred::prelude::ClientLike::quit(&client).await;
    anyhow::ensure!(
        answered.is_ok(),
        "no Redis answers at {url}. Start one with `redis-server` (Debian/Ubuntu: `apt-get install redis-server`; \
         macOS: `brew install redis && redis-server`; Docker: `docker run -p 6379:6379 redis:7`), \
         or point REDIS_URL at yours.",
        url = crate::configuration::redact_url_userinfo(&settings.redis.url)
    );
    Ok(())
}

async fn input(
    script: Option<&Path>,
) -> anyhow::Result<tokio::io::Lines<Box<dyn tokio::io::AsyncBufRead + Unpin + Send>>> {
    let reader: Box<dyn tokio::io::AsyncBufRead + Unpin + Send> = match script {
        Some(path) => Box::new(tokio::io::BufReader::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open the script {}", path.display()))?,
        )),
        None => Box::new(tokio::io::BufReader::new(tokio::io::stdin())),
    };
    Ok(reader.lines())
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

/// A text message webhook from the fake user, in Meta's format.
fn delivery(user: &str, wamid: &str, text: &str) -> Vec<u8> {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "0", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": SANDBOX_NUMBER},
            "contacts": [{"profile": {"name": "Sandbox user"}, "wa_id": user}],
            "messages": [{
                "from": user, "id": wamid, "type": "text", "text": {"body": text},
                "timestamp": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs().to_string())
                    .unwrap_or_default()
            }]
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
fn fake_graph_api(replies: mpsc::UnboundedSender<String>) -> anyhow::Result<FakeGraph> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let replies = web::Data::new(replies);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(replies.clone())
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
) -> HttpResponse {
    if body.get("status").is_some() {
        return HttpResponse::Ok().json(serde_json::json!({ "success": true }));
    }
    let shown = match body.get("type").and_then(|t| t.as_str()) {
        Some("text") => body
            .pointer("/text/body")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string(),
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
