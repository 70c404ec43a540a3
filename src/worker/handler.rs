//! What a worker does with one message: the `Handler` trait, and the `echo` handler that
//! exercises the whole pipeline (`echo: <text>` sent through the Cloud API client).

use async_trait::async_trait;

use crate::cloud_api::{CloudApi, CloudApiError, Recipient};
use crate::domain::InboundMessage;

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Worth another attempt later (network, 5xx, rate limits, Redis hiccups).
    #[error("{0}")]
    Retryable(String),
    /// Retrying repeats the failure: the message goes to the dead-letter stream at once.
    #[error("{0}")]
    Permanent(String),
}

impl HandleError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, HandleError::Retryable(_))
    }
}

impl From<CloudApiError> for HandleError {
    fn from(error: CloudApiError) -> HandleError {
        let text = crate::error::error_chain(&error);
        if error.is_retryable() {
            HandleError::Retryable(text)
        } else {
            HandleError::Permanent(text)
        }
    }
}

/// Processes one stored message. Called at least once per message, one at a time per
/// conversation, in order.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, message: &InboundMessage) -> Result<(), HandleError>;
}

/// Answers `echo: <text>`; for content without text, `echo: [<kind>]`.
pub struct EchoHandler {
    api: CloudApi,
}

impl EchoHandler {
    pub fn new(api: CloudApi) -> EchoHandler {
        EchoHandler { api }
    }
}

#[async_trait]
impl Handler for EchoHandler {
    async fn handle(&self, message: &InboundMessage) -> Result<(), HandleError> {
        let reply = match message.content.text() {
            Some(text) => format!("echo: {text}"),
            None => format!("echo: [{}]", message.content.kind()),
        };
        let sent = self
            .api
            .send_text(
                &message.phone_number_id,
                &Recipient::of(&message.user),
                &reply,
                None,
            )
            .await?;
        tracing::debug!(wamid = %message.id, reply_wamid = %sent.wamid, "echo sent");
        Ok(())
    }
}
