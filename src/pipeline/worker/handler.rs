//! What a worker does with one stored item: the `Handler` trait (the conversation engine
//! implements it), its error type, which decides between retrying and dead-lettering, and the
//! [`LeaseGuard`] that tells a handler whether it may still act for its partition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{InboundMessage, InboxItem};
use crate::meta::cloud_api::CloudApiError;
use crate::store::conversation::ConversationWrite;
use crate::store::StoreError;

/// A handler's success, and the conversation write it left for the runner: the runner runs it
/// in the same Redis call that acknowledges the entry (one round trip less per message; the
/// record and the acknowledgement land together).
#[derive(Debug, Default)]
#[must_use = "a write left for the runner is lost unless it is applied"]
pub struct Handled {
    pub write: Option<ConversationWrite>,
}

impl Handled {
    /// Nothing left to write.
    pub fn done() -> Handled {
        Handled { write: None }
    }

    pub fn with(write: ConversationWrite) -> Handled {
        Handled { write: Some(write) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Worth another attempt later (network, 5xx, rate limits). `retry_after`: Meta asked us
    /// to wait this long.
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying repeats the failure: the message goes to the dead-letter stream at once.
    #[error("{0}")]
    Permanent(String),
    /// Our own infrastructure (Redis) is down: not the message's fault, so it is retried until
    /// the infrastructure is back, without using up its attempts.
    #[error("{0}")]
    Unavailable(String),
    /// The conversation's stored state is corrupt or Redis refuses it: spends attempts like a
    /// retryable error; once dead-lettered the conversation is moved aside.
    #[error("{0}")]
    CorruptState(String),
    /// The partition's lease may have expired: stop without acknowledging, the next owner
    /// finishes the message (and must not find half of it done twice).
    #[error("the partition lease may have expired")]
    LeaseExpired,
}

impl HandleError {
    pub fn retryable(message: impl Into<String>) -> HandleError {
        HandleError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// Whether another attempt can help (`Unavailable` waits without spending attempts).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HandleError::Retryable { .. }
                | HandleError::Unavailable(_)
                | HandleError::CorruptState(_)
        )
    }
}

impl From<CloudApiError> for HandleError {
    fn from(error: CloudApiError) -> HandleError {
        let message = crate::ops::telemetry::error_chain(&error);
        if error.is_retryable() {
            HandleError::Retryable {
                message,
                retry_after: error.retry_after(),
            }
        } else {
            HandleError::Permanent(message)
        }
    }
}

impl From<StoreError> for HandleError {
    fn from(error: StoreError) -> HandleError {
        let message = format!("Redis: {}", crate::ops::telemetry::error_chain(&error));
        if error.is_outage() {
            HandleError::Unavailable(message)
        } else {
            HandleError::CorruptState(message)
        }
    }
}

/// Whether this replica may still act for a partition: the lease was last confirmed at some
/// moment, and counts as held until `confirmed + ttl - margin`, so that no send starts after
/// another replica could have taken the partition over.
#[derive(Clone, Debug)]
pub struct LeaseGuard {
    /// Milliseconds since `epoch` until which the lease is surely ours; `u64::MAX`: forever.
    until: Arc<AtomicU64>,
    epoch: tokio::time::Instant,
}

impl LeaseGuard {
    /// A guard that never expires (handlers run outside a leased partition).
    pub fn unbounded() -> LeaseGuard {
        LeaseGuard {
            until: Arc::new(AtomicU64::new(u64::MAX)),
            epoch: tokio::time::Instant::now(),
        }
    }

    /// A guard valid for `valid_for` from now; [`LeaseGuard::confirmed`] extends it.
    pub fn new(valid_for: Duration) -> LeaseGuard {
        let guard = LeaseGuard {
            until: Arc::new(AtomicU64::new(0)),
            epoch: tokio::time::Instant::now(),
        };
        guard.confirmed(guard.epoch, valid_for);
        guard
    }

    /// The lease was confirmed (acquired or renewed) by a request sent at `sent_at`: it is ours
    /// until `sent_at + valid_for`.
    pub fn confirmed(&self, sent_at: tokio::time::Instant, valid_for: Duration) {
        let until = (sent_at.saturating_duration_since(self.epoch) + valid_for).as_millis() as u64;
        self.until.fetch_max(until, Ordering::Relaxed);
    }

    /// The lease is gone (taken over, released): nothing may be sent any more.
    pub fn revoke(&self) {
        self.until.store(0, Ordering::Relaxed);
    }

    pub fn is_valid(&self) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        now < self.until.load(Ordering::Relaxed)
    }

    /// `Err(LeaseExpired)` once the lease could have expired.
    pub fn check(&self) -> Result<(), HandleError> {
        if self.is_valid() {
            Ok(())
        } else {
            Err(HandleError::LeaseExpired)
        }
    }
}

/// Processes stored items. Called at least once per item, one at a time per conversation, in
/// order; the next item of a conversation starts only after the write an item's [`Handled`]
/// left was applied.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, item: &InboxItem, lease: &LeaseGuard) -> Result<Handled, HandleError>;

    /// Processes consecutive messages of one conversation together (burst merging). What it
    /// leaves in [`Handled`] is applied after the whole batch.
    async fn handle_batch(
        &self,
        messages: &[InboundMessage],
        lease: &LeaseGuard,
    ) -> Result<Handled, HandleError>;

    /// `items` failed for good and went to the dead-letter stream with `error`.
    async fn dead_lettered(&self, _items: &[InboxItem], _error: &HandleError) {}

    /// A bound shared by `item` and others (its tenant's share of this replica): a batch
    /// starts only once it holds one of these permits, waited for before it queues for one of
    /// the replica's, so work stuck behind a full bound holds none of those. `None`: only the
    /// replica's bound applies.
    fn bound(&self, _item: &InboxItem) -> Option<Arc<tokio::sync::Semaphore>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lease_guard_expires_unless_confirmed() {
        let guard = LeaseGuard::new(Duration::from_secs(3));
        assert!(guard.is_valid());
        tokio::time::advance(Duration::from_secs(2)).await;
        guard.confirmed(tokio::time::Instant::now(), Duration::from_secs(3));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(guard.is_valid(), "confirmed 2 s ago for 3 s");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(guard.check().is_err());
        guard.confirmed(tokio::time::Instant::now(), Duration::from_secs(3));
        assert!(guard.is_valid());
        guard.revoke();
        assert!(!guard.is_valid());
        assert!(LeaseGuard::unbounded().is_valid());
    }
}
