//! The durable hand-off: one script call per item drops duplicates (by wamid; for a status by
//! wamid and status) and appends the item to its conversation's partition stream, atomically.

use async_trait::async_trait;
use fred::prelude::Client;
use fred::types::scripts::Script;
use futures_util::future::try_join_all;
use tracing::Instrument;

use super::error::StoreError;
use super::keys::{Keys, SEEN_TTL_SECS, STATUS_SEEN_TTL_SECS};
use crate::domain::{InboxItem, Origin};
use crate::store::sink::{Accepted, EventSink, SinkError};

/// Stores inbound items in Redis streams, partitioned by conversation.
#[derive(Clone)]
pub struct RedisInbox {
    client: Client,
    keys: Keys,
    script: Script,
    /// How long an echo of the business answering from the phone pauses the bot (ms; 0: never).
    echo_pause_ms: u64,
    session_ttl_secs: u64,
}

impl RedisInbox {
    pub fn new(client: Client, keys: Keys) -> RedisInbox {
        RedisInbox {
            client,
            keys,
            script: super::scripts::accept(),
            echo_pause_ms: 0,
            session_ttl_secs: 3600,
        }
    }

    /// Echoes of what the business typed in the WhatsApp Business app hand the conversation to
    /// a person for `pause_ms` (see `lua/accept.lua`).
    pub fn with_echo_pause(mut self, pause_ms: u64, session_ttl_secs: u64) -> RedisInbox {
        self.echo_pause_ms = pause_ms;
        self.session_ttl_secs = session_ttl_secs;
        self
    }

    /// Stores one item; `Ok(true)` when it was new. Items without a conversation (a status
    /// without recipient) are not stored: `Ok(false)`.
    pub async fn accept_one(&self, item: &InboxItem) -> Result<bool, StoreError> {
        let Some((pnid, user)) = item.conversation() else {
            return Ok(false);
        };
        let partition = self.keys.partition(&pnid, &user);
        let ttl = match item {
            InboxItem::Message(_) | InboxItem::Outbound(_) => SEEN_TTL_SECS,
            InboxItem::Status(_) | InboxItem::Handover(_) => STATUS_SEEN_TTL_SECS,
        };
        let dedup = item.dedup_id();
        let mut keys = vec![
            self.keys.seen(partition, &dedup),
            self.keys.inbox(partition),
        ];
        // The worker continues the webhook's trace from here; an empty ARGV[4] (no stream
        // field) while tracing is off.
        let traceparent =
            crate::ops::otel::traceparent(&tracing::Span::current()).unwrap_or_default();
        let mut args = vec![ttl.to_string(), item.to_json()?, dedup, traceparent];
        let echo = matches!(item, InboxItem::Message(m) if m.origin == Origin::BusinessEcho);
        if echo && self.echo_pause_ms > 0 {
            keys.push(self.keys.conversation(partition, &pnid, &user));
            keys.push(self.keys.history(partition, &pnid, &user));
            keys.push(self.keys.with_person(partition));
            args.push(self.echo_pause_ms.to_string());
            args.push(self.session_ttl_secs.to_string());
        }
        let id: Option<String> = self
            .script
            .evalsha_with_reload(&self.client, keys, args)
            .await?;
        tracing::Span::current().record("partition", partition);
        tracing::Span::current().record("duplicate", id.is_none());
        if id.is_some() && echo && self.echo_pause_ms > 0 {
            metrics::counter!(crate::ops::monitoring::HANDOFFS, "reason" => "echo").increment(1);
        }
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
        // Counted for messages (inbound or outbound): statuses have their own series.
        let messages = items
            .iter()
            .zip(&results)
            .filter(|(item, _)| matches!(item, InboxItem::Message(_) | InboxItem::Outbound(_)));
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
    let (kind, wamid) = crate::ops::otel::item_attributes(item);
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
