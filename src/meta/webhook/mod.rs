//! Turns a verified webhook delivery into domain events: every message of every change.

pub mod payload;
pub mod signature;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::domain::{
    DeliveryStatus, ErrorInfo, Handover, InboundMessage, InteractiveKind, MediaKind,
    MessageContent, Origin, PhoneNumberId, Sender, StatusUpdate, UserId, WaMessageId, WebhookBatch,
};
use payload::{Contact, Media, Message, MessagesValue, Payload, WireError};
pub use signature::{
    sign, SignatureError, SignatureVerifier, VerifiedBody, SIGNATURE_HEADER, WABOT_SIGNATURE_HEADER,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body is JSON but not an object")]
    NotObject,
}

/// Parses a verified body. Only a body that is not a JSON object fails; everything inside it is
/// read leniently, and what cannot be understood is counted, not fatal.
pub fn parse(body: &VerifiedBody) -> Result<WebhookBatch, ParseError> {
    let bytes = body.as_bytes();
    let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    // Straight from the bytes into the wire types: no `Value` tree on the hot path.
    let payload = match serde_json::from_slice::<Payload>(bytes) {
        Ok(payload) if is_object => payload,
        _ => {
            let value: Value =
                serde_json::from_slice(bytes).map_err(|e| ParseError::NotJson(e.to_string()))?;
            if !value.is_object() {
                return Err(ParseError::NotObject);
            }
            // An object the direct decoding refused (a key sent twice, a field of the wrong
            // type): read through the `Value`, which is as lenient as it gets, or as empty.
            serde_json::from_value(value).unwrap_or(Payload {
                object: None,
                entry: Vec::new(),
            })
        }
    };
    if let Some(object) = payload.object.as_deref() {
        if object != "whatsapp_business_account" {
            tracing::debug!(object, "webhook for an unexpected object type");
        }
    }
    let mut batch = WebhookBatch::default();
    for entry in payload.entry {
        for change in entry.changes {
            match change.field.as_deref() {
                Some("messages") => read_messages_change(change.value, Origin::User, &mut batch),
                // Copies for information only: recorded in the history, never answered.
                Some("smb_message_echoes") => {
                    read_messages_change(change.value, Origin::BusinessEcho, &mut batch)
                }
                Some("standby") => read_messages_change(change.value, Origin::Standby, &mut batch),
                Some("messaging_handovers") => {
                    let value = change
                        .value
                        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
                    match value.as_ref().and_then(read_handover) {
                        Some(handover) => batch.handovers.push(handover),
                        None => batch.ignored_changes += 1,
                    }
                }
                other => {
                    tracing::debug!(field = other.unwrap_or(""), "ignoring webhook field");
                    batch.ignored_changes += 1;
                }
            }
        }
    }
    Ok(batch)
}

/// A `messaging_handovers` value (Meta's conversation routing, 2026). Read leniently: the
/// business number from `metadata.phone_number_id`, else `recipient.phone_number_id` (payloads
/// without `metadata` are seen in production); the user from `sender.phone_number` or `wa_id`;
/// the kind from `type` or from which of `control_passed`/`control_taken` is present.
fn read_handover(value: &Value) -> Option<Handover> {
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
    let pnid = text("/metadata/phone_number_id")
        .or_else(|| text("/recipient/phone_number_id"))
        .and_then(PhoneNumberId::parse)?;
    let user = text("/sender/phone_number")
        .or_else(|| text("/sender/wa_id"))
        .or_else(|| text("/sender/id"))
        .map(|raw| raw.trim_start_matches('+'))
        .and_then(UserId::parse)?;
    let owned = match text("/type") {
        Some("control_passed") => true,
        Some("control_taken") => false,
        _ if value.get("control_passed").is_some() => true,
        _ if value.get("control_taken").is_some() => false,
        _ => return None,
    };
    let timestamp = match value.get("timestamp") {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    };
    // Milliseconds in some payloads; seconds everywhere else.
    let timestamp = if timestamp > 100_000_000_000 {
        timestamp / 1000
    } else {
        timestamp
    };
    Some(Handover {
        phone_number_id: pnid,
        user,
        owned,
        timestamp,
    })
}

