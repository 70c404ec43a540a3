//! Typed settings, loaded once from defaults, `config/` files and the environment (docs/DESIGN.md §3).
//!
//! Layers, later wins: built-in defaults (the shipped `config/default.toml`, embedded) →
//! `config/default.toml` → `config/{APP_ENV}.toml` →
//! `WABOT_<SECTION>__<KEY>` → the well-known flat variables (`PORT`, `REDIS_URL`, ...).
//! The environment is passed in as a map so tests can load settings without touching the
//! process environment (which every test thread shares).

use crate::domain::language::Language;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// Everything the process needs to run, validated.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub whatsapp: WhatsAppSettings,
    pub redis: RedisSettings,
    pub conversation: ConversationSettings,
    pub rate_limit: RateLimitSettings,
    pub responder: ResponderSettings,
    pub transcription: TranscriptionSettings,
    pub worker: WorkerSettings,
    pub admin: AdminSettings,
    pub log: LogSettings,
    pub handoff: HandoffSettings,
    pub events: EventSettings,
    /// Built-in sentences replaced per language: `[texts.es] reset = "..."` (see `i18n`).
    #[serde(default)]
    pub texts: HashMap<String, SentenceOverrides>,
}

/// One language's replacements of built-in sentences; empty keeps the built-in one.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SentenceOverrides {
    pub reset: String,
    pub help: String,
    pub rate_limited: String,
    pub non_text: String,
    pub handoff_requested: String,
    pub fallback: String,
    pub not_understood: String,
    pub could_not_listen: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// Meta documents payloads of up to 3 MB; anything larger is refused with 413.
    pub max_body_bytes: usize,
    /// HTTP worker threads; the webhook handler is I/O bound, two are plenty on small machines.
    pub http_workers: usize,
    /// How long SIGTERM waits for in-flight requests and conversations before giving up.
    pub shutdown_timeout_secs: u64,
    /// Longest a request may take to arrive (headers and body); slower ones get 408.
    pub request_timeout_secs: u64,
    /// Body bytes all requests together may hold before they are authenticated; over it: 503.
    pub max_inflight_body_bytes: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WhatsAppSettings {
    /// One secret, or several separated by commas while an app secret is being rotated.
    #[serde(serialize_with = "redact")]
    pub app_secret: SecretString,
    #[serde(serialize_with = "redact")]
    pub verify_token: SecretString,
    #[serde(serialize_with = "redact")]
    pub access_token: SecretString,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub phone_number_id: Option<String>,
    /// The WhatsApp Business Account (WABA) of the numbers: `wabot doctor` checks its app
    /// subscription and templates.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub business_account_id: Option<String>,
    pub api_base_url: String,
    pub api_version: String,
    pub mark_as_read: bool,
    pub typing_indicator: bool,
    pub request_timeout_ms: u64,
    /// HTTP/2 to the Graph API: every call in flight multiplexed on one connection (negotiated
    /// by TLS ALPN, falling back to HTTP/1.1; spoken with prior knowledge on a plain `http://`
    /// base URL, which must then speak h2c). Off: HTTP/1.1, one connection per call in flight.
    #[serde(default)]
    pub http2: bool,
    /// Extra tokens for numbers owned by other apps/businesses: `pnid=token,pnid2=token2`.
    #[serde(serialize_with = "redact")]
    pub access_tokens: SecretString,
    /// Attempts per Graph API call for retryable errors (1 = no retry).
    pub send_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Messages per second per business number, shared by all replicas (Meta's default
    /// throughput is 80; 0 switches the limiter off).
    pub throughput_per_sec: u32,
    /// Sustained spacing of messages to one user from one number (Meta's pair rate limit behind
    /// 131056: one per 6 s; 0 switches it off)...
    pub recipient_interval_ms: u64,
    /// ...after a burst of this many, which borrows from the future (Meta allows 45).
    pub recipient_burst: u32,
    /// Largest media download accepted.
    pub media_max_bytes: u64,
    /// Sent instead of free-form text when the 24-hour customer-service window is closed.
    pub reengagement_template: TemplateRef,
}

/// An approved template by name; an empty name means none is configured.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct TemplateRef {
    pub name: String,
    pub language: String,
    /// Body parameters, in order (`{{1}}`, `{{2}}`...).
    #[serde(default)]
    pub parameters: Vec<String>,
}

