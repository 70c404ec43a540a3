//! Typed settings, loaded once from defaults, `config/` files and the environment (docs/DESIGN.md §3).
//!
//! Layers, later wins: built-in defaults → `config/default.toml` → `config/{APP_ENV}.toml` →
//! `WABOT_<SECTION>__<KEY>` → the well-known flat variables (`PORT`, `REDIS_URL`, ...).
//! The environment is passed in as a map so tests can load settings without touching the
//! process environment (which every test thread shares).

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
    pub worker: WorkerSettings,
    pub admin: AdminSettings,
    pub log: LogSettings,
    pub handoff: HandoffSettings,
    pub events: EventSettings,
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
    pub api_base_url: String,
    pub api_version: String,
    pub mark_as_read: bool,
    pub typing_indicator: bool,
    pub request_timeout_ms: u64,
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
    /// The keywords, normalised the way user text is compared with them.
    pub fn keyword_list(&self) -> Vec<String> {
        self.keywords
            .split(',')
            .map(crate::handoff::normalise)
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
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RateLimitSettings {
    pub messages: u32,
    pub window_secs: u64,
    /// Sent once per window to a user who is over the limit.
    pub notice: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResponderKind {
    Rules,
    Echo,
    Openai,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ResponderSettings {
    pub kind: ResponderKind,
    /// Rules of the `rules` responder; the built-in rules are used when the file does not exist.
    pub rules_file: String,
    pub openai: OpenAiSettings,
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
    /// Sent when the model fails or times out: never leave the user without an answer.
    pub fallback: String,
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

/// Built-in defaults, so the binary runs even without a `config/` directory next to it.
const DEFAULTS: &[(&str, &str)] = &[
    ("server.host", "0.0.0.0"),
    ("server.port", "8000"),
    ("server.max_body_bytes", "3145728"),
    ("server.shutdown_timeout_secs", "25"),
    ("server.http_workers", "2"),
    ("server.request_timeout_secs", "10"),
    ("server.max_inflight_body_bytes", "33554432"),
    ("whatsapp.app_secret", ""),
    ("whatsapp.verify_token", ""),
    ("whatsapp.access_token", ""),
    ("whatsapp.api_base_url", "https://graph.facebook.com"),
    ("whatsapp.api_version", "v24.0"),
    ("whatsapp.mark_as_read", "true"),
    ("whatsapp.typing_indicator", "true"),
    ("whatsapp.request_timeout_ms", "10000"),
    ("whatsapp.access_tokens", ""),
    ("whatsapp.send_attempts", "3"),
    ("whatsapp.retry_base_ms", "250"),
    ("whatsapp.retry_max_ms", "8000"),
    ("whatsapp.throughput_per_sec", "80"),
    ("whatsapp.recipient_interval_ms", "6000"),
    ("whatsapp.recipient_burst", "45"),
    ("whatsapp.media_max_bytes", "16777216"),
    ("whatsapp.reengagement_template.name", ""),
    ("whatsapp.reengagement_template.language", "en"),
    ("redis.url", "redis://127.0.0.1:6379/0"),
    ("redis.password", ""),
    ("redis.key_prefix", "wabot"),
    ("redis.command_timeout_ms", "2000"),
    ("redis.connect_timeout_ms", "2000"),
    ("redis.tls_ca_file", ""),
    ("conversation.session_expire_secs", "3600"),
    ("conversation.max_history", "40"),
    ("conversation.merge_window_ms", "0"),
    ("conversation.max_turn_chars", "65536"),
    ("conversation.max_reply_parts", "5"),
    ("rate_limit.messages", "20"),
    ("rate_limit.window_secs", "60"),
    ("rate_limit.notice", "You are sending messages faster than I can answer. Please wait a moment before writing again."),
    ("responder.kind", "rules"),
    ("responder.rules_file", "config/rules.toml"),
    ("responder.openai.system_prompt", "You are a helpful, concise assistant answering WhatsApp messages for a business. Answer in the language of the user."),
    ("responder.openai.temperature", "0.3"),
    ("responder.openai.max_tokens", "512"),
    ("responder.openai.timeout_ms", "20000"),
    ("responder.openai.history_chars", "8000"),
    ("responder.openai.fallback", "Sorry, I cannot answer right now. Please try again in a moment."),
    ("responder.openai.base_url", ""),
    ("responder.openai.model", ""),
    ("responder.openai.api_key", ""),
    ("worker.partitions", "64"),
    ("worker.concurrency", "256"),
    ("worker.lease_ttl_ms", "12000"),
    ("worker.max_attempts", "5"),
    ("worker.retry_base_ms", "500"),
    ("worker.retry_max_ms", "30000"),
    ("worker.enabled", "true"),
    ("admin.token", ""),
    ("admin.session_ttl_secs", "28800"),
    ("log.format", "pretty"),
    ("handoff.keywords", "agent,human,person,agente,asesor,humano,persona,atendente"),
    ("handoff.timeout_secs", "3600"),
    ("handoff.requested_text", "I am passing you to a person from our team; they will answer here soon."),
    ("handoff.mark_read", "false"),
    ("handoff.echo_pause_secs", "1200"),
    ("events.webhook_url", ""),
    ("events.secret", ""),
    ("events.timeout_ms", "5000"),
    ("events.retry_max_ms", "30000"),
];

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
    ("ADMIN_TOKEN", "admin.token"),
    ("LOG_FORMAT", "log.format"),
];

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
        let mut builder = config::Config::builder();
        for (key, value) in DEFAULTS {
            builder = builder.set_default(*key, *value)?;
        }
        builder = builder
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
        let positive: [(&'static str, u64); 10] = [
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn required() -> Vec<(&'static str, &'static str)> {
        vec![
            ("WHATSAPP_APP_SECRET", "s1"),
            ("WHATSAPP_VERIFY_TOKEN", "vt"),
            ("WHATSAPP_ACCESS_TOKEN", "at"),
        ]
    }

    fn no_dir() -> PathBuf {
        PathBuf::from("/nonexistent-wabot-config")
    }

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
    fn the_shipped_default_toml_loads_and_matches_the_built_in_defaults() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let shipped = Settings::load_from(&dir, &env(&required())).expect("shipped config loads");
        let built_in = Settings::load_from(&no_dir(), &env(&required())).expect("defaults load");
        assert_eq!(shipped.server.request_timeout_secs, 10);
        assert_eq!(shipped.server.max_inflight_body_bytes, 32 * 1024 * 1024);
        assert_eq!(shipped.redacted_toml(), built_in.redacted_toml());
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
