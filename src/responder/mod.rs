//! Responders: what the bot answers. One trait, three kinds chosen by `responder.kind`:
//! `rules` (keywords/regex from a TOML file), `echo`, and `openai` (any Chat Completions API).

mod openai;
mod rules;

use std::sync::Arc;

use async_trait::async_trait;

use crate::configuration::{ResponderKind, Settings};
use crate::domain::{InboundMessage, MessageContent};
use crate::store::conversation::Turn;
pub use openai::OpenAiResponder;
pub use rules::{RulesError, RulesResponder};

/// What a responder sees: the message and the conversation so far (ending with this message).
pub struct ResponderInput<'a> {
    pub message: &'a InboundMessage,
    pub history: &'a [Turn],
}

/// A responder's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Text(String),
    /// Say nothing (e.g. to a reaction).
    Nothing,
}

/// Produces the answer to one message. Never fails: a responder that depends on a remote
/// service answers with its configured fallback text when that service fails.
#[async_trait]
pub trait Responder: Send + Sync + 'static {
    async fn respond(&self, input: ResponderInput<'_>) -> Reply;
    /// The answer to `/help`.
    fn help(&self) -> String;
}

/// `echo: <text>` (tests, benchmarks, smoke checks).
pub struct EchoResponder;

#[async_trait]
impl Responder for EchoResponder {
    async fn respond(&self, input: ResponderInput<'_>) -> Reply {
        Reply::Text(match &input.message.content {
            MessageContent::Text { body } => format!("echo: {body}"),
            other => format!("echo: {}", other.describe()),
        })
    }

    fn help(&self) -> String {
        "I repeat what you write. Type /reset to clear the conversation.".into()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("could not build the HTTP client of the openai responder")]
    Http(#[source] reqwest::Error),
}

/// The responder the settings ask for.
pub fn build(settings: &Settings) -> Result<Arc<dyn Responder>, ResponderError> {
    Ok(match settings.responder.kind {
        ResponderKind::Echo => Arc::new(EchoResponder),
        ResponderKind::Rules => Arc::new(RulesResponder::load(&settings.responder.rules_file)?),
        ResponderKind::Openai => Arc::new(
            OpenAiResponder::new(&settings.responder.openai).map_err(ResponderError::Http)?,
        ),
    })
}
