//! Outbound requests (an operator's message, a notification) checked and turned into an inbox
//! item, the same way for the admin API and the CLI: the id comes from the client's
//! idempotency key (scoped to the conversation) or is new.

use sha2::{Digest, Sha256};

use crate::domain::action::{Action, WireAction};
use crate::domain::{InboxItem, OutboundMessage, OutboundSource, PhoneNumberId, UserId};
use crate::store::sink::{EventSink, SinkError};

/// WhatsApp's limit for one text message.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Why a request is refused; the message is meant for the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutboundError {
    #[error("{0}")]
    Invalid(String),
}

/// Free-form `text`, a `template`, or another `message` (buttons, list, media, location in the
/// public action schema): exactly one.
pub fn content(
    text: Option<&str>,
    template: Option<(&str, &str, &[serde_json::Value])>,
    message: Option<&WireAction>,
) -> Result<Action, OutboundError> {
    let invalid = |m: &str| Err(OutboundError::Invalid(m.to_string()));
    match (text, template, message) {
        (None, None, Some(message)) => {
            if matches!(
                message,
                WireAction::Handoff { .. } | WireAction::Reaction { .. } | WireAction::Text { .. }
            ) {
                return invalid(
                    "`message` is for buttons, list, media or location; use `text` for text",
                );
            }
            let action = message
                .clone()
                .into_action()
                .map_err(|e| OutboundError::Invalid(format!("invalid message: {e}")))?;
            action
                .check()
                .map_err(|v| OutboundError::Invalid(format!("over Meta's limits: {v}")))?;
            Ok(action)
        }
        (Some(text), None, None) => {
            if text.trim().is_empty() {
                return invalid("text must not be empty");
            }
            if text.chars().count() > MAX_TEXT_CHARS {
                return invalid("text is longer than WhatsApp's 4096 characters");
            }
            Ok(Action::Text(text.to_string()))
        }
        (None, Some((name, language, components)), None) => {
            if name.trim().is_empty() || language.trim().is_empty() {
                return invalid("template needs a name and a language");
            }
            Ok(Action::Template {
                name: name.to_string(),
                language: language.to_string(),
                components: components.to_vec(),
            })
        }
        _ => invalid("give exactly one of `text`, `template` or `message`"),
    }
}

/// The message to queue.
pub fn request(
    pnid: PhoneNumberId,
    to: UserId,
    source: OutboundSource,
    content: Action,
    idempotency_key: Option<&str>,
) -> Result<OutboundMessage, OutboundError> {
    let id = match idempotency_key {
        Some(key) if key.is_empty() || key.len() > 256 => {
            return Err(OutboundError::Invalid(
                "idempotency_key must be 1 to 256 characters".into(),
            ))
        }
        Some(key) => {
            let digest = Sha256::digest(format!("{pnid}:{}:{key}", to.as_str()).as_bytes());
            format!("out.{}", hex::encode(&digest[..16]))
        }
        None => format!("out.{}", uuid::Uuid::new_v4().simple()),
    };
    Ok(OutboundMessage {
        id,
        phone_number_id: pnid,
        to,
        source,
        content,
        requested_at: crate::domain::clock::unix_secs(),
        reply_to: None,
        by: None,
    })
}

/// Longest wamid accepted as a quote (Meta's are ~60 characters).
const MAX_QUOTE_ID: usize = 256;

/// The message `message` quotes: `reply_to` as given (a wamid), or the user's newest message
/// for `last` (`None` when the user never wrote); an error for anything unusable.
pub fn quoting(
    reply_to: Option<&str>,
    last_user_message: Option<&str>,
) -> Result<Option<String>, OutboundError> {
    match reply_to.map(str::trim) {
        None => Ok(None),
        Some("last") => last_user_message
            .map(str::to_string)
            .map(Some)
            .ok_or_else(|| {
                OutboundError::Invalid("reply_to `last`: the user has not written yet".into())
            }),
        Some(id) if id.is_empty() || id.len() > MAX_QUOTE_ID => Err(OutboundError::Invalid(
            "reply_to is a message id (wamid) of at most 256 characters, or `last`".into(),
        )),
        Some(id) => Ok(Some(id.to_string())),
    }
}

/// Stores it durably in its conversation's queue; `false` when that id was queued before.
pub async fn enqueue(sink: &dyn EventSink, message: OutboundMessage) -> Result<bool, SinkError> {
    let accepted = sink.accept(&[InboxItem::Outbound(message)]).await?;
    Ok(accepted.new > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (PhoneNumberId, UserId) {
        (
            PhoneNumberId::parse("123").expect("pnid"),
            UserId::parse("15550001111").expect("user"),
        )
    }

    #[test]
    fn the_same_key_gives_the_same_id_per_conversation_only() {
        let text = || content(Some("hi"), None, None).expect("content");
        let (pnid, to) = ids();
        let a = request(
            pnid.clone(),
            to.clone(),
            OutboundSource::Operator,
            text(),
            Some("k"),
        );
        let b = request(
            pnid.clone(),
            to,
            OutboundSource::Operator,
            text(),
            Some("k"),
        );
        assert_eq!(a.expect("a").id, b.expect("b").id);
        let other = UserId::parse("15550002222").expect("user");
        let c = request(pnid, other, OutboundSource::Operator, text(), Some("k"));
        let (pnid, to) = ids();
        let d = request(pnid, to, OutboundSource::Operator, text(), Some("k"));
        assert_ne!(c.expect("c").id, d.expect("d").id);
    }

    #[test]
    fn exactly_one_of_text_or_template() {
        assert!(content(None, None, None).is_err());
        assert!(content(Some("a"), Some(("t", "en", &[])), None).is_err());
        assert!(content(Some(" "), None, None).is_err());
        assert!(content(Some(&"a".repeat(4097)), None, None).is_err());
        assert!(content(None, Some(("", "en", &[])), None).is_err());
        assert!(content(None, Some(("t", "en", &[])), None).is_ok());
        let buttons: WireAction = serde_json::from_value(serde_json::json!({"type": "buttons",
            "text": "¿Confirmamos?", "buttons": [{"id": "yes", "title": "Sí"}]}))
        .expect("wire");
        assert!(content(None, None, Some(&buttons)).is_ok());
        let too_long: WireAction = serde_json::from_value(serde_json::json!({"type": "buttons",
            "text": "x", "buttons": [{"id": "yes", "title": "a title far longer than twenty"}]}))
        .expect("wire");
        assert!(content(None, None, Some(&too_long)).is_err());
        let handoff: WireAction =
            serde_json::from_value(serde_json::json!({"type": "handoff"})).expect("wire");
        assert!(content(None, None, Some(&handoff)).is_err());
    }
}
