//! Answers WhatsApp Flows' data-exchange requests once `meta::flows` opened them: the health
//! check and the phone's error reports itself, every screen change (`INIT`, `BACK`,
//! `data_exchange`) by the screens the rules file declares for the flow token, else by the
//! business's backend, which gets the decrypted request signed like the http responder's calls.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::bot::flow_screens::{FlowScreens, FlowScreensError};
use crate::config::{FlowsSettings, Settings};
use crate::meta::cloud_api::read_limited;
use crate::meta::flows::{FlowCryptoError, FlowKey, Opened};
use crate::meta::webhook::{sign, WABOT_SIGNATURE_HEADER};

fn backend_of(settings: &FlowsSettings) -> Result<Option<Backend>, reqwest::Error> {
    Ok(match settings.backend_url.trim() {
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
    })
}

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
    #[error("no flow of the rules file has this flow token and flows.backend_url is not set: nobody answers it")]
    NoBackend,
    #[error("the flows backend failed: {0}")]
    Backend(String),
}

struct Backend {
    http: reqwest::Client,
    url: String,
    secret: SecretString,
}

/// Who answers a flow's requests: the rules file's screens, else the backend.
pub struct FlowAnswerer {
    screens: FlowScreens,
    backend: Option<Backend>,
}

/// The endpoint's key and answerer.
pub struct FlowsEndpoint {
    key: FlowKey,
    answerer: FlowAnswerer,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowsSetupError {
    #[error("flows.private_key_file could not be read: {0}")]
    KeyFile(#[from] std::io::Error),
    #[error(transparent)]
    Key(#[from] FlowCryptoError),
    #[error("the flows backend client could not be built: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Screens(#[from] FlowScreensError),
}

impl FlowsEndpoint {
    /// `None` while no private key is configured (`/flows` then does not exist).
    pub fn from_settings(settings: &Settings) -> Result<Option<FlowsEndpoint>, FlowsSetupError> {
        let Some(pem) = settings.flows.private_key_pem()? else {
            return Ok(None);
        };
        let key = FlowKey::from_pem(pem.expose_secret())?;
        Ok(Some(FlowsEndpoint {
            key,
            answerer: FlowAnswerer::from_settings(settings)?,
        }))
    }

    pub fn key(&self) -> &FlowKey {
        &self.key
    }

    /// The answer to an opened request.
    pub async fn answer(&self, opened: &Opened) -> Result<FlowAnswer, FlowError> {
        self.answerer.answer(&opened.request).await
    }
}

impl FlowAnswerer {
    /// The rules file's flows (`responder.rules_file`, whatever the responder) and
    /// `flows.backend_url`.
    pub fn from_settings(settings: &Settings) -> Result<FlowAnswerer, FlowsSetupError> {
        Ok(FlowAnswerer {
            screens: FlowScreens::load(&settings.responder.rules_file)?,
            backend: backend_of(&settings.flows)?,
        })
    }

    /// The answer to a decrypted request.
    pub async fn answer(&self, request: &serde_json::Value) -> Result<FlowAnswer, FlowError> {
        if request["action"].as_str() == Some("ping") {
            return Ok(FlowAnswer::Screen(
                serde_json::json!({"data": {"status": "active"}}),
            ));
        }
        if request["data"].get("error").is_some() {
            tracing::warn!(
                error = request["data"]["error"].as_str().unwrap_or_default(),
                "a flow reported an error on the user's phone"
            );
            return Ok(FlowAnswer::Screen(
                serde_json::json!({"data": {"acknowledged": true}}),
            ));
        }
        if let Some(screen) = self.screens.answer(request) {
            return Ok(FlowAnswer::Screen(screen));
        }
        let backend = self.backend.as_ref().ok_or(FlowError::NoBackend)?;
        let body = request.to_string();
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
