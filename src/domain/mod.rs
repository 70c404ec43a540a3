//! Domain types: what a webhook delivery means to wabot, independent of Meta's wire format.
//!
//! These types are also the stored form of an accepted message (serde), so changing them is a
//! storage format change: add fields with defaults, never rename. Owns `action` (the one model of
//! what the bot sends), `clock`, `language` and `menu` (the last menu sent, for typed answers); the bottom layer, it imports no other.

pub mod action;
pub mod clock;
pub mod language;
pub mod menu;

use std::fmt;

use serde::{Deserialize, Serialize};

/// The business phone number that received a message (and must send the reply).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumberId(String);

impl PhoneNumberId {
    /// Accepts the digits Meta sends; anything else would break Redis keys and Graph API paths.
    pub fn parse(raw: &str) -> Option<PhoneNumberId> {
        let raw = raw.trim();
        (!raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| PhoneNumberId(raw.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A WhatsApp message id (`wamid...`): opaque, the deduplication key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WaMessageId(String);

impl WaMessageId {
    pub fn parse(raw: &str) -> Option<WaMessageId> {
        let raw = raw.trim();
        (!raw.is_empty() && raw.len() <= 512 && !raw.chars().any(char::is_control))
            .then(|| WaMessageId(raw.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WaMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who wrote to us. Since 2026 the phone may be missing (username users): then only the
/// business-scoped user id (BSUID) identifies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// Digits only, no `+`; `None` when Meta sent an empty or absent `from`.
    pub phone: Option<String>,
    /// Business-scoped user id, e.g. `US.13491208655302741918`.
    pub bsuid: Option<String>,
    pub profile_name: Option<String>,
    pub username: Option<String>,
}

impl Sender {
    /// The conversation key: the phone when we have one, else the BSUID (docs/DESIGN.md §2).
    pub fn user_id(&self) -> Option<UserId> {
        self.phone
            .as_deref()
            .or(self.bsuid.as_deref())
            .and_then(UserId::parse)
    }
}

/// The user half of a conversation key: a phone number (`wa_id`) or a BSUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Option<UserId> {
        let raw = raw.trim().trim_start_matches('+');
        (!raw.is_empty()
            && raw.len() <= 160
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'))
        .then(|| UserId(raw.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A BSUID has a country prefix and a dot; a phone number is digits only.
    pub fn is_phone(&self) -> bool {
        self.0.bytes().all(|b| b.is_ascii_digit())
    }
    /// Safe for logs: `+49*****789` for phones, `US.***918` for BSUIDs.
    pub fn masked(&self) -> String {
        mask_user(&self.0)
    }
}

/// Masks a phone number or user id for logs: keeps a short prefix and the last three characters.
pub fn mask_user(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let (keep_front, plus) = if chars.iter().all(char::is_ascii_digit) {
        (2, "+")
    } else {
        (
            chars
                .iter()
                .position(|c| *c == '.')
                .map_or(2, |p| p + 1)
                .min(4),
            "",
        )
    };
    let tail: String = chars[chars.len() - 3..].iter().collect();
    let head: String = chars[..keep_front].iter().collect();
    let hidden = chars.len().saturating_sub(keep_front + 3);
    format!("{plus}{head}{}{tail}", "*".repeat(hidden))
}

impl fmt::Display for UserId {
    /// Displays masked on purpose: a `UserId` that slips into a log line must not leak the phone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Where an inbound message came from: the user writing to us, or a copy Meta sends for
/// information only. Only `User` messages are ever answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    #[default]
    User,
    /// The business wrote this from the WhatsApp Business app (coexistence `smb_message_echoes`):
    /// `user` is the customer it went to.
    BusinessEcho,
    /// A copy delivered while another app owns the conversation (Meta's conversation routing,
    /// `standby`).
    Standby,
}

impl Origin {
    fn is_user(&self) -> bool {
        *self == Origin::User
    }
}

/// One inbound user message, validated: it has an id, a receiving number and a sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub id: WaMessageId,
    pub phone_number_id: PhoneNumberId,
    pub user: UserId,
    pub sender: Sender,
    /// Unix seconds as Meta reported them (0 when absent or unparseable).
    pub timestamp: i64,
    /// The wamid this message replies to (for button replies: our interactive message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
    #[serde(default, skip_serializing_if = "Origin::is_user")]
    pub origin: Origin,
    pub content: MessageContent,
}

/// How a completed flow's answers start in the history: `[flow] {"day":"Tuesday"}`.
pub const FLOW_ANSWERS: &str = "[flow] ";

/// What the user sent, one variant per kind of message Meta documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageContent {
    Text {
        body: String,
    },
    Media {
        media: MediaKind,
        id: Option<String>,
        mime_type: Option<String>,
        caption: Option<String>,
        filename: Option<String>,
        /// Audio recorded as a voice note.
        #[serde(default)]
        voice: bool,
        /// Animated sticker.
        #[serde(default)]
        animated: bool,
    },
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
    Contacts {
        names: Vec<String>,
        #[serde(default)]
        phones: Vec<String>,
        /// The answer to the bot's contact request (`request_contact_info`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        requested: bool,
    },
    /// A tap on one of our reply buttons or list rows, or a Flow (`nfm_reply`) submission.
    InteractiveReply {
        reply: InteractiveKind,
        id: String,
        title: String,
        description: Option<String>,
    },
    /// A quick-reply button on a template message.
    TemplateButton {
        payload: String,
        text: String,
    },
    Reaction {
        message_id: String,
        /// `None` when the user removed their reaction.
        emoji: Option<String>,
    },
    Order {
        catalog_id: Option<String>,
        text: Option<String>,
        items: u32,
    },
    /// Number or identity changes (`user_changed_number`, `user_changed_user_id`...).
    System {
        system_type: String,
        body: Option<String>,
        new_wa_id: Option<String>,
        new_user_id: Option<String>,
    },
    /// The user edited an earlier message (`original_id`); `text` is its new text, when it
    /// has one.
    Edit {
        original_id: String,
        text: Option<String>,
    },
    /// The user deleted an earlier message for everyone.
    Revoke {
        original_id: String,
    },
    /// Anything we do not model: `unsupported`, future types, or a message whose body was malformed.
    Unsupported {
        kind: String,
        error_code: Option<i64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Audio,
    Video,
    Document,
    Sticker,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractiveKind {
    ButtonReply,
    ListReply,
    NfmReply,
}

impl MessageContent {
    /// A short label for metrics and logs (never the text itself).
    pub fn kind(&self) -> &'static str {
        match self {
            MessageContent::Text { .. } => "text",
            MessageContent::Media { media, .. } => media.as_str(),
            MessageContent::Location { .. } => "location",
            MessageContent::Contacts { .. } => "contacts",
            MessageContent::InteractiveReply { .. } => "interactive",
            MessageContent::TemplateButton { .. } => "button",
            MessageContent::Reaction { .. } => "reaction",
            MessageContent::Order { .. } => "order",
            MessageContent::System { .. } => "system",
            MessageContent::Edit { .. } => "edit",
            MessageContent::Revoke { .. } => "revoke",
            MessageContent::Unsupported { .. } => "unsupported",
        }
    }

    /// The text a responder should see: typed text, a button's title, a caption; `None` for
    /// content that carries no words.
    pub fn text(&self) -> Option<&str> {
        match self {
            MessageContent::Text { body } => Some(body),
            MessageContent::InteractiveReply { title, .. } => Some(title),
            MessageContent::TemplateButton { text, .. } => Some(text),
            MessageContent::Media { caption, .. } => caption.as_deref(),
            _ => None,
        }
    }
}

impl MessageContent {
    /// How the message reads in a conversation history: the text itself, or a short bracketed
    /// description of what was sent (`[image] caption`, `[location: HQ]`...).
    pub fn describe(&self) -> String {
        let with = |label: String, extra: Option<&str>| match extra.filter(|e| !e.is_empty()) {
            Some(extra) => format!("[{label}] {extra}"),
            None => format!("[{label}]"),
        };
        match self {
            MessageContent::Text { body } => body.clone(),
            MessageContent::InteractiveReply {
                reply: InteractiveKind::NfmReply,
                description: Some(json),
                title,
                ..
            } => match serde_json::from_str::<serde_json::Value>(json) {
                // The answers without the token: what the user filled in.
                Ok(serde_json::Value::Object(mut answers)) => {
                    answers.remove("flow_token");
                    format!("{FLOW_ANSWERS}{}", serde_json::Value::Object(answers))
                }
                _ => title.clone(),
            },
            MessageContent::InteractiveReply { title, .. } => title.clone(),
            MessageContent::TemplateButton { text, .. } => text.clone(),
            MessageContent::Media {
                media: MediaKind::Audio,
                voice: true,
                ..
            } => "[voice message]".into(),
            MessageContent::Media {
                media: MediaKind::Document,
                filename,
                caption,
                ..
            } => with(
                format!("document: {}", filename.as_deref().unwrap_or("file")),
                caption.as_deref(),
            ),
            MessageContent::Media { media, caption, .. } => {
                with(media.as_str().to_string(), caption.as_deref())
            }
            MessageContent::Location {
                latitude,
                longitude,
                name,
                address,
            } => {
                let place = [name.as_deref(), address.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("[location: {place} ({latitude:.5}, {longitude:.5})]")
            }
            MessageContent::Contacts { names, phones, .. } => {
                let shared: Vec<&str> = names.iter().chain(phones).map(String::as_str).collect();
                format!("[contacts: {}]", shared.join(", "))
            }
            MessageContent::Reaction { emoji: Some(e), .. } => format!("[reaction {e}]"),
            MessageContent::Reaction { emoji: None, .. } => "[reaction removed]".into(),
            MessageContent::Order { items, text, .. } => {
                with(format!("order: {items} items"), text.as_deref())
            }
            MessageContent::System { system_type, .. } => format!("[system: {system_type}]"),
            MessageContent::Edit { text, .. } => with("edited".into(), text.as_deref()),
            MessageContent::Revoke { .. } => "[deleted a message]".into(),
            MessageContent::Unsupported { kind, .. } => format!("[unsupported: {kind}]"),
        }
    }
}

/// Delivery state of a message we sent, from a `statuses[]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub message_id: String,
    pub phone_number_id: Option<PhoneNumberId>,
    pub status: DeliveryStatus,
    pub recipient: Option<String>,
    pub timestamp: i64,
    pub errors: Vec<ErrorInfo>,
    pub pricing_category: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
    Other(String),
}

impl DeliveryStatus {
    pub fn parse(raw: &str) -> DeliveryStatus {
        match raw {
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "played" => DeliveryStatus::Played,
            "failed" => DeliveryStatus::Failed,
            // Bounded: the value ends up in dedup keys and logs.
            other => DeliveryStatus::Other(other.chars().take(32).collect()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Played => "played",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Other(s) => s,
        }
    }
}

/// An error Meta reported in a webhook (on a status, a message or the whole value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: i64,
    pub title: Option<String>,
    pub details: Option<String>,
}

impl StatusUpdate {
    /// The conversation this status belongs to: the business number and the recipient.
    pub fn conversation(&self) -> Option<(PhoneNumberId, UserId)> {
        Some((
            self.phone_number_id.clone()?,
            UserId::parse(self.recipient.as_deref()?)?,
        ))
    }
}

/// What the inbox holds: a user message, or a status of a message we sent. Both go through the
/// same per-conversation order.
#[derive(Debug, Clone, PartialEq)]
pub enum InboxItem {
    Message(InboundMessage),
    Status(StatusUpdate),
    /// A message an operator or the business's systems asked us to send.
    Outbound(OutboundMessage),
    /// Meta's conversation routing moved the conversation to or from this app.
    Handover(Handover),
}

/// A `messaging_handovers` notification: who owns the conversation now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    pub phone_number_id: PhoneNumberId,
    pub user: UserId,
    /// `control_passed` to us (true), or `control_taken` from us (false).
    pub owned: bool,
    /// Unix seconds: a late notification never overrides a newer one.
    pub timestamp: i64,
}

/// Who asked for an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundSource {
    /// A person answering the user (console, admin API, CLI): the conversation goes to them.
    Operator,
    /// A notification of the business (an order shipped): recorded as the bot's.
    Notification,
}

/// A message to send to a user on request, queued in the user's conversation so it never
/// interleaves with a reply in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// `out.<...>`: from the client's idempotency key, or generated.
    pub id: String,
    pub phone_number_id: PhoneNumberId,
    pub to: UserId,
    pub source: OutboundSource,
    /// Stored in the form every version wrote (`action::stored`).
    #[serde(with = "action::stored")]
    pub content: action::Action,
    /// Unix seconds.
    pub requested_at: i64,
    /// The wamid of the message it quotes (WhatsApp's `context`); `None`: nothing quoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// An operator's message: the named operator who wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Statuses are stored as `{"st": ...}`; anything else is a message (the format of every
/// version before statuses were queued).
#[derive(Serialize, Deserialize)]
struct StoredHandover {
    ho: Handover,
}

#[derive(Serialize, Deserialize)]
struct StoredOutbound {
    out: OutboundMessage,
}

#[derive(Serialize, Deserialize)]
struct StoredStatus {
    st: StatusUpdate,
}

impl InboxItem {
    /// The stored form (the inbox stream's `m` field).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            InboxItem::Message(message) => serde_json::to_string(message),
            InboxItem::Status(status) => {
                serde_json::to_string(&StoredStatus { st: status.clone() })
            }
            InboxItem::Outbound(out) => serde_json::to_string(&StoredOutbound { out: out.clone() }),
            InboxItem::Handover(ho) => serde_json::to_string(&StoredHandover { ho: ho.clone() }),
        }
    }

    pub fn from_json(raw: &str) -> Result<InboxItem, serde_json::Error> {
        if raw.starts_with("{\"ho\":") {
            Ok(InboxItem::Handover(
                serde_json::from_str::<StoredHandover>(raw)?.ho,
            ))
        } else if raw.starts_with("{\"out\":") {
            Ok(InboxItem::Outbound(
                serde_json::from_str::<StoredOutbound>(raw)?.out,
            ))
        } else if raw.starts_with("{\"st\":") {
            Ok(InboxItem::Status(
                serde_json::from_str::<StoredStatus>(raw)?.st,
            ))
        } else {
            Ok(InboxItem::Message(serde_json::from_str(raw)?))
        }
    }

    /// The business number it belongs to (a status may name none).
    pub fn phone_number_id(&self) -> Option<&PhoneNumberId> {
        match self {
            InboxItem::Message(m) => Some(&m.phone_number_id),
            InboxItem::Status(s) => s.phone_number_id.as_ref(),
            InboxItem::Outbound(o) => Some(&o.phone_number_id),
            InboxItem::Handover(h) => Some(&h.phone_number_id),
        }
    }

    /// `(phone_number_id, user)`: the conversation whose order this item keeps.
    pub fn conversation(&self) -> Option<(PhoneNumberId, UserId)> {
        match self {
            InboxItem::Message(m) => Some((m.phone_number_id.clone(), m.user.clone())),
            InboxItem::Status(s) => s.conversation(),
            InboxItem::Outbound(o) => Some((o.phone_number_id.clone(), o.to.clone())),
            InboxItem::Handover(h) => Some((h.phone_number_id.clone(), h.user.clone())),
        }
    }

    /// The dedup key: the wamid, and for a status also its value (`sent`, `read`...).
    pub fn dedup_id(&self) -> String {
        match self {
            InboxItem::Message(m) => m.id.as_str().to_string(),
            InboxItem::Status(s) => format!("{}:{}", s.message_id, s.status.as_str()),
            InboxItem::Outbound(o) => o.id.clone(),
            InboxItem::Handover(h) => format!(
                "handover:{}:{}:{}",
                h.user.as_str(),
                if h.owned { "passed" } else { "taken" },
                h.timestamp
            ),
        }
    }
}

/// Everything one webhook delivery carried, in payload order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookBatch {
    pub messages: Vec<InboundMessage>,
    pub statuses: Vec<StatusUpdate>,
    pub handovers: Vec<Handover>,
    /// Value-level errors (`value.errors[]`): system or account problems, logged.
    pub errors: Vec<ErrorInfo>,
    /// Changes of fields other than `messages` (account updates, templates...), ignored.
    pub ignored_changes: usize,
    /// Message entries that could not become an [`InboundMessage`] (no id or no sender).
    pub dropped_messages: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_phones_and_bsuids() {
        assert_eq!(mask_user("4915123456789"), "+49********789");
        assert_eq!(
            mask_user("US.13491208655302741918"),
            "US.*****************918"
        );
        assert_eq!(mask_user("123"), "***");
        let user = UserId::parse("+4915123456789").expect("valid");
        assert_eq!(user.as_str(), "4915123456789");
        assert_eq!(user.to_string(), "+49********789");
        assert!(user.is_phone());
    }

    #[test]
    fn sender_prefers_phone_then_bsuid() {
        let mut sender = Sender {
            phone: Some("15551234567".into()),
            bsuid: Some("US.1349".into()),
            profile_name: None,
            username: None,
        };
        assert_eq!(
            sender.user_id().map(|u| u.as_str().to_string()),
            Some("15551234567".into())
        );
        sender.phone = None;
        assert_eq!(
            sender.user_id().map(|u| u.as_str().to_string()),
            Some("US.1349".into())
        );
        sender.bsuid = None;
        assert!(sender.user_id().is_none());
    }

    #[test]
    fn ids_reject_garbage() {
        assert!(PhoneNumberId::parse("").is_none());
        assert!(PhoneNumberId::parse("12/../x").is_none());
        assert!(UserId::parse("a b").is_none());
        assert!(UserId::parse("x:y").is_none());
        assert!(WaMessageId::parse("wamid.\n").is_some());
        assert!(WaMessageId::parse("wa\u{0}mid").is_none());
    }
}