fn read_messages_change(value: Option<Box<RawValue>>, origin: Origin, batch: &mut WebhookBatch) {
    let value: MessagesValue = value
        .and_then(|raw| payload::decode_lenient(raw.get()))
        .unwrap_or_default();
    let metadata = value.metadata.as_ref();
    let phone_number_id = metadata
        .and_then(|m| m.phone_number_id.as_deref())
        .and_then(PhoneNumberId::parse);
    batch.errors.extend(value.errors.iter().map(error_info));

    let echo_origin = match origin {
        Origin::User => Origin::BusinessEcho,
        other => other,
    };
    let messages = value.messages.into_iter().map(|raw| (raw, origin));
    let echoes = value
        .message_echoes
        .into_iter()
        .map(|raw| (raw, echo_origin));
    for (raw, origin) in messages.chain(echoes) {
        match read_message(&raw, phone_number_id.as_ref(), &value.contacts, origin) {
            Some(message) => batch.messages.push(message),
            None => batch.dropped_messages += 1,
        }
    }
    for raw in value.statuses {
        let Some(status) = payload::decode_lenient::<payload::Status>(raw.get()) else {
            tracing::debug!("skipping a malformed status entry");
            continue;
        };
        let Some(message_id) = status.id.filter(|id| !id.is_empty()) else {
            continue;
        };
        batch.statuses.push(StatusUpdate {
            message_id,
            phone_number_id: phone_number_id.clone(),
            status: DeliveryStatus::parse(status.status.as_deref().unwrap_or("")),
            recipient: status
                .recipient_id
                .filter(|r| !r.is_empty())
                .or(status.recipient_user_id),
            timestamp: parse_timestamp(status.timestamp.as_deref()),
            errors: status.errors.iter().map(error_info).collect(),
            pricing_category: status.pricing.and_then(|p| p.category),
        });
    }
}

