//! The conversation engine, the workers' handler. Per message: admit it (dedup, rate limit,
//! history: one script call), decide (a built-in command, the responder, or nothing for kinds
//! that are only recorded), send the reply's parts in order (each part's progress recorded, so a
//! retry never sends one twice), and record the reply. Per status: bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument;

use crate::cloud_api::split::{split_text_at_most, MAX_TEXT_LEN};
use crate::cloud_api::{CloudApi, Outgoing, Recipient};
use crate::domain::{
    DeliveryStatus, InboundMessage, InboxItem, MessageContent, Origin, StatusUpdate,
};
use crate::error::error_chain;
use crate::monitoring;
use crate::responder::{Action, HistoryTurn, Reply, Responder, ResponderInput, Speaker};
use crate::store::conversation::{Admission, AdmitMode, ConversationStore, Role, Turn};
use crate::store::StoreError;
use crate::worker::{HandleError, Handler, LeaseGuard};

/// Commands handled before the responder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Reset,
    Help,
}

fn command(content: &MessageContent) -> Option<Command> {
    let MessageContent::Text { body } = content else {
        return None;
    };
    match body.trim().to_lowercase().as_str() {
        "/reset" | "/restart" | "/clear" => Some(Command::Reset),
        "/help" | "/start" => Some(Command::Help),
        _ => None,
    }
}

/// How a message is admitted: only what a user wrote to us is answered.
fn mode_of(message: &InboundMessage) -> AdmitMode<'_> {
    if message.origin != Origin::User {
        return AdmitMode::Record;
    }
    match &message.content {
        MessageContent::Edit { original_id, text } => AdmitMode::Edit {
            original: original_id,
            text: text.as_deref().unwrap_or(""),
        },
        MessageContent::Reaction { .. }
        | MessageContent::System { .. }
        | MessageContent::Revoke { .. } => AdmitMode::Record,
        content if command(content) == Some(Command::Reset) => AdmitMode::Reset,
        _ => AdmitMode::Answer,
    }
}

/// What the engine needs besides the responder.
pub struct EngineOptions {
    /// Label of the responder in metrics (`rules`, `echo`, `openai`).
    pub responder_kind: &'static str,
    pub mark_as_read: bool,
    pub typing_indicator: bool,
    pub rate_limit_notice: String,
    /// Characters of one turn's text kept in the history (the rest is cut).
    pub max_turn_chars: usize,
    /// Outbound messages one reply may be split into (the rest is dropped, logged).
    pub max_reply_parts: usize,
}

