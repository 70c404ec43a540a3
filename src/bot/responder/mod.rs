//! Responders: what the bot answers. One trait, four kinds chosen by `responder.kind`:
//! `rules` (keywords/regex from a TOML file), `echo`, `openai` (any Chat Completions API) and
//! `http` (the business's own backend).

mod http;
mod openai;
mod rules;

use std::sync::Arc;

use async_trait::async_trait;

use crate::bot::i18n::{Language, Texts};
use crate::config::{ResponderKind, Settings};
pub use crate::domain::action::{Action, Choice, MediaKind, MediaSource, Section};
use crate::domain::{InboundMessage, MessageContent};
pub use http::HttpResponder;
pub use openai::OpenAiResponder;
pub use rules::{RulesError, RulesResponder};

/// Who said a turn of the history, as responders see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    User,
    Bot,
    /// A person of the business (an operator, or the owner on the WhatsApp Business app).
    Operator,
}

/// One turn of the conversation as responders see it (not the stored row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryTurn {
    pub speaker: Speaker,
    /// The text, or a bracketed description of what was sent (`[image] caption`).
    pub text: String,
    /// Message type: `text`, `image`, `interactive`...
    pub kind: String,
    /// Unix seconds.
    pub at: i64,
    /// Dropped by the rate limit (not answered at the time).
    pub rate_limited: bool,
}

/// What a responder sees: the message and the conversation so far (ending with this message;
/// empty for a responder that does not read history).
pub struct ResponderInput<'a> {
    pub message: &'a InboundMessage,
    pub history: &'a [HistoryTurn],
    /// The conversation's language: answer in it.
    pub language: Language,
    /// The bytes and MIME type of the image the user sent, for a responder that
    /// `wants_images` (downloaded by the engine; `None` otherwise or when that failed).
    pub image: Option<(&'a [u8], &'a str)>,
    /// The turn the user quoted (swiped to reply to) or reacted to, when the kept history still
    /// has it.
    pub replying_to: Option<&'a HistoryTurn>,
}

/// A responder's answer: the actions to take, in order; none says nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub actions: Vec<Action>,
    /// The message its first message quotes (WhatsApp shows it above, like a user's swipe to
    /// reply); `None`: nothing quoted.
    pub quote: Option<Quote>,
}

/// What a reply quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quote {
    /// The user's message being answered.
    Answered,
    /// Any message of the conversation, by its wamid.
    Message(String),
}

impl Reply {
    pub fn of(actions: Vec<Action>) -> Reply {
        Reply {
            actions,
            quote: None,
        }
    }

    pub fn text(text: impl Into<String>) -> Reply {
        Reply::of(vec![Action::Text(text.into())])
    }

    /// Say nothing (e.g. to a reaction).
    pub fn nothing() -> Reply {
        Reply::default()
    }
}

/// Produces the answer to one message. Never fails: a responder that depends on a remote
/// service answers with its configured fallback text when that service fails.
#[async_trait]
pub trait Responder: Send + Sync + 'static {
    async fn respond(&self, input: ResponderInput<'_>) -> Reply;
    /// The answer to `/help`.
    fn help(&self, language: Language) -> String;
    /// Whether it reads the history (the engine does not fetch it otherwise).
    fn reads_history(&self) -> bool {
        true
    }
    /// Whether a user's reactions are given to it (the others never see them: a reaction is
    /// kept on its turn and not answered).
    fn hears_reactions(&self) -> bool {
        false
    }
    /// Whether the engine should download a user's image for it (`ResponderInput::image`).
    fn wants_images(&self) -> bool {
        false
    }
    /// The language a text is written in as far as this responder can tell (the `rules`
    /// responder: the language of the keywords it matches), for texts too short to detect
    /// ("hola").
    fn language_hint(&self, _text: &str) -> Option<Language> {
        None
    }
}

/// `echo: <text>` (tests, benchmarks, smoke checks).
pub struct EchoResponder;

#[async_trait]
impl Responder for EchoResponder {
    async fn respond(&self, input: ResponderInput<'_>) -> Reply {
        Reply::text(match &input.message.content {
            MessageContent::Text { body } => format!("echo: {body}"),
            other => format!("echo: {}", other.describe()),
        })
    }

    fn help(&self, _: Language) -> String {
        "I repeat what you write. Type /reset to clear the conversation.".into()
    }

    fn reads_history(&self) -> bool {
        false
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("could not build the HTTP client of the {0} responder")]
    Http(&'static str, #[source] reqwest::Error),
}

/// The responder the settings ask for; `texts` gives the built-in sentences it falls back on.
pub fn build(settings: &Settings, texts: Arc<Texts>) -> Result<Arc<dyn Responder>, ResponderError> {
    Ok(match settings.responder.kind {
        ResponderKind::Echo => Arc::new(EchoResponder),
        ResponderKind::Rules => {
            Arc::new(RulesResponder::load(&settings.responder.rules_file, texts)?)
        }
        ResponderKind::Openai => Arc::new(
            OpenAiResponder::new(&settings.responder.openai, texts)
                .map_err(|e| ResponderError::Http("openai", e))?,
        ),
        ResponderKind::Http => Arc::new(
            HttpResponder::new(&settings.responder.http, texts)
                .map_err(|e| ResponderError::Http("http", e))?,
        ),
    })
}
