//! The `http` responder: the business's own backend (any language) decides. Each message is
//! POSTed as JSON signed with `X-Wabot-Signature-256` (HMAC-SHA256 of the raw body with
//! `responder.http.secret`); the backend answers `{"actions": [...]}` (docs/http-responder.md).
//! Timeouts, network errors, 429 and 5xx are retried a bounded number of times, then the
//! fallback text is said; a malformed answer is logged (status, length, where it broke) and answered with
//! the fallback too.

use backon::{ExponentialBuilder, Retryable};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{HistoryTurn, Quote, Reply, Responder, ResponderInput, Speaker};
use crate::bot::i18n::{Language, Sentence, Texts};
use crate::config::HttpResponderSettings;
use crate::domain::action::wire::{into_actions, WireAction, WireError};
use crate::domain::{InboundMessage, MessageContent};
use crate::meta::cloud_api::read_limited;
use crate::ops::telemetry::error_chain;

/// The header carrying the body's signature, like Meta's `X-Hub-Signature-256`.
pub use crate::meta::webhook::WABOT_SIGNATURE_HEADER as SIGNATURE_HEADER;
/// Largest answer read; a real one is a few kilobytes.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

pub struct HttpResponder {
    http: reqwest::Client,
    url: String,
    secret: SecretString,
    attempts: u32,
    retry_base: Duration,
    fallback: Option<String>,
    reactions: bool,
    texts: Arc<Texts>,
}

/// What the backend receives (docs/http-responder.schema.json).
#[derive(Debug, Serialize)]
pub struct BackendRequest<'a> {
    pub message: WireMessage<'a>,
    pub contact: WireContact<'a>,
    pub history: Vec<WireTurn<'a>>,
    pub conversation: WireConversation<'a>,
}

#[derive(Debug, Serialize)]
pub struct WireMessage<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What the user wrote, a tapped button's or row's title, a caption; `null` otherwise.
    pub text: Option<&'a str>,
    /// The id of the tapped button or list row (or a template button's payload).
    pub reply_id: Option<&'a str>,
    /// The message the user quoted (swiped to reply to): its wamid, and who said what when the
    /// kept history still has it; `null` when nothing was quoted.
    pub replying_to: Option<WireQuote<'a>>,
    /// A reaction: the emoji (`null`: taken back) and the message it is about; `null` for
    /// every other message.
    pub reaction: Option<WireReaction<'a>>,
    /// A completed WhatsApp Flow's answers (`nfm_reply`'s `response_json`, parsed; its
    /// `flow_token` names the flow that was sent); `null` otherwise.
    pub flow: Option<serde_json::Value>,
    /// Unix seconds.
    pub timestamp: i64,
    /// Everything wabot knows about the message, by `type`.
    pub content: &'a MessageContent,
}

#[derive(Debug, Serialize)]
pub struct WireQuote<'a> {
    pub id: &'a str,
    /// `user`, `bot` or `operator`; `null` once the quoted turn left the kept history.
    pub role: Option<&'static str>,
    pub text: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct WireReaction<'a> {
    pub emoji: Option<&'a str>,
    pub to: WireQuote<'a>,
}

#[derive(Debug, Serialize)]
pub struct WireContact<'a> {
    /// The key of the conversation: the phone number (`wa_id`), or the business-scoped user id.
    pub id: &'a str,
    pub wa_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub name: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct WireTurn<'a> {
    /// `user`, `bot` or `operator`.
    pub role: &'static str,
    pub text: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub at: i64,
}

#[derive(Debug, Serialize)]
pub struct WireConversation<'a> {
    pub phone_number_id: &'a str,
    /// Unix seconds until which free-form messages may be sent (after it: templates only).
    pub window_open_until: i64,
    pub language: &'static str,
}