/// `text` cut to `max` characters, marked with an ellipsis when cut.
fn bounded(mut text: String, max: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

const RESET_TEXT: &str = "Your conversation has been reset. How can I help you?";

pub struct Engine {
    store: ConversationStore,
    responder: Arc<dyn Responder>,
    api: CloudApi,
    options: EngineOptions,
}

/// One outbound message of a reply, ready to send.
struct Part {
    message: Outgoing,
    /// Index of the action it belongs to (a long text is several parts of one action).
    action: usize,
}

impl Engine {
    pub fn new(
        store: ConversationStore,
        responder: Arc<dyn Responder>,
        api: CloudApi,
        options: EngineOptions,
    ) -> Engine {
        Engine {
            store,
            responder,
            api,
            options,
        }
    }

    async fn handle_message(
        &self,
        message: &InboundMessage,
        lease: &LeaseGuard,
    ) -> Result<(), HandleError> {
        let role = match message.origin {
            Origin::BusinessEcho => Role::Operator,
            Origin::User | Origin::Standby => Role::User,
        };
        let mode = mode_of(message);
        let mut turn = Turn::of_user(message, role);
        turn.text = bounded(turn.text, self.options.max_turn_chars);
        let admission = self
            .store
            .admit(message, &turn, mode, self.responder.reads_history())
            .await?;
        match admission {
            Admission::Answer { history } => {
                self.answer(message, &history, 0, command(&message.content), lease)
                    .await
            }
            Admission::Resume {
                parts_sent,
                history,
            } => {
                self.answer(
                    message,
                    &history,
                    parts_sent,
                    command(&message.content),
                    lease,
                )
                .await
            }
            Admission::Limited { notice } => {
                metrics::counter!(monitoring::RATE_LIMITED).increment(1);
                tracing::info!(user = %message.user, notice, "rate limited");
                if notice && lease.is_valid() {
                    let text = Outgoing::text(&self.options.rate_limit_notice);
                    if let Err(error) = self.send(message, &text).await {
                        tracing::warn!(user = %message.user, error = %error, "rate-limit notice not sent");
                    }
                }
                Ok(())
            }
            Admission::Done => {
                tracing::debug!(user = %message.user, "already handled; not answering twice");
                Ok(())
            }
            Admission::Recorded => {
                tracing::debug!(user = %message.user, kind = message.content.kind(), "recorded, not answered");
                Ok(())
            }
        }
    }

    async fn send(
        &self,
        message: &InboundMessage,
        outgoing: &Outgoing,
    ) -> Result<String, HandleError> {
        let sent = self
            .api
            .send(
                &message.phone_number_id,
                &Recipient::of(&message.user),
                outgoing,
                None,
            )
            .await?;
        Ok(sent.wamid)
    }

    /// Marks the message read (first try only), decides the reply, sends its parts from
    /// `parts_sent` on and records it.
    async fn answer(
        &self,
        message: &InboundMessage,
        history: &[Turn],
        parts_sent: u32,
        command: Option<Command>,
        lease: &LeaseGuard,
    ) -> Result<(), HandleError> {
        if self.options.mark_as_read && parts_sent == 0 {
            if let Err(error) = self
                .api
                .mark_read(
                    &message.phone_number_id,
                    message.id.as_str(),
                    self.options.typing_indicator,
                )
                .await
            {
                tracing::debug!(user = %message.user, error = %error, "mark as read failed (ignored)");
            }
        }
        let reply = match command {
            Some(Command::Reset) => {
                tracing::info!(user = %message.user, "conversation reset by the user");
                Reply::text(RESET_TEXT)
            }
            Some(Command::Help) => Reply::text(self.responder.help()),
            None => {
                let history: Vec<HistoryTurn> = history.iter().map(history_turn).collect();
                let started = std::time::Instant::now();
                let reply = self
                    .responder
                    .respond(ResponderInput {
                        message,
                        history: &history,
                    })
                    .instrument(tracing::debug_span!(
                        "responder",
                        kind = self.options.responder_kind,
                        turns = history.len(),
                    ))
                    .await;
                metrics::histogram!(monitoring::RESPONDER_SECONDS, "kind" => self.options.responder_kind)
                    .record(started.elapsed().as_secs_f64());
                reply
            }
        };
        let (parts, cut) = parts_of(&reply, self.options.max_reply_parts);
        if cut {
            tracing::warn!(
                user = %message.user,
                kept = parts.len(),
                "the reply is longer than conversation.max_reply_parts; the rest is not sent"
            );
        }
        let mut sent: Vec<Option<String>> = vec![None; reply.actions.len()];
        for (index, part) in parts.iter().enumerate().skip(parts_sent as usize) {
            lease.check()?;
            let wamid = self.send(message, &part.message).await?;
            sent[part.action] = Some(wamid);
            if index + 1 < parts.len() {
                self.persist(
                    || self.store.record_progress(message, index as u32 + 1),
                    message,
                )
                .await;
            }
        }
        let now = unix_now();
        let turns: Vec<Turn> = reply
            .actions
            .iter()
            .zip(sent)
            .map(|(action, wamid)| {
                let Action::Text(text) = action;
                Turn::sent(
                    Role::Bot,
                    bounded(text.clone(), self.options.max_turn_chars),
                    "text",
                    wamid.unwrap_or_default(),
                    now,
                )
            })
            .collect();
        self.persist(|| self.store.record_reply(message, &turns), message)
            .await;
        Ok(())
    }

    /// What was sent must be recorded, or a retry would send it again: retried through short
    /// Redis blips, then given up on (logged) rather than holding the conversation.
    async fn persist<T, F, Fut>(&self, write: F, message: &InboundMessage)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=8 {
            match write().await {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(user = %message.user, attempt, error = %error_chain(&error), "recording what was sent failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        tracing::error!(user = %message.user, "a reply was sent but could not be recorded; a redelivery would send it again");
    }

    /// Bookkeeping of our sent messages' statuses: a failed one marks its conversation.
    async fn handle_status(&self, status: &StatusUpdate) -> Result<(), HandleError> {
        if status.status != DeliveryStatus::Failed {
            return Ok(());
        }
        let Some((pnid, user)) = status.conversation() else {
            return Ok(());
        };
        let code = status.errors.first().map(|e| e.code).unwrap_or(0);
        self.store
            .mark_reply_failed(&pnid, &user, &status.message_id, code)
            .await?;
        Ok(())
    }
}

/// The reply as at most `max_parts` outbound messages, long texts split at WhatsApp's limit;
/// `true` when something did not fit.
fn parts_of(reply: &Reply, max_parts: usize) -> (Vec<Part>, bool) {
    let mut parts = Vec::new();
    for (action, a) in reply.actions.iter().enumerate() {
        let room = max_parts.saturating_sub(parts.len());
        let (texts, cut) = match a {
            Action::Text(text) => split_text_at_most(text, MAX_TEXT_LEN, room),
        };
        parts.extend(texts.iter().map(|text| Part {
            message: Outgoing::text(text),
            action,
        }));
        if cut || (parts.len() >= max_parts && action + 1 < reply.actions.len()) {
            return (parts, true);
        }
    }
    (parts, false)
}

fn history_turn(turn: &Turn) -> HistoryTurn {
    HistoryTurn {
        speaker: match turn.role {
            Role::User => Speaker::User,
            Role::Bot => Speaker::Bot,
            Role::Operator => Speaker::Operator,
        },
        text: turn.text.clone(),
        kind: turn.kind.clone(),
        at: turn.at,
        rate_limited: turn.rate_limited,
    }
}

#[async_trait]
impl Handler for Engine {
    async fn handle(&self, item: &InboxItem, lease: &LeaseGuard) -> Result<(), HandleError> {
        match item {
            InboxItem::Message(message) => self.handle_message(message, lease).await,
            InboxItem::Status(status) => self.handle_status(status).await,
        }
    }

    /// A burst (`conversation.merge_window_ms`): every message is recorded, the newest one is
    /// answered with all of them in the history, and the others are marked answered by it. A
    /// message of the burst already answered (a retry) means everything before it was too.
    async fn handle_batch(
        &self,
        messages: &[InboundMessage],
        lease: &LeaseGuard,
    ) -> Result<(), HandleError> {
        let plain =
            |m: &InboundMessage| mode_of(m) == AdmitMode::Answer && command(&m.content).is_none();
        if messages.len() < 2 || !messages.iter().all(plain) {
            for message in messages {
                self.handle_message(message, lease).await?;
            }
            return Ok(());
        }
        let mut pending: Vec<(&InboundMessage, u32)> = Vec::with_capacity(messages.len());
        let mut answered: Vec<&InboundMessage> = Vec::new();
        let mut history = Vec::new();
        for message in messages {
            let mut turn = Turn::of_user(message, Role::User);
            turn.text = bounded(turn.text, self.options.max_turn_chars);
            match self
                .store
                .admit(
                    message,
                    &turn,
                    AdmitMode::Answer,
                    self.responder.reads_history(),
                )
                .await?
            {
                Admission::Answer { history: turns } => {
                    pending.push((message, 0));
                    history = turns;
                }
                Admission::Resume {
                    parts_sent,
                    history: turns,
                } => {
                    pending.push((message, parts_sent));
                    history = turns;
                }
                Admission::Done => answered.extend(pending.drain(..).map(|(m, _)| m)),
                Admission::Limited { .. } => {
                    metrics::counter!(monitoring::RATE_LIMITED).increment(1);
                }
                Admission::Recorded => {}
            }
        }
        if !answered.is_empty() {
            self.store.mark_answered(&answered).await?;
        }
        let Some(&(target, parts_sent)) = pending.last() else {
            return Ok(());
        };
        tracing::debug!(user = %target.user, merged = pending.len(), "answering a burst once");
        self.answer(target, &history, parts_sent, None, lease)
            .await?;
        let others: Vec<&InboundMessage> = pending[..pending.len() - 1]
            .iter()
            .map(|(m, _)| *m)
            .collect();
        self.store.mark_answered(&others).await?;
        Ok(())
    }

    async fn dead_lettered(&self, items: &[InboxItem], error: &HandleError) {
        let HandleError::CorruptState(_) = error else {
            return;
        };
        let Some((pnid, user)) = items.first().and_then(InboxItem::conversation) else {
            return;
        };
        match self.store.quarantine(&pnid, &user).await {
            Ok(true) => {
                tracing::error!(user = %user, "the conversation's stored state was unusable; moved aside, the next message starts a new one")
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(user = %user, error = %error_chain(&error), "could not move a corrupt conversation aside")
            }
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_recognised() {
        let text = |t: &str| MessageContent::Text { body: t.into() };
        assert_eq!(command(&text(" /RESET ")), Some(Command::Reset));
        assert_eq!(command(&text("/help")), Some(Command::Help));
        assert_eq!(command(&text("help me /reset")), None);
    }

    #[test]
    fn bounded_cuts_at_a_character_boundary() {
        assert_eq!(bounded("héllo".into(), 2), "hé…");
        assert_eq!(bounded("héllo".into(), 5), "héllo");
    }

    #[test]
    fn long_texts_become_several_parts_of_one_action() {
        let reply = Reply {
            actions: vec![Action::Text("a ".repeat(5000)), Action::Text("b".into())],
        };
        let (parts, cut) = parts_of(&reply, 10);
        assert_eq!(
            parts.iter().map(|p| p.action).collect::<Vec<_>>(),
            [0, 0, 0, 1]
        );
        assert!(!cut);
        let (parts, cut) = parts_of(&reply, 2);
        assert_eq!((parts.len(), cut), (2, true));
        let (parts, cut) = parts_of(&reply, 3);
        assert_eq!(
            (parts.len(), cut),
            (3, true),
            "the second action did not fit"
        );
    }
}
