//! Test harness: a private `redis-server` per test on a free port, a wiremock Graph API, and the
//! real application spawned on port 0.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use wabot::app::startup::{Application, KillSwitch};
use wabot::config::Settings;
use wabot::domain::{InboundMessage, InboxItem};
use wabot::store::conversation::{ConversationView, Role};
use wabot::store::queue::Queue;
use wabot::store::sink::{Accepted, EventSink, SinkError};
use wabot::store::Keys;
use wiremock::MockServer;

pub const APP_SECRET: &str = "test_app_secret_0123456789abcdef";
pub const OLD_APP_SECRET: &str = "previous_app_secret";
pub const VERIFY_TOKEN: &str = "verify-me-please";
pub const ACCESS_TOKEN: &str = "EAAG-test-access-token";

static TRACING: std::sync::Once = std::sync::Once::new();

/// Logs for a failing test: `TEST_LOG=1 cargo test`.
fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            wabot::ops::telemetry::init(wabot::config::LogFormat::Pretty);
        }
    });
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// A `redis-server` child process on a free port, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    appendonly: bool,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    /// With `appendonly yes`, so a restart keeps what was acknowledged.
    pub fn start_durable() -> RedisServer {
        RedisServer::start_with(true)
    }

    fn start_with(appendonly: bool) -> RedisServer {
        RedisServer::start_with_args(appendonly, &[])
    }

    /// With extra `redis-server` arguments (ACL users, TLS, cluster mode...).
    pub fn start_with_args(appendonly: bool, extra: &[&str]) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("wabot-test-redis-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir for redis");
        let mut server = RedisServer {
            port: free_port(),
            dir,
            child: None,
            appendonly,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                if self.appendonly { "yes" } else { "no" },
                "--appendfsync",
                "always",
                "--dir",
                self.dir.to_str().expect("utf-8 temp dir"),
                "--maxmemory-policy",
                "noeviction",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start `redis-server` ({e}). The tests need it on PATH: \
                     `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis`."
                )
            });
        self.child = Some(child);
        wait_until_listening(self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL: no clean shutdown, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (the AOF is replayed when durable).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs a command with `redis-cli` and returns its raw output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn wait_until_listening(port: u16) {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("redis-server did not listen on port {port} within 5 s");
}

/// The environment a test app is configured with (the same variables an operator sets).
pub fn test_env(redis_url: &str, graph_url: &str) -> HashMap<String, String> {
    [
        ("PORT", "0"),
        ("WABOT_SERVER__HOST", "127.0.0.1"),
        ("WABOT_SERVER__HTTP_WORKERS", "1"),
        ("WABOT_SERVER__SHUTDOWN_TIMEOUT_SECS", "5"),
        (
            "WHATSAPP_APP_SECRET",
            &format!("{OLD_APP_SECRET},{APP_SECRET}"),
        ),
        ("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN),
        ("WHATSAPP_ACCESS_TOKEN", ACCESS_TOKEN),
        ("WHATSAPP_API_BASE_URL", graph_url),
        ("WHATSAPP_API_VERSION", "v24.0"),
        ("REDIS_URL", redis_url),
        (
            "WABOT_REDIS__KEY_PREFIX",
            &format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        ),
        ("WABOT_REDIS__COMMAND_TIMEOUT_MS", "1000"),
        ("WABOT_REDIS__CONNECT_TIMEOUT_MS", "500"),
        ("RESPONDER", "echo"),
        // Pipeline tests send bursts; the engine tests set their own limits.
        ("WABOT_RATE_LIMIT__MESSAGES", "10000"),
        ("WABOT_WHATSAPP__MARK_AS_READ", "false"),
        // Retries and pacing of the Cloud API client have tests of their own.
        ("WABOT_WHATSAPP__SEND_ATTEMPTS", "1"),
        ("WABOT_WHATSAPP__RECIPIENT_INTERVAL_MS", "0"),
        ("WABOT_WHATSAPP__THROUGHPUT_PER_SEC", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn settings_from(env: &HashMap<String, String>) -> Settings {
    Settings::load_from(Path::new("/nonexistent-wabot-test-config"), env).expect("test settings")
}

/// A running app and everything it talks to.
pub struct TestApp {
    pub address: String,
    /// The `admin.listen` server's, when the app has one.
    pub admin_address: Option<String>,
    pub http: reqwest::Client,
    /// Shared with other apps of the same test (same fake Graph API).
    pub graph: Arc<MockServer>,
    pub redis: Option<RedisServer>,
    pub settings: Settings,
    shutdown: CancellationToken,
    kill: Option<KillSwitch>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    worker_runtime: Option<tokio::runtime::Handle>,
}

/// A sink that records what the receiver handed over (tests of the receiver alone).
#[derive(Default)]
pub struct RecordingSink {
    pub messages: Mutex<Vec<InboundMessage>>,
}

#[async_trait]
impl EventSink for RecordingSink {
    async fn accept(&self, items: &[InboxItem]) -> Result<Accepted, SinkError> {
        let mut stored = self.messages.lock().expect("not poisoned");
        let before = stored.len();
        stored.extend(items.iter().filter_map(|item| match item {
            InboxItem::Message(m) => Some(m.clone()),
            _ => None,
        }));
        Ok(Accepted {
            new: stored.len() - before,
            duplicates: 0,
        })
    }
}

impl TestApp {
    /// Tasks alive on the app's worker runtime (0 without workers).
    pub fn worker_tasks(&self) -> usize {
        self.worker_runtime
            .as_ref()
            .map_or(0, |runtime| runtime.metrics().num_alive_tasks())
    }

    /// What wabot says by itself in `language` with this app's settings (overrides included).
    pub fn sentence(
        &self,
        language: wabot::bot::i18n::Language,
        sentence: wabot::bot::i18n::Sentence,
    ) -> String {
        wabot::bot::i18n::Texts::from_settings(&self.settings)
            .expect("texts")
            .get(language, sentence)
            .to_owned()
    }

    /// Waits for the first reply at the fake Graph API and checks it is the handoff text in
    /// `language` (`why` says what the test expects of it).
    pub async fn expect_handoff_reply(&self, language: wabot::bot::i18n::Language, why: &str) {
        let got = wait_for_replies(&self.graph, 1, Duration::from_secs(30)).await;
        assert_eq!(
            got[0].text,
            self.sentence(language, wabot::bot::i18n::Sentence::HandoffRequested),
            "{why}"
        );
    }

    /// Delivers `body` to `/webhook` as Meta would (signed with the app secret) and expects
    /// the 200 that says it is stored.
    pub async fn deliver(&self, body: &[u8]) {
        assert_eq!(self.post_signed(body, APP_SECRET).await.status(), 200);
    }

    /// POSTs `body` to `/webhook`, signed with `secret`.
    pub async fn post_signed(&self, body: &[u8], secret: &str) -> reqwest::Response {
        self.post_webhook(body, Some(wabot::meta::webhook::sign(secret, body)))
            .await
    }

    pub async fn post_webhook(&self, body: &[u8], signature: Option<String>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/webhook", self.address))
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    /// Like `kill -9`: no graceful stop, leases stay until they expire.
    pub fn kill(&self) {
        if let Some(kill) = &self.kill {
            kill.kill();
        }
    }

    /// A queue over the app's Redis, for inspection (depth, dead letters).
    /// The stores over the app's Redis (a client of its own), for inspection.
    pub async fn services(&self) -> wabot::app::startup::Services {
        wabot::app::startup::Services::new(&self.settings)
            .expect("redis client")
            .connected()
            .await
            .expect("redis connects")
    }

    pub async fn queue(&self) -> Queue {
        self.services().await.queue
    }

    pub async fn conversations(&self) -> wabot::store::conversation::ConversationStore {
        self.services().await.conversations
    }

    pub fn keys(&self) -> Keys {
        Keys::new(
            &self.settings.redis.key_prefix,
            self.settings.worker.partitions,
        )
    }

    /// Starts the graceful stop (what SIGTERM does) and returns at once.
    pub fn begin_stop(&self) {
        self.shutdown.cancel();
    }

    /// Waits up to `timeout` for the app to end after `begin_stop`: `None` if it did not, else
    /// what `run_until_stopped` returned.
    pub async fn stopped(mut self, timeout: Duration) -> Option<std::io::Result<()>> {
        let task = self.task.take()?;
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => Some(result),
            Ok(Err(panicked)) => Some(Err(std::io::Error::other(panicked.to_string()))),
            Err(_) => None,
        }
    }

    /// Graceful stop (what SIGTERM does).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn launch(
    settings: Settings,
    app: Application,
    graph: Arc<MockServer>,
    redis: Option<RedisServer>,
) -> TestApp {
    let address = format!("http://127.0.0.1:{}", app.port());
    let admin_address = app
        .admin_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let shutdown = app.shutdown_token();
    let kill = Some(app.kill_switch());
    let worker_runtime = app.worker_runtime();
    let task = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        admin_address,
        http: reqwest::Client::new(),
        graph,
        redis,
        settings,
        shutdown,
        kill,
        task: Some(task),
        worker_runtime,
    }
}

/// Knobs for an app in tests; short timings so take-overs are quick. The defaults: HTTP and
/// workers, a `redis-server` of its own, a fake Graph API answering every send.
#[derive(Clone)]
pub struct AppOptions {
    pub workers: bool,
    pub partitions: u32,
    pub lease_ttl_ms: u64,
    pub max_attempts: u32,
    pub extra_env: Vec<(String, String)>,
    /// Settings the environment cannot express (arrays such as `[[responder.openai.tools]]`),
    /// loaded as the `config/default.toml` of the app.
    pub config_toml: Option<String>,
    /// This Graph API (shared with other apps of the test); `None`: a fresh one that answers
    /// every send with a new wamid.
    pub graph: Option<Arc<MockServer>>,
    /// This Redis (shared, a cluster, a TLS one...); `None`: a `redis-server` of its own, kept
    /// in `TestApp::redis`.
    pub redis_url: Option<String>,
    /// Key prefix: apps with the same prefix and Redis are replicas of one deployment.
    pub prefix: Option<String>,
    /// The receiver alone, handing what it accepts to this sink (no workers).
    pub sink: Option<Arc<dyn EventSink>>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            workers: true,
            partitions: 8,
            lease_ttl_ms: 2000,
            max_attempts: 4,
            extra_env: Vec::new(),
            config_toml: None,
            graph: None,
            redis_url: None,
            prefix: None,
            sink: None,
        }
    }
}

impl AppOptions {
    /// The defaults with these extra environment variables.
    pub fn with_env(pairs: &[(&str, &str)]) -> AppOptions {
        AppOptions {
            extra_env: env_vars(pairs),
            ..AppOptions::default()
        }
    }

    /// One replica of a deployment: replicas share the Redis, the Graph API and the key prefix.
    pub fn replica_of(self, redis_url: &str, graph: &Arc<MockServer>, prefix: &str) -> AppOptions {
        AppOptions {
            redis_url: Some(redis_url.to_string()),
            graph: Some(graph.clone()),
            prefix: Some(prefix.to_string()),
            ..self
        }
    }
}

/// A fake Graph API of the test's own that answers every send; a test's own answers on it need
/// `with_priority` to win.
pub async fn graph_ok() -> Arc<MockServer> {
    let graph = Arc::new(MockServer::start().await);
    mount_graph_ok(&graph).await;
    graph
}

/// A Redis URL where nothing listens.
pub fn unreachable_redis() -> String {
    format!("redis://127.0.0.1:{}/0", free_port())
}

/// The one way tests start wabot: built like `wabot serve` from settings, on port 0.
pub async fn spawn(options: AppOptions) -> TestApp {
    init_tracing();
    let graph = match options.graph.clone() {
        Some(graph) => graph,
        None => graph_ok().await,
    };
    let (own, redis_url) = match &options.redis_url {
        Some(url) => (None, url.clone()),
        None => {
            let redis = RedisServer::start();
            let url = redis.url();
            (Some(redis), url)
        }
    };
    let mut env = test_env(&redis_url, &graph.uri());
    env.insert("WABOT_WORKER__ENABLED".into(), options.workers.to_string());
    env.insert(
        "WABOT_WORKER__PARTITIONS".into(),
        options.partitions.to_string(),
    );
    env.insert(
        "WABOT_WORKER__LEASE_TTL_MS".into(),
        options.lease_ttl_ms.to_string(),
    );
    env.insert(
        "WABOT_WORKER__MAX_ATTEMPTS".into(),
        options.max_attempts.to_string(),
    );
    env.insert("WABOT_WORKER__RETRY_BASE_MS".into(), "20".into());
    env.insert("WABOT_WORKER__RETRY_MAX_MS".into(), "200".into());
    if let Some(prefix) = &options.prefix {
        env.insert("WABOT_REDIS__KEY_PREFIX".into(), prefix.clone());
    }
    env.extend(options.extra_env);
    let settings = match &options.config_toml {
        Some(toml) => {
            let dir =
                std::env::temp_dir().join(format!("wabot-test-config-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).expect("config dir");
            std::fs::write(dir.join("default.toml"), toml).expect("config file");
            let settings = Settings::load_from(&dir, &env).expect("test settings");
            let _ = std::fs::remove_dir_all(&dir);
            settings
        }
        None => settings_from(&env),
    };
    let app = match options.sink {
        Some(sink) => Application::build_with_sink(settings.clone(), sink).await,
        None => Application::build(settings.clone()).await,
    }
    .expect("app builds");
    launch(settings, app, graph, own).await
}

/// Who said what, oldest first.
pub fn roles_and_texts(
    view: &wabot::store::conversation::ConversationView,
) -> Vec<(wabot::store::conversation::Role, &str)> {
    view.turns
        .iter()
        .map(|t| (t.role, t.text.as_str()))
        .collect()
}

/// A conversation's ids, which must be valid.
pub fn conversation_ids(
    pnid: &str,
    user: &str,
) -> (wabot::domain::PhoneNumberId, wabot::domain::UserId) {
    (
        wabot::domain::PhoneNumberId::parse(pnid).expect("pnid"),
        wabot::domain::UserId::parse(user).expect("user"),
    )
}

/// The conversation, which must exist.
pub async fn conversation(
    store: &wabot::store::conversation::ConversationStore,
    pnid: &wabot::domain::PhoneNumberId,
    user: &wabot::domain::UserId,
) -> wabot::store::conversation::ConversationView {
    store
        .get(pnid, user)
        .await
        .expect("conversation readable")
        .expect("conversation exists")
}

/// Who has the conversation now (the bot, a person, another app).
pub async fn owner(
    store: &wabot::store::conversation::ConversationStore,
    pnid: &wabot::domain::PhoneNumberId,
    user: &wabot::domain::UserId,
) -> wabot::store::conversation::Owner {
    conversation(store, pnid, user).await.handoff.owner
}

/// The JSON bodies the fake Graph API received, in arrival order.
pub async fn graph_bodies(graph: &MockServer) -> Vec<serde_json::Value> {
    graph
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

/// The first JSON body the fake Graph API received that `wanted` picks, once one came (30 s).
pub async fn graph_body_where(
    graph: &MockServer,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    eventually(Duration::from_secs(30), || async {
        graph_bodies(graph).await.into_iter().find(|b| wanted(b))
    })
    .await
}

/// Waits until the fake Graph API has received a request (a send started); `false` on timeout.
pub async fn graph_called(graph: &MockServer, timeout: Duration) -> bool {
    eventually(timeout, || async {
        let requests = graph.received_requests().await.unwrap_or_default();
        (!requests.is_empty()).then_some(())
    })
    .await
    .is_some()
}

/// Waits until the dead-letter streams hold at least one message.
pub async fn wait_for_dead_letters(
    queue: &Queue,
    timeout: Duration,
) -> Vec<wabot::store::queue::DeadLetter> {
    eventually(timeout, || async {
        let dead = queue.dead_letters(10).await.ok()?;
        (!dead.is_empty()).then_some(dead)
    })
    .await
    .unwrap_or_else(|| panic!("no dead letter within {timeout:?}"))
}

/// The wamids `mount_graph_ok` servers gave, per server and recipient (no `+`), in send order.
/// The history keeps only their digests, and statuses in tests need the real ones.
type HandedOut = HashMap<(String, String), Vec<String>>;
static HANDED_OUT: std::sync::LazyLock<Mutex<HandedOut>> =
    std::sync::LazyLock::new(Default::default);

/// Every send succeeds with a unique wamid (see [`sent_wamids`]).
pub async fn mount_graph_ok(graph: &MockServer) {
    use wiremock::matchers::{method, path_regex};
    let server = graph.uri();
    wiremock::Mock::given(method("POST"))
        .and(path_regex(r"^/v24\.0/[0-9]+/messages$"))
        .respond_with(move |request: &wiremock::Request| {
            let wamid = format!("wamid.out.{}", uuid::Uuid::new_v4().simple());
            let to = serde_json::from_slice::<serde_json::Value>(&request.body)
                .ok()
                .and_then(|body| {
                    body["to"]
                        .as_str()
                        .map(|to| to.trim_start_matches('+').to_string())
                })
                .unwrap_or_default();
            if let Ok(mut handed_out) = HANDED_OUT.lock() {
                handed_out
                    .entry((server.clone(), to))
                    .or_default()
                    .push(wamid.clone());
            }
            wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "messaging_product": "whatsapp",
                "contacts": [{"input": "+1", "wa_id": "1"}],
                "messages": [{"id": wamid}]
            }))
        })
        .mount(graph)
        .await;
}

/// The wamids of our turns (bot and operator) in `view`, in the history's order: each found
/// among what `graph` (a `mount_graph_ok` server) handed out for the conversation's user.
pub fn sent_wamids(graph: &MockServer, view: &ConversationView) -> Vec<String> {
    let handed_out = HANDED_OUT
        .lock()
        .map(|all| {
            all.get(&(graph.uri(), view.user.clone()))
                .cloned()
                .unwrap_or_default()
        })
        .unwrap_or_default();
    view.turns
        .iter()
        .filter(|t| t.role != Role::User)
        .filter_map(|t| handed_out.iter().find(|w| t.is_message(w)).cloned())
        .collect()
}

/// Asserts that each of `users` (phone numbers without `+`) got exactly `echo: <text>` for its
/// texts, in order.
pub fn assert_replies_in_order(
    replies: &[Reply],
    users: &[String],
    texts_of: impl Fn(&str) -> Vec<String>,
) {
    for user in users {
        let got: Vec<&str> = replies
            .iter()
            .filter(|r| r.to == format!("+{user}"))
            .map(|r| r.text.as_str())
            .collect();
        let expected: Vec<String> = texts_of(user)
            .iter()
            .map(|t| format!("echo: {t}"))
            .collect();
        assert_eq!(got, expected, "replies to {user}");
    }
}

/// A text reply the fake Graph API received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub from_phone_number_id: String,
    pub to: String,
    pub text: String,
}

/// Text messages sent to the fake Graph API so far, in arrival order.
pub async fn replies(graph: &MockServer) -> Vec<Reply> {
    graph
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            let text = body.pointer("/text/body")?.as_str()?.to_string();
            let to = body
                .get("to")
                .or_else(|| body.get("recipient"))?
                .as_str()?
                .to_string();
            let from = r.url.path().split('/').nth(2)?.to_string();
            Some(Reply {
                from_phone_number_id: from,
                to,
                text,
            })
        })
        .collect()
}

