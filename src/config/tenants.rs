//! Tenants: the businesses one deployment serves. A tenant document (a file
//! `<tenants.dir>/<id>.toml`, or one stored through the admin API, sealed by [`Sealer`]) holds a
//! `[tenant]` table (its numbers, its bound, its API token) and the sections of the deployment's
//! settings it replaces; its settings are the deployment's with those on top.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ConfigError, Settings};

/// The deployment's own settings, as a tenant: the numbers no other tenant has claimed.
pub const DEFAULT_TENANT: &str = "default";

/// Sections a tenant document may set.
const TENANT_SECTIONS: &[&str] = &[
    "whatsapp",
    "responder",
    "conversation",
    "rate_limit",
    "handoff",
    "texts",
    "transcription",
    "events",
];

/// Keys of those sections that stay the deployment's: one Meta app (its secret, the verify token,
/// the Graph API it talks to) and what the receiver, the console and the workers apply to every
/// conversation alike.
const DEPLOYMENT_KEYS: &[&str] = &[
    "whatsapp.app_secret",
    "whatsapp.verify_token",
    "whatsapp.app_id",
    "whatsapp.api_base_url",
    "whatsapp.api_version",
    "whatsapp.http2",
    "whatsapp.request_timeout_ms",
    "whatsapp.media_in_flight_bytes",
    "conversation.session_expire_secs",
    "conversation.merge_window_ms",
    "handoff.timeout_secs",
    "handoff.echo_pause_secs",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantTable {
    #[serde(default)]
    name: String,
    numbers: Vec<String>,
    #[serde(default)]
    max_concurrency: Option<usize>,
    #[serde(default)]
    api_token: Option<String>,
}

/// One business: its numbers and its settings.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    /// For people (the console, `GET /admin/tenants`); the id when the document names none.
    pub name: String,
    /// Its business numbers (`phone_number_id`s): what intake routes to it.
    pub numbers: Vec<String>,
    /// Its conversations worked on at once per replica.
    pub max_concurrency: usize,
    /// A Bearer token for the admin API that sees and acts on this tenant's conversations only.
    pub api_token: Option<SecretString>,
    pub settings: Settings,
    /// Where it was declared: a file path, or `stored` (the admin API).
    pub source: String,
    /// SHA-256 of its document: a replica rebuilds a tenant only when this changed.
    pub digest: [u8; 32],
}

impl Tenant {
    pub fn is_stored(&self) -> bool {
        self.source == STORED
    }
}

/// The `source` of a tenant stored through the admin API.
pub const STORED: &str = "stored";

