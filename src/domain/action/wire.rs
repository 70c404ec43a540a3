//! The action schema responders receive from outside (`http` backends' JSON, `rules.toml`,
//! the model's `actions` tool), kept apart from the domain `Action` so the public contract
//! (docs/http-responder.md) can stay stable while the domain type changes.

use serde::{Deserialize, Serialize};

use super::{Action, Choice, MediaKind, MediaSource, Section};

/// One action as backends write it: `{"type": "text", "text": "Hola"}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireAction {
    Text {
        text: String,
    },
    Buttons {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<String>,
        buttons: Vec<WireChoice>,
    },
    List {
        text: String,
        /// The label of the button that opens the list.
        button: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<String>,
        sections: Vec<WireSection>,
    },
    Image(WireMedia),
    Document(WireMedia),
    Audio(WireMedia),
    Video(WireMedia),
    /// A WebP sticker: no caption.
    Sticker(WireMedia),
    Location {
        latitude: f64,
        longitude: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    Template {
        name: String,
        language: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        components: Vec<serde_json::Value>,
    },
    Flow(WireFlow),
    /// `{"type": "link", "text": ..., "label": "See dates", "url": "https://..."}`.
    Link {
        text: String,
        label: String,
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        footer: Option<String>,
    },
    LocationRequest {
        text: String,
    },
    ContactRequest {
        text: String,
    },
    Reaction {
        emoji: String,
    },
    Handoff {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WireChoice {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WireSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub rows: Vec<WireChoice>,
}

/// `link` (public HTTPS URL), `id` (uploaded media) or `upload` (a file or URL wabot uploads),
/// exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WireMedia {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("a {0} action needs exactly one of `link`, `id` and `upload`")]
    MediaSource(&'static str),
    #[error("`quote` is `true`, `false` or a message id (at most 256 characters)")]
    Quote,
}

impl WireAction {
    /// The domain action; Meta's limits are checked later (`Action::check`).
    pub fn into_action(self) -> Result<Action, WireError> {
        Ok(match self {
            WireAction::Text { text } => Action::Text(text),
            WireAction::Buttons {
                text,
                header,
                footer,
                buttons,
            } => Action::Buttons {
                text,
                header,
                footer,
                buttons: buttons.into_iter().map(WireChoice::into_choice).collect(),
            },
            WireAction::List {
                text,
                button,
                header,
                footer,
                sections,
            } => Action::List {
                text,
                header,
                footer,
                button,
                sections: sections
                    .into_iter()
                    .map(|s| Section {
                        title: s.title,
                        rows: s.rows.into_iter().map(WireChoice::into_choice).collect(),
                    })
                    .collect(),
            },
            WireAction::Image(media) => media.into_action(MediaKind::Image)?,
            WireAction::Document(media) => media.into_action(MediaKind::Document)?,
            WireAction::Audio(media) => media.into_action(MediaKind::Audio)?,
            WireAction::Video(media) => media.into_action(MediaKind::Video)?,
            WireAction::Sticker(media) => media.into_action(MediaKind::Sticker)?,
            WireAction::Location {
                latitude,
                longitude,
                name,
                address,
            } => Action::Location {
                latitude,
                longitude,
                name,
                address,
            },
            WireAction::Template {
                name,
                language,
                components,
            } => Action::Template {
                name,
                language,
                components,
            },
            WireAction::Flow(flow) => Action::Flow {
                text: flow.text,
                header: flow.header,
                footer: flow.footer,
                flow_id: flow.flow_id,
                flow_token: flow.flow_token,
                cta: flow.cta,
                screen: flow.screen,
                data: flow.data,
                draft: flow.draft,
            },
            WireAction::Link {
                text,
                label,
                url,
                header,
                footer,
            } => Action::Link {
                text,
                header,
                footer,
                label,
                url,
            },
            WireAction::LocationRequest { text } => Action::AskLocation { text },
            WireAction::ContactRequest { text } => Action::AskContact { text },
            WireAction::Reaction { emoji } => Action::React { emoji },
            WireAction::Handoff { note } => Action::Handoff { note },
        })
    }
}

impl WireChoice {
    fn into_choice(self) -> Choice {
        Choice {
            id: self.id,
            title: self.title,
            description: self.description,
        }
    }
}

impl WireMedia {
    fn into_action(self, kind: MediaKind) -> Result<Action, WireError> {
        let source = match (self.link, self.id, self.upload) {
            (Some(link), None, None) => MediaSource::Link(link),
            (None, Some(id), None) => MediaSource::Id(id),
            (None, None, Some(upload)) => MediaSource::Upload(upload),
            _ => return Err(WireError::MediaSource(kind.as_str())),
        };
        Ok(Action::Media {
            kind,
            source,
            caption: self.caption,
            filename: self.filename,
        })
    }
}

impl TryFrom<WireAction> for Action {
    type Error = WireError;

    fn try_from(wire: WireAction) -> Result<Action, WireError> {
        wire.into_action()
    }
}

impl From<Action> for WireAction {
    fn from(action: Action) -> WireAction {
        let choice = |c: Choice| WireChoice {
            id: c.id,
            title: c.title,
            description: c.description,
        };
        match action {
            Action::Text(text) => WireAction::Text { text },
            Action::Buttons {
                text,
                header,
                footer,
                buttons,
            } => WireAction::Buttons {
                text,
                header,
                footer,
                buttons: buttons.into_iter().map(choice).collect(),
            },
            Action::List {
                text,
                header,
                footer,
                button,
                sections,
            } => WireAction::List {
                text,
                button,
                header,
                footer,
                sections: sections
                    .into_iter()
                    .map(|s| WireSection {
                        title: s.title,
                        rows: s.rows.into_iter().map(choice).collect(),
                    })
                    .collect(),
            },
            Action::Media {
                kind,
                source,
                caption,
                filename,
            } => {
                let (link, id, upload) = match source {
                    MediaSource::Link(link) => (Some(link), None, None),
                    MediaSource::Id(id) => (None, Some(id), None),
                    MediaSource::Upload(upload) => (None, None, Some(upload)),
                };
                let media = WireMedia {
                    link,
                    id,
                    upload,
                    caption,
                    filename,
                };
                match kind {
                    MediaKind::Image => WireAction::Image(media),
                    MediaKind::Document => WireAction::Document(media),
                    MediaKind::Audio => WireAction::Audio(media),
                    MediaKind::Video => WireAction::Video(media),
                    MediaKind::Sticker => WireAction::Sticker(media),
                }
            }
            Action::Location {
                latitude,
                longitude,
                name,
                address,
            } => WireAction::Location {
                latitude,
                longitude,
                name,
                address,
            },
            Action::Template {
                name,
                language,
                components,
            } => WireAction::Template {
                name,
                language,
                components,
            },
            Action::Flow {
                text,
                header,
                footer,
                flow_id,
                flow_token,
                cta,
                screen,
                data,
                draft,
            } => WireAction::Flow(WireFlow {
                text,
                header,
                footer,
                flow_id,
                flow_token,
                cta,
                screen,
                data,
                draft,
            }),
            Action::Link {
                text,
                header,
                footer,
                label,
                url,
            } => WireAction::Link {
                text,
                label,
                url,
                header,
                footer,
            },
            Action::AskLocation { text } => WireAction::LocationRequest { text },
            Action::AskContact { text } => WireAction::ContactRequest { text },
            Action::React { emoji } => WireAction::Reaction { emoji },
            Action::Handoff { note } => WireAction::Handoff { note },
        }
    }
}

/// `{"type": "flow", "text": "Book a visit", "flow_id": "...", "flow_token": "...", "cta":
/// "Book", "screen": "DETAILS", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct WireFlow {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    pub flow_id: String,
    pub flow_token: String,
    pub cta: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draft: bool,
}

/// A list of wire actions as domain actions; the first bad one fails them all (a backend's
/// half-understood answer is worse than its fallback).
pub fn into_actions(actions: Vec<WireAction>) -> Result<Vec<Action>, WireError> {
    actions.into_iter().map(WireAction::into_action).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shapes_parse() {
        let actions: Vec<WireAction> = serde_json::from_value(serde_json::json!([
            {"type": "text", "text": "Hola"},
            {"type": "buttons", "text": "¿Algo más?",
             "buttons": [{"id": "yes", "title": "Sí"}, {"id": "no", "title": "No"}]},
            {"type": "image", "link": "https://example.com/a.jpg", "caption": "..."},
            {"type": "list", "text": "Menú", "button": "Ver", "sections": [
                {"rows": [{"id": "a", "title": "A", "description": "first"}]}]},
            {"type": "location", "latitude": 40.4, "longitude": -3.7, "name": "Sol"},
            {"type": "template", "name": "hello_world", "language": "en_US"},
            {"type": "reaction", "emoji": "👍"},
            {"type": "handoff"},
            {"type": "document", "id": "123", "filename": "a.pdf"}
        ]))
        .expect("parses");
        let actions = into_actions(actions).expect("converts");
        assert_eq!(actions[0], Action::Text("Hola".into()));
        assert!(matches!(&actions[1], Action::Buttons { buttons, .. } if buttons.len() == 2));
        assert!(matches!(
            &actions[2],
            Action::Media { kind: MediaKind::Image, source: MediaSource::Link(l), .. } if l == "https://example.com/a.jpg"
        ));
        assert_eq!(actions[7], Action::Handoff { note: None });
        assert!(matches!(
            &actions[8],
            Action::Media { kind: MediaKind::Document, source: MediaSource::Id(i), .. } if i == "123"
        ));
    }

    #[test]
    fn every_action_reads_back_as_it_was_written() {
        let written = serde_json::json!([
            {"type": "text", "text": "Hola"},
            {"type": "buttons", "text": "¿Algo más?", "footer": "f",
             "buttons": [{"id": "yes", "title": "Sí"}, {"id": "no", "title": "No"}]},
            {"type": "image", "link": "https://example.com/a.jpg", "caption": "..."},
            {"type": "list", "text": "Menú", "button": "Ver", "header": "h", "sections": [
                {"title": "t", "rows": [{"id": "a", "title": "A", "description": "first"}]}]},
            {"type": "location", "latitude": 40.4, "longitude": -3.7, "name": "Sol"},
            {"type": "template", "name": "hello_world", "language": "en_US",
             "components": [{"type": "body"}]},
            {"type": "reaction", "emoji": "👍"},
            {"type": "handoff", "note": "n"},
            {"type": "document", "id": "123", "filename": "a.pdf"},
            {"type": "audio", "id": "9"},
            {"type": "video", "link": "https://example.com/v.mp4"}
        ]);
        let actions: Vec<Action> = serde_json::from_value(written.clone()).expect("parses");
        assert_eq!(actions.len(), 11);
        assert_eq!(serde_json::to_value(&actions).expect("writes"), written);
    }

    #[test]
    fn media_needs_one_source_and_unknown_types_are_refused() {
        let both: Vec<WireAction> = serde_json::from_value(serde_json::json!([
            {"type": "video", "link": "https://x/v.mp4", "id": "1"}
        ]))
        .expect("parses");
        assert_eq!(into_actions(both), Err(WireError::MediaSource("video")));
        assert!(serde_json::from_value::<Vec<WireAction>>(
            serde_json::json!([{"type": "hologram"}])
        )
        .is_err());
    }
}
