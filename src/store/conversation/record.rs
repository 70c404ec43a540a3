//! What was sent and what happened to it: progress per part, the reply (`record.lua`), delivery statuses (`status.lua`), bursts answered together.

use super::args::{record_code, RecordArgs, StatusArgs, YES};
use super::*;

impl ConversationStore {
    /// Notes that `parts_sent` outbound messages of the reply to `inbound` went out, so that a
    /// retry continues after them instead of sending them again.
    pub async fn record_progress(&self, inbound: &InboundMessage, parts_sent: u32) -> Result<()> {
        self.record_sent(
            &Subject::of(inbound),
            parts_sent,
            false,
            &[],
            &Remember::default(),
        )
        .await?;
        Ok(())
    }

    /// Records the reply to `inbound` (its turns, possibly none) and marks it answered.
    /// Idempotent: returns `false` when a reply was already recorded.
    pub async fn record_reply(&self, inbound: &InboundMessage, turns: &[Turn]) -> Result<bool> {
        self.record_sent(&Subject::of(inbound), 0, true, turns, &Remember::default())
            .await
    }

    /// The write [`record_reply`](Self::record_reply) makes, prepared: the worker runs it with
    /// the entry's acknowledgement, with what the conversation is to remember of it.
    pub fn reply_write(
        &self,
        inbound: &InboundMessage,
        turns: &[Turn],
        remember: &Remember,
    ) -> ConversationWrite {
        self.sent_write(&Subject::of(inbound), 0, true, turns, remember)
    }

    /// [`record_progress`](Self::record_progress) and [`record_reply`](Self::record_reply) for
    /// what was sent for `subject` (an outbound message, a re-engagement).
    pub async fn record_sent(
        &self,
        subject: &Subject<'_>,
        parts_sent: u32,
        last: bool,
        turns: &[Turn],
        remember: &Remember,
    ) -> Result<bool> {
        let recorded: i64 = self
            .run_write(self.sent_write(subject, parts_sent, last, turns, remember))
            .await?;
        Ok(recorded == record_code::RECORDED)
    }

    pub(super) fn sent_write(
        &self,
        subject: &Subject<'_>,
        parts_sent: u32,
        last: bool,
        turns: &[Turn],
        remember: &Remember,
    ) -> ConversationWrite {
        let args = RecordArgs {
            id: subject.id,
            ttl_secs: self.limits.session_ttl_secs,
            max_history: self.limits.max_history,
            parts_sent,
            last,
            now_ms: unix_ms(),
            menu: remember.menu.as_ref().map(Menu::encode).unwrap_or_default(),
            chosen_language: remember.chosen_language,
            turns: turns.iter().map(Turn::encode).collect(),
        }
        .argv();
        ConversationWrite {
            step: Step::Record,
            keys: self.script_keys(subject.pnid, subject.user),
            args,
        }
    }

    /// Runs a prepared write on its own.
    pub async fn apply(&self, write: ConversationWrite) -> Result<()> {
        let _: Value = self.run_write(write).await?;
        Ok(())
    }

    pub(super) async fn run_write<R: FromValue>(&self, write: ConversationWrite) -> Result<R> {
        let script = match write.step {
            Step::Record => &self.record,
            Step::Status => &self.status,
        };
        Ok(script
            .evalsha_with_reload(&self.client, write.keys, write.args)
            .await?)
    }

    /// Applies a delivery status to the turn of the message it is about.
    pub async fn apply_status(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        sent_wamid: &str,
        status: &str,
        error: Option<&DeliveryError>,
    ) -> Result<StatusApplied> {
        let reply: Vec<Value> = self
            .run_write(self.status_write(pnid, user, sent_wamid, status, error)?)
            .await?;
        Ok(StatusApplied {
            found: reply.first().and_then(Value::as_i64) == Some(YES),
            kind: reply
                .get(1)
                .and_then(Value::as_string)
                .unwrap_or_default()
                .to_string(),
            reengaged: reply.get(2).and_then(Value::as_i64) == Some(YES),
        })
    }

    /// The write [`apply_status`](Self::apply_status) makes, prepared (for a status whose
    /// answer is not needed: the worker runs it with the entry's acknowledgement).
    pub fn status_write(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        sent_wamid: &str,
        status: &str,
        error: Option<&DeliveryError>,
    ) -> Result<ConversationWrite> {
        let error = match error {
            Some(error) => serde_json::to_string(error)?,
            None => String::new(),
        };
        Ok(ConversationWrite {
            step: Step::Status,
            keys: self.script_keys(pnid, user),
            args: StatusArgs {
                sent_wamid,
                status,
                error,
            }
            .argv(),
        })
    }

    /// Marks our failed message `sent_wamid` as answered by the re-engagement template (the
    /// console shows it; a later copy of its failure status sends none). `false` when the turn
    /// is no longer in the kept history.
    pub async fn mark_reengaged(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        sent_wamid: &str,
    ) -> Result<bool> {
        let reply: Vec<Value> = self
            .run(
                &self.status,
                pnid,
                user,
                StatusArgs {
                    sent_wamid,
                    status: StatusArgs::REENGAGED,
                    error: String::new(),
                }
                .argv(),
            )
            .await?;
        Ok(reply.first().and_then(Value::as_i64) == Some(YES))
    }

    /// Sets when the user last wrote (operators' tools and tests of the 24-hour window).
    pub async fn set_last_user_ms(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        at_ms: i64,
    ) -> Result<()> {
        let keys = self.keys_of(pnid, user);
        let _: () = self
            .client
            .hset(&keys[0], (field::LAST_USER, at_ms))
            .await?;
        Ok(())
    }

    /// Keeps a user's reaction (`None`: taken back) on the turn of `target`, while kept.
    /// Returns whether that turn was found.
    pub async fn react_to(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        target: &str,
        emoji: Option<&str>,
    ) -> Result<bool> {
        let found: i64 = self
            .run(
                &self.reacted,
                pnid,
                user,
                vec![target.to_string(), emoji.unwrap_or_default().to_string()],
            )
            .await?;
        Ok(found == YES)
    }

    /// Marks messages as answered without recording a turn (a merged burst's earlier messages).
    pub async fn mark_answered(&self, messages: &[&InboundMessage]) -> Result<()> {
        let Some(first) = messages.first() else {
            return Ok(());
        };
        let _: i64 = self
            .run(
                &self.mark_answered,
                &first.phone_number_id,
                &first.user,
                messages
                    .iter()
                    .map(|m| m.id.as_str().to_string())
                    .collect::<Vec<_>>(),
            )
            .await?;
        Ok(())
    }
}
