//! Wire types: Meta's webhook JSON as documented, modelled leniently (every field optional,
//! unknown fields ignored, timestamps as string or number) so that no delivery fails on shape.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct Payload {
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
pub struct Change {
    #[serde(default)]
    pub field: Option<String>,
    /// Kept raw: only `messages` changes are decoded further, others are acknowledged and ignored.
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Default, Deserialize)]
pub struct MessagesValue {
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub contacts: Vec<Contact>,
    /// Raw, so that one malformed message does not hide the others of the same change.
    #[serde(default, deserialize_with = "lenient_vec")]
    pub messages: Vec<Value>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub statuses: Vec<Value>,
    /// Coexistence (`smb_message_echoes`, and `standby` copies of them): what the business sent
    /// from the WhatsApp Business app; `from` is the business, `to` the customer.
    #[serde(default, deserialize_with = "lenient_vec")]
    pub message_echoes: Vec<Value>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub errors: Vec<WireError>,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    #[serde(default, deserialize_with = "string_or_number")]
    pub display_phone_number: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub phone_number_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Contact {
    #[serde(default)]
    pub profile: Option<Profile>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub wa_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    #[serde(default, deserialize_with = "string_or_number")]
    pub from: Option<String>,
    /// Echoes only: the customer the business wrote to.
    #[serde(default, deserialize_with = "string_or_number")]
    pub to: Option<String>,
    #[serde(default)]
    pub to_user_id: Option<String>,
    #[serde(default)]
    pub from_user_id: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub timestamp: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub context: Option<MessageContext>,
    #[serde(default)]
    pub text: Option<Text>,
    #[serde(default)]
    pub image: Option<Media>,
    #[serde(default)]
    pub audio: Option<Media>,
    #[serde(default)]
    pub video: Option<Media>,
    #[serde(default)]
    pub document: Option<Media>,
    #[serde(default)]
    pub sticker: Option<Media>,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub contacts: Vec<SharedContact>,
    #[serde(default)]
    pub interactive: Option<Interactive>,
    #[serde(default)]
    pub button: Option<Button>,
    #[serde(default)]
    pub reaction: Option<Reaction>,
    #[serde(default)]
    pub order: Option<Order>,
    #[serde(default)]
    pub system: Option<System>,
    #[serde(default)]
    pub unsupported: Option<Unsupported>,
    /// Coexistence numbers: the user edited (`edit`) or deleted (`revoke`) an earlier message.
    #[serde(default)]
    pub edit: Option<Edit>,
    #[serde(default)]
    pub revoke: Option<Revoke>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub errors: Vec<WireError>,
}

#[derive(Debug, Deserialize)]
pub struct Edit {
    #[serde(default)]
    pub original_message_id: Option<String>,
    /// The new message, shaped like a message (`type`, `text`...).
    #[serde(default)]
    pub message: Option<Box<Message>>,
}

#[derive(Debug, Deserialize)]
pub struct Revoke {
    #[serde(default)]
    pub original_message_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct MessageContext {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub forwarded: Option<bool>,
    #[serde(default)]
    pub frequently_forwarded: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Text {
    #[serde(default)]
    pub body: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Media {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub voice: Option<bool>,
    #[serde(default)]
    pub animated: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Location {
    #[serde(default, deserialize_with = "number_or_string")]
    pub latitude: Option<f64>,
    #[serde(default, deserialize_with = "number_or_string")]
    pub longitude: Option<f64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SharedContact {
    #[serde(default)]
    pub name: Option<SharedContactName>,
}

#[derive(Debug, Deserialize)]
pub struct SharedContactName {
    #[serde(default)]
    pub formatted_name: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Interactive {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub button_reply: Option<Reply>,
    #[serde(default)]
    pub list_reply: Option<Reply>,
    #[serde(default)]
    pub nfm_reply: Option<NfmReply>,
}

#[derive(Debug, Deserialize)]
pub struct Reply {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NfmReply {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub response_json: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Button {
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Reaction {
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub emoji: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Order {
    #[serde(default)]
    pub catalog_id: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub product_items: Vec<Value>,
}

#[derive(Debug, Deserialize)]
pub struct System {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub wa_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Unsupported {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub timestamp: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub recipient_id: Option<String>,
    #[serde(default)]
    pub recipient_user_id: Option<String>,
    #[serde(default)]
    pub pricing: Option<Pricing>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub errors: Vec<WireError>,
}

#[derive(Debug, Deserialize)]
pub struct Pricing {
    #[serde(default)]
    pub category: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WireError {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_data: Option<ErrorData>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorData {
    #[serde(default)]
    pub details: Option<String>,
}

/// Meta sends most numbers and ids as strings, some as numbers: accept both, drop anything else.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A list whose malformed elements are skipped instead of failing the whole payload; a
/// non-list becomes empty.
fn lenient_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| serde_json::from_value(item).ok())
            .collect(),
        _ => Vec::new(),
    })
}
