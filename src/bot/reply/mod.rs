//! From a responder's `Reply` to what goes out: actions checked against Meta's limits (a text
//! instead of one Meta would refuse), turned into outbound messages (long texts split), and
//! described for the history (`[buttons] Pick one`).

pub mod validate;

use crate::bot::responder::{Action, Choice, MediaKind, MediaSource, Reply};
use crate::domain::UserId;
use crate::meta::cloud_api::split::{split_text_at_most, MAX_TEXT_LEN};
use crate::meta::cloud_api::{
    ListRow, ListSection, MediaSource as OutSource, Outgoing, OutgoingMedia,
};

/// One outbound message of a reply, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub message: Outgoing,
    /// Index of the action it belongs to (a long text is several parts of one action).
    pub action: usize,
}

/// The reply with every action Meta would refuse replaced by a plain-text rendering of it (or
/// by `fallback` when it has nothing to say as text), logged without its content.
pub fn checked(reply: Reply, fallback: &str, user: &UserId) -> Reply {
    let actions = reply
        .actions
        .into_iter()
        .filter_map(|action| match validate::check(&action) {
            Ok(()) => Some(action),
            Err(violation) => {
                let replacement = match &action {
                    Action::Text(_) => None,
                    Action::Template { .. } => Some(fallback.to_string()),
                    other => Some(as_text(other).unwrap_or_else(|| fallback.to_string())),
                };
                tracing::warn!(
                    user = %user,
                    action = kind_of(&action),
                    violation = %violation,
                    replaced = replacement.is_some(),
                    "a reply action breaks Meta's limits; sending it as text instead"
                );
                replacement.map(Action::Text)
            }
        })
        .collect();
    Reply { actions }
}

/// A short label of an action for logs (never its content).
pub fn kind_of(action: &Action) -> &'static str {
    match action {
        Action::Text(_) => "text",
        Action::Buttons { .. } => "buttons",
        Action::List { .. } => "list",
        Action::Media { kind, .. } => kind.as_str(),
        Action::Location { .. } => "location",
        Action::Template { .. } => "template",
        Action::React { .. } => "reaction",
        Action::Handoff { .. } => "handoff",
    }
}