#[derive(Debug, Deserialize)]
struct BackendAnswer {
    actions: Vec<WireAction>,
    /// `true`: the first message quotes the user's message; a wamid: quotes that message.
    #[serde(default)]
    quote: Option<WireQuoteAnswer>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WireQuoteAnswer {
    Answered(bool),
    Message(String),
}

/// Longest wamid accepted as a quote (Meta's are ~60 characters).
const MAX_QUOTE_ID: usize = 256;

impl WireQuoteAnswer {
    fn into_quote(self) -> Result<Option<Quote>, WireError> {
        Ok(match self {
            WireQuoteAnswer::Answered(yes) => yes.then_some(Quote::Answered),
            WireQuoteAnswer::Message(id) => {
                let id = id.trim();
                if id.is_empty() || id.len() > MAX_QUOTE_ID {
                    return Err(WireError::Quote);
                }
                Some(Quote::Message(id.to_string()))
            }
        })
    }
}

#[derive(Debug, thiserror::Error)]
enum BackendError {
    #[error("the backend did not answer in time")]
    Timeout(#[source] reqwest::Error),
    #[error("could not reach the backend")]
    Network(#[source] reqwest::Error),
    // Lengths, not contents: an error page or a half answer can repeat the user's words.
    #[error("the backend answered HTTP {status} ({bytes} bytes)")]
    Status { status: u16, bytes: usize },
    #[error("the backend's answer (HTTP {status}) is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge { status: u16 },
    #[error("the backend's answer (HTTP {status}, {bytes} bytes) is not {{\"actions\": [...]}}: {reason}")]
    Malformed {
        status: u16,
        reason: String,
        bytes: usize,
    },
    #[error("the backend's answer (HTTP {status}) has an unusable action")]
    Action {
        status: u16,
        #[source]
        source: WireError,
    },
}

/// Where the answer broke and what kind of error, not serde's message, which quotes the
/// offending value (possibly the user's words).
fn malformed(status: u16, answer: &[u8], error: &serde_json::Error) -> BackendError {
    BackendError::Malformed {
        status,
        reason: format!(
            "{:?} error at line {} column {}",
            error.classify(),
            error.line(),
            error.column()
        ),
        bytes: answer.len(),
    }
}

impl BackendError {
    /// Worth another try: the backend may be restarting or overloaded.
    fn retryable(&self) -> bool {
        match self {
            BackendError::Timeout(_) | BackendError::Network(_) => true,
            BackendError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

impl HttpResponder {
    pub fn new(
        settings: &HttpResponderSettings,
        texts: Arc<Texts>,
    ) -> Result<HttpResponder, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            // A redirect would re-send the body (signed, or the user's words) and its
            // credentials to wherever the Location points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wabot/", env!("CARGO_PKG_VERSION")))
            // reqwest is built with HTTP/2 for the Graph API's opt-in; an h2 backend that
            // allows fewer streams than the worker concurrency would queue calls behind one
            // connection, so the backends keep one HTTP/1.1 connection per call in flight.
            .http1_only()
            .build()?;
        Ok(HttpResponder {
            http,
            url: settings.url.clone(),
            secret: settings.secret.clone(),
            attempts: settings.attempts.max(1),
            retry_base: Duration::from_millis(settings.retry_base_ms),
            fallback: Some(settings.fallback.clone()).filter(|f| !f.trim().is_empty()),
            reactions: settings.reactions,
            texts,
        })
    }

    /// The request body for `input`, as bytes (what is signed is exactly what is sent).
    pub fn body(input: &ResponderInput<'_>) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&request(
            input.message,
            input.history,
            input.language,
            input.replying_to,
        ))
    }

    async fn call(&self, body: &[u8]) -> Result<Reply, BackendError> {
        let signature = crate::meta::webhook::sign(self.secret.expose_secret(), body);
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                BackendError::Timeout(e)
            } else {
                BackendError::Network(e)
            }
        };
        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        let answer = read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(classify)?
            .ok_or(BackendError::TooLarge { status })?;
        if !(200..300).contains(&status) {
            return Err(BackendError::Status {
                status,
                bytes: answer.len(),
            });
        }
        let parsed: BackendAnswer =
            serde_json::from_slice(&answer).map_err(|e| malformed(status, &answer, &e))?;
        let actions = into_actions(parsed.actions)
            .map_err(|source| BackendError::Action { status, source })?;
        let quote = parsed
            .quote
            .map(WireQuoteAnswer::into_quote)
            .transpose()
            .map_err(|source| BackendError::Action { status, source })?
            .flatten();
        Ok(Reply { actions, quote })
    }

    fn fallback(&self, language: Language) -> Reply {
        Reply::text(
            self.fallback
                .clone()
                .unwrap_or_else(|| self.texts.get(language, Sentence::Fallback).to_string()),
        )
    }
}

fn speaker_name(speaker: Speaker) -> &'static str {
    match speaker {
        Speaker::User => "user",
        Speaker::Bot => "bot",
        Speaker::Operator => "operator",
    }
}

