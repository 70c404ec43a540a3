//! The one model of what the bot sends: an `Action` (text, buttons, list, media, location,
//! template, reaction, handoff) from the responder to the Graph API call. Its public JSON form
//! (`wire`: the http backend's answers, `rules.toml`, stored outbound messages) and Meta's
//! (`meta::cloud_api::message`) are the only other shapes, each at its edge.

pub mod stored;
pub mod validate;
pub mod wire;

use serde::{Deserialize, Serialize};

pub use validate::Violation;
pub use wire::{WireAction, WireError};

/// One thing the bot does in answer, sent in order.
/// Stored and exchanged in its public JSON form (`wire`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "WireAction", try_from = "WireAction")]
pub enum Action {
    /// A text of any length (split into WhatsApp's 4096-character messages when longer).
    Text(String),
    /// Up to 3 reply buttons under a text; a tap comes back as a `button_reply` with the id.
    Buttons {
        text: String,
        header: Option<String>,
        footer: Option<String>,
        buttons: Vec<Choice>,
    },
    /// A list opened by `button`: sections of rows (10 rows in all); a tap comes back as a
    /// `list_reply` with the row's id.
    List {
        text: String,
        header: Option<String>,
        footer: Option<String>,
        button: String,
        sections: Vec<Section>,
    },
    Media {
        kind: MediaKind,
        source: MediaSource,
        caption: Option<String>,
        /// Documents only: the name the user sees.
        filename: Option<String>,
    },
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
    /// A pre-approved template (the only thing that reaches a user outside the 24-hour window).
    Template {
        name: String,
        language: String,
        /// Meta's `components`, passed through as they are.
        components: Vec<serde_json::Value>,
    },
    /// A WhatsApp Flow (a form or booking screen inside WhatsApp) behind a button: opened at
    /// `screen` with `data`, or, without a screen, at what the Flows endpoint answers to `INIT`.
    Flow {
        text: String,
        header: Option<String>,
        footer: Option<String>,
        flow_id: String,
        /// Comes back with every request of this flow and in its `nfm_reply`.
        flow_token: String,
        /// The button's label.
        cta: String,
        screen: Option<String>,
        data: Option<serde_json::Value>,
        /// A flow not yet published (Meta's `mode: draft`).
        draft: bool,
    },
    /// A text with one button that opens `url` (Meta's `cta_url`).
    Link {
        text: String,
        header: Option<String>,
        footer: Option<String>,
        /// The button's label.
        label: String,
        url: String,
    },
    /// A text with a button that asks the user to share their location.
    AskLocation { text: String },
    /// A text with a button that asks the user to share their phone number (Meta's
    /// `request_contact_info`; the answer is a `contacts` message marked as requested).
    AskContact { text: String },
    /// A reaction to the message being answered.
    React { emoji: String },
    /// Hand the conversation to a person. Sends nothing itself; see `Engine::hand_off`.
    Handoff { note: Option<String> },
}

/// A reply button, or a row of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub id: String,
    pub title: String,
    /// List rows only.
    pub description: Option<String>,
}

impl Choice {
    /// A button, or a row without a description.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Choice {
        Choice {
            id: id.into(),
            title: title.into(),
            description: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Optional when the list has one section.
    pub title: Option<String>,
    pub rows: Vec<Choice>,
}

/// The kinds of media, one enum for what users send and what the bot sends.
pub use super::MediaKind;

/// A public HTTPS link, the id of media uploaded to Meta, or something wabot uploads first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    Link(String),
    Id(String),
    /// A file under `whatsapp.media_dir` (a relative name) or an http(s) URL wabot downloads:
    /// uploaded to Meta once, its media id kept in Redis and reused.
    Upload(String),
}