impl TemplateRef {
    pub fn is_configured(&self) -> bool {
        !self.name.trim().is_empty()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HandoffSettings {
    /// Words that ask for a person (comma-separated, matched as whole words, case and accents
    /// ignored); `/agent` always does.
    pub keywords: String,
    /// How long a conversation stays with a person before it returns to the bot.
    pub timeout_secs: u64,
    /// The bot's answer when a user asks for a person.
    pub requested_text: String,
    /// Mark messages read while a person has the conversation.
    pub mark_read: bool,
    /// How long the bot pauses after the business answered from the WhatsApp Business app,
    /// measured from that answer (never longer than `timeout_secs`).
    pub echo_pause_secs: u64,
}

impl HandoffSettings {
    /// The keywords, trimmed (the handoff detector normalises them as it does user text).
    pub fn keyword_list(&self) -> Vec<String> {
        self.keywords
            .split(',')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EventSettings {
    /// Where events are POSTed; empty: no events are kept or sent.
    pub webhook_url: String,
    /// Signs every event body (`X-Wabot-Signature-256`).
    #[serde(serialize_with = "redact")]
    pub secret: SecretString,
    pub timeout_ms: u64,
    /// Longest wait between two delivery attempts of an event (backoff doubles up to it).
    pub retry_max_ms: u64,
}

impl EventSettings {
    pub fn enabled(&self) -> bool {
        !self.webhook_url.trim().is_empty()
    }
}

impl WhatsAppSettings {
    /// Tokens by phone number id from `access_tokens`; malformed entries are reported.
    pub fn tokens_by_number(&self) -> Result<Vec<(String, SecretString)>, ConfigError> {
        self.access_tokens
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((pnid, token)) if !pnid.trim().is_empty() && !token.trim().is_empty() => {
                    Ok((pnid.trim().to_string(), SecretString::from(token.trim())))
                }
                _ => Err(ConfigError::Invalid {
                    setting: "whatsapp.access_tokens",
                    reason: "expected `phone_number_id=token` pairs separated by commas".into(),
                }),
            })
            .collect()
    }

    /// The configured app secrets, in order; empty entries are ignored.
    pub fn app_secrets(&self) -> Vec<SecretString> {
        self.app_secret
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(SecretString::from)
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RedisSettings {
    /// Anything fred's `Config::from_url` takes: redis://, rediss://, redis-cluster://, redis-sentinel://.
    #[serde(serialize_with = "redact_url")]
    pub url: String,
    #[serde(serialize_with = "redact")]
    pub password: SecretString,
    /// Every key starts with this, so several deployments (or test runs) can share one Redis.
    pub key_prefix: String,
    pub command_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// PEM file of the CA that signed a self-hosted Redis' TLS certificate (`rediss://`);
    /// empty: the system's trust store.
    pub tls_ca_file: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ConversationSettings {
    /// Sliding TTL of a conversation: it expires after this long without activity.
    pub session_expire_secs: u64,
    pub max_history: usize,
    /// 0 disables burst merging.
    pub merge_window_ms: u64,
    /// Characters of one turn's text kept in the history (WhatsApp's own cap is 65,536).
    pub max_turn_chars: usize,
    /// Outbound messages (4,096 characters each) one reply may be split into.
    pub max_reply_parts: usize,
    /// Language of the built-in sentences: `en`, `es`, `pt`, or `auto` (from the user's text).
    pub language: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RateLimitSettings {
    pub messages: u32,
    pub window_secs: u64,
    /// Sent once per window to a user who is over the limit; empty: the built-in sentence in
    /// the conversation's language.
    pub notice: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResponderKind {
    Rules,
    Echo,
    Openai,
    Http,
}

impl ResponderKind {
    /// The label in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponderKind::Rules => "rules",
            ResponderKind::Echo => "echo",
            ResponderKind::Openai => "openai",
            ResponderKind::Http => "http",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ResponderSettings {
    pub kind: ResponderKind,
    /// Rules of the `rules` responder; the built-in rules are used when the file does not exist.
    pub rules_file: String,
    pub openai: OpenAiSettings,
    pub http: HttpResponderSettings,
}

/// The `http` responder: the business's own backend (docs/http-responder.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HttpResponderSettings {
    #[serde(default)]
    pub url: String,
    /// Key of the `X-Wabot-Signature-256` HMAC over each request body.
    #[serde(serialize_with = "redact")]
    pub secret: SecretString,
    /// Per request; a slower answer counts as a failed try.
    pub timeout_ms: u64,
    /// Tries per message for timeouts, network errors and 5xx, then the fallback text.
    pub attempts: u32,
    pub retry_base_ms: u64,
    /// Sent when the backend fails; empty: the built-in sentence in the conversation's language.
    pub fallback: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OpenAiSettings {
    #[serde(default)]
    pub base_url: String,
    #[serde(default)]
    pub model: String,
    #[serde(serialize_with = "redact")]
    pub api_key: SecretString,
    pub system_prompt: String,
    pub temperature: f32,
    pub max_tokens: u32,
    pub timeout_ms: u64,
    /// Prior turns sent to the model are cut to this many characters (newest kept).
    pub history_chars: usize,
    /// Sent when the model fails or times out: never leave the user without an answer. Empty:
    /// the built-in sentence in the conversation's language.
    pub fallback: String,
    /// Functions the model may call (`[[responder.openai.tools]]`), each POSTed to its `url`.
    #[serde(default)]
    pub tools: Vec<ToolSettings>,
    /// Rounds of tool calls per message; a model still calling tools after them gets cut off
    /// (the fallback text is sent).
    pub max_tool_rounds: u32,
    /// Per tool call.
    pub tool_timeout_ms: u64,
    /// All model and tool calls of one message together; past it no new round starts.
    pub tools_deadline_ms: u64,
    /// Key of the `X-Wabot-Signature-256` HMAC over each tool request body.
    #[serde(serialize_with = "redact")]
    pub tool_secret: SecretString,
    /// Offers the model an `actions` tool to send buttons, lists, media... or hand off.
    pub actions_tool: bool,
    /// Sends a user's image to the model as an image content part (a vision model is needed).
    pub vision: bool,
}

/// One function the model may call.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ToolSettings {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    #[serde(default = "empty_object_schema")]
    pub parameters: serde_json::Value,
    /// Receives `{"tool", "arguments", "contact", "conversation"}`, signed; answers the result.
    pub url: String,
}

fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// Voice notes as text through an OpenAI-compatible `/audio/transcriptions` endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TranscriptionSettings {
    /// E.g. `https://api.openai.com/v1`, `http://127.0.0.1:8080/v1`; empty: voice notes are not
    /// transcribed (they get the `non_text` answer).
    #[serde(default)]
    pub base_url: String,
    pub model: String,
    #[serde(serialize_with = "redact")]
    pub api_key: SecretString,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WorkerSettings {
    /// Number of inbox partitions. Changing it re-routes conversations: drain the inbox first.
    pub partitions: u32,
    /// Conversations processed at the same time by one replica.
    pub concurrency: usize,
    /// A replica that stops renewing its lease loses its partitions after this long.
    pub lease_ttl_ms: u64,
    /// Attempts before a message goes to the dead-letter stream.
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Whether `wabot serve` also runs the workers (`wabot worker` always does).
    pub enabled: bool,
    /// Threads of the workers' own runtime in `wabot serve` (0: one per core). The HTTP receiver
    /// keeps its own threads, so a backlog never delays a webhook's 200.
    pub threads: usize,
    /// How much lower than the receiver's the workers' threads run (`nice`, 0–19): under load
    /// the kernel runs intake first; the backlog is durable, so waiting is safe.
    pub nice: i32,
    /// Entries one inbox read takes at most.
    pub read_batch: u64,
    /// Entries of one partition read but not finished; reading pauses above this. A small bound
    /// leaves the backlog in Redis (durable) instead of in the workers' memory and queues.
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AdminSettings {
    /// The admin API is off while this is empty.
    #[serde(serialize_with = "redact")]
    pub token: SecretString,
    /// How long an operator console session lasts without being used.
    pub session_ttl_secs: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// Why settings could not be loaded; the message always names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] config::ConfigError),
    #[error("setting `{setting}` is required ({hint})")]
    Missing {
        setting: &'static str,
        hint: &'static str,
    },
    #[error("setting `{setting}` is invalid: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
    #[error("setting `{setting}` is unknown (set in {origin}); check its spelling")]
    Unknown { setting: String, origin: String },
}

/// The built-in defaults are `config/default.toml` as shipped, embedded: one place for every
/// default, documented, and the binary runs even without a `config/` directory next to it.
const BUILT_IN: &str = include_str!("../../config/default.toml");

/// The well-known flat variables and the setting each one sets.
const FLAT_ENV: &[(&str, &str)] = &[
    ("PORT", "server.port"),
    ("WHATSAPP_APP_SECRET", "whatsapp.app_secret"),
    ("WHATSAPP_VERIFY_TOKEN", "whatsapp.verify_token"),
    ("WHATSAPP_ACCESS_TOKEN", "whatsapp.access_token"),
    ("WHATSAPP_PHONE_NUMBER_ID", "whatsapp.phone_number_id"),
    ("WHATSAPP_API_BASE_URL", "whatsapp.api_base_url"),
    ("WHATSAPP_API_VERSION", "whatsapp.api_version"),
    ("REDIS_URL", "redis.url"),
    ("REDIS_PASSWORD", "redis.password"),
    ("SESSION_EXPIRE_TIME", "conversation.session_expire_secs"),
    ("RESPONDER", "responder.kind"),
    ("OPENAI_BASE_URL", "responder.openai.base_url"),
    ("OPENAI_MODEL", "responder.openai.model"),
    ("OPENAI_API_KEY", "responder.openai.api_key"),
    ("HTTP_RESPONDER_URL", "responder.http.url"),
    ("HTTP_RESPONDER_SECRET", "responder.http.secret"),
    ("ADMIN_TOKEN", "admin.token"),
    ("LOG_FORMAT", "log.format"),
];

/// `server.port` as the process environment sets it (the flat variable, else
/// `WABOT_SERVER__PORT`), else the default: for `wabot healthcheck`, which must not need the
/// secrets a full load checks.
pub fn port_from_env() -> u16 {
    let flat = FLAT_ENV
        .iter()
        .find(|(_, key)| *key == "server.port")
        .map(|(var, _)| *var);
    flat.into_iter()
        .chain(["WABOT_SERVER__PORT"])
        .find_map(|var| std::env::var(var).ok()?.trim().parse().ok())
        .or_else(|| {
            let defaults: toml::Table = toml::from_str(BUILT_IN).ok()?;
            u16::try_from(defaults.get("server")?.get("port")?.as_integer()?).ok()
        })
        .unwrap_or(8000)
}

impl Settings {
    /// Loads settings the way the binary does: `APP_CONFIG_DIR` (default `./config`) and the process
    /// environment.
    pub fn load() -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let dir = env
            .get("APP_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Settings::load_from(&dir, &env)
    }

    /// Loads settings from `config_dir` and the given environment map, then validates them.
    pub fn load_from(
        config_dir: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let app_env = env
            .get("APP_ENV")
            .map(String::as_str)
            .unwrap_or("development");
        let builder = config::Config::builder()
            .add_source(config::File::from_str(BUILT_IN, config::FileFormat::Toml))
            .add_source(config::File::from(config_dir.join("default.toml")).required(false))
            .add_source(
                config::File::from(config_dir.join(format!("{app_env}.toml"))).required(false),
            )
            .add_source(
                config::Environment::with_prefix("WABOT")
                    .prefix_separator("_")
                    .separator("__")
                    .source(Some(sectioned_env(env))),
            );
        let mut builder = builder;
        for (var, key) in FLAT_ENV {
            builder = builder.set_override_option(*key, env.get(*var).cloned())?;
        }
        let config = builder.build()?;
        let mut present = Vec::new();
        collect_leaves(&config.cache, "", &mut present);
        let settings: Settings = config.try_deserialize()?;
        // Serde ignores keys it does not know, so a misspelt override would silently not apply.
        // The known keys come from the struct itself, so a new setting needs no list to update.
        let mut known = Vec::new();
        let serialized = serde_json::to_value(&settings).map_err(|e| ConfigError::Invalid {
            setting: "settings",
            reason: format!("could not be inspected: {e}"),
        })?;
        known_keys(&serialized, "", &mut known);
        if let Some((setting, origin)) = present
            .into_iter()
            .find(|(key, _)| !known.iter().any(|k| k == key))
        {
            return Err(ConfigError::Unknown { setting, origin });
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what serde cannot: required secrets, ranges, URLs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.whatsapp.app_secrets().is_empty() {
            return Err(ConfigError::Missing {
                setting: "whatsapp.app_secret",
                hint: "set WHATSAPP_APP_SECRET to the App Secret from App settings > Basic",
            });
        }
        if self.whatsapp.verify_token.expose_secret().is_empty() {
            return Err(ConfigError::Missing {
                setting: "whatsapp.verify_token",
                hint:
                    "set WHATSAPP_VERIFY_TOKEN to the string typed into the webhook configuration",
            });
        }
        if self.whatsapp.access_token.expose_secret().is_empty() {
            return Err(ConfigError::Missing {
                setting: "whatsapp.access_token",
                hint: "set WHATSAPP_ACCESS_TOKEN to a system user access token",
            });
        }
        self.whatsapp.tokens_by_number()?;
        if self.whatsapp.send_attempts == 0 {
            return Err(ConfigError::Invalid {
                setting: "whatsapp.send_attempts",
                reason: "must be greater than 0".into(),
            });
        }
        let base = &self.whatsapp.api_base_url;
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                setting: "whatsapp.api_base_url",
                reason: "must start with http:// or https://".into(),
            });
        }
        if !self.redis.url.starts_with("redis")
            || fred::types::config::Config::from_url(&self.redis.url).is_err()
        {
            return Err(ConfigError::Invalid {
                setting: "redis.url",
                reason: "not a Redis URL fred understands (redis://, rediss://, redis-cluster://, redis-sentinel://)".into(),
            });
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(['{', '}', ':', ' '])
        {
            return Err(ConfigError::Invalid {
                setting: "redis.key_prefix",
                reason: "must be non-empty without `{`, `}`, `:` or spaces".into(),
            });
        }
        let positive: [(&'static str, u64); 12] = [
            (
                "server.request_timeout_secs",
                self.server.request_timeout_secs,
            ),
            (
                "conversation.session_expire_secs",
                self.conversation.session_expire_secs,
            ),
            (
                "conversation.max_history",
                self.conversation.max_history as u64,
            ),
            ("rate_limit.messages", u64::from(self.rate_limit.messages)),
            ("rate_limit.window_secs", self.rate_limit.window_secs),
            ("worker.partitions", u64::from(self.worker.partitions)),
            ("worker.concurrency", self.worker.concurrency as u64),
            ("worker.max_attempts", u64::from(self.worker.max_attempts)),
            ("worker.read_batch", self.worker.read_batch),
            ("worker.max_in_flight", self.worker.max_in_flight as u64),
            (
                "conversation.max_turn_chars",
                self.conversation.max_turn_chars as u64,
            ),
            (
                "conversation.max_reply_parts",
                self.conversation.max_reply_parts as u64,
            ),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    setting,
                    reason: "must be greater than 0".into(),
                });
            }
        }
        if !(60..=30 * 24 * 3600).contains(&self.admin.session_ttl_secs) {
            return Err(ConfigError::Invalid {
                setting: "admin.session_ttl_secs",
                reason: "must be between 60 s and 30 days".into(),
            });
        }
        if !(0..=19).contains(&self.worker.nice) {
            return Err(ConfigError::Invalid {
                setting: "worker.nice",
                reason: "must be between 0 and 19".into(),
            });
        }
        if self.handoff.timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                setting: "handoff.timeout_secs",
                reason: "must be greater than 0".into(),
            });
        }
        let events = self.events.webhook_url.trim();
        if !(events.is_empty() || events.starts_with("http://") || events.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                setting: "events.webhook_url",
                reason: "must start with http:// or https://".into(),
            });
        }
        if self.server.max_inflight_body_bytes < self.server.max_body_bytes {
            // Otherwise a delivery of the largest allowed size could never be accepted.
            return Err(ConfigError::Invalid {
                setting: "server.max_inflight_body_bytes",
                reason: "must be at least server.max_body_bytes".into(),
            });
        }
        if self.worker.lease_ttl_ms < 1000 {
            return Err(ConfigError::Invalid {
                setting: "worker.lease_ttl_ms",
                reason: "must be at least 1000".into(),
            });
        }
        if self.responder.kind == ResponderKind::Openai
            && (self.responder.openai.base_url.is_empty() || self.responder.openai.model.is_empty())
        {
            return Err(ConfigError::Missing {
                setting: "responder.openai.base_url",
                hint: "the openai responder needs OPENAI_BASE_URL and OPENAI_MODEL",
            });
        }
        let mut names = std::collections::HashSet::new();
        for tool in &self.responder.openai.tools {
            let valid_name = !tool.name.is_empty()
                && tool.name.len() <= 64
                && tool
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let reason = if !valid_name {
                Some(format!(
                    "tool name `{}` must be 1-64 of a-z, A-Z, 0-9, _ and -",
                    tool.name
                ))
            } else if tool.name == "actions" {
                Some("`actions` is the built-in tool (responder.openai.actions_tool)".into())
            } else if !names.insert(tool.name.as_str()) {
                Some(format!("tool `{}` is declared twice", tool.name))
            } else if !(tool.url.starts_with("http://") || tool.url.starts_with("https://")) {
                Some(format!("tool `{}` needs an http(s) url", tool.name))
            } else if !tool.parameters.is_object() {
                Some(format!(
                    "tool `{}`: parameters must be a JSON Schema object",
                    tool.name
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(ConfigError::Invalid {
                    setting: "responder.openai.tools",
                    reason,
                });
            }
        }
        if !self.responder.openai.tools.is_empty()
            && self.responder.openai.tool_secret.expose_secret().is_empty()
        {
            return Err(ConfigError::Missing {
                setting: "responder.openai.tool_secret",
                hint: "tool requests are signed: set the key the tools verify X-Wabot-Signature-256 with",
            });
        }
        if self.responder.kind == ResponderKind::Http {
            let url = &self.responder.http.url;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Missing {
                    setting: "responder.http.url",
                    hint: "the http responder needs the backend's http:// or https:// URL (HTTP_RESPONDER_URL)",
                });
            }
            if self.responder.http.secret.expose_secret().is_empty() {
                return Err(ConfigError::Missing {
                    setting: "responder.http.secret",
                    hint: "the http responder signs every request: set HTTP_RESPONDER_SECRET",
                });
            }
            if self.responder.http.attempts == 0 || self.responder.http.timeout_ms == 0 {
                return Err(ConfigError::Invalid {
                    setting: "responder.http.attempts",
                    reason: "attempts and timeout_ms must be greater than 0".into(),
                });
            }
        }
        let language = self.conversation.language.trim().to_lowercase();
        if language != "auto" && Language::parse(&language).is_none() {
            return Err(ConfigError::Invalid {
                setting: "conversation.language",
                reason: format!("must be en, es, pt or auto, not `{language}`"),
            });
        }
        if let Some(code) = self
            .texts
            .keys()
            .find(|code| Language::parse(code).is_none())
        {
            return Err(ConfigError::Invalid {
                setting: "texts",
                reason: format!("`texts.{code}` is not a shipped language (en, es, pt)"),
            });
        }
        Ok(())
    }