fn request<'a>(
    message: &'a InboundMessage,
    history: &'a [HistoryTurn],
    language: Language,
    replying_to: Option<&'a HistoryTurn>,
) -> BackendRequest<'a> {
    let reply_id = match &message.content {
        MessageContent::InteractiveReply { id, .. } => Some(id.as_str()),
        MessageContent::TemplateButton { payload, .. } => Some(payload.as_str()),
        _ => None,
    };
    // The turn a quote or a reaction is about, when the kept history still has it.
    let quote = |id: &'a str| WireQuote {
        id,
        role: replying_to.map(|t| speaker_name(t.speaker)),
        text: replying_to.map(|t| t.text.as_str()),
    };
    let received = if message.timestamp > 0 {
        message.timestamp
    } else {
        crate::domain::clock::unix_secs()
    };
    BackendRequest {
        message: WireMessage {
            id: message.id.as_str(),
            kind: message.content.kind(),
            text: message.content.text(),
            reply_id,
            replying_to: crate::store::turn::quoted_by(message)
                .and(message.reply_to.as_deref())
                .map(quote),
            reaction: match &message.content {
                MessageContent::Reaction { message_id, emoji } => Some(WireReaction {
                    emoji: emoji.as_deref().filter(|e| !e.is_empty()),
                    to: quote(message_id),
                }),
                _ => None,
            },
            flow: match &message.content {
                MessageContent::InteractiveReply {
                    reply: crate::domain::InteractiveKind::NfmReply,
                    description: Some(json),
                    ..
                } => serde_json::from_str(json).ok(),
                _ => None,
            },
            timestamp: message.timestamp,
            content: &message.content,
        },
        contact: WireContact {
            id: message.user.as_str(),
            wa_id: message.sender.phone.as_deref(),
            user_id: message.sender.bsuid.as_deref(),
            name: message.sender.profile_name.as_deref(),
        },
        history: history
            .iter()
            .map(|turn| WireTurn {
                role: speaker_name(turn.speaker),
                text: &turn.text,
                kind: &turn.kind,
                at: turn.at,
            })
            .collect(),
        conversation: WireConversation {
            phone_number_id: message.phone_number_id.as_str(),
            window_open_until: received + crate::meta::window::WINDOW_MS / 1000,
            language: language.code(),
        },
    }
}

#[async_trait]
impl Responder for HttpResponder {
    async fn respond(&self, input: ResponderInput<'_>) -> Reply {
        let reaction = matches!(input.message.content, MessageContent::Reaction { .. });
        if matches!(input.message.content, MessageContent::System { .. })
            || (reaction && !self.reactions)
        {
            return Reply::nothing();
        }
        let body = match HttpResponder::body(&input) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(wamid = %input.message.id, error = %error, "could not encode the backend request");
                return self.fallback(input.language);
            }
        };
        let retries = ExponentialBuilder::default()
            .with_min_delay(self.retry_base)
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(self.attempts.saturating_sub(1) as usize);
        let started = std::time::Instant::now();
        let answer = (|| self.call(&body))
            .retry(retries)
            .when(|error: &BackendError| error.retryable())
            .notify(|error, _| {
                tracing::warn!(wamid = %input.message.id, error = %error_chain(error), "backend call failed; retrying");
            })
            .await;
        match answer {
            Ok(reply) => {
                tracing::debug!(
                    actions = reply.actions.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "backend answered"
                );
                reply
            }
            Err(error) if reaction => {
                // Nobody waits for an answer to a 👍: no apology for one.
                tracing::warn!(wamid = %input.message.id, error = %error_chain(&error), "backend call about a reaction failed; nothing is said");
                Reply::nothing()
            }
            Err(error) => {
                tracing::warn!(
                    wamid = %input.message.id,
                    error = %error_chain(&error),
                    "backend call failed; answering with the fallback text"
                );
                self.fallback(input.language)
            }
        }
    }

    fn hears_reactions(&self) -> bool {
        self.reactions
    }

    fn help(&self, language: Language) -> String {
        self.texts.get(language, Sentence::Help).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_lengths_never_what_the_backend_wrote() {
        let answer = br#"{"actions": "the user wrote: my card is 4111"}"#;
        let error = serde_json::from_slice::<BackendAnswer>(answer).expect_err("not actions");
        let logged = malformed(200, answer, &error).to_string();
        assert!(!logged.contains("4111"), "{logged}");
        assert!(
            logged.contains("46 bytes") && logged.contains("line 1"),
            "{logged}"
        );
        let status = BackendError::Status {
            status: 500,
            bytes: 12,
        }
        .to_string();
        assert_eq!(status, "the backend answered HTTP 500 (12 bytes)");
    }

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        let status = |status| BackendError::Status { status, bytes: 0 };
        assert!(status(500).retryable());
        assert!(status(503).retryable());
        assert!(status(429).retryable());
        assert!(!status(400).retryable());
        assert!(!status(404).retryable());
        assert!(!BackendError::TooLarge { status: 200 }.retryable());
    }
}