/// A tenant id: 1 to 32 of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit; not
/// `default`, which names the deployment's own settings.
pub fn valid_tenant_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id != DEFAULT_TENANT
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A phone number id as Meta writes them (digits); anything else cannot name a number.
pub fn valid_number(number: &str) -> bool {
    (1..=32).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn invalid(id: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Tenant {
        id: id.to_string(),
        reason: reason.into(),
    }
}

impl Settings {
    /// The tenant `id` that `document` describes, over these (the deployment's) settings.
    pub fn tenant(&self, id: &str, document: &str, source: &str) -> Result<Tenant, ConfigError> {
        if !valid_tenant_id(id) {
            return Err(invalid(
                id,
                "the id must be 1-32 of a-z, 0-9, - and _ (and not `default`)",
            ));
        }
        let mut table: toml::Table =
            toml::from_str(document).map_err(|e| invalid(id, format!("not TOML: {e}")))?;
        let head = table
            .remove("tenant")
            .ok_or_else(|| invalid(id, "the document has no [tenant] table"))?;
        let head: TenantTable = head
            .try_into()
            .map_err(|e| invalid(id, format!("[tenant]: {e}")))?;
        if head.numbers.is_empty() {
            return Err(invalid(
                id,
                "[tenant] numbers must name at least one phone number id",
            ));
        }
        if let Some(bad) = head.numbers.iter().find(|n| !valid_number(n)) {
            return Err(invalid(
                id,
                format!("[tenant] numbers: `{bad}` is not a phone number id"),
            ));
        }
        if let Some(token) = head.api_token.as_deref().filter(|t| !t.trim().is_empty()) {
            if token.trim().chars().count() < 16 {
                return Err(invalid(
                    id,
                    "[tenant] api_token must have at least 16 characters",
                ));
            }
            if token.trim() == self.admin.token.expose_secret().trim() {
                return Err(invalid(
                    id,
                    "[tenant] api_token must not be the admin token",
                ));
            }
        }
        for (section, value) in &table {
            if !TENANT_SECTIONS.contains(&section.as_str()) {
                return Err(invalid(
                    id,
                    format!("section [{section}] belongs to the deployment, not to a tenant"),
                ));
            }
            if let toml::Value::Table(keys) = value {
                if let Some(key) = keys
                    .keys()
                    .map(|key| format!("{section}.{key}"))
                    .find(|key| DEPLOYMENT_KEYS.contains(&key.as_str()))
                {
                    return Err(invalid(id, format!("`{key}` belongs to the deployment")));
                }
            }
        }
        let layers = self
            .layers
            .clone()
            .ok_or_else(|| invalid(id, "the deployment's settings were not loaded from layers"))?;
        let overrides =
            toml::to_string(&table).map_err(|e| invalid(id, format!("not TOML: {e}")))?;
        let built = config::Config::builder()
            .add_source((*layers).clone())
            .add_source(config::File::from_str(&overrides, config::FileFormat::Toml))
            .build()
            .map_err(|e| invalid(id, e.to_string()))?;
        let mut settings = Settings::from_layers(built).map_err(|e| invalid(id, e.to_string()))?;
        // Its own settings are the deployment's with its document on top, never another's.
        settings.layers = Some(layers);
        settings.config_dir = self.config_dir.clone();
        Ok(Tenant {
            id: id.to_string(),
            name: if head.name.trim().is_empty() {
                id.to_string()
            } else {
                head.name.trim().to_string()
            },
            numbers: head.numbers,
            max_concurrency: head
                .max_concurrency
                .unwrap_or(self.tenants.max_concurrency)
                .max(1),
            api_token: head
                .api_token
                .filter(|t| !t.trim().is_empty())
                .map(|t| SecretString::from(t.trim())),
            settings,
            source: source.to_string(),
            digest: Sha256::digest(document.as_bytes()).into(),
        })
    }

    /// The tenants declared in files (`<tenants.dir>/<id>.toml`), by id; none when the directory
    /// does not exist.
    pub fn tenant_files(&self) -> Result<Vec<Tenant>, ConfigError> {
        let dir = self.tenants_dir();
        let dir = dir.as_path();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(ConfigError::Invalid {
                    setting: "tenants.dir",
                    reason: format!("{}: {e}", dir.display()),
                })
            }
        };
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|path| {
                let id = path
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .unwrap_or_default();
                let document = std::fs::read_to_string(path)
                    .map_err(|e| invalid(id, format!("{}: {e}", path.display())))?;
                self.tenant(id, &document, &path.display().to_string())
            })
            .collect()
    }

    /// `tenants.dir`, else `tenants/` in the configuration directory.
    pub fn tenants_dir(&self) -> std::path::PathBuf {
        match self.tenants.dir.trim() {
            "" => self.config_dir.join("tenants"),
            dir => std::path::PathBuf::from(dir),
        }
    }

    /// The numbers the deployment's own settings name: `whatsapp.phone_number_id` and those of
    /// `whatsapp.access_tokens`.
    pub fn default_numbers(&self) -> Vec<String> {
        let mut numbers: Vec<String> = self.whatsapp.phone_number_id.iter().cloned().collect();
        for (number, _) in self.whatsapp.tokens_by_number().unwrap_or_default() {
            if !numbers.contains(&number) {
                numbers.push(number);
            }
        }
        numbers
    }
}

/// What Meta's Embedded Signup gives a tenant: its WhatsApp Business Account, a number of it,
/// and the business's token.
pub struct Onboarded<'a> {
    pub name: Option<&'a str>,
    pub business_account_id: &'a str,
    pub number: &'a str,
    pub access_token: &'a str,
}

/// `document` (a stored tenant's; none for a new tenant) with what Embedded Signup gave it: the
/// number among `[tenant] numbers`, `[whatsapp] access_token` and `business_account_id` set, and
/// everything else as it was. A tenant is one WABA: a document naming another is refused.
pub fn onboarded_document(
    document: Option<&str>,
    onboarded: &Onboarded<'_>,
) -> Result<String, String> {
    let mut table: toml::Table = match document {
        Some(document) => {
            toml::from_str(document).map_err(|e| format!("the stored document: {e}"))?
        }
        None => toml::Table::new(),
    };
    let head = section(&mut table, "tenant")?;
    if let Some(name) = onboarded.name.map(str::trim).filter(|n| !n.is_empty()) {
        head.insert("name".into(), toml::Value::String(name.to_string()));
    }
    let numbers = head
        .entry("numbers")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    let toml::Value::Array(numbers) = numbers else {
        return Err("[tenant] numbers is not a list".into());
    };
    if !numbers.iter().any(|n| n.as_str() == Some(onboarded.number)) {
        numbers.push(toml::Value::String(onboarded.number.to_string()));
    }
    let whatsapp = section(&mut table, "whatsapp")?;
    if let Some(other) = whatsapp
        .get("business_account_id")
        .and_then(|w| w.as_str())
        .filter(|w| *w != onboarded.business_account_id)
    {
        return Err(format!(
            "the tenant is WhatsApp Business Account {other}, not {}: one tenant is one WABA",
            onboarded.business_account_id
        ));
    }
    whatsapp.insert(
        "business_account_id".into(),
        toml::Value::String(onboarded.business_account_id.to_string()),
    );
    whatsapp.insert(
        "access_token".into(),
        toml::Value::String(onboarded.access_token.to_string()),
    );
    toml::to_string(&table).map_err(|e| e.to_string())
}

