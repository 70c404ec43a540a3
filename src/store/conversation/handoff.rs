//! Who has the conversation: outbound messages (`outbound.lua`), a person taking over and giving back (`handoff.lua`), Meta's conversation routing (`routing.lua`), corrupt state moved aside (`quarantine.lua`).

use super::args::{outbound_code, HandoffArgs, OutboundArgs, RoutingArgs, YES};
use super::*;

impl ConversationStore {
    /// Starts an outbound message: see `lua/outbound.lua`.
    pub async fn begin_outbound(&self, out: &OutboundMessage, by: &str) -> Result<OutboundStart> {
        let source = match out.source {
            OutboundSource::Operator => "operator",
            OutboundSource::Notification => "notification",
        };
        let reply: Vec<Value> = self
            .run(
                &self.outbound,
                &out.phone_number_id,
                &out.to,
                OutboundArgs {
                    id: &out.id,
                    source,
                    ttl_secs: self.limits.session_ttl_secs,
                    handoff_ms: self.limits.handoff_ms,
                    by,
                }
                .argv(),
            )
            .await?;
        let shape = || StoreError::Corrupt("the outbound script answered out of shape".into());
        let code = reply.first().and_then(Value::as_i64).ok_or_else(shape)?;
        match code {
            outbound_code::DONE => return Ok(OutboundStart::Done),
            outbound_code::NEW | outbound_code::STARTED => {}
            other => {
                return Err(StoreError::Corrupt(format!(
                    "the outbound script answered code {other}"
                )))
            }
        }
        let parts_sent = reply.get(1).and_then(Value::as_i64).ok_or_else(shape)?;
        let last_user_ms = reply
            .get(2)
            .and_then(Value::as_string)
            .and_then(|s| s.parse().ok());
        let owner = reply
            .get(3)
            .and_then(Value::as_string)
            .map(|s| Owner::parse(&s))
            .unwrap_or(Owner::Bot);
        let language = reply
            .get(4)
            .and_then(Value::as_string)
            .and_then(|raw| stored_language(&raw).0);
        Ok(OutboundStart::Send {
            parts_sent: u32::try_from(parts_sent).unwrap_or(0),
            last_user_ms,
            owner,
            language,
        })
    }

    /// A person takes the conversation until `until_ms` (`info`: who, why, a note); with
    /// `event`, `handoff.requested` is emitted in the same call (the bot asked for a person).
    pub async fn take_over(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        until_ms: i64,
        info: &serde_json::Value,
        event: Option<&serde_json::Value>,
    ) -> Result<()> {
        let _: i64 = self
            .run(
                &self.handoff,
                pnid,
                user,
                HandoffArgs::Take {
                    until_ms,
                    info,
                    event,
                    ttl_secs: self.limits.session_ttl_secs,
                }
                .argv(),
            )
            .await?;
        Ok(())
    }

    /// Gives the conversation back to the bot. Returns whether it exists.
    pub async fn give_back(&self, pnid: &PhoneNumberId, user: &UserId) -> Result<bool> {
        let done: i64 = self
            .run(
                &self.handoff,
                pnid,
                user,
                HandoffArgs::Resume {
                    ttl_secs: self.limits.session_ttl_secs,
                }
                .argv(),
            )
            .await?;
        Ok(done == YES)
    }

    /// Applies a conversation-routing handover; `false` when a newer one was applied before.
    pub async fn set_routing(&self, handover: &Handover) -> Result<bool> {
        let applied: i64 = self
            .run(
                &self.routing,
                &handover.phone_number_id,
                &handover.user,
                RoutingArgs {
                    owned: handover.owned,
                    at_secs: handover.timestamp,
                    ttl_secs: self.limits.session_ttl_secs,
                }
                .argv(),
            )
            .await?;
        Ok(applied == YES)
    }

    /// Whether the bot may still answer: nobody took the conversation over meanwhile (checked
    /// again just before a slow reply goes out).
    pub async fn bot_owns(&self, pnid: &PhoneNumberId, user: &UserId) -> Result<bool> {
        let keys = self.keys_of(pnid, user);
        let (until, other): (Option<i64>, Option<String>) = self
            .client
            .hmget(&keys[0], vec![field::HUMAN_UNTIL, field::OTHER_APP])
            .await?;
        let human = until.is_some_and(|until| until > unix_ms());
        Ok(!human && other.is_none_or(|o| o.is_empty()))
    }

    /// Moves a corrupt conversation aside (kept a week under `...:corrupt:...`) so the user's
    /// next message starts afresh. Returns whether anything was moved.
    pub async fn quarantine(&self, pnid: &PhoneNumberId, user: &UserId) -> Result<bool> {
        let partition = self.keys.partition(pnid, user);
        let mut keys = self.keys_of(pnid, user);
        keys.extend(self.keys.quarantined(partition, pnid, user));
        let moved: i64 = self
            .quarantine
            .evalsha_with_reload(&self.client, keys, vec![QUARANTINE_SECS.to_string()])
            .await?;
        Ok(moved > 0)
    }
}
