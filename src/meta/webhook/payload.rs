//! Wire types: Meta's webhook JSON as documented, modelled leniently (every field optional,
//! unknown fields ignored, timestamps as string or number) so that no delivery fails on shape.

use std::fmt;

use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
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
    /// Kept raw (the bytes, not a `Value` tree): only the fields wabot reads are decoded
    /// further, and a change it ignores costs no allocation but this one.
    #[serde(default)]
    pub value: Option<Box<RawValue>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct MessagesValue {
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default, deserialize_with = "lenient_vec")]
    pub contacts: Vec<Contact>,
    /// Raw, so that one malformed message does not hide the others of the same change.
    #[serde(default, deserialize_with = "raw_vec")]
    pub messages: Vec<Box<RawValue>>,
    #[serde(default, deserialize_with = "raw_vec")]
    pub statuses: Vec<Box<RawValue>>,
    /// Coexistence (`smb_message_echoes`, and `standby` copies of them): what the business sent
    /// from the WhatsApp Business app; `from` is the business, `to` the customer.
    #[serde(default, deserialize_with = "raw_vec")]
    pub message_echoes: Vec<Box<RawValue>>,
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
    #[serde(default)]
    pub phones: Vec<SharedPhone>,
    /// `contact_request` when the user answered our `request_contact_info` button.
    #[serde(default)]
    pub origin: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SharedPhone {
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub wa_id: Option<String>,
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
    fn text(scalar: Scalar<'_>) -> Option<String> {
        match scalar {
            Scalar::Str(s) => Some(s.to_string()),
            Scalar::Unsigned(n) => Some(n.to_string()),
            Scalar::Signed(n) => Some(n.to_string()),
            Scalar::Float(f) => serde_json::Number::from_f64(f).map(|n| n.to_string()),
            Scalar::Other => None,
        }
    }
    d.deserialize_any(ScalarVisitor(text))
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    fn number(scalar: Scalar<'_>) -> Option<f64> {
        match scalar {
            Scalar::Str(s) => s.trim().parse().ok(),
            // As serde_json's `Number::as_f64` converts them.
            Scalar::Unsigned(n) => Some(n as f64),
            Scalar::Signed(n) => Some(n as f64),
            Scalar::Float(f) => Some(f),
            Scalar::Other => None,
        }
    }
    d.deserialize_any(ScalarVisitor(number))
}

/// What a lenient scalar field was sent as; objects, lists, booleans and null are `Other`.
enum Scalar<'a> {
    Str(&'a str),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Other,
}

/// Visits any JSON value without building a `Value` for it, handing scalars to `F`.
struct ScalarVisitor<T>(fn(Scalar<'_>) -> Option<T>);

impl<'de, T> Visitor<'de> for ScalarVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Str(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Unsigned(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Signed(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Float(v)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Other))
    }
    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Other))
    }
    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok((self.0)(Scalar::Other))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok((self.0)(Scalar::Other))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok((self.0)(Scalar::Other))
    }
}

/// A list whose malformed elements are skipped instead of failing the whole payload; a
/// non-list becomes empty.
fn lenient_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    d.deserialize_any(ListVisitor(|raw: Box<RawValue>| decode_lenient(raw.get())))
}

/// A list kept as each element's raw JSON; a non-list becomes empty.
fn raw_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Box<RawValue>>, D::Error> {
    d.deserialize_any(ListVisitor(Some))
}

/// Decodes `T` straight from the text; only when that fails, through a `Value`, which
/// tolerates what a struct refuses (a key sent twice: the last one wins), as this parser always
/// did.
pub fn decode_lenient<T: DeserializeOwned>(raw: &str) -> Option<T> {
    serde_json::from_str(raw).ok().or_else(|| {
        serde_json::from_str::<Value>(raw)
            .ok()
            .and_then(|value| serde_json::from_value(value).ok())
    })
}

/// Visits a list element by element as raw JSON, keeping what `F` makes of each.
struct ListVisitor<F>(F);

impl<'de, F, T> Visitor<'de> for ListVisitor<F>
where
    F: FnMut(Box<RawValue>) -> Option<T>,
{
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            items.extend((self.0)(raw));
        }
        Ok(items)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }
    fn visit_str<E>(self, _: &str) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_none<E>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_any(self)
    }
}