/// Waits until the fake Graph API has at least `n` replies.
pub async fn wait_for_replies(graph: &MockServer, n: usize, timeout: Duration) -> Vec<Reply> {
    eventually(timeout, || async {
        let got = replies(graph).await;
        (got.len() >= n).then_some(got)
    })
    .await
    .unwrap_or_else(|| panic!("expected {n} replies within {timeout:?}"))
}

/// A signed delivery with one text message.
pub fn text_delivery(phone_number_id: &str, from: &str, wamid: &str, body: &str) -> Vec<u8> {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": "Tester"}, "wa_id": from}],
            "messages": [{"from": from, "id": wamid, "timestamp": "1793452187", "type": "text", "text": {"body": body}}]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

/// Waits until every inbox stream is empty (everything acknowledged or dead-lettered).
pub async fn wait_until_drained(queue: &Queue, timeout: Duration) {
    let drained = eventually(timeout, || async {
        let mut total = 0;
        for p in 0..queue.keys().partitions() {
            total += queue.depth(p).await.ok()?;
        }
        (total == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "inbox not drained within {timeout:?}");
}

/// Reads a fixture copied from `../shared/fixtures`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends whose body contains `needle` are answered after `delay` (ahead of `mount_graph_ok`).
pub async fn mount_slow_send(graph: &MockServer, needle: &str, delay: Duration) {
    use wiremock::matchers::{body_string_contains, method};
    wiremock::Mock::given(method("POST"))
        .and(body_string_contains(needle))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"messages": [{"id": format!("wamid.slow.{}", uuid::Uuid::new_v4().simple())}]}))
                .set_delay(delay),
        )
        .with_priority(1)
        .mount(graph)
        .await;
}

