//! The durable hand-off: one script call per item drops duplicates (by wamid; for a status by
//! wamid and status) and appends the item to its conversation's partition stream, atomically.

use async_trait::async_trait;
use fred::prelude::Client;
use fred::types::scripts::Script;
use futures_util::future::try_join_all;
use tracing::Instrument;

use super::error::StoreError;
use super::keys::{Keys, SEEN_TTL_SECS, STATUS_SEEN_TTL_SECS};
use crate::domain::InboxItem;
use crate::sink::{Accepted, EventSink, SinkError};

/// Stores inbound items in Redis streams, partitioned by conversation.
#[derive(Clone)]
pub struct RedisInbox {
    client: Client,
    keys: Keys,
    script: Script,
}

impl RedisInbox {
    pub fn new(client: Client, keys: Keys) -> RedisInbox {
        RedisInbox {
            client,
            keys,
            script: Script::from_lua(include_str!("lua/accept.lua")),
        }
    }

    /// Stores one item; `Ok(true)` when it was new. Items without a conversation (a status
    /// without recipient) are not stored: `Ok(false)`.
    pub async fn accept_one(&self, item: &InboxItem) -> Result<bool, StoreError> {
        let Some((pnid, user)) = item.conversation() else {
            return Ok(false);
        };
        let partition = self.keys.partition(&pnid, &user);
        let ttl = match item {
            InboxItem::Message(_) => SEEN_TTL_SECS,
            InboxItem::Status(_) => STATUS_SEEN_TTL_SECS,
        };
        let dedup = item.dedup_id();
        let keys = vec![
            self.keys.seen(partition, &dedup),
            self.keys.inbox(partition),
        ];
        let mut args = vec![ttl.to_string(), item.to_json()?, dedup];
        // The worker continues the webhook's trace from here; nothing extra while tracing is off.
        if let Some(traceparent) = crate::otel::traceparent(&tracing::Span::current()) {
            args.push(traceparent);
        }
        let id: Option<String> = self
            .script
            .evalsha_with_reload(&self.client, keys, args)
            .await?;
        tracing::Span::current().record("partition", partition);
        tracing::Span::current().record("duplicate", id.is_none());
        Ok(id.is_some())
    }
}

#[async_trait]
impl EventSink for RedisInbox {
    async fn accept(&self, items: &[InboxItem]) -> Result<Accepted, SinkError> {
        // Issued together: fred pipelines them on the connection, one round trip for the batch.
        let results = try_join_all(
            items
                .iter()
                .map(|item| self.accept_one(item).instrument(accept_span(item))),
        )
        .await
        .map_err(|e| SinkError::Unavailable(Box::new(e)))?;
        // Counted for messages: statuses have their own series.
        let messages = items
            .iter()
            .zip(&results)
            .filter(|(item, _)| matches!(item, InboxItem::Message(_)));
        let (new, duplicates) = messages.fold((0, 0), |(new, dup), (_, stored)| {
            if *stored {
                (new + 1, dup)
            } else {
                (new, dup + 1)
            }
        });
        Ok(Accepted { new, duplicates })
    }
}

/// One item's hand-off, a child of the webhook request's span (debug level: traced, not logged).
fn accept_span(item: &InboxItem) -> tracing::Span {
    let (kind, wamid) = crate::otel::item_attributes(item);
    // Field values are only computed when the span is enabled (tracing on, or RUST_LOG=debug).
    tracing::debug_span!(
        "inbox.accept",
        otel.kind = "producer",
        kind,
        wamid,
        user = item
            .conversation()
            .map(|(_, user)| user.masked())
            .unwrap_or_default(),
        partition = tracing::field::Empty,
        duplicate = tracing::field::Empty,
    )
}
