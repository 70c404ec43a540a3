//! Secrets never printed: the redacted effective configuration (`wabot check-config`).

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

use super::Settings;

impl Settings {
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

pub(super) fn redact<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    if secret.expose_secret().is_empty() {
        s.serialize_str("")
    } else {
        s.serialize_str("[redacted]")
    }
}

/// Keeps the scheme, host and options of a Redis URL, hides user info (passwords live there).
pub(super) fn redact_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url_userinfo(url))
}

/// An HTTP URL without its user info or query (`?api_key=...`, `?token=...` live there).
pub(super) fn redact_http_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    let url = redact_url_userinfo(url);
    match url.split_once('?') {
        Some((base, _)) => s.serialize_str(&format!("{base}?[redacted]")),
        None => s.serialize_str(&url),
    }
}

pub fn redact_url_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}[redacted]{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}
