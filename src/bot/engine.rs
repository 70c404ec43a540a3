//! The conversation engine, the workers' handler. Per message: admit it (dedup, rate limit,
//! history: one script call), decide (a built-in command, the responder, or nothing for kinds
//! that are only recorded), send the reply's parts in order (each part's progress recorded, so a
//! retry never sends one twice), and record the reply. While a person has the conversation
//! (handoff) messages are only recorded. Per status: the turn's delivery state. Per outbound
//! message (an operator's, a notification): sent in the conversation's order, within the
//! 24-hour window rules (`window`). What a reply's actions become on the wire lives in `reply`,
//! the sentences it says itself in `i18n`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use tracing::Instrument;

use crate::bot::handoff::HandoffDetector;
use crate::bot::i18n::{self, Language, LanguageRequest, Sentence, Texts};
use crate::bot::menu;
use crate::bot::reply;
use crate::bot::responder::{
    Action, Choice, HistoryTurn, Reply, Responder, ResponderInput, Speaker,
};
use crate::bot::transcription::{self, Transcriber};
use crate::bot::uploads::{MediaUploads, UploadError};
use crate::config::TemplateRef;
use crate::domain::menu::Menu;
use crate::domain::{
    DeliveryStatus, InboundMessage, InboxItem, MessageContent, Origin, OutboundMessage,
    OutboundSource, StatusUpdate,
};
use crate::meta::cloud_api::{CloudApi, Recipient};
use crate::meta::window::{self, Delivery};
use crate::ops::monitoring;
use crate::ops::telemetry::error_chain;
use crate::pipeline::worker::{HandleError, Handled, Handler, LeaseGuard};
use crate::store::conversation::{
    Admission, AdmitMode, ConversationStore, DeliveryError, LanguageClaim, OutboundStart, Remember,
    Remembered, Role, Subject, Turn,
};
use crate::store::StoreError;

/// Answers the engine gives itself instead of asking the responder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Reset,
    Help,
    /// The user asks for a person (`/agent` or a handoff keyword).
    Handoff,
    /// A voice note whose transcription failed.
    CouldNotListen,
    /// `/idioma pt`, `/language`, or a tap on the language menu.
    Language(LanguageRequest),
}

fn command(content: &MessageContent, handoff: &HandoffDetector) -> Option<Command> {
    if let Some(request) = i18n::language_request(content) {
        return Some(Command::Language(request));
    }
    let MessageContent::Text { body } = content else {
        return None;
    };
    match body.trim().to_lowercase().as_str() {
        "/reset" | "/restart" | "/clear" => Some(Command::Reset),
        "/help" | "/start" => Some(Command::Help),
        _ if handoff.asks_for_person(body) => Some(Command::Handoff),
        _ => None,
    }
}

/// How a message is admitted: only what a user wrote to us is answered, and a reaction only
/// by a responder that `hears_reactions`.
fn mode_of<'a>(
    message: &'a InboundMessage,
    handoff: &HandoffDetector,
    hears_reactions: bool,
) -> AdmitMode<'a> {
    if message.origin != Origin::User {
        return AdmitMode::Record;
    }
    match &message.content {
        MessageContent::Reaction { .. } if hears_reactions => AdmitMode::Answer,
        MessageContent::Edit { original_id, text } => AdmitMode::Edit {
            original: original_id,
            text: text.as_deref().unwrap_or(""),
        },
        MessageContent::Reaction { .. }
        | MessageContent::System { .. }
        | MessageContent::Revoke { .. } => AdmitMode::Record,
        content => match command(content, handoff) {
            Some(Command::Reset) => AdmitMode::Reset,
            Some(Command::Handoff) => AdmitMode::Handoff,
            _ => AdmitMode::Answer,
        },
    }
}

/// How a heard voice note reads in the history: the prefix, then what it said.
const VOICE: &str = "[voice] ";

fn voice_text(heard: &InboundMessage, max_chars: usize) -> String {
    bounded(
        format!("{VOICE}{}", heard.content.text().unwrap_or_default()),
        max_chars,
    )
}

/// A reply that took longer than this to prepare is sent only after checking again that
/// nobody took the conversation over meanwhile (the owner answering from the phone during a
/// slow LLM call). Quicker replies skip the extra round trip: a takeover that lands within
/// this window races with the send itself anyway.
const RECHECK_AFTER: Duration = Duration::from_millis(25);

/// What the engine needs besides the responder.
pub struct EngineOptions {
    /// Label of the responder in metrics (`rules`, `echo`, `openai`).
    pub responder_kind: &'static str,
    pub mark_as_read: bool,
    pub typing_indicator: bool,
    /// The sentences the engine says itself (reset, rate-limit notice, fallback).
    pub texts: Arc<Texts>,
    /// Voice notes are transcribed and answered like text when set.
    pub transcriber: Option<Arc<Transcriber>>,
    /// Characters of one turn's text kept in the history (the rest is cut).
    pub max_turn_chars: usize,
    /// Outbound messages one reply may be split into (the rest is dropped, logged).
    pub max_reply_parts: usize,
    pub handoff: HandoffDetector,
    /// The answer to a user asking for a person (empty: the language's sentence).
    pub handoff_text: String,
    /// How long a person keeps a conversation the responder handed over.
    pub handoff_ms: u64,
    /// Mark messages read while a person has the conversation.
    pub handoff_mark_read: bool,
    /// Sent instead of free-form text outside the 24-hour window.
    pub reengagement_template: TemplateRef,
    /// Media sent by `upload`, uploaded once and then sent by id.
    pub uploads: Arc<MediaUploads>,
    /// The tenant this engine answers for (the `tenant` label of its metrics).
    pub tenant: String,
    /// Messages are recorded, never answered, and nothing is sent (a number no tenant has).
    pub record_only: bool,
}