impl Action {
    /// A short label of an action for logs (never its content).
    pub fn label(&self) -> &'static str {
        match self {
            Action::Text(_) => "text",
            Action::Buttons { .. } => "buttons",
            Action::List { .. } => "list",
            Action::Media { kind, .. } => kind.as_str(),
            Action::Location { .. } => "location",
            Action::Template { .. } => "template",
            Action::Flow { .. } => "flow",
            Action::Link { .. } => "link",
            Action::AskLocation { .. } => "location_request",
            Action::AskContact { .. } => "contact_request",
            Action::React { .. } => "reaction",
            Action::Handoff { .. } => "handoff",
        }
    }

    /// The message type it is recorded as, which is Meta's `type` for it (`handoff` sends none).
    pub fn message_type(&self) -> &'static str {
        match self {
            Action::Text(_) => "text",
            Action::Buttons { .. }
            | Action::List { .. }
            | Action::Flow { .. }
            | Action::Link { .. }
            | Action::AskLocation { .. }
            | Action::AskContact { .. } => "interactive",
            Action::Media { kind, .. } => kind.as_str(),
            Action::Location { .. } => "location",
            Action::Template { .. } => "template",
            Action::React { .. } => "reaction",
            Action::Handoff { .. } => "handoff",
        }
    }

    /// How an action reads in the history, and the message type it is recorded as.
    pub fn describe(&self) -> (String, &'static str) {
        (self.history_text(), self.message_type())
    }

    fn history_text(&self) -> String {
        let with = |label: &str, extra: Option<&str>| match extra.filter(|e| !e.is_empty()) {
            Some(extra) => format!("[{label}] {extra}"),
            None => format!("[{label}]"),
        };
        match self {
            Action::Text(text) => text.clone(),
            Action::Buttons { text, buttons, .. } => {
                let titles: Vec<&str> = buttons.iter().map(|b| b.title.as_str()).collect();
                format!("[buttons: {}] {text}", titles.join(" | "))
            }
            Action::List { text, sections, .. } => {
                let titles: Vec<&str> = sections
                    .iter()
                    .flat_map(|s| &s.rows)
                    .map(|r| r.title.as_str())
                    .collect();
                format!("[list: {}] {text}", titles.join(" | "))
            }
            Action::Media { kind, caption, .. } => with(kind.as_str(), caption.as_deref()),
            Action::Location { name, address, .. } => {
                let place = [name.as_deref(), address.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ");
                with("location", Some(&place))
            }
            Action::Template { name, .. } => format!("[template: {name}]"),
            Action::Flow { text, cta, .. } => format!("[flow: {cta}] {text}"),
            Action::Link {
                text, label, url, ..
            } => format!("[link: {label} {url}] {text}"),
            Action::AskLocation { text } => format!("[location request] {text}"),
            Action::AskContact { text } => format!("[contact request] {text}"),
            Action::React { emoji } => with("reaction", Some(emoji)),
            Action::Handoff { note } => with("handoff", note.as_deref()),
        }
    }

    /// What the user should still read when the rich form cannot be sent.
    pub fn as_text(&self) -> Option<String> {
        let options = |text: &str, choices: &mut dyn Iterator<Item = &Choice>| {
            let mut out = text.to_string();
            for choice in choices {
                out.push_str("\n• ");
                out.push_str(&choice.title);
                if let Some(description) = &choice.description {
                    out.push_str(" – ");
                    out.push_str(description);
                }
            }
            out
        };
        let text = match self {
            Action::Text(text) => text.clone(),
            Action::Buttons { text, buttons, .. } => options(text, &mut buttons.iter()),
            Action::List { text, sections, .. } => {
                options(text, &mut sections.iter().flat_map(|s| s.rows.iter()))
            }
            Action::Media {
                source, caption, ..
            } => [
                caption.clone(),
                match source {
                    MediaSource::Link(link) => Some(link.clone()),
                    MediaSource::Id(_) | MediaSource::Upload(_) => None,
                },
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("\n"),
            Action::Location {
                latitude,
                longitude,
                name,
                address,
            } => [
                name.clone(),
                address.clone(),
                Some(format!(
                    "https://www.google.com/maps?q={latitude},{longitude}"
                )),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("\n"),
            Action::React { emoji } => emoji.clone(),
            // The form itself cannot be written out.
            Action::Flow { text, .. }
            | Action::AskLocation { text }
            | Action::AskContact { text } => text.clone(),
            Action::Link {
                text, label, url, ..
            } => format!("{text}\n{label}: {url}"),
            Action::Template { .. } | Action::Handoff { .. } => String::new(),
        };
        let text = text.trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    /// Checked against Meta's documented limits.
    pub fn check(&self) -> Result<(), Violation> {
        validate::check(self)
    }
}
