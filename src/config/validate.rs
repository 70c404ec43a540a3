//! What serde cannot check: required secrets, ranges, URLs, languages; each error names its setting.

use secrecy::ExposeSecret;

use super::{ConfigError, ResponderKind, Settings};
use crate::domain::language::Language;

impl Settings {
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
        let positive: [(&'static str, u64); 14] = [
            ("tenants.reload_ms", self.tenants.reload_ms),
            (
                "tenants.max_concurrency",
                self.tenants.max_concurrency as u64,
            ),
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
        if !(60..=30 * 24 * 3600).contains(&self.admin.session_max_secs) {
            return Err(ConfigError::Invalid {
                setting: "admin.session_max_secs",
                reason: "must be between 60 s and 30 days".into(),
            });
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
        if !events.is_empty() && self.events.secret.expose_secret().is_empty() {
            // An empty HMAC key signs every event with a key anyone can compute.
            return Err(ConfigError::Missing {
                setting: "events.secret",
                hint: "events.webhook_url is set: set WABOT_EVENTS__SECRET, the key every event's X-Wabot-Signature-256 is made with",
            });
        }
        let flows = self.flows.backend_url.trim();
        if !(flows.is_empty() || flows.starts_with("http://") || flows.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                setting: "flows.backend_url",
                reason: "must start with http:// or https://".into(),
            });
        }
        if !flows.is_empty() && self.flows.backend_secret.expose_secret().is_empty() {
            return Err(ConfigError::Missing {
                setting: "flows.backend_secret",
                hint: "flows.backend_url is set: set WABOT_FLOWS__BACKEND_SECRET, the key every request's X-Wabot-Signature-256 is made with",
            });
        }
        let token = self.admin.token.expose_secret();
        if !token.is_empty() {
            // A value read from an env file with its comment (`ADMIN_TOKEN=  # enables...`)
            // would otherwise turn the admin API on with a token anyone can read.
            let reason = if token.trim() != token {
                Some("must not start or end with whitespace")
            } else if token.contains('#') {
                Some("must not contain `#` (a comment on the value's line?)")
            } else if token.chars().count() < 16 {
                Some("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(ConfigError::Invalid {
                    setting: "admin.token",
                    reason: reason.into(),
                });
            }
        }
        if let Err(reason) = super::networks(&self.admin.trusted_proxies) {
            return Err(ConfigError::Invalid {
                setting: "admin.trusted_proxies",
                reason,
            });
        }
        let listen = self.admin.listen.trim();
        if !listen.is_empty() && listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                setting: "admin.listen",
                reason: "must be an address and port, e.g. 127.0.0.1:9000".into(),
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
            .whatsapp
            .reengagement_template
            .languages
            .keys()
            .find(|code| Language::parse(code).is_none())
        {
            return Err(ConfigError::Invalid {
                setting: "whatsapp.reengagement_template.languages",
                reason: format!("`{code}` is not a shipped language (en, es, pt)"),
            });
        }
        let fallback = self.conversation.fallback_language.trim().to_lowercase();
        if Language::parse(&fallback).is_none() {
            return Err(ConfigError::Invalid {
                setting: "conversation.fallback_language",
                reason: format!("must be en, es or pt, not `{fallback}`"),
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
        if !self.tenants.key.expose_secret().trim().is_empty() {
            super::tenants::Sealer::new(&self.tenants.key).map_err(|reason| {
                ConfigError::Invalid {
                    setting: "tenants.key",
                    reason,
                }
            })?;
        }
        Ok(())
    }
}