/// The record of a message that leaves no menu or language behind.
const NOTHING_TO_REMEMBER: Remember = Remember {
    menu: None,
    chosen_language: None,
};

/// `text` cut to `max` characters, marked with an ellipsis when cut.
fn bounded(mut text: String, max: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

pub struct Engine {
    store: ConversationStore,
    responder: Arc<dyn Responder>,
    api: CloudApi,
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
            options,
        }
    }

    async fn handle_message(
        &self,
        message: &InboundMessage,
        lease: &LeaseGuard,
    ) -> Result<Handled, HandleError> {
        let role = match message.origin {
            Origin::BusinessEcho => Role::Operator,
            Origin::User | Origin::Standby => Role::User,
        };
        if self.options.record_only {
            let turn = Turn::of_user(message, role);
            let admission = self
                .store
                .admit(message, &turn, AdmitMode::Record, false, None)
                .await?;
            tracing::info!(number = %message.phone_number_id, user = %message.user, "a number no tenant has; recorded, not answered");
            return self.unanswered(message, admission, None, lease).await;
        }
        if self.options.transcriber.is_some() && transcription::is_user_audio(message) {
            return self.handle_voice(message, role, lease).await;
        }
        let mode = mode_of(
            message,
            &self.options.handoff,
            self.responder.hears_reactions(),
        );
        let mut turn = Turn::of_user(message, role);
        let command = command(&message.content, &self.options.handoff);
        turn.text = bounded(turn.text, self.options.max_turn_chars);
        let claim = self.language_claim(message, command);
        let admission = self
            .store
            .admit(message, &turn, mode, self.responder.reads_history(), claim)
            .await?;
        if let (MessageContent::Reaction { message_id, emoji }, Origin::User) =
            (&message.content, message.origin)
        {
            // Recorded, never answered; also kept on the turn it is about (idempotent).
            self.store
                .react_to(
                    &message.phone_number_id,
                    &message.user,
                    message_id,
                    emoji.as_deref(),
                )
                .await?;
        }
        match admission {
            Admission::Answer {
                history,
                remembered,
            } => {
                if command == Some(Command::Handoff) {
                    metrics::counter!(monitoring::HANDOFFS, "reason" => "requested").increment(1);
                    tracing::info!(user = %message.user, "the user asked for a person; handed off");
                }
                self.answer(message, &history, 0, command, &remembered, lease)
                    .await
            }
            Admission::Resume {
                parts_sent,
                history,
                remembered,
            } => {
                self.answer(message, &history, parts_sent, command, &remembered, lease)
                    .await
            }
            other => {
                self.unanswered(message, other, claim.map(|c| c.language), lease)
                    .await
            }
        }
    }

    /// A user's voice note, with transcription on: admitted first (deduplicated,
    /// rate-limited), so a redelivery, a dropped message or one a person handles costs no
    /// transcription; then heard, its transcript kept with its turn (a retry reads it there
    /// instead of paying again), and answered like the text it says.
    async fn handle_voice(
        &self,
        message: &InboundMessage,
        role: Role,
        lease: &LeaseGuard,
    ) -> Result<Handled, HandleError> {
        let turn = Turn::of_user(message, role);
        let admission = self
            .store
            .admit(
                message,
                &turn,
                AdmitMode::Answer,
                self.responder.reads_history(),
                None,
            )
            .await?;
        let (parts_sent, mut history, mut remembered) = match admission {
            Admission::Answer {
                history,
                remembered,
            } => (0, history, remembered),
            Admission::Resume {
                parts_sent,
                history,
                remembered,
            } => (parts_sent, history, remembered),
            Admission::WithPerson => {
                // Not answered, but the person reads what it said.
                if let Some(Ok(heard)) = self.transcribed(message).await {
                    let text = voice_text(&heard, self.options.max_turn_chars);
                    let claim = self.language_claim(&heard, None);
                    self.store.heard(message, &text, claim, None).await?;
                }
                return self
                    .unanswered(message, Admission::WithPerson, None, lease)
                    .await;
            }
            other => return self.unanswered(message, other, None, lease).await,
        };
        let id = crate::store::conversation::marker_digest(message.id.as_str());
        let own_turn = |turn: &Turn| turn.id.as_deref() == Some(id.as_str());
        // A retry: the first attempt may have heard it already.
        let cached = match history.iter().rev().find(|t| own_turn(t)) {
            Some(turn) => Some(turn.text.clone()),
            None if parts_sent > 0 || !self.responder.reads_history() => {
                self.store.kept_turn(message).await?.map(|turn| turn.text)
            }
            None => None,
        }
        .and_then(|text| text.strip_prefix(VOICE).map(str::to_string));
        let heard = match cached {
            Some(said) => Ok(InboundMessage {
                content: MessageContent::Text { body: said },
                ..message.clone()
            }),
            None => match self.transcribed(message).await {
                Some(Ok(heard)) => {
                    // Saying "I want to talk to a person" is asking for one; a spoken "/reset"
                    // is not a command anyone gives, so only the handoff is heard in a voice note.
                    let asks =
                        command(&heard.content, &self.options.handoff) == Some(Command::Handoff);
                    let text = voice_text(&heard, self.options.max_turn_chars);
                    let claim = self.language_claim(&heard, asks.then_some(Command::Handoff));
                    let event = asks.then(|| {
                        serde_json::json!({
                            "id": message.id.as_str(),
                            "kind": message.content.kind(),
                            "text": text,
                            "profile_name": message.sender.profile_name,
                        })
                    });
                    let language = self.store.heard(message, &text, claim, event).await?;
                    if asks {
                        metrics::counter!(monitoring::HANDOFFS, "reason" => "requested")
                            .increment(1);
                        tracing::info!(user = %message.user, "the user asked for a person in a voice note; handed off");
                    }
                    remembered.language = language.or(remembered.language);
                    if let Some(turn) = history.iter_mut().rev().find(|t| own_turn(t)) {
                        turn.text = text;
                    }
                    Ok(heard)
                }
                _ => Err(()),
            },
        };
        match heard {
            Ok(heard) => {
                let command = command(&heard.content, &self.options.handoff)
                    .filter(|command| *command == Command::Handoff);
                self.answer(&heard, &history, parts_sent, command, &remembered, lease)
                    .await
            }
            Err(()) => {
                let command = Some(Command::CouldNotListen);
                self.answer(message, &history, parts_sent, command, &remembered, lease)
                    .await
            }
        }
    }

    /// What admission decided when the message is not to be answered (now): a person has the
    /// conversation, the rate limit dropped it (a notice in `language` at most once per window),
    /// answered before, or a kind that is only recorded.
    async fn unanswered(
        &self,
        message: &InboundMessage,
        admission: Admission,
        language: Option<Language>,
        lease: &LeaseGuard,
    ) -> Result<Handled, HandleError> {
        match admission {
            Admission::WithPerson => {
                tracing::debug!(user = %message.user, "a person has the conversation; recorded, not answered");
                if self.options.handoff_mark_read {
                    if let Err(error) = self
                        .api
                        .mark_read(&message.phone_number_id, message.id.as_str(), false)
                        .await
                    {
                        tracing::debug!(user = %message.user, error = %error, "mark as read failed (ignored)");
                    }
                }
                Ok(Handled::done())
            }
            Admission::Limited {
                notice,
                language: limited_language,
            } => {
                metrics::counter!(monitoring::RATE_LIMITED, "tenant" => self.options.tenant.clone()).increment(1);
                tracing::info!(user = %message.user, notice, "rate limited");
                if notice && lease.is_valid() {
                    let language = limited_language
                        .or(language)
                        .unwrap_or(self.options.texts.default_language());
                    let text = Action::Text(
                        self.options
                            .texts
                            .get(language, Sentence::RateLimited)
                            .into(),
                    );
                    if let Err(error) = self.send(message, &text, None).await {
                        tracing::warn!(user = %message.user, error = %error, "rate-limit notice not sent");
                    }
                }
                Ok(Handled::done())
            }
            Admission::Done => {
                tracing::debug!(user = %message.user, "already handled; not answering twice");
                Ok(Handled::done())
            }
            Admission::Recorded => {
                tracing::debug!(user = %message.user, kind = message.content.kind(), "recorded, not answered");
                Ok(Handled::done())
            }
            Admission::Answer { .. } | Admission::Resume { .. } => {
                // The callers answer these before they get here; never acknowledged unanswered.
                Err(HandleError::retryable(
                    "an admitted message reached the path of unanswered ones",
                ))
            }
        }
    }

    /// `action` as it goes out: media to upload by its media id. A file or URL that cannot be
    /// had (missing, too large, misconfigured) is sent as its text (the caption) or the
    /// fallback sentence, logged; Meta's refusals and outages are retried like a send.
    async fn uploaded<'a>(
        &self,
        pnid: &crate::domain::PhoneNumberId,
        action: &'a Action,
        language: Language,
    ) -> Result<std::borrow::Cow<'a, Action>, HandleError> {
        match self.options.uploads.prepared(&self.api, pnid, action).await {
            Ok(ready) => Ok(ready),
            Err(UploadError::Api(error)) => Err(error.into()),
            Err(UploadError::Store(error)) => Err(error.into()),
            Err(error) => {
                tracing::warn!(error = %error, "media to upload could not be had; sending its text instead");
                let text = action.as_text().unwrap_or_else(|| {
                    self.options
                        .texts
                        .get(language, Sentence::Fallback)
                        .to_string()
                });
                Ok(std::borrow::Cow::Owned(Action::Text(text)))
            }
        }
    }

    async fn send(
        &self,
        message: &InboundMessage,
        outgoing: &Action,
        context: Option<&str>,
    ) -> Result<String, crate::meta::cloud_api::CloudApiError> {
        let sent = self
            .api
            .send(
                &message.phone_number_id,
                &Recipient::of(&message.user),
                outgoing,
                context,
            )
            .await?;
        Ok(sent.wamid)
    }

    /// Meta says the window closed before the reply went out (131047: answered more than 24 h
    /// after the user wrote, e.g. after a long outage): the re-engagement template instead, or
    /// nothing (logged), recorded as the reply. The user's own timestamp is not trusted for
    /// this up front: Meta's answer is the authority, and it costs one refused call.
    async fn answer_outside_window(
        &self,
        message: &InboundMessage,
        language: Language,
    ) -> Result<Handled, HandleError> {
        let delivery = window::reengage(
            &self.api,
            &self
                .options
                .reengagement_template
                .in_language(Some(language)),
            &message.phone_number_id,
            &Recipient::of(&message.user),
            "the 24-hour window is closed",
        )
        .await?;
        let now = crate::domain::clock::unix_secs();
        let turn = match delivery {
            // `reengage` sends the template or nothing.
            Delivery::Template { wamid, .. } | Delivery::Sent { wamid } => Turn::sent(
                Role::Bot,
                format!("[template: {}]", self.options.reengagement_template.name),
                "template",
                &wamid,
                now,
            ),
            Delivery::Refused { .. } => {
                tracing::warn!(user = %message.user, "the 24-hour window is closed and no whatsapp.reengagement_template is configured; the reply is not sent");
                Turn::failed(
                    Role::Bot,
                    "[reply not sent]".into(),
                    "text",
                    DeliveryError {
                        code: window::REENGAGEMENT_CODE,
                        title: Some("the 24-hour window is closed and no re-engagement template is configured".into()),
                    },
                    now,
                )
            }
        };
        Ok(Handled::with(self.store.reply_write(
            message,
            std::slice::from_ref(&turn),
            &NOTHING_TO_REMEMBER,
        )))
    }

    /// An operator's message or a notification, in the conversation's order: free-form only
    /// inside the window (else the re-engagement template, or refused), recorded once.
    /// `reengagement`: it is the re-engagement template itself, sent in the conversation's
    /// language.
    async fn handle_outbound(
        &self,
        out: &OutboundMessage,
        reengagement: bool,
        lease: &LeaseGuard,
    ) -> Result<(), HandleError> {
        if self.options.record_only {
            return Err(HandleError::Permanent(format!(
                "number {} belongs to no tenant: nothing is sent from it",
                out.phone_number_id
            )));
        }
        let OutboundStart::Send {
            last_user_ms,
            language,
            ..
        } = self
            .store
            .begin_outbound(out, out.by.as_deref().unwrap_or_default())
            .await?
        else {
            tracing::debug!(user = %out.to, "outbound message already sent");
            return Ok(());
        };
        lease.check()?;
        let role = match out.source {
            OutboundSource::Operator => Role::Operator,
            OutboundSource::Notification => Role::Bot,
        };
        if out.source == OutboundSource::Operator {
            metrics::counter!(monitoring::HANDOFFS, "reason" => "operator").increment(1);
        }
        let template = self.options.reengagement_template.in_language(language);
        let (message, quote) = match window::template_message(&template) {
            Some(localized) if reengagement => (localized, None),
            _ => (
                self.uploaded(
                    &out.phone_number_id,
                    &out.content,
                    language.unwrap_or(self.options.texts.default_language()),
                )
                .await?
                .into_owned(),
                out.reply_to.as_deref(),
            ),
        };
        let (text, kind) = out.content.describe();
        let delivery = window::send(
            &self.api,
            &template,
            &out.phone_number_id,
            &out.to,
            &message,
            quote,
            window::is_open(last_user_ms),
        )
        .await?;
        let now = crate::domain::clock::unix_secs();
        let turn = match delivery {
            Delivery::Sent { wamid } => {
                metrics::counter!(monitoring::OUTBOUND, "tenant" => self.options.tenant.clone(), "outcome" => "sent").increment(1);
                Turn {
                    quoted: quote.map(crate::store::turn::marker_digest),
                    ..Turn::sent(role, text, kind, &wamid, now)
                }
            }
            Delivery::Template { wamid, name } => {
                metrics::counter!(monitoring::OUTBOUND, "tenant" => self.options.tenant.clone(), "outcome" => "template").increment(1);
                tracing::info!(user = %out.to, "the 24-hour window is closed; the re-engagement template was sent instead");
                Turn::sent(
                    role,
                    format!("[template: {name}] instead of: {text}"),
                    "template",
                    &wamid,
                    now,
                )
            }
            Delivery::Refused { reason } => {
                metrics::counter!(monitoring::OUTBOUND, "tenant" => self.options.tenant.clone(), "outcome" => "refused").increment(1);
                tracing::warn!(user = %out.to, reason, "outbound message not sent");
                Turn::failed(
                    role,
                    text,
                    kind,
                    DeliveryError {
                        code: window::REENGAGEMENT_CODE,
                        title: Some(reason),
                    },
                    now,
                )
            }
        };
        let turn = Turn {
            by: out.by.clone(),
            ..turn
        };
        let subject = Subject {
            pnid: &out.phone_number_id,
            user: &out.to,
            id: &out.id,
        };
        self.persist_write(
            || {
                self.store.record_sent(
                    &subject,
                    0,
                    true,
                    std::slice::from_ref(&turn),
                    &NOTHING_TO_REMEMBER,
                )
            },
            out.to.as_str(),
        )
        .await;
        Ok(())
    }

    /// Marks the message read (first try only) while the reply is decided, sends its parts from
    /// `parts_sent` on and records it.
    async fn answer(
        &self,
        message: &InboundMessage,
        history: &[Turn],
        parts_sent: u32,
        command: Option<Command>,
        remembered: &Remembered,
        lease: &LeaseGuard,
    ) -> Result<Handled, HandleError> {
        // A typed "2" or "Precios" after a menu is the tap it stands for.
        let picked = match (&message.content, &remembered.menu, command) {
            (MessageContent::Text { body }, Some(menu), None) => {
                menu::pick(menu, body).map(|option| {
                    let mut tap = message.clone();
                    tap.content = MessageContent::InteractiveReply {
                        reply: menu.kind(),
                        id: option.id.clone(),
                        title: option.title.clone(),
                        description: None,
                    };
                    tap
                })
            }
            _ => None,
        };
        if picked.is_some() {
            tracing::debug!(user = %message.user, "a typed answer picked an option of the last menu");
        }
        let message = picked.as_ref().unwrap_or(message);
        // Picking the language menu's option by typing it is choosing the language.
        let command = command.or_else(|| {
            picked
                .as_ref()
                .and_then(|tap| i18n::language_request(&tap.content))
                .map(Command::Language)
        });
        // A reaction is read already and mostly goes unanswered: no typing indicator for it.
        let is_reaction = matches!(message.content, MessageContent::Reaction { .. });
        let read = async {
            if self.options.mark_as_read && parts_sent == 0 && !is_reaction {
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
        };
        let texts = &self.options.texts;
        let language = self.language(message, command, remembered);
        // The read receipt (and typing indicator) costs a Graph round trip: it runs while the
        // responder works, not before it, and is joined before the first part goes out so the
        // user never sees the receipt after the reply.
        let ((), decided) = tokio::join!(read, self.decide(message, history, command, language));
        let Some(reply) = decided? else {
            tracing::info!(user = %message.user, "a person took the conversation over while the reply was prepared; not sent");
            return Ok(Handled::with(self.store.reply_write(
                message,
                &[],
                &NOTHING_TO_REMEMBER,
            )));
        };
        let reply = reply::checked(
            reply,
            texts.get(language, Sentence::Fallback),
            &message.user,
        );
        let (parts, cut) =
            reply::parts_of(&reply, message.id.as_str(), self.options.max_reply_parts);
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
            let outgoing = self
                .uploaded(&message.phone_number_id, &part.message, language)
                .await?;
            let wamid = match self.send(message, &outgoing, part.context.as_deref()).await {
                Ok(wamid) => wamid,
                Err(error) if error.code() == Some(window::REENGAGEMENT_CODE) => {
                    tracing::warn!(user = %message.user, "Meta says the 24-hour window is closed (131047)");
                    return self.answer_outside_window(message, language).await;
                }
                Err(error) => return Err(error.into()),
            };
            sent[part.action] = Some(wamid);
            if index + 1 < parts.len() {
                self.persist(
                    || self.store.record_progress(message, index as u32 + 1),
                    message,
                )
                .await;
            }
        }
        for action in &reply.actions {
            if let Action::Handoff { note } = action {
                self.hand_off(message, note.as_deref()).await;
            }
        }
        let now = crate::domain::clock::unix_secs();
        // The action whose message quoted something, and what (shown above it in the console).
        let quoted = parts
            .iter()
            .find(|p| p.context.is_some() && !matches!(p.message, Action::React { .. }))
            .and_then(|p| Some((p.action, p.context.as_deref()?)));
        let turns: Vec<Turn> = reply
            .actions
            .iter()
            .zip(sent)
            .enumerate()
            .map(|(index, (action, wamid))| {
                let (text, kind) = action.describe();
                let mut turn = Turn::sent(
                    Role::Bot,
                    bounded(text, self.options.max_turn_chars),
                    kind,
                    wamid.as_deref().unwrap_or_default(),
                    now,
                );
                if let Some((_, quote)) = quoted.filter(|(at, _)| *at == index) {
                    turn.quoted = Some(crate::store::turn::marker_digest(quote));
                }
                turn
            })
            .collect();
        let remember = Remember {
            menu: Menu::of(&reply.actions, language),
            // Chosen by typing an option of the language menu: admission did not know it yet.
            chosen_language: match command {
                Some(Command::Language(LanguageRequest::Set(chosen))) if picked.is_some() => {
                    Some(chosen)
                }
                _ => None,
            },
        };
        // Recorded by the runner, with the entry's acknowledgement (one Redis call).
        Ok(Handled::with(
            self.store.reply_write(message, &turns, &remember),
        ))
    }

    /// The reply to a message: a command's sentence or the responder's answer. `None`: a person
    /// took the conversation over while a slow responder worked, so nothing is sent.
    async fn decide(
        &self,
        message: &InboundMessage,
        history: &[Turn],
        command: Option<Command>,
        language: Language,
    ) -> Result<Option<Reply>, HandleError> {
        let texts = &self.options.texts;
        let reply = match command {
            Some(Command::Reset) => {
                tracing::info!(user = %message.user, "conversation reset by the user");
                Reply::text(texts.get(language, Sentence::Reset))
            }
            Some(Command::Help) => Reply::text(self.responder.help(language)),
            Some(Command::CouldNotListen) => {
                Reply::text(texts.get(language, Sentence::CouldNotListen))
            }
            Some(Command::Handoff) => Reply::text(self.handoff_text(language)),
            Some(Command::Language(LanguageRequest::Set(chosen))) => {
                tracing::info!(user = %message.user, language = chosen.code(), "the user chose a language");
                Reply::text(texts.get(chosen, Sentence::LanguageChosen))
            }
            Some(Command::Language(LanguageRequest::Menu)) => Reply::of(vec![language_menu(
                texts.get(language, Sentence::ChooseLanguage),
            )]),
            None => {
                // The quoted (or reacted to) turn, found by its digest among the kept ones.
                let replying_to = crate::store::turn::about(message)
                    .map(crate::store::turn::marker_digest)
                    .and_then(|digest| history.iter().position(|t| t.id.as_ref() == Some(&digest)));
                let history: Vec<HistoryTurn> = history.iter().map(history_turn).collect();
                let image = if self.responder.wants_images() {
                    transcription::user_image(&self.api, message).await
                } else {
                    None
                };
                let started = std::time::Instant::now();
                let reply = self
                    .responder
                    .respond(ResponderInput {
                        message,
                        history: &history,
                        language,
                        replying_to: replying_to.and_then(|at| history.get(at)),
                        image: image.as_ref().map(|file| {
                            (
                                file.bytes.as_ref(),
                                file.mime_type.as_deref().unwrap_or("image/jpeg"),
                            )
                        }),
                    })
                    .instrument(tracing::debug_span!(
                        "responder",
                        kind = self.options.responder_kind,
                        turns = history.len(),
                    ))
                    .await;
                metrics::histogram!(monitoring::RESPONDER_SECONDS, "tenant" => self.options.tenant.clone(), "kind" => self.options.responder_kind)
                    .record(started.elapsed().as_secs_f64());
                if started.elapsed() >= RECHECK_AFTER
                    && !self
                        .store
                        .bot_owns(&message.phone_number_id, &message.user)
                        .await?
                {
                    return Ok(None);
                }
                reply
            }
        };
        Ok(Some(reply))
    }

    /// A user's audio as the text message it says (`None`: not audio, or no transcription
    /// configured; `Err`: it could not be heard, logged). Runs after admission (`handle_voice`).
    async fn transcribed(&self, message: &InboundMessage) -> Option<Result<InboundMessage, ()>> {
        let transcriber = self.options.transcriber.as_ref()?;
        if !transcription::is_user_audio(message) {
            return None;
        }
        let started = std::time::Instant::now();
        Some(match transcriber.transcribe(&self.api, message).await {
            Ok(text) => {
                tracing::debug!(user = %message.user, elapsed_ms = started.elapsed().as_millis() as u64, "voice note transcribed");
                let mut heard = message.clone();
                heard.content = MessageContent::Text { body: text };
                Ok(heard)
            }
            Err(error) => {
                tracing::warn!(user = %message.user, error = %error_chain(&error), "could not transcribe a voice note");
                Err(())
            }
        })
    }

    /// A responder asked for a person to take over. Until conversation control lands this is
    /// only logged and recorded in the history (`[handoff] note`, by the caller). It runs once
    /// every part of the reply was sent and before the reply is recorded, so a crash in between
    /// runs it again on the retry: what it does must be idempotent.
    async fn hand_off(&self, message: &InboundMessage, note: Option<&str>) {
        // Idempotent: a retry sets the same deadline again (and the event goes out at least once).
        let until = crate::domain::clock::unix_ms()
            .saturating_add(i64::try_from(self.options.handoff_ms).unwrap_or(i64::MAX));
        let mut info = serde_json::json!({"reason": "requested", "by": "bot"});
        if let Some(note) = note {
            info["note"] = note.chars().take(500).collect::<String>().into();
        }
        let event = serde_json::json!({
            "by": "bot",
            "note": note,
            "message": {"id": message.id.as_str(), "kind": message.content.kind()},
        });
        match self
            .store
            .take_over(
                &message.phone_number_id,
                &message.user,
                until,
                &info,
                Some(&event),
            )
            .await
        {
            Ok(()) => {
                metrics::counter!(monitoring::HANDOFFS, "reason" => "requested").increment(1);
                tracing::info!(user = %message.user, "the responder handed the conversation to a person");
            }
            Err(error) => {
                tracing::warn!(user = %message.user, error = %error_chain(&error), "the responder asked for a person, but the handoff could not be stored");
            }
        }
    }

    /// What this message says about the conversation's language, to keep with it: the user's
    /// choice; else, with `conversation.language = auto`, a confident detection of a text the
    /// user wrote, or the language of the keywords the responder matched in it.
    fn language_claim(
        &self,
        message: &InboundMessage,
        command: Option<Command>,
    ) -> Option<LanguageClaim> {
        if let Some(Command::Language(LanguageRequest::Set(language))) = command {
            return Some(LanguageClaim {
                language,
                chosen: true,
            });
        }
        // A command (`/reset`) says nothing about a language; asking for a person in words does.
        let worded = matches!(command, None | Some(Command::Handoff));
        if !self.options.texts.detects() || message.origin != Origin::User || !worded {
            return None;
        }
        let MessageContent::Text { body } = &message.content else {
            return None;
        };
        i18n::detect(body)
            .or_else(|| self.responder.language_hint(body))
            .map(|language| LanguageClaim {
                language,
                chosen: false,
            })
    }

    /// The language to answer in: the one just chosen; for a menu's option (tapped or typed)
    /// the menu's, so a menu answers in the language it was opened in; else the
    /// conversation's, or the configured one.
    fn language(
        &self,
        message: &InboundMessage,
        command: Option<Command>,
        remembered: &Remembered,
    ) -> Language {
        if let Some(Command::Language(LanguageRequest::Set(chosen))) = command {
            return chosen;
        }
        let of_menu = match (&message.content, &remembered.menu) {
            (MessageContent::InteractiveReply { id, .. }, Some(menu)) if !remembered.chosen => menu
                .options
                .iter()
                .any(|o| o.id == *id)
                .then(|| menu.language())
                .flatten(),
            _ => None,
        };
        of_menu
            .or(remembered.language)
            .unwrap_or(self.options.texts.default_language())
    }

    /// What the bot answers a user asking for a person.
    fn handoff_text(&self, language: Language) -> String {
        if self.options.handoff_text.trim().is_empty() {
            self.options
                .texts
                .get(language, Sentence::HandoffRequested)
                .to_string()
        } else {
            self.options.handoff_text.clone()
        }
    }

    /// What was sent must be recorded, or a retry would send it again: retried through short
    /// Redis blips, then given up on (logged) rather than holding the conversation.
    async fn persist<T, F, Fut>(&self, write: F, message: &InboundMessage)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        self.persist_write(write, message.user.as_str()).await
    }

    async fn persist_write<T, F, Fut>(&self, write: F, user: &str)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let user = crate::domain::mask_user(user);
        let retries = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(7);
        let recorded = write
            .retry(retries)
            .notify(|error, _| {
                tracing::warn!(user = %user, error = %error_chain(error), "recording what was sent failed; retrying");
            })
            .await;
        if recorded.is_err() {
            tracing::error!(user = %user, "a message was sent but could not be recorded; a redelivery would send it again");
        }
    }

    /// A status of one of our messages: its turn's delivery state moves forward; a failure is
    /// counted by code, and Meta's 131047 on free-form text sends the re-engagement template
    /// once.
    async fn handle_status(
        &self,
        status: &StatusUpdate,
        lease: &LeaseGuard,
    ) -> Result<Handled, HandleError> {
        if matches!(status.status, DeliveryStatus::Other(_)) {
            return Ok(Handled::done());
        }
        let Some((pnid, user)) = status.conversation() else {
            return Ok(Handled::done());
        };
        let error = status.errors.first().map(|e| DeliveryError {
            code: e.code,
            title: e.title.clone(),
        });
        if status.status != DeliveryStatus::Failed {
            // Nothing here depends on the answer: the runner applies it with the entry's
            // acknowledgement (a reply brings three statuses: one Redis call each, not two).
            return Ok(Handled::with(self.store.status_write(
                &pnid,
                &user,
                &status.message_id,
                status.status.as_str(),
                error.as_ref(),
            )?));
        }
        let applied = self
            .store
            .apply_status(
                &pnid,
                &user,
                &status.message_id,
                status.status.as_str(),
                error.as_ref(),
            )
            .await?;
        let code = error.as_ref().map(|e| e.code);
        metrics::counter!(monitoring::DELIVERY_FAILURES, "tenant" => self.options.tenant.clone(), "code" => monitoring::code_label(code))
            .increment(1);
        tracing::info!(user = %user, code = code.unwrap_or(0), "Meta reports one of our messages failed");
        let template = &self.options.reengagement_template;
        if code == Some(window::REENGAGEMENT_CODE)
            && applied.found
            && applied.kind != "template"
            && !applied.reengaged
            && template.is_configured()
        {
            // The id makes it once per failed message, however often the status comes.
            let again = OutboundMessage {
                id: format!("re.{}", status.message_id),
                phone_number_id: pnid,
                to: user,
                source: OutboundSource::Notification,
                content: Action::Template {
                    name: template.name.clone(),
                    language: template.language.clone(),
                    components: match window::template_message(template) {
                        Some(Action::Template { components, .. }) => components,
                        _ => Vec::new(),
                    },
                },
                requested_at: crate::domain::clock::unix_secs(),
                reply_to: None,
                by: None,
            };
            self.handle_outbound(&again, true, lease).await?;
            // After the send: a crash in between leaves the flag unset, and the template's id
            // still keeps a redelivered failure from sending it twice.
            self.store
                .mark_reengaged(&again.phone_number_id, &again.to, &status.message_id)
                .await?;
        }
        Ok(Handled::done())
    }
}

