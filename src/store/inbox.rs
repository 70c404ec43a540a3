//! The durable hand-off: one script call per message drops duplicates by wamid and appends the
//! message to its partition's stream, atomically (both writes land in the AOF together).

use async_trait::async_trait;
use fred::prelude::Client;
use fred::types::scripts::Script;
use futures_util::future::try_join_all;

use super::keys::{Keys, SEEN_TTL_SECS};
use crate::domain::InboundMessage;
use crate::sink::{Accepted, EventSink, SinkError};

/// KEYS: seen marker, inbox stream. ARGV: marker TTL (s), message JSON, wamid.
/// Returns the stream id, or nil for a duplicate.
const ACCEPT_LUA: &str = r#"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', 'm', ARGV[2], 'w', ARGV[3])
end
return false
"#;

/// Stores inbound messages in Redis streams, partitioned by conversation.
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
            script: Script::from_lua(ACCEPT_LUA),
        }
    }

    /// Stores one message; `Ok(true)` when it was new.
    pub async fn accept_one(&self, message: &InboundMessage) -> Result<bool, fred::error::Error> {
        let partition = self.keys.partition(&message.phone_number_id, &message.user);
        let json = serde_json::to_string(message).map_err(|e| {
            fred::error::Error::new(fred::error::ErrorKind::InvalidArgument, e.to_string())
        })?;
        let id: Option<String> = self
            .script
            .evalsha_with_reload(
                &self.client,
                vec![
                    self.keys.seen(partition, message.id.as_str()),
                    self.keys.inbox(partition),
                ],
                vec![
                    SEEN_TTL_SECS.to_string(),
                    json,
                    message.id.as_str().to_string(),
                ],
            )
            .await?;
        Ok(id.is_some())
    }
}

#[async_trait]
impl EventSink for RedisInbox {
    async fn accept(&self, messages: &[InboundMessage]) -> Result<Accepted, SinkError> {
        // Issued together: fred pipelines them on the connection, one round trip for the batch.
        let results = try_join_all(messages.iter().map(|m| self.accept_one(m)))
            .await
            .map_err(|e| SinkError::Unavailable(Box::new(e)))?;
        let new = results.iter().filter(|new| **new).count();
        Ok(Accepted {
            new,
            duplicates: results.len() - new,
        })
    }
}
