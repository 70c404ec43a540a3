//! What a worker does with one message: the `Handler` trait (the conversation engine implements
//! it) and its error type, which decides between retrying and dead-lettering.

use async_trait::async_trait;

use crate::cloud_api::CloudApiError;
use crate::domain::InboundMessage;

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Worth another attempt later (network, 5xx, rate limits, Redis hiccups).
    #[error("{0}")]
    Retryable(String),
    /// Retrying repeats the failure: the message goes to the dead-letter stream at once.
    #[error("{0}")]
    Permanent(String),
    /// Our own infrastructure (Redis) is down: not the message's fault, so it is retried until
    /// the infrastructure is back, without using up its attempts.
    #[error("{0}")]
    Unavailable(String),
}

impl HandleError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HandleError::Retryable(_) | HandleError::Unavailable(_)
        )
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

    /// Processes consecutive messages of one conversation together (burst merging); by default
    /// one after the other.
    async fn handle_batch(&self, messages: &[InboundMessage]) -> Result<(), HandleError> {
        for message in messages {
            self.handle(message).await?;
        }
        Ok(())
    }
}
