//! From a responder's `Reply` to what goes out: actions checked against Meta's limits (a text
//! instead of one Meta would refuse), turned into outbound messages (long texts split), and
//! described for the history (`[buttons] Pick one`).

use crate::bot::responder::{Action, Quote, Reply};
use crate::domain::UserId;
use crate::meta::cloud_api::split::{split_text_at_most, MAX_TEXT_LEN};

/// One outbound message of a reply, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub message: Action,
    /// The message a reaction reacts to (the user's), or the one the reply quotes (its first
    /// part that is not a reaction); `None` for every other part.
    pub context: Option<String>,
    /// Index of the action it belongs to (a long text is several parts of one action).
    pub action: usize,
}

/// The reply with every action Meta would refuse replaced by a plain-text rendering of it (or
/// by `fallback` when it has nothing to say as text), logged without its content.
pub fn checked(reply: Reply, fallback: &str, user: &UserId) -> Reply {
    let actions = reply
        .actions
        .into_iter()
        .filter_map(|action| match action.check() {
            Ok(()) => Some(action),
            Err(violation) => {
                let replacement = match &action {
                    Action::Text(_) => None,
                    Action::Template { .. } => Some(fallback.to_string()),
                    other => Some(other.as_text().unwrap_or_else(|| fallback.to_string())),
                };
                tracing::warn!(
                    user = %user,
                    action = action.label(),
                    violation = %violation,
                    replaced = replacement.is_some(),
                    "a reply action breaks Meta's limits; sending it as text instead"
                );
                replacement.map(Action::Text)
            }
        })
        .collect();
    Reply {
        actions,
        quote: reply.quote,
    }
}

/// The reply as at most `max_parts` outbound messages, long texts split at WhatsApp's limit,
/// reactions aimed at `answering` (the user's message), the quote on the first other part;
/// `true` when something did not fit. A handoff sends nothing, so it has no part.
pub fn parts_of(reply: &Reply, answering: &str, max_parts: usize) -> (Vec<Part>, bool) {
    let mut parts: Vec<Part> = Vec::new();
    let mut quote = reply.quote.as_ref().map(|quote| match quote {
        Quote::Answered => answering.to_string(),
        Quote::Message(wamid) => wamid.clone(),
    });
    for (index, action) in reply.actions.iter().enumerate() {
        let room = max_parts.saturating_sub(parts.len());
        let (messages, cut) = match action {
            Action::Text(text) => {
                let (texts, cut) = split_text_at_most(text, MAX_TEXT_LEN, room);
                (
                    texts.into_iter().map(|t| (Action::Text(t), None)).collect(),
                    cut,
                )
            }
            Action::Handoff { .. } => (Vec::new(), false),
            _ if room == 0 => (Vec::new(), true),
            react @ Action::React { .. } => {
                (vec![(react.clone(), Some(answering.to_string()))], false)
            }
            other => (vec![(other.clone(), None)], false),
        };
        parts.extend(messages.into_iter().map(|(message, context)| Part {
            context: match message {
                Action::React { .. } => context,
                _ => quote.take(),
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::responder::{Choice, Section};

    fn user() -> UserId {
        UserId::parse("4915123456789").expect("user")
    }

    #[test]
    fn long_texts_become_several_parts_of_one_action() {
        let reply = Reply::of(vec![
            Action::Text("a ".repeat(5000)),
            Action::Text("b".into()),
        ]);
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
        let reply = Reply::of(vec![
            Action::React {
                emoji: "👍".into()
            },
            Action::Text("ok".into()),
            Action::Handoff { note: None },
        ]);
        let (parts, cut) = parts_of(&reply, "wamid.in", 2);
        assert!(!cut, "a trailing handoff needs no room");
        assert_eq!(
            parts[0].message,
            Action::React {
                emoji: "👍".into()
            }
        );
        assert_eq!(parts[0].context.as_deref(), Some("wamid.in"));
        assert_eq!(parts[1].context, None);
        assert_eq!(parts.iter().map(|p| p.action).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn a_quote_goes_on_the_first_part_that_is_not_a_reaction() {
        let mut reply = Reply::of(vec![
            Action::React {
                emoji: "👍".into()
            },
            Action::Text("a ".repeat(5000)),
        ]);
        reply.quote = Some(Quote::Answered);
        let (parts, _) = parts_of(&reply, "wamid.in", 10);
        let contexts: Vec<Option<&str>> = parts.iter().map(|p| p.context.as_deref()).collect();
        assert_eq!(
            contexts,
            [Some("wamid.in"), Some("wamid.in"), None, None],
            "the reaction's target, then the quote on the first text part only"
        );
        reply.quote = Some(Quote::Message("wamid.earlier".into()));
        let (parts, _) = parts_of(&reply, "wamid.in", 10);
        assert_eq!(parts[1].context.as_deref(), Some("wamid.earlier"));
    }

    #[test]
    fn an_action_over_the_limits_becomes_text_and_a_bad_text_is_dropped() {
        let reply = Reply::of(vec![
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
        ]);
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
            Action::Handoff {
                note: Some("VIP".into())
            }
            .describe(),
            ("[handoff] VIP".to_string(), "handoff")
        );
        assert_eq!(
            Action::Buttons {
                text: "Sure?".into(),
                header: None,
                footer: None,
                buttons: vec![Choice {
                    id: "y".into(),
                    title: "Yes".into(),
                    description: None
                }],
            }
            .describe(),
            ("[buttons: Yes] Sure?".to_string(), "interactive")
        );
    }
}
