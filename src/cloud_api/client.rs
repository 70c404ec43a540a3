//! Sends messages through `POST {base}/{version}/{phone_number_id}/messages` with a Bearer token.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::error::CloudApiError;
use super::split::{split_text, MAX_TEXT_LEN};
use super::wire::{
    ErrorEnvelope, MarkReadRequest, ReplyContext, SendResponse, SuccessResponse, TextBody,
    TextMessageRequest, TypingIndicator,
};
use crate::configuration::WhatsAppSettings;
use crate::domain::{PhoneNumberId, UserId};

/// Who a message goes to: a phone number (`to`) or, for username-only users, their BSUID
/// (`recipient`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Phone(String),
    Bsuid(String),
}

impl Recipient {
    pub fn of(user: &UserId) -> Recipient {
        if user.is_phone() {
            // With the `+`, Meta never prepends the business number's country code.
            Recipient::Phone(format!("+{}", user.as_str()))
        } else {
            Recipient::Bsuid(user.as_str().to_string())
        }
    }
}

/// What Meta answered to a successful send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub wamid: String,
}

/// The Graph API client; cheap to clone.
#[derive(Clone)]
pub struct CloudApi {
    http: reqwest::Client,
    base_url: String,
    version: String,
    token: SecretString,
}

impl CloudApi {
    pub fn new(settings: &WhatsAppSettings) -> Result<CloudApi, CloudApiError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("wabot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(CloudApiError::Network)?;
        Ok(CloudApi {
            http,
            base_url: settings.api_base_url.trim_end_matches('/').to_string(),
            version: settings.api_version.clone(),
            token: settings.access_token.clone(),
        })
    }

    fn messages_url(&self, from: &PhoneNumberId) -> String {
        format!("{}/{}/{}/messages", self.base_url, self.version, from)
    }

    /// Sends one text message (≤ 4096 characters) from the business number `from`.
    pub async fn send_text(
        &self,
        from: &PhoneNumberId,
        to: &Recipient,
        body: &str,
        reply_to: Option<&str>,
    ) -> Result<SentMessage, CloudApiError> {
        let (to_phone, to_bsuid) = match to {
            Recipient::Phone(p) => (Some(p.as_str()), None),
            Recipient::Bsuid(b) => (None, Some(b.as_str())),
        };
        let request = TextMessageRequest {
            messaging_product: "whatsapp",
            recipient_type: "individual",
            to: to_phone,
            recipient: to_bsuid,
            kind: "text",
            text: TextBody {
                preview_url: false,
                body,
            },
            context: reply_to.map(|message_id| ReplyContext { message_id }),
        };
        let response: SendResponse = self.post(from, &request).await?;
        response
            .messages
            .into_iter()
            .next()
            .map(|m| SentMessage { wamid: m.id })
            .ok_or_else(|| CloudApiError::Decode("no messages[0].id in the send response".into()))
    }

    /// Sends a text of any length: split into parts of at most 4096 characters, sent in order
    /// (each part waits for the previous one's answer). Returns the wamid of every part.
    pub async fn send_long_text(
        &self,
        from: &PhoneNumberId,
        to: &Recipient,
        body: &str,
        reply_to: Option<&str>,
    ) -> Result<Vec<SentMessage>, CloudApiError> {
        let parts = split_text(body, MAX_TEXT_LEN);
        let mut sent = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            // Only the first part quotes the message it answers.
            let quote = if i == 0 { reply_to } else { None };
            sent.push(self.send_text(from, to, part, quote).await?);
        }
        Ok(sent)
    }

    /// Marks an inbound message (and the ones before it) as read; with `typing`, also shows the
    /// typing indicator (up to 25 s or until we answer).
    pub async fn mark_read(
        &self,
        from: &PhoneNumberId,
        wamid: &str,
        typing: bool,
    ) -> Result<(), CloudApiError> {
        let request = MarkReadRequest {
            messaging_product: "whatsapp",
            status: "read",
            message_id: wamid,
            typing_indicator: typing.then_some(TypingIndicator { kind: "text" }),
        };
        let response: SuccessResponse = self.post(from, &request).await?;
        if response.success {
            Ok(())
        } else {
            Err(CloudApiError::Decode(
                "mark-as-read answered success: false".into(),
            ))
        }
    }

    async fn post<T: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        from: &PhoneNumberId,
        body: &T,
    ) -> Result<R, CloudApiError> {
        let response = self
            .http
            .post(self.messages_url(from))
            .bearer_auth(self.token.expose_secret())
            .json(body)
            .send()
            .await
            .map_err(classify_transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(classify_transport)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| CloudApiError::Decode(e.to_string()));
        }
        match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
            Ok(envelope) => {
                let e = envelope.error;
                Err(CloudApiError::Api {
                    status: status.as_u16(),
                    code: e.code,
                    subcode: e.error_subcode,
                    message: e.message,
                    details: e.error_data.and_then(|d| d.details),
                    fbtrace_id: e.fbtrace_id,
                })
            }
            Err(_) => Err(CloudApiError::Http {
                status: status.as_u16(),
            }),
        }
    }
}

fn classify_transport(error: reqwest::Error) -> CloudApiError {
    if error.is_timeout() {
        CloudApiError::Timeout(error)
    } else {
        CloudApiError::Network(error)
    }
}