/// What the user should still read when the rich form cannot be sent.
fn as_text(action: &Action) -> Option<String> {
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
    let text = match action {
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
                MediaSource::Id(_) => None,
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
        Action::Template { .. } | Action::Handoff { .. } => String::new(),
    };
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The reply as at most `max_parts` outbound messages, long texts split at WhatsApp's limit,
/// reactions aimed at `answering` (the user's message); `true` when something did not fit.
/// A handoff sends nothing, so it has no part.
pub fn parts_of(reply: &Reply, answering: &str, max_parts: usize) -> (Vec<Part>, bool) {
    let mut parts = Vec::new();
    for (index, action) in reply.actions.iter().enumerate() {
        let room = max_parts.saturating_sub(parts.len());
        let (messages, cut) = match action {
            Action::Text(text) => {
                let (texts, cut) = split_text_at_most(text, MAX_TEXT_LEN, room);
                (texts.iter().map(Outgoing::text).collect(), cut)
            }
            Action::Handoff { .. } => (Vec::new(), false),
            _ if room == 0 => (Vec::new(), true),
            other => (outgoing(other, answering).into_iter().collect(), false),
        };
        parts.extend(messages.into_iter().map(|message| Part {
            message,
            action: index,
        }));
        let more_to_send = reply.actions[index + 1..]
            .iter()
            .any(|a| !matches!(a, Action::Handoff { .. }));
        if cut || (parts.len() >= max_parts && more_to_send) {
            return (parts, true);
        }
    }
    (parts, false)
}

/// The one outbound message of an action (`None` for a handoff); a text is not split here.
pub fn outgoing(action: &Action, answering: &str) -> Option<Outgoing> {
    Some(match action {
        Action::Text(text) => Outgoing::text(text),
        Action::Buttons {
            text,
            header,
            footer,
            buttons,
        } => Outgoing::Buttons {
            body: text.clone(),
            header: header.clone(),
            footer: footer.clone(),
            buttons: buttons
                .iter()
                .map(|b| (b.id.clone(), b.title.clone()))
                .collect(),
        },
        Action::List {
            text,
            header,
            footer,
            button,
            sections,
        } => Outgoing::List {
            body: text.clone(),
            header: header.clone(),
            footer: footer.clone(),
            button: button.clone(),
            sections: sections
                .iter()
                .map(|s| ListSection {
                    title: s.title.clone().unwrap_or_default(),
                    rows: s
                        .rows
                        .iter()
                        .map(|r| ListRow {
                            id: r.id.clone(),
                            title: r.title.clone(),
                            description: r.description.clone(),
                        })
                        .collect(),
                })
                .collect(),
        },
        Action::Media {
            kind,
            source,
            caption,
            filename,
        } => Outgoing::Media {
            kind: match kind {
                MediaKind::Image => OutgoingMedia::Image,
                MediaKind::Document => OutgoingMedia::Document,
                MediaKind::Audio => OutgoingMedia::Audio,
                MediaKind::Video => OutgoingMedia::Video,
            },
            source: match source {
                MediaSource::Link(link) => OutSource::Link(link.clone()),
                MediaSource::Id(id) => OutSource::Id(id.clone()),
            },
            caption: caption.clone(),
            filename: filename.clone(),
        },
        Action::Location {
            latitude,
            longitude,
            name,
            address,
        } => Outgoing::Location {
            latitude: *latitude,
            longitude: *longitude,
            name: name.clone(),
            address: address.clone(),
        },
        Action::Template {
            name,
            language,
            components,
        } => Outgoing::Template {
            name: name.clone(),
            language: language.clone(),
            components: components.clone(),
        },
        Action::React { emoji } => Outgoing::Reaction {
            message_id: answering.to_string(),
            emoji: emoji.clone(),
        },
        Action::Handoff { .. } => return None,
    })
}

/// How an action reads in the history, and the message type it is recorded as.
pub fn describe(action: &Action) -> (String, &'static str) {
    let with = |label: &str, extra: Option<&str>| match extra.filter(|e| !e.is_empty()) {
        Some(extra) => format!("[{label}] {extra}"),
        None => format!("[{label}]"),
    };
    match action {
        Action::Text(text) => (text.clone(), "text"),
        Action::Buttons { text, buttons, .. } => {
            let titles: Vec<&str> = buttons.iter().map(|b| b.title.as_str()).collect();
            (
                format!("[buttons: {}] {text}", titles.join(" | ")),
                "interactive",
            )
        }
        Action::List { text, sections, .. } => {
            let titles: Vec<&str> = sections
                .iter()
                .flat_map(|s| &s.rows)
                .map(|r| r.title.as_str())
                .collect();
            (
                format!("[list: {}] {text}", titles.join(" | ")),
                "interactive",
            )
        }
        Action::Media { kind, caption, .. } => {
            (with(kind.as_str(), caption.as_deref()), kind.as_str())
        }
        Action::Location { name, address, .. } => {
            let place = [name.as_deref(), address.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
            (with("location", Some(&place)), "location")
        }
        Action::Template { name, .. } => (with("template", Some(name)), "template"),
        Action::React { emoji } => (with("reaction", Some(emoji)), "reaction"),
        Action::Handoff { note } => (with("handoff", note.as_deref()), "handoff"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::responder::Section;

    fn user() -> UserId {
        UserId::parse("4915123456789").expect("user")
    }

    #[test]
    fn long_texts_become_several_parts_of_one_action() {
        let reply = Reply {
            actions: vec![Action::Text("a ".repeat(5000)), Action::Text("b".into())],
        };
        let (parts, cut) = parts_of(&reply, "wamid.in", 10);
        assert_eq!(
            parts.iter().map(|p| p.action).collect::<Vec<_>>(),
            [0, 0, 0, 1]
        );
        assert!(!cut);
        let (parts, cut) = parts_of(&reply, "wamid.in", 2);
        assert_eq!((parts.len(), cut), (2, true));
        let (parts, cut) = parts_of(&reply, "wamid.in", 3);
        assert_eq!(
            (parts.len(), cut),
            (3, true),
            "the second action did not fit"
        );
    }

    #[test]
    fn handoffs_have_no_part_and_reactions_aim_at_the_message() {
        let reply = Reply {
            actions: vec![
                Action::React {
                    emoji: "👍".into()
                },
                Action::Text("ok".into()),
                Action::Handoff { note: None },
            ],
        };
        let (parts, cut) = parts_of(&reply, "wamid.in", 2);
        assert!(!cut, "a trailing handoff needs no room");
        assert_eq!(
            parts[0].message,
            Outgoing::Reaction {
                message_id: "wamid.in".into(),
                emoji: "👍".into()
            }
        );
        assert_eq!(parts.iter().map(|p| p.action).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn an_action_over_the_limits_becomes_text_and_a_bad_text_is_dropped() {
        let reply = Reply {
            actions: vec![
                Action::Buttons {
                    text: "Pick".into(),
                    header: None,
                    footer: None,
                    buttons: vec![Choice {
                        id: "a".into(),
                        title: "A title that is far too long".into(),
                        description: None,
                    }],
                },
                Action::Text(String::new()),
                Action::List {
                    text: "Menu".into(),
                    header: None,
                    footer: None,
                    button: "Open".into(),
                    sections: vec![Section {
                        title: None,
                        rows: vec![Choice {
                            id: "r".into(),
                            title: "Row".into(),
                            description: None,
                        }],
                    }],
                },
                Action::Template {
                    name: String::new(),
                    language: "en".into(),
                    components: vec![],
                },
            ],
        };
        let checked = checked(reply, "fallback", &user());
        assert_eq!(checked.actions.len(), 3);
        assert_eq!(
            checked.actions[0],
            Action::Text("Pick\n• A title that is far too long".into())
        );
        assert!(matches!(checked.actions[1], Action::List { .. }));
        assert_eq!(checked.actions[2], Action::Text("fallback".into()));
    }

    #[test]
    fn descriptions_for_the_history() {
        assert_eq!(
            describe(&Action::Handoff {
                note: Some("VIP".into())
            }),
            ("[handoff] VIP".to_string(), "handoff")
        );
        assert_eq!(
            describe(&Action::Buttons {
                text: "Sure?".into(),
                header: None,
                footer: None,
                buttons: vec![Choice {
                    id: "y".into(),
                    title: "Yes".into(),
                    description: None
                }],
            }),
            ("[buttons: Yes] Sure?".to_string(), "interactive")
        );
    }
}
