//! The settings, section by section, as `config/default.toml` documents them.

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::language::Language;
use serde::{Deserialize, Serialize};

use super::redact::{redact, redact_http_url, redact_url};
use super::ConfigError;

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
    pub flows: FlowsSettings,
    pub tenants: TenantsSettings,
    /// Built-in sentences replaced per language: `[texts.es] reset = "..."` (see `i18n`).
    #[serde(default)]
    pub texts: HashMap<String, SentenceOverrides>,
    /// The merged layers these settings were read from: a tenant's settings are these with its
    /// document on top (`Settings::tenant`).
    #[serde(skip)]
    pub(crate) layers: Option<std::sync::Arc<config::Config>>,
    /// Where the files were read from (`tenants/` is in it unless `tenants.dir` says otherwise).
    #[serde(skip)]
    pub(crate) config_dir: std::path::PathBuf,
}

/// Many businesses on one deployment (`config::tenants`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TenantsSettings {
    /// Where tenant files (`<id>.toml`) are read from; empty: `tenants/` in the configuration
    /// directory.
    pub dir: String,
    /// AES-256-GCM key (base64 of 32 bytes) sealing the tenants stored through the admin API;
    /// empty: the admin API cannot store tenants.
    #[serde(serialize_with = "redact")]
    pub key: SecretString,
    /// How often every replica looks for tenants changed through the admin API.
    pub reload_ms: u64,
    /// Conversations of one tenant worked on at once by one replica, unless its document says
    /// otherwise: a tenant whose backend hangs holds at most this many of `worker.concurrency`.
    pub max_concurrency: usize,
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
    pub language_chosen: String,
    pub choose_language: String,
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
    /// The Meta app's id (App Dashboard > App settings > Basic): Embedded Signup exchanges a
    /// business's code for its token with it and the app secret.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub app_id: Option<String>,
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
    /// Largest media download accepted (and largest file uploaded).
    pub media_max_bytes: u64,
    /// Where media the bot sends by file name (`{"type": "image", "upload": "menu.jpg"}`) is
    /// read from; empty: only URLs can be uploaded.
    #[serde(default)]
    pub media_dir: String,
    /// Media downloaded and not yet handed on, across all of a replica's work at once: a
    /// download waits for room, so a few large files at once cannot run the process out of
    /// memory. A single file larger than this still goes, alone.
    pub media_in_flight_bytes: u64,
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
    /// The template's language code per conversation language (`es = "es_MX"`), for a
    /// template approved in several; a conversation in a language not listed gets `language`.
    #[serde(default)]
    pub languages: HashMap<String, String>,
}

impl TemplateRef {
    pub fn is_configured(&self) -> bool {
        !self.name.trim().is_empty()
    }

    /// This template as sent in a conversation in `language`.
    pub fn in_language(&self, language: Option<Language>) -> TemplateRef {
        let mut template = self.clone();
        if let Some(code) = language.and_then(|l| self.languages.get(l.code())) {
            template.language = code.clone();
        }
        template
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
    #[serde(serialize_with = "redact_http_url")]
    pub webhook_url: String,
    /// Signs every event body (`X-Wabot-Signature-256`).
    #[serde(serialize_with = "redact")]
    pub secret: SecretString,
    pub timeout_ms: u64,
    /// Longest wait between two delivery attempts of an event (backoff doubles up to it).
    pub retry_max_ms: u64,
}

/// The WhatsApp Flows data-exchange endpoint (`POST /flows`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FlowsSettings {
    /// The business's RSA private key, PEM (PKCS#8 or PKCS#1), whose public half was uploaded
    /// to the number (`wabot flows keygen`); or `private_key_file`. Neither: `/flows` is 404.
    #[serde(serialize_with = "redact")]
    pub private_key: SecretString,
    pub private_key_file: String,
    /// Where `INIT`, `BACK` and `data_exchange` requests go, decrypted (signed JSON); its answer
    /// is what the user's screen shows next.
    #[serde(serialize_with = "redact_http_url")]
    pub backend_url: String,
    /// Signs every request to `backend_url` (`X-Wabot-Signature-256`).
    #[serde(serialize_with = "redact")]
    pub backend_secret: SecretString,
    /// Per backend call; Meta gives the endpoint about 10 s.
    pub timeout_ms: u64,
}

impl FlowsSettings {
    /// The private key's PEM, from the setting or the file; `None`: Flows are off.
    pub fn private_key_pem(&self) -> std::io::Result<Option<SecretString>> {
        if !self.private_key.expose_secret().trim().is_empty() {
            return Ok(Some(self.private_key.clone()));
        }
        match self.private_key_file.trim() {
            "" => Ok(None),
            path => std::fs::read_to_string(path).map(|pem| Some(SecretString::from(pem))),
        }
    }
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
    /// The conversation's language: `auto` (detected from the user's text and kept per
    /// conversation) or fixed to `en`, `es`, `pt`; a user's own choice (`/idioma pt`) wins.
    pub language: String,
    /// With `auto`: the language of a conversation until something gives its language away.
    pub fallback_language: String,
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
    #[serde(default, serialize_with = "redact_http_url")]
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
    /// The user's reactions are POSTed too (`message.type = "reaction"`); the backend's actions
    /// for one are sent like any answer (usually none). Off: reactions are only kept.
    #[serde(default = "yes")]
    pub reactions: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OpenAiSettings {
    #[serde(default, serialize_with = "redact_http_url")]
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
    #[serde(serialize_with = "redact_http_url")]
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
    #[serde(default, serialize_with = "redact_http_url")]
    pub base_url: String,
    pub model: String,
    #[serde(serialize_with = "redact")]
    pub api_key: SecretString,
    pub timeout_ms: u64,
    /// Largest audio transcribed (a voice note of half an hour is ~4 MB); a larger one gets the
    /// `could_not_listen` answer without being downloaded.
    pub max_audio_bytes: u64,
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
    /// With the receiver in the same process: while more than 2 % of the webhook's answers take
    /// longer than this, the workers take fewer conversations at once (`pipeline::pressure`).
    /// 0: off.
    pub intake_target_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AdminSettings {
    /// The admin API is off while this is empty.
    #[serde(serialize_with = "redact")]
    pub token: SecretString,
    /// How long an operator console session lasts without being used.
    pub session_ttl_secs: u64,
    /// How long a console session lives at most, however busy (the live view renews it).
    pub session_max_secs: u64,
    /// Where the admin API, the console and `/metrics` listen (`127.0.0.1:9000`), away from the
    /// public webhook port; empty: on the webhook's port.
    pub listen: String,
    /// Proxies (addresses or CIDR ranges, comma-separated) whose `X-Forwarded-For` names the
    /// client for the failure budgets; empty: the peer is the client.
    pub trusted_proxies: String,
    /// Console cookies are always `Secure` (the console is behind HTTPS); `false` only for a
    /// console reached over plain HTTP, and then cookies are `Secure` when a proxy says TLS.
    pub secure_cookies: bool,
    /// `Strict-Transport-Security: max-age=<this>` on the console's and admin API's answers;
    /// 0: not sent (the TLS proxy usually sends it).
    pub hsts_max_age_secs: u64,
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

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    Ok(value.filter(|v| !v.trim().is_empty()))
}
