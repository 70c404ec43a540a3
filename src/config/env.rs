//! Where settings come from: the embedded defaults, the well-known flat variables and the
//! `WABOT_<SECTION>__<KEY>` ones, and the dotted paths used to refuse unknown keys.

use std::collections::HashMap;

/// The built-in defaults are `config/default.toml` as shipped, embedded: one place for every
/// default, documented, and the binary runs even without a `config/` directory next to it.
pub(super) const BUILT_IN: &str = include_str!("../../config/default.toml");

/// The well-known flat variables and the setting each one sets.
pub(super) const FLAT_ENV: &[(&str, &str)] = &[
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
    ("ADMIN_LISTEN", "admin.listen"),
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

/// `WABOT_<SECTION>__<KEY>` variables only: other `WABOT_` names (docker compose's
/// `WABOT_HOST_PORT`, tooling) are not settings and must not stop the service.
pub(super) fn sectioned_env(env: &HashMap<String, String>) -> config::Map<String, String> {
    env.iter()
        .filter(|(name, _)| {
            name.strip_prefix("WABOT_")
                .is_some_and(|rest| rest.contains("__"))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Dotted paths of every value in the built configuration, with where each was set.
pub(super) fn collect_leaves(value: &config::Value, prefix: &str, out: &mut Vec<(String, String)>) {
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
pub(super) fn known_keys(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                known_keys(child, &join_key(prefix, key), out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

pub(super) fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}