    /// The effective configuration as TOML, every secret replaced by `[redacted]`.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# could not render the configuration: {e}\n"))
    }

    /// Whether the admin API is enabled.
    pub fn admin_enabled(&self) -> bool {
        !self.admin.token.expose_secret().is_empty()
    }
}

fn redact<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    if secret.expose_secret().is_empty() {
        s.serialize_str("")
    } else {
        s.serialize_str("[redacted]")
    }
}

/// Keeps the scheme, host and options of a Redis URL, hides user info (passwords live there).
fn redact_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url_userinfo(url))
}

pub fn redact_url_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}[redacted]{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// `WABOT_<SECTION>__<KEY>` variables only: other `WABOT_` names (docker compose's
/// `WABOT_HOST_PORT`, tooling) are not settings and must not stop the service.
fn sectioned_env(env: &HashMap<String, String>) -> config::Map<String, String> {
    env.iter()
        .filter(|(name, _)| {
            name.strip_prefix("WABOT_")
                .is_some_and(|rest| rest.contains("__"))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Dotted paths of every value in the built configuration, with where each was set.
fn collect_leaves(value: &config::Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match &value.kind {
        config::ValueKind::Table(table) => {
            let mut keys: Vec<&String> = table.keys().collect();
            keys.sort();
            for key in keys {
                let path = join_key(prefix, key);
                if let Some(child) = table.get(key) {
                    collect_leaves(child, &path, out);
                }
            }
        }
        _ if !prefix.is_empty() => out.push((
            prefix.to_string(),
            value.origin().unwrap_or("the environment").to_string(),
        )),
        _ => {}
    }
}

/// Dotted paths of every setting the struct has (objects are sections, the rest are settings).
fn known_keys(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                known_keys(child, &join_key(prefix, key), out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    Ok(value.filter(|v| !v.trim().is_empty()))
}

/// Settings from environment pairs alone, for the unit tests of the layers above.
#[cfg(test)]
pub mod testing {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::{ConfigError, Settings};

    pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn required() -> Vec<(&'static str, &'static str)> {
        vec![
            ("WHATSAPP_APP_SECRET", "s1"),
            ("WHATSAPP_VERIFY_TOKEN", "vt"),
            ("WHATSAPP_ACCESS_TOKEN", "at"),
        ]
    }

    pub fn no_dir() -> PathBuf {
        PathBuf::from("/nonexistent-wabot-config")
    }

    /// The required settings, then `pairs` on top.
    pub fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut all = required();
        all.extend_from_slice(pairs);
        Settings::load_from(&no_dir(), &env(&all))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{env, no_dir, required};
    use super::*;

    #[test]
    fn defaults_apply_without_files() {
        let s = Settings::load_from(&no_dir(), &env(&required())).expect("loads");
        assert_eq!(s.server.port, 8000);
        assert_eq!(s.conversation.session_expire_secs, 3600);
        assert_eq!(s.redis.url, "redis://127.0.0.1:6379/0");
        assert_eq!(s.responder.kind, ResponderKind::Rules);
        assert_eq!(s.rate_limit.messages, 20);
        assert!(s.whatsapp.phone_number_id.is_none());
    }

    #[test]
    fn flat_env_beats_prefixed_env() {
        let mut pairs = required();
        pairs.push(("WABOT_SERVER__PORT", "9000"));
        pairs.push(("WABOT_CONVERSATION__MAX_HISTORY", "7"));
        let s = Settings::load_from(&no_dir(), &env(&pairs)).expect("loads");
        assert_eq!(s.server.port, 9000);
        assert_eq!(s.conversation.max_history, 7);
        pairs.push(("PORT", "9100"));
        pairs.push(("SESSION_EXPIRE_TIME", "120"));
        pairs.push(("RESPONDER", "echo"));
        let s = Settings::load_from(&no_dir(), &env(&pairs)).expect("loads");
        assert_eq!(s.server.port, 9100);
        assert_eq!(s.conversation.session_expire_secs, 120);
        assert_eq!(s.responder.kind, ResponderKind::Echo);
    }

    #[test]
    fn files_are_layered_by_app_env() {
        let dir = std::env::temp_dir().join(format!("wabot-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        std::fs::write(
            dir.join("default.toml"),
            "[server]\nport = 7000\n[rate_limit]\nmessages = 5\n",
        )
        .expect("write");
        std::fs::write(dir.join("production.toml"), "[server]\nport = 7001\n").expect("write");
        let mut pairs = required();
        let s = Settings::load_from(&dir, &env(&pairs)).expect("loads");
        assert_eq!((s.server.port, s.rate_limit.messages), (7000, 5));
        pairs.push(("APP_ENV", "production"));
        let s = Settings::load_from(&dir, &env(&pairs)).expect("loads");
        assert_eq!((s.server.port, s.rate_limit.messages), (7001, 5));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn missing_secret_names_the_setting() {
        let err = Settings::load_from(
            &no_dir(),
            &env(&[
                ("WHATSAPP_VERIFY_TOKEN", "v"),
                ("WHATSAPP_ACCESS_TOKEN", "a"),
            ]),
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("whatsapp.app_secret"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let mut pairs = required();
        pairs.push(("PORT", "not-a-port"));
        let err = Settings::load_from(&no_dir(), &env(&pairs)).expect_err("must fail");
        assert!(err.to_string().contains("port"), "{err}");
        let mut pairs = required();
        pairs.push(("REDIS_URL", "http://nope"));
        let err = Settings::load_from(&no_dir(), &env(&pairs)).expect_err("must fail");
        assert!(err.to_string().contains("redis.url"), "{err}");
        let mut pairs = required();
        pairs.push(("RESPONDER", "magic"));
        assert!(Settings::load_from(&no_dir(), &env(&pairs)).is_err());
        let mut pairs = required();
        pairs.push(("WABOT_WORKER__NICE", "20"));
        let err = Settings::load_from(&no_dir(), &env(&pairs)).expect_err("must fail");
        assert!(err.to_string().contains("worker.nice"), "{err}");
        let mut pairs = required();
        pairs.push(("WABOT_WORKER__NICE", "0"));
        pairs.push(("WABOT_WORKER__THREADS", "3"));
        let settings = Settings::load_from(&no_dir(), &env(&pairs)).expect("valid");
        assert_eq!((settings.worker.nice, settings.worker.threads), (0, 3));
        let mut pairs = required();
        pairs.push(("WABOT_WORKER__MAX_IN_FLIGHT", "0"));
        let err = Settings::load_from(&no_dir(), &env(&pairs)).expect_err("must fail");
        assert!(err.to_string().contains("worker.max_in_flight"), "{err}");
    }

    #[test]
    fn a_misspelt_file_key_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("wabot-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        std::fs::write(dir.join("default.toml"), "[server]\nprot = 7000\n").expect("write");
        let err = Settings::load_from(&dir, &env(&required())).expect_err("must fail");
        std::fs::remove_dir_all(&dir).ok();
        assert!(
            err.to_string().contains("setting `server.prot` is unknown"),
            "{err}"
        );
    }

    #[test]
    fn a_misspelt_env_override_is_an_error_naming_it() {
        let mut pairs = required();
        pairs.push(("WABOT_WORKER__CONCURENCY", "8"));
        let err = Settings::load_from(&no_dir(), &env(&pairs)).expect_err("must fail");
        assert!(
            err.to_string()
                .contains("setting `worker.concurency` is unknown"),
            "{err}"
        );
        let mut pairs = required();
        pairs.push(("WABOT_SEVER__PORT", "1"));
        let err = Settings::load_from(&no_dir(), &env(&pairs)).expect_err("must fail");
        assert!(err.to_string().contains("`sever.port`"), "{err}");
    }

    #[test]
    fn wabot_variables_that_are_not_sectioned_are_not_settings() {
        let mut pairs = required();
        // docker compose's own variables travel in the same .env file.
        pairs.push(("WABOT_HOST_PORT", "9000"));
        pairs.push(("WABOT_IMAGE", "wabot:latest"));
        pairs.push(("WABOT_WORKER__CONCURRENCY", "8"));
        let s = Settings::load_from(&no_dir(), &env(&pairs)).expect("loads");
        assert_eq!(s.worker.concurrency, 8);
    }

    #[test]
    fn the_shipped_default_toml_sets_every_setting() {
        let shipped: toml::Table = toml::from_str(BUILT_IN).expect("default.toml parses");
        let mut present = Vec::new();
        fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
            for (key, value) in table {
                let path = join_key(prefix, key);
                match value {
                    toml::Value::Table(child) => leaves(child, &path, out),
                    _ => out.push(path),
                }
            }
        }
        leaves(&shipped, "", &mut present);
        let settings = Settings::load_from(&no_dir(), &env(&required())).expect("defaults load");
        let mut known = Vec::new();
        known_keys(
            &serde_json::to_value(&settings).expect("json"),
            "",
            &mut known,
        );
        // Optional settings without a default value.
        let optional = [
            "whatsapp.phone_number_id",
            "whatsapp.business_account_id",
            "whatsapp.reengagement_template.parameters",
            "responder.openai.tools",
        ];
        let undocumented: Vec<&String> = known
            .iter()
            .filter(|k| !present.contains(k) && !optional.contains(&k.as_str()))
            .collect();
        assert!(
            undocumented.is_empty(),
            "not in config/default.toml: {undocumented:?}"
        );
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let on_disk = Settings::load_from(&dir, &env(&required())).expect("shipped config loads");
        assert_eq!(on_disk.server.request_timeout_secs, 10);
        assert_eq!(on_disk.redacted_toml(), settings.redacted_toml());
    }

    #[test]
    fn sentences_are_overridden_per_language_and_typos_are_refused() {
        let mut pairs = required();
        pairs.push(("WABOT_CONVERSATION__LANGUAGE", "es"));
        pairs.push(("WABOT_TEXTS__ES__RESET", "Listo."));
        let s = Settings::load_from(&no_dir(), &env(&pairs)).expect("loads");
        assert_eq!(s.texts["es"].reset, "Listo.");
        let mut typo = required();
        typo.push(("WABOT_TEXTS__ES__RESETT", "x"));
        let err = Settings::load_from(&no_dir(), &env(&typo)).expect_err("must fail");
        assert!(err.to_string().contains("texts.es.resett"), "{err}");
        let mut french = required();
        french.push(("WABOT_TEXTS__FR__RESET", "x"));
        let err = Settings::load_from(&no_dir(), &env(&french)).expect_err("must fail");
        assert!(err.to_string().contains("texts"), "{err}");
        let mut german = required();
        german.push(("WABOT_CONVERSATION__LANGUAGE", "de"));
        let err = Settings::load_from(&no_dir(), &env(&german)).expect_err("must fail");
        assert!(err.to_string().contains("conversation.language"), "{err}");
    }

    #[test]
    fn tools_load_from_a_file_print_redacted_and_bad_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("wabot-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let tool = |name: &str, url: &str| {
            format!(
                "[[responder.openai.tools]]\nname = \"{name}\"\ndescription = \"d\"\nurl = \"{url}\"\n\
                 parameters = {{ type = \"object\", properties = {{ order_id = {{ type = \"string\" }} }} }}\n"
            )
        };
        let write = |text: String| std::fs::write(dir.join("default.toml"), text).expect("write");
        write(format!(
            "[responder.openai]\ntool_secret = \"t0p\"\n{}",
            tool("get_order_status", "http://127.0.0.1:1/x")
        ));
        let s = Settings::load_from(&dir, &env(&required())).expect("loads");
        assert_eq!(s.responder.openai.tools[0].name, "get_order_status");
        assert_eq!(
            s.responder.openai.tools[0].parameters["properties"]["order_id"]["type"],
            "string"
        );
        let printed = s.redacted_toml();
        assert!(
            printed.contains("get_order_status") && !printed.contains("t0p"),
            "{printed}"
        );
        for bad in [
            tool("actions", "http://127.0.0.1:1/x"),
            tool("has space", "http://127.0.0.1:1/x"),
            tool("t", "ftp://x"),
            format!("{}{}", tool("t", "http://a/"), tool("t", "http://b/")),
        ] {
            write(bad);
            let err = Settings::load_from(&dir, &env(&required())).expect_err("refused");
            assert!(err.to_string().contains("responder.openai.tools"), "{err}");
        }
        write(tool("get_order_status", "http://127.0.0.1:1/x"));
        let err = Settings::load_from(&dir, &env(&required())).expect_err("unsigned tools");
        assert!(
            err.to_string().contains("responder.openai.tool_secret"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_http_responder_needs_a_url_and_a_secret() {
        let mut pairs = required();
        pairs.push(("RESPONDER", "http"));
        let err = Settings::load_from(&no_dir(), &env(&pairs)).expect_err("must fail");
        assert!(err.to_string().contains("responder.http.url"), "{err}");
        pairs.push(("HTTP_RESPONDER_URL", "http://127.0.0.1:9/bot"));
        let err = Settings::load_from(&no_dir(), &env(&pairs)).expect_err("must fail");
        assert!(err.to_string().contains("responder.http.secret"), "{err}");
        pairs.push(("HTTP_RESPONDER_SECRET", "s3cret"));
        let s = Settings::load_from(&no_dir(), &env(&pairs)).expect("loads");
        assert!(!s.redacted_toml().contains("s3cret"));
    }

    #[test]
    fn the_body_budget_must_hold_one_largest_body() {
        let mut pairs = required();
        pairs.push(("WABOT_SERVER__MAX_INFLIGHT_BODY_BYTES", "1024"));
        let err = Settings::load_from(&no_dir(), &env(&pairs)).expect_err("must fail");
        assert!(
            err.to_string().contains("server.max_inflight_body_bytes"),
            "{err}"
        );
    }

    #[test]
    fn rotation_list_and_redaction() {
        let mut pairs = required();
        pairs[0] = ("WHATSAPP_APP_SECRET", "old-secret, new-secret");
        pairs.push(("REDIS_URL", "redis://user:hunter2@redis.example:6380/1"));
        let s = Settings::load_from(&no_dir(), &env(&pairs)).expect("loads");
        let secrets: Vec<String> = s
            .whatsapp
            .app_secrets()
            .iter()
            .map(|s| s.expose_secret().to_string())
            .collect();
        assert_eq!(secrets, ["old-secret", "new-secret"]);
        let printed = s.redacted_toml();
        for secret in ["old-secret", "new-secret", "hunter2", "\"vt\"", "\"at\""] {
            assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
        }
        assert!(printed.contains("redis.example:6380"));
        assert!(printed.contains("[redacted]"));
    }
}