/// The table `name` of `table`, made when missing.
fn section<'t>(table: &'t mut toml::Table, name: &str) -> Result<&'t mut toml::Table, String> {
    match table
        .entry(name)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        toml::Value::Table(section) => Ok(section),
        _ => Err(format!("`{name}` is not a table")),
    }
}

/// Seals tenant documents at rest under `tenants.key` (AES-256-GCM, a random 96-bit nonce per
/// seal, the tenant id as associated data: a document moved to another id does not open).
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

const SEALED_VERSION: &str = "v1";

impl Sealer {
    /// From the base64 of 32 bytes; the error says what is wrong with it, never the key.
    pub fn new(key: &SecretString) -> Result<Sealer, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| "must be base64 (openssl rand -base64 32)".to_string())?;
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| format!("must be 32 bytes once decoded, not {}", bytes.len()))?;
        Ok(Sealer { cipher })
    }

    /// `None` when `tenants.key` is empty.
    pub fn from_settings(settings: &Settings) -> Option<Sealer> {
        // Validated with the settings.
        Sealer::new(&settings.tenants.key).ok()
    }

    /// `v1.<nonce>.<ciphertext>`, both base64.
    pub fn seal(&self, id: &str, document: &str) -> String {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: document.as_bytes(),
                    aad: id.as_bytes(),
                },
            )
            // AES-GCM fails only past 64 GiB of plaintext.
            .unwrap_or_default();
        let b64 = base64::engine::general_purpose::STANDARD;
        format!(
            "{SEALED_VERSION}.{}.{}",
            b64.encode(nonce),
            b64.encode(sealed)
        )
    }

    /// The document sealed for `id`; `None` when it was not sealed by this key for this id.
    pub fn open(&self, id: &str, sealed: &str) -> Option<SecretString> {
        let mut parts = sealed.split('.');
        let (Some(SEALED_VERSION), Some(nonce), Some(body), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let nonce = b64.decode(nonce).ok().filter(|n| n.len() == 12)?;
        let body = b64.decode(body).ok()?;
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &body,
                    aad: id.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok().map(SecretString::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::settings;

    const CLINIC: &str = r#"
[tenant]
name = "Clínica Sol"
numbers = ["1001", "1002"]
max_concurrency = 4
api_token = "clinic-token-0123456789"

[whatsapp]
access_token = "clinic-access"
throughput_per_sec = 20

[responder]
kind = "echo"

[conversation]
language = "es"
"#;

    #[test]
    fn embedded_signup_adds_its_number_and_token_to_a_document_and_keeps_the_rest() {
        let base = settings(&[]).expect("loads");
        let onboarded = Onboarded {
            name: Some("Panadería"),
            business_account_id: "9001",
            number: "1003",
            access_token: "business-token",
        };
        let fresh = onboarded_document(None, &onboarded).expect("new");
        let tenant = base.tenant("bakery", &fresh, STORED).expect("builds");
        assert_eq!(tenant.name, "Panadería");
        assert_eq!(tenant.numbers, ["1003"]);
        let w = &tenant.settings.whatsapp;
        assert_eq!(w.access_token.expose_secret(), "business-token");
        assert_eq!(w.business_account_id.as_deref(), Some("9001"));

        let clinic = CLINIC.replace("[whatsapp]", "[whatsapp]\nbusiness_account_id = \"9001\"");
        let again = Onboarded {
            name: None,
            number: "1002",
            ..onboarded
        };
        let edited = onboarded_document(Some(&clinic), &again).expect("edited");
        let tenant = base.tenant("clinic", &edited, STORED).expect("builds");
        assert_eq!(tenant.name, "Clínica Sol");
        assert_eq!(tenant.numbers, ["1001", "1002"], "not listed twice");
        assert_eq!(tenant.max_concurrency, 4);
        assert_eq!(tenant.settings.whatsapp.throughput_per_sec, 20);
        assert_eq!(
            tenant.settings.whatsapp.access_token.expose_secret(),
            "business-token"
        );
        assert_eq!(tenant.settings.conversation.language, "es");

        let other_waba = CLINIC.replace("[whatsapp]", "[whatsapp]\nbusiness_account_id = \"77\"");
        let refused = onboarded_document(Some(&other_waba), &again).expect_err("one WABA");
        assert!(refused.contains("one tenant is one WABA"), "{refused}");
    }

    #[test]
    fn a_tenant_is_the_deployment_with_its_document_on_top() {
        let base = settings(&[("WABOT_RATE_LIMIT__MESSAGES", "7")]).expect("loads");
        let tenant = base.tenant("clinic", CLINIC, "test").expect("valid");
        assert_eq!(tenant.name, "Clínica Sol");
        assert_eq!(tenant.numbers, ["1001", "1002"]);
        assert_eq!(tenant.max_concurrency, 4);
        let s = &tenant.settings;
        assert_eq!(s.whatsapp.access_token.expose_secret(), "clinic-access");
        assert_eq!(s.whatsapp.throughput_per_sec, 20);
        assert_eq!(s.responder.kind, crate::config::ResponderKind::Echo);
        assert_eq!(s.conversation.language, "es");
        // What the document does not set stays the deployment's.
        assert_eq!(s.rate_limit.messages, 7);
        assert_eq!(s.whatsapp.app_secret.expose_secret(), "s1");
        // A tenant's tenant is built over the deployment, not over the first tenant.
        let other = tenant
            .settings
            .tenant("shop", "[tenant]\nnumbers = [\"2001\"]\n", "test")
            .expect("valid");
        assert_eq!(other.settings.whatsapp.throughput_per_sec, 80);
        assert_eq!(other.max_concurrency, base.tenants.max_concurrency);
    }

    #[test]
    fn a_tenant_may_not_set_what_belongs_to_the_deployment() {
        let base = settings(&[]).expect("loads");
        let refused = [
            (
                "clinic",
                "[tenant]\nnumbers = [\"1\"]\n[worker]\nconcurrency = 9\n",
                "[worker]",
            ),
            (
                "clinic",
                "[tenant]\nnumbers = [\"1\"]\n[whatsapp]\napp_secret = \"x\"\n",
                "whatsapp.app_secret",
            ),
            ("clinic", "[tenant]\nnumbers = []\n", "at least one"),
            (
                "clinic",
                "[tenant]\nnumbers = [\"1 2\"]\n",
                "not a phone number id",
            ),
            (
                "clinic",
                "[whatsapp]\naccess_token = \"x\"\n",
                "no [tenant]",
            ),
            (
                "clinic",
                "[tenant]\nnumbers = [\"1\"]\n[responder]\nkindd = \"echo\"\n",
                "responder.kindd",
            ),
            (
                "clinic",
                "[tenant]\nnumbers = [\"1\"]\ncolour = \"red\"\n",
                "colour",
            ),
            ("default", "[tenant]\nnumbers = [\"1\"]\n", "the id"),
            ("Clinic", "[tenant]\nnumbers = [\"1\"]\n", "the id"),
            (
                "clinic",
                "[tenant]\nnumbers = [\"1\"]\n[responder]\nkind = \"http\"\n",
                "responder.http",
            ),
        ];
        for (id, document, named) in refused {
            let error = base.tenant(id, document, "test").expect_err(document);
            assert!(error.to_string().contains(named), "{document}: {error}");
        }
    }

    #[test]
    fn sealed_documents_open_only_with_their_key_and_id() {
        let key = SecretString::from(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
        let sealer = Sealer::new(&key).expect("key");
        let sealed = sealer.seal("clinic", CLINIC);
        assert!(!sealed.contains("clinic-token"), "{sealed}");
        let opened = sealer.open("clinic", &sealed).expect("opens");
        assert_eq!(opened.expose_secret(), CLINIC);
        assert!(sealer.open("shop", &sealed).is_none(), "bound to its id");
        let other = Sealer::new(&SecretString::from(
            base64::engine::general_purpose::STANDARD.encode([8u8; 32]),
        ))
        .expect("key");
        assert!(other.open("clinic", &sealed).is_none());
        assert_ne!(
            sealer.seal("clinic", CLINIC),
            sealed,
            "a fresh nonce each time"
        );
        assert!(Sealer::new(&SecretString::from("short")).is_err());
        assert!(Sealer::new(&SecretString::from(
            base64::engine::general_purpose::STANDARD.encode([1u8; 16])
        ))
        .is_err());
    }
}
