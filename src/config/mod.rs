//! Typed settings, loaded once from defaults, `config/` files and the environment (docs/DESIGN.md §3).
//! Owns `sections`, `validate`, `env` and `redact`; imports only `domain`.
//!
//! Layers, later wins: built-in defaults (the shipped `config/default.toml`, embedded) →
//! `config/default.toml` → `config/{APP_ENV}.toml` →
//! `WABOT_<SECTION>__<KEY>` → the well-known flat variables (`PORT`, `REDIS_URL`, ...).
//! The environment is passed in as a map so tests can load settings without touching the
//! process environment (which every test thread shares).

mod env;
mod redact;
pub mod sections;
pub mod tenants;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[cfg(test)]
use env::join_key;
pub use env::port_from_env;
use env::{collect_leaves, known_keys, sectioned_env, BUILT_IN, FLAT_ENV};
pub use redact::redact_url_userinfo;
pub use sections::*;

/// A list of addresses or CIDR ranges, comma-separated (`10.0.0.0/8, 192.168.1.5`), as
/// networks (an address is its own /32 or /128).
pub fn networks(list: &str) -> Result<Vec<ipnet::IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("`{item}` is not an IP address or CIDR range"))
        })
        .collect()
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
    #[error("tenant `{id}`: {reason}")]
    Tenant { id: String, reason: String },
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
        let mut settings = Settings::from_layers(builder.build()?)?;
        settings.config_dir = config_dir.to_path_buf();
        Ok(settings)
    }

    /// Settings from merged layers: deserialized, unknown keys refused, validated; the layers
    /// kept for the tenants built over them.
    pub(crate) fn from_layers(config: config::Config) -> Result<Settings, ConfigError> {
        let mut present = Vec::new();
        collect_leaves(&config.cache, "", &mut present);
        let mut settings: Settings = config.clone().try_deserialize()?;
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
        settings.layers = Some(std::sync::Arc::new(config));
        Ok(settings)
    }
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
    use secrecy::ExposeSecret;

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
            "whatsapp.app_id",
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
    fn printed_urls_hide_their_credentials_and_queries() {
        let mut pairs = required();
        pairs.extend_from_slice(&[
            ("RESPONDER", "http"),
            (
                "HTTP_RESPONDER_URL",
                "https://bot:hunter2@backend.example/wabot?key=k3y",
            ),
            ("HTTP_RESPONDER_SECRET", "s3cret"),
            (
                "WABOT_EVENTS__WEBHOOK_URL",
                "https://crm.example/hooks?token=t0ken",
            ),
            ("WABOT_EVENTS__SECRET", "s3cret"),
            (
                "WABOT_TRANSCRIPTION__BASE_URL",
                "https://u:p4ss@stt.example/v1",
            ),
        ]);
        let printed = Settings::load_from(&no_dir(), &env(&pairs))
            .expect("loads")
            .redacted_toml();
        for secret in ["hunter2", "k3y", "t0ken", "p4ss", "s3cret"] {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        }
        assert!(printed.contains("https://[redacted]@backend.example/wabot?[redacted]"));
        assert!(printed.contains("https://crm.example/hooks?[redacted]"));
    }

    #[test]
    fn weak_admin_tokens_and_unsigned_events_are_refused() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = required();
            pairs.extend_from_slice(extra);
            Settings::load_from(&no_dir(), &env(&pairs)).map_err(|e| e.to_string())
        };
        for (token, why) in [
            ("short-token", "16 characters"),
            ("   # enables /admin/*", "whitespace"),
            ("0123456789abcdef#comment", "`#`"),
            ("0123456789abcdef ", "whitespace"),
        ] {
            let error = with(&[("ADMIN_TOKEN", token)]).expect_err(token);
            assert!(
                error.contains("admin.token") && error.contains(why),
                "{token}: {error}"
            );
        }
        assert!(with(&[("ADMIN_TOKEN", "0123456789abcdef")]).is_ok());
        assert!(
            with(&[("ADMIN_TOKEN", "")]).is_ok(),
            "empty: the admin API is off"
        );
        let error = with(&[("WABOT_EVENTS__WEBHOOK_URL", "https://crm.example/hooks")])
            .expect_err("unsigned events");
        assert!(error.contains("events.secret"), "{error}");
        assert!(with(&[
            ("WABOT_EVENTS__WEBHOOK_URL", "https://crm.example/hooks"),
            ("WABOT_EVENTS__SECRET", "s3cret"),
        ])
        .is_ok());
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