/// One message entry → an [`InboundMessage`], or `None` when it lacks what a reply needs
/// (an id, a receiving number, a sender). A message whose body does not match Meta's documented
/// shape is kept as `Unsupported { kind: "malformed" }`: it is still deduplicated and recorded.
fn read_message(
    raw: &RawValue,
    phone_number_id: Option<&PhoneNumberId>,
    contacts: &[Contact],
    origin: Origin,
) -> Option<InboundMessage> {
    let (message, content, value) = match serde_json::from_str::<Message>(raw.get()) {
        Ok(message) => {
            let content = content_of(&message);
            (Some(message), content, None)
        }
        // The slow path, for what the direct decoding refused: through a `Value` (a key sent
        // twice, the last wins), else whatever fields can still be read off it.
        Err(error) => {
            let value = serde_json::from_str::<Value>(raw.get()).ok();
            match value
                .clone()
                .and_then(|value| serde_json::from_value::<Message>(value).ok())
            {
                Some(message) => {
                    let content = content_of(&message);
                    (Some(message), content, None)
                }
                None => {
                    tracing::debug!(%error, "message entry does not match the documented shape");
                    let malformed = MessageContent::Unsupported {
                        kind: "malformed".into(),
                        error_code: None,
                    };
                    (None, malformed, value)
                }
            }
        }
    };
    let id_of = |key: &str| {
        value
            .as_ref()
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let id = match &message {
        Some(m) => m.id.clone(),
        None => id_of("id"),
    };
    let Some(id) = id.as_deref().and_then(WaMessageId::parse) else {
        tracing::debug!("message entry without a usable id dropped");
        return None;
    };
    let Some(phone_number_id) = phone_number_id.cloned() else {
        tracing::debug!(wamid = %id, "message without metadata.phone_number_id dropped");
        return None;
    };
    // An echo went from the business to the customer: the conversation is the customer's.
    let (user_key, user_id_key) = match origin {
        Origin::BusinessEcho => ("to", "to_user_id"),
        Origin::User | Origin::Standby => ("from", "from_user_id"),
    };
    let from = match (&message, origin) {
        (Some(m), Origin::BusinessEcho) => m.to.clone(),
        (Some(m), _) => m.from.clone(),
        (None, _) => id_of(user_key),
    };
    let from_user_id = match (&message, origin) {
        (Some(m), Origin::BusinessEcho) => m.to_user_id.clone(),
        (Some(m), _) => m.from_user_id.clone(),
        (None, _) => id_of(user_id_key),
    };
    let sender = sender_of(from, from_user_id, contacts);
    let Some(user) = sender.user_id() else {
        tracing::debug!(wamid = %id, "message without a sender dropped");
        return None;
    };
    let context = message.as_ref().and_then(|m| m.context.as_ref());
    Some(InboundMessage {
        id,
        phone_number_id,
        user,
        sender,
        timestamp: parse_timestamp(message.as_ref().and_then(|m| m.timestamp.as_deref())),
        reply_to: context.and_then(|c| c.id.clone()),
        forwarded: context.is_some_and(|c| {
            c.forwarded.unwrap_or(false) || c.frequently_forwarded.unwrap_or(false)
        }),
        origin,
        content,
    })
}

/// Joins a message's sender fields with the matching `contacts[]` entry (profile name,
/// username, BSUID). Empty strings count as absent: Meta sends `"from": ""` for username users.
fn sender_of(from: Option<String>, from_user_id: Option<String>, contacts: &[Contact]) -> Sender {
    let non_empty = |s: Option<String>| {
        s.map(|s| s.trim().trim_start_matches('+').to_string())
            .filter(|s| !s.is_empty())
    };
    let phone = non_empty(from);
    let bsuid = non_empty(from_user_id);
    let contact = contacts
        .iter()
        .find(|c| {
            let wa_id = non_empty(c.wa_id.clone());
            let user_id = non_empty(c.user_id.clone());
            (phone.is_some() && wa_id == phone) || (bsuid.is_some() && user_id == bsuid)
        })
        .or(if contacts.len() == 1 {
            contacts.first()
        } else {
            None
        });
    let profile = contact.and_then(|c| c.profile.as_ref());
    Sender {
        phone: phone.or_else(|| contact.and_then(|c| non_empty(c.wa_id.clone()))),
        bsuid: bsuid.or_else(|| contact.and_then(|c| non_empty(c.user_id.clone()))),
        profile_name: profile.and_then(|p| p.name.clone()),
        username: profile.and_then(|p| p.username.clone()),
    }
}

fn content_of(m: &Message) -> MessageContent {
    let kind = m.kind.as_deref().unwrap_or("");
    let media = |media: MediaKind, body: &Option<Media>| {
        body.as_ref().map(|b| MessageContent::Media {
            media,
            id: b.id.clone(),
            mime_type: b.mime_type.clone(),
            caption: b.caption.clone(),
            filename: b.filename.clone(),
            voice: b.voice.unwrap_or(false),
            animated: b.animated.unwrap_or(false),
        })
    };
    let content = match kind {
        "text" => m
            .text
            .as_ref()
            .and_then(|t| t.body.clone())
            .map(|body| MessageContent::Text { body }),
        "image" => media(MediaKind::Image, &m.image),
        "audio" => media(MediaKind::Audio, &m.audio),
        "video" => media(MediaKind::Video, &m.video),
        "document" => media(MediaKind::Document, &m.document),
        "sticker" => media(MediaKind::Sticker, &m.sticker),
        "location" => m.location.as_ref().and_then(|l| {
            Some(MessageContent::Location {
                latitude: l.latitude?,
                longitude: l.longitude?,
                name: l.name.clone(),
                address: l.address.clone(),
            })
        }),
        "contacts" => Some(MessageContent::Contacts {
            names: m
                .contacts
                .iter()
                .filter_map(|c| c.name.as_ref())
                .filter_map(|n| n.formatted_name.clone().or_else(|| n.first_name.clone()))
                .collect(),
            phones: m
                .contacts
                .iter()
                .flat_map(|c| &c.phones)
                .filter_map(|p| p.phone.clone().or_else(|| p.wa_id.clone()))
                .collect(),
            requested: m
                .contacts
                .first()
                .is_some_and(|c| c.origin.as_deref() == Some("contact_request")),
        }),
        "interactive" => m.interactive.as_ref().and_then(|i| {
            match i.kind.as_deref() {
                Some("button_reply") => i
                    .button_reply
                    .as_ref()
                    .map(|r| (InteractiveKind::ButtonReply, r)),
                Some("list_reply") => i
                    .list_reply
                    .as_ref()
                    .map(|r| (InteractiveKind::ListReply, r)),
                Some("nfm_reply") => {
                    return i
                        .nfm_reply
                        .as_ref()
                        .map(|n| MessageContent::InteractiveReply {
                            reply: InteractiveKind::NfmReply,
                            id: n.name.clone().unwrap_or_default(),
                            title: n.body.clone().unwrap_or_default(),
                            description: n.response_json.clone(),
                        })
                }
                _ => None,
            }
            .map(|(reply, r)| MessageContent::InteractiveReply {
                reply,
                id: r.id.clone().unwrap_or_default(),
                title: r.title.clone().unwrap_or_default(),
                description: r.description.clone(),
            })
        }),
        "button" => m.button.as_ref().map(|b| MessageContent::TemplateButton {
            payload: b.payload.clone().unwrap_or_default(),
            text: b.text.clone().unwrap_or_default(),
        }),
        "reaction" => m.reaction.as_ref().map(|r| MessageContent::Reaction {
            message_id: r.message_id.clone().unwrap_or_default(),
            emoji: r.emoji.clone().filter(|e| !e.is_empty()),
        }),
        "order" => m.order.as_ref().map(|o| MessageContent::Order {
            catalog_id: o.catalog_id.clone(),
            text: o.text.clone(),
            items: u32::try_from(o.product_items.len()).unwrap_or(u32::MAX),
        }),
        "edit" => m.edit.as_ref().and_then(|e| {
            Some(MessageContent::Edit {
                original_id: e.original_message_id.clone().filter(|id| !id.is_empty())?,
                text: e.message.as_deref().map(|m| content_of(m).describe()),
            })
        }),
        "revoke" => m.revoke.as_ref().and_then(|r| {
            Some(MessageContent::Revoke {
                original_id: r.original_message_id.clone().filter(|id| !id.is_empty())?,
            })
        }),
        "system" => m.system.as_ref().map(|s| MessageContent::System {
            system_type: s.kind.clone().unwrap_or_default(),
            body: s.body.clone(),
            new_wa_id: s.wa_id.clone().filter(|w| !w.is_empty()),
            new_user_id: s.user_id.clone().filter(|u| !u.is_empty()),
        }),
        _ => None,
    };
    content.unwrap_or_else(|| {
        let kind = match (kind, m.unsupported.as_ref().and_then(|u| u.kind.as_deref())) {
            ("unsupported", Some(inner)) => inner.to_string(),
            ("", _) => "unknown".to_string(),
            (kind, _) => kind.chars().take(40).collect(),
        };
        tracing::debug!(kind, "message type not modelled; kept as unsupported");
        MessageContent::Unsupported {
            kind,
            error_code: m.errors.first().and_then(|e| e.code),
        }
    })
}

fn error_info(e: &WireError) -> ErrorInfo {
    ErrorInfo {
        code: e.code.unwrap_or(0),
        title: e.title.clone().or_else(|| e.message.clone()),
        details: e.error_data.as_ref().and_then(|d| d.details.clone()),
    }
}

fn parse_timestamp(raw: Option<&str>) -> i64 {
    raw.and_then(|t| t.trim().parse::<i64>().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests;