/// `/idioma` alone: the shipped languages as buttons, each named in itself.
fn language_menu(question: &str) -> Action {
    Action::Buttons {
        text: question.to_string(),
        header: None,
        footer: None,
        buttons: Language::ALL
            .into_iter()
            .map(|language| {
                Choice::new(
                    format!("{}{}", i18n::LANGUAGE_ID_PREFIX, language.code()),
                    i18n::own_name(language),
                )
            })
            .collect(),
    }
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
    async fn handle(&self, item: &InboxItem, lease: &LeaseGuard) -> Result<Handled, HandleError> {
        match item {
            InboxItem::Message(message) => self.handle_message(message, lease).await,
            InboxItem::Status(status) => self.handle_status(status, lease).await,
            InboxItem::Outbound(out) => {
                self.handle_outbound(out, false, lease).await?;
                Ok(Handled::done())
            }
            InboxItem::Handover(handover) => {
                if self.store.set_routing(handover).await? && !handover.owned {
                    metrics::counter!(monitoring::HANDOFFS, "reason" => "routing").increment(1);
                }
                tracing::info!(user = %handover.user, owned = handover.owned, "conversation routing changed the owner");
                Ok(Handled::done())
            }
        }
    }

    /// A burst (`conversation.merge_window_ms`): every message is recorded, the newest one is
    /// answered with all of them in the history, and the others are marked answered by it. A
    /// message of the burst already answered (a retry) means everything before it was too.
    async fn handle_batch(
        &self,
        messages: &[InboundMessage],
        lease: &LeaseGuard,
    ) -> Result<Handled, HandleError> {
        let handoff = &self.options.handoff;
        // Voice notes to transcribe and commands take the one-by-one path.
        let plain = |m: &InboundMessage| {
            mode_of(m, handoff, false) == AdmitMode::Answer
                && command(&m.content, handoff).is_none()
                && !(self.options.transcriber.is_some() && transcription::is_user_audio(m))
        };
        if messages.len() < 2 || self.options.record_only || !messages.iter().all(plain) {
            let mut handled = Handled::done();
            for message in messages {
                // Each message sees the reply recorded for the one before.
                if let Some(write) = handled.write.take() {
                    self.store.apply(write).await?;
                }
                handled = self.handle_message(message, lease).await?;
            }
            return Ok(handled);
        }
        let mut pending: Vec<(&InboundMessage, u32)> = Vec::with_capacity(messages.len());
        let mut answered: Vec<&InboundMessage> = Vec::new();
        let mut history = Vec::new();
        let mut remembered = Remembered::default();
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
                    self.language_claim(message, None),
                )
                .await?
            {
                Admission::Answer {
                    history: turns,
                    remembered: state,
                } => {
                    pending.push((message, 0));
                    history = turns;
                    remembered = state;
                }
                Admission::Resume {
                    parts_sent,
                    history: turns,
                    remembered: state,
                } => {
                    pending.push((message, parts_sent));
                    history = turns;
                    remembered = state;
                }
                Admission::Done => answered.extend(pending.drain(..).map(|(m, _)| m)),
                Admission::Limited { .. } => {
                    metrics::counter!(monitoring::RATE_LIMITED, "tenant" => self.options.tenant.clone()).increment(1);
                }
                Admission::Recorded | Admission::WithPerson => {}
            }
        }
        if !answered.is_empty() {
            self.store.mark_answered(&answered).await?;
        }
        let Some(&(target, parts_sent)) = pending.last() else {
            return Ok(Handled::done());
        };
        tracing::debug!(user = %target.user, merged = pending.len(), "answering a burst once");
        // The reply's record comes before the others are marked answered by it: a redelivery
        // in between then finds the target done and marks them, instead of answering again.
        if let Some(write) = self
            .answer(target, &history, parts_sent, None, &remembered, lease)
            .await?
            .write
        {
            self.persist(|| self.store.apply(write.clone()), target)
                .await;
        }
        let others: Vec<&InboundMessage> = pending[..pending.len() - 1]
            .iter()
            .map(|(m, _)| *m)
            .collect();
        self.store.mark_answered(&others).await?;
        Ok(Handled::done())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_recognised() {
        let text = |t: &str| MessageContent::Text { body: t.into() };
        let handoff = HandoffDetector::new(&["asesor".into()]);
        assert_eq!(command(&text(" /RESET "), &handoff), Some(Command::Reset));
        assert_eq!(command(&text("/help"), &handoff), Some(Command::Help));
        assert_eq!(command(&text("help me /reset"), &handoff), None);
        assert_eq!(
            command(&text("quiero un asesor"), &handoff),
            Some(Command::Handoff)
        );
        assert_eq!(command(&text("/agent"), &handoff), Some(Command::Handoff));
    }

    #[test]
    fn bounded_cuts_at_a_character_boundary() {
        assert_eq!(bounded("héllo".into(), 2), "hé…");
        assert_eq!(bounded("héllo".into(), 5), "héllo");
    }
}
