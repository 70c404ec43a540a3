//! Answers WhatsApp Flows' data-exchange requests once `meta::flows` opened them: the health
//! check and the phone's error reports itself, every screen change (`INIT`, `BACK`,
//! `data_exchange`) by the business's backend, which gets the decrypted request signed like the
//! http responder's calls.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::config::FlowsSettings;
use crate::meta::cloud_api::read_limited;
use crate::meta::flows::{FlowCryptoError, FlowKey, Opened};
use crate::meta::webhook::{sign, WABOT_SIGNATURE_HEADER};

/// Largest backend answer read: a screen's data is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// What the endpoint answers Meta, before it is sealed.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowAnswer {
    /// 200: the next screen (or the health check's, or an acknowledgement).
    Screen(serde_json::Value),
    /// 427: the flow token is no longer valid (`{"error_msg": ...}`); the flow is closed.
    TokenInvalid(serde_json::Value),
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("flows.backend_url is not set: nobody answers screen changes")]
    NoBackend,
    #[error("the flows backend failed: {0}")]
    Backend(String),
}

struct Backend {
    http: reqwest::Client,
    url: String,
    secret: SecretString,
}

/// The endpoint's key and backend.
pub struct FlowsEndpoint {
    key: FlowKey,
    backend: Option<Backend>,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowsSetupError {
    #[error("flows.private_key_file could not be read: {0}")]
    KeyFile(#[from] std::io::Error),
    #[error(transparent)]
    Key(#[from] FlowCryptoError),
    #[error("the flows backend client could not be built: {0}")]
    Client(#[from] reqwest::Error),
}

impl FlowsEndpoint {
    /// `None` while no private key is configured (`/flows` then does not exist).
    pub fn from_settings(
        settings: &FlowsSettings,
    ) -> Result<Option<FlowsEndpoint>, FlowsSetupError> {
        let Some(pem) = settings.private_key_pem()? else {
            return Ok(None);
        };
        let key = FlowKey::from_pem(pem.expose_secret())?;
        let backend = match settings.backend_url.trim() {
            "" => None,
            url => Some(Backend {
                http: reqwest::Client::builder()
                    .timeout(Duration::from_millis(settings.timeout_ms))
                    .connect_timeout(Duration::from_secs(5))
                    // A redirect would re-send the user's answers elsewhere.
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("wabot/", env!("CARGO_PKG_VERSION")))
                    .http1_only()
                    .build()?,
                url: url.to_string(),
                secret: settings.backend_secret.clone(),
            }),
        };
        Ok(Some(FlowsEndpoint { key, backend }))
    }

    pub fn key(&self) -> &FlowKey {
        &self.key
    }

    /// The answer to an opened request.
    pub async fn answer(&self, opened: &Opened) -> Result<FlowAnswer, FlowError> {
        if opened.action() == "ping" {
            return Ok(FlowAnswer::Screen(
                serde_json::json!({"data": {"status": "active"}}),
            ));
        }
        if opened.is_error_report() {
            tracing::warn!(
                error = opened.request["data"]["error"].as_str().unwrap_or_default(),
                "a flow reported an error on the user's phone"
            );
            return Ok(FlowAnswer::Screen(
                serde_json::json!({"data": {"acknowledged": true}}),
            ));
        }
        let backend = self.backend.as_ref().ok_or(FlowError::NoBackend)?;
        let body = opened.request.to_string();
        let response = backend
            .http
            .post(&backend.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                WABOT_SIGNATURE_HEADER,
                sign(backend.secret.expose_secret(), body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| FlowError::Backend(crate::ops::telemetry::error_chain(&e)))?;
        let status = response.status().as_u16();
        let bytes = read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| FlowError::Backend(crate::ops::telemetry::error_chain(&e)))?
            .ok_or_else(|| FlowError::Backend("its answer is too large".into()))?;
        let answer: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        match (status, answer) {
            (200, Some(answer)) if answer.is_object() => Ok(FlowAnswer::Screen(answer)),
            (427, answer) => Ok(FlowAnswer::TokenInvalid(
                answer
                    .filter(|a| a.get("error_msg").is_some())
                    .unwrap_or_else(|| serde_json::json!({"error_msg": "This flow has ended."})),
            )),
            (200, _) => Err(FlowError::Backend("its answer is not a JSON object".into())),
            (status, _) => Err(FlowError::Backend(format!("it answered HTTP {status}"))),
        }
    }
}
