//! The conversation engine, the workers' handler: per message it rate-limits and records the user
//! turn (one script call), runs the built-in commands or the responder, sends the reply and
//! records it, so that a redelivered message is never answered twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::cloud_api::{CloudApi, Recipient};
use crate::domain::{InboundMessage, MessageContent};
use crate::error::error_chain;
use crate::monitoring;
use crate::responder::{Reply, Responder, ResponderInput};
use crate::store::conversation::{Begin, ConversationStore, Role, Turn};
use crate::worker::{HandleError, Handler};

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

/// What the engine needs besides the responder.
pub struct EngineOptions {
    /// Label of the responder in metrics (`rules`, `echo`, `openai`).
    pub responder_kind: &'static str,
    pub mark_as_read: bool,
    pub typing_indicator: bool,
    pub rate_limit_notice: String,
}

pub struct Engine {
    store: ConversationStore,
    responder: Arc<dyn Responder>,
    api: CloudApi,
    responder_kind: &'static str,
    options: EngineOptions,
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
            responder_kind: options.responder_kind,
            options,
        }
    }

    async fn send(&self, message: &InboundMessage, text: &str) -> Result<String, HandleError> {
        let sent = self
            .api
            .send_long_text(
                &message.phone_number_id,
                &Recipient::of(&message.user),
                text,
                None,
            )
            .await?;
        Ok(sent.last().map(|s| s.wamid.clone()).unwrap_or_default())
    }

    /// The reply is out: its record must land, or a retry would send it again.
    async fn record(&self, message: &InboundMessage, text: String, sent_wamid: &str) {
        let turn = Turn {
            role: Role::Bot,
            text,
            wamid: None,
            sent_wamid: Some(sent_wamid.to_string()),
            at: unix_now(),
            kind: "text".into(),
            rate_limited: false,
        };
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=8 {
            match self.store.record_reply(message, &turn).await {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(wamid = %message.id, attempt, error = %error_chain(&error), "recording the reply failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        tracing::error!(wamid = %message.id, "the reply was sent but could not be recorded; a redelivery would answer again");
    }
}

impl Engine {
    /// Rate-limits and records a message; the history to answer with, or `None` when it must
    /// not be answered (over the limit, already answered).
    async fn admit(&self, message: &InboundMessage) -> Result<Option<Vec<Turn>>, HandleError> {
        let turn = Turn {
            role: Role::User,
            text: message.content.describe(),
            wamid: Some(message.id.as_str().to_string()),
            sent_wamid: None,
            at: message.timestamp,
            kind: message.content.kind().to_string(),
            rate_limited: false,
        };
        match self
            .store
            .begin(message, &turn)
            .await
            .map_err(unavailable)?
        {
            Begin::Accepted { history } => Ok(Some(history)),
            Begin::Limited { notice } => {
                metrics::counter!(monitoring::RATE_LIMITED).increment(1);
                tracing::info!(user = %message.user, wamid = %message.id, notice, "rate limited");
                if notice {
                    if let Err(error) = self.send(message, &self.options.rate_limit_notice).await {
                        tracing::warn!(user = %message.user, error = %error, "rate-limit notice not sent");
                    }
                }
                Ok(None)
            }
            Begin::Seen {
                rate_limited: true, ..
            } => Ok(None),
            Begin::Seen { replied: true, .. } => {
                tracing::info!(wamid = %message.id, "already answered; not answering twice");
                Ok(None)
            }
            Begin::Seen { history, .. } => Ok(Some(history)),
        }
    }

    /// Marks the message read, asks the responder (or answers `/help`), sends and records.
    async fn answer(
        &self,
        message: &InboundMessage,
        history: &[Turn],
        command: Option<Command>,
    ) -> Result<(), HandleError> {
        if self.options.mark_as_read {
            if let Err(error) = self
                .api
                .mark_read(
                    &message.phone_number_id,
                    message.id.as_str(),
                    self.options.typing_indicator,
                )
                .await
            {
                tracing::debug!(wamid = %message.id, error = %error, "mark as read failed (ignored)");
            }
        }
        let reply = match command {
            Some(Command::Help) => Reply::Text(self.responder.help()),
            _ => {
                let started = std::time::Instant::now();
                let reply = self
                    .responder
                    .respond(ResponderInput { message, history })
                    .await;
                metrics::histogram!(monitoring::RESPONDER_SECONDS, "kind" => self.responder_kind)
                    .record(started.elapsed().as_secs_f64());
                reply
            }
        };
        let Reply::Text(text) = reply else {
            return Ok(());
        };
        let sent_wamid = self.send(message, &text).await?;
        self.record(message, text, &sent_wamid).await;
        Ok(())
    }
}

fn unavailable(error: fred::error::Error) -> HandleError {
    HandleError::Unavailable(format!("Redis: {}", error_chain(&error)))
}

/// Reactions and system messages are recorded in the history but never answered.
fn answerable(message: &InboundMessage) -> bool {
    !matches!(
        message.content,
        MessageContent::Reaction { .. } | MessageContent::System { .. }
    )
}

#[async_trait]
impl Handler for Engine {
    async fn handle(&self, message: &InboundMessage) -> Result<(), HandleError> {
        let command = command(&message.content);
        if command == Some(Command::Reset) {
            self.store
                .delete(&message.phone_number_id, &message.user)
                .await
                .map_err(unavailable)?;
            tracing::info!(user = %message.user, "conversation reset by the user");
            self.send(
                message,
                "Your conversation has been reset. How can I help you?",
            )
            .await?;
            return Ok(());
        }
        match self.admit(message).await? {
            Some(history) if answerable(message) => self.answer(message, &history, command).await,
            _ => Ok(()),
        }
    }

    /// A burst (`conversation.merge_window_ms`): every message is recorded, the newest one is
    /// answered with all of them in the history, and the others are marked answered by it.
    async fn handle_batch(&self, messages: &[InboundMessage]) -> Result<(), HandleError> {
        if messages.len() < 2 || messages.iter().any(|m| command(&m.content).is_some()) {
            for message in messages {
                self.handle(message).await?;
            }
            return Ok(());
        }
        let mut admitted = Vec::with_capacity(messages.len());
        let mut history = Vec::new();
        for message in messages {
            if let Some(turns) = self.admit(message).await? {
                admitted.push(message);
                history = turns;
            }
        }
        let Some(target) = admitted.iter().rev().find(|m| answerable(m)) else {
            return Ok(());
        };
        tracing::debug!(user = %target.user, merged = admitted.len(), "answering a burst once");
        self.answer(target, &history, None).await?;
        for message in admitted.iter().filter(|m| m.id != target.id) {
            self.store
                .mark_answered(message)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
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
}
