//! The hand-off between the receiver and whatever stores accepted messages: the receiver answers
//! 200 only after `accept` returned `Ok` for every message of the delivery.

use async_trait::async_trait;

use crate::domain::InboxItem;

/// How a batch of messages was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Stored for processing.
    pub new: usize,
    /// Already seen (same wamid): dropped.
    pub duplicates: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The store could not confirm durability: the delivery must be retried by Meta.
    #[error("the message store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Stores inbound messages and statuses durably (or hands them to a test double).
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Stores every message or fails as a whole; retrying after a failure must be safe
    /// (duplicates are recognised by message id).
    async fn accept(&self, items: &[InboxItem]) -> Result<Accepted, SinkError>;
}