/// Runs the `wabot` binary against the app's Redis (the CLI's operator commands).
pub fn run_cli(settings: &Settings, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wabot"))
        .args(args)
        .env_clear()
        .env("APP_CONFIG_DIR", "/nonexistent")
        .env("WHATSAPP_APP_SECRET", "x")
        .env("WHATSAPP_VERIFY_TOKEN", "x")
        .env("WHATSAPP_ACCESS_TOKEN", "x")
        .env("REDIS_URL", &settings.redis.url)
        .env("WABOT_REDIS__KEY_PREFIX", &settings.redis.key_prefix)
        .env(
            "WABOT_WORKER__PARTITIONS",
            settings.worker.partitions.to_string(),
        )
        .output()
        .expect("wabot runs")
}

/// `(name, value)` pairs as `AppOptions::extra_env`.
pub fn env_vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A `wabot serve` child process, killed when dropped.
pub struct Served {
    child: Child,
    pub address: String,
}

impl Served {
    /// The child's process id (its memory, in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `wabot serve` on a free port with what every such test sets (no config directory, one
    /// HTTP worker, the test secrets, this Redis and Graph API, logs off, output discarded);
    /// `configure` adds or overrides the rest. Returned once healthy.
    pub async fn start(
        redis_url: &str,
        graph_url: &str,
        configure: impl FnOnce(&mut Command) -> &mut Command,
    ) -> Served {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_wabot"));
        command
            .arg("serve")
            .env_clear()
            .env("APP_CONFIG_DIR", "/nonexistent-wabot-test-config")
            .env("PORT", port.to_string())
            .env("WABOT_SERVER__HOST", "127.0.0.1")
            .env("WABOT_SERVER__HTTP_WORKERS", "1")
            .env("WHATSAPP_APP_SECRET", APP_SECRET)
            .env("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN)
            .env("WHATSAPP_ACCESS_TOKEN", "token")
            .env("WHATSAPP_API_BASE_URL", graph_url)
            .env("REDIS_URL", redis_url)
            .env("RUST_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = configure(&mut command).spawn().expect("wabot starts");
        Served::when_healthy(child, port).await
    }

    /// The process listening on `port`, once `GET /health` answers.
    pub async fn when_healthy(child: Child, port: u16) -> Served {
        let served = Served {
            child,
            address: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let up = eventually(Duration::from_secs(30), || async {
            let response = http
                .get(format!("{}/health", served.address))
                .send()
                .await
                .ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        assert!(up.is_some(), "wabot serve did not come up");
        served
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of a Prometheus series' samples whose line holds `labels` (`""`: all of them).
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
