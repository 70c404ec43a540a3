//! One turn of a conversation's history and its stored encoding: a short positional JSON array
//! per list element (`[role, ts, id, text]`, then the delivery state and the rare fields only
//! when set), read back together with the objects earlier versions stored.
//!
//! The encoding is what keeps a conversation near the size of its text: the JSON keys of an
//! object and Meta's ~60-byte wamids were a third of a 40-turn conversation. The scripts read and
//! write the same shape (`lua/turns.lua`).

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha1::{Digest, Sha1};

use crate::domain::InboundMessage;

/// Who spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    #[serde(rename = "u")]
    User,
    #[serde(rename = "b")]
    Bot,
    /// A person of the business: an operator, or the owner answering from the WhatsApp
    /// Business app (a coexistence echo).
    #[serde(rename = "o")]
    Operator,
}

/// One turn, as the admin API shows it (short keys, like the stored fields they name).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Turn {
    #[serde(rename = "r")]
    pub role: Role,
    #[serde(rename = "t")]
    pub text: String,
    /// The digest ([`marker_digest`]) of the message's wamid: the user's message, or the one
    /// Meta gave what we sent. Statuses and echoes find their turn by it; none for a message
    /// of ours that was never sent.
    #[serde(rename = "id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Unix seconds.
    #[serde(rename = "ts")]
    pub at: i64,
    /// Message type (`text`, `image`, `interactive`...); `text` is not shown.
    #[serde(rename = "k", skip_serializing_if = "is_text")]
    pub kind: String,
    #[serde(rename = "rl", skip_serializing_if = "std::ops::Not::not")]
    pub rate_limited: bool,
    /// The user edited this message after sending it (the text is the edited one).
    #[serde(rename = "ed", skip_serializing_if = "std::ops::Not::not")]
    pub edited: bool,
    /// Our messages: the last delivery status Meta reported (`sent`, `delivered`, `read`,
    /// `failed`); none yet means accepted by Meta.
    #[serde(rename = "d", skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// Why it failed: Meta's code and title, or ours when it was never sent.
    #[serde(rename = "fe", skip_serializing_if = "Option::is_none")]
    pub failure: Option<DeliveryError>,
    /// A re-engagement template was sent for it after Meta refused it (131047).
    #[serde(rename = "re", skip_serializing_if = "std::ops::Not::not")]
    pub reengaged: bool,
    /// The user quoted a message (swiped to reply): its digest, as the quoted turn's `id`.
    #[serde(rename = "qi", skip_serializing_if = "Option::is_none")]
    pub quoted: Option<String>,
    /// The user's reaction to this message (an emoji).
    #[serde(rename = "rx", skip_serializing_if = "Option::is_none")]
    pub reaction: Option<String>,
    /// An operator's message: the named operator who wrote it.
    #[serde(rename = "by", skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Why one of our messages did not reach the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryError {
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// The wamid of the message `message` is about: the one a reaction reacts to, or the one the
/// user quoted (not for a tap on a button or list row, whose context is only the menu it
/// answers).
pub fn about(message: &InboundMessage) -> Option<&str> {
    use crate::domain::MessageContent;
    match &message.content {
        MessageContent::Reaction { message_id, .. } => Some(message_id.as_str()),
        _ => quoted_by(message).and(message.reply_to.as_deref()),
    }
}

/// The digest of the message `message` quotes, when the user quoted one: not for a tap on a
/// button or list row, whose context is only the menu it answers.
pub fn quoted_by(message: &InboundMessage) -> Option<String> {
    use crate::domain::MessageContent;
    match message.content {
        MessageContent::InteractiveReply { .. }
        | MessageContent::TemplateButton { .. }
        | MessageContent::Reaction { .. } => None,
        _ => message.reply_to.as_deref().map(marker_digest),
    }
}

/// The digest naming a message in a conversation: its marker field (`w:<digest>`) and its
/// turn's `id`. 64 bits of SHA-1, as the scripts' `digest_of` computes.
pub fn marker_digest(wamid: &str) -> String {
    let digest = Sha1::digest(wamid.as_bytes());
    hex::encode(&digest[..8])
}

impl Turn {
    /// The user turn of an inbound message.
    pub fn of_user(message: &InboundMessage, role: Role) -> Turn {
        Turn {
            id: Some(marker_digest(message.id.as_str())),
            at: message.timestamp,
            kind: message.content.kind().to_string(),
            quoted: quoted_by(message),
            ..Turn::plain(role, message.content.describe())
        }
    }

    /// A turn of ours (bot or operator) that Meta accepted as `sent_wamid` (empty: sent by an
    /// earlier attempt, its wamid not known).
    pub fn sent(role: Role, text: String, kind: &str, sent_wamid: &str, at: i64) -> Turn {
        Turn {
            id: (!sent_wamid.is_empty()).then(|| marker_digest(sent_wamid)),
            at,
            kind: kind.to_string(),
            ..Turn::plain(role, text)
        }
    }

    /// A turn of ours that was never sent, with why.
    pub fn failed(role: Role, text: String, kind: &str, failure: DeliveryError, at: i64) -> Turn {
        Turn {
            at,
            kind: kind.to_string(),
            delivery: Some("failed".into()),
            failure: Some(failure),
            ..Turn::plain(role, text)
        }
    }

    fn plain(role: Role, text: String) -> Turn {
        Turn {
            role,
            text,
            id: None,
            at: 0,
            kind: TEXT.into(),
            rate_limited: false,
            edited: false,
            delivery: None,
            failure: None,
            reengaged: false,
            quoted: None,
            reaction: None,
            by: None,
        }
    }

    /// Whether this is the turn of the message `wamid` (ours or the user's).
    pub fn is_message(&self, wamid: &str) -> bool {
        self.id.as_deref() == Some(marker_digest(wamid).as_str())
    }

    /// The list element the history stores.
    pub fn encode(&self) -> String {
        // Strings, integers and a struct of them always serialize.
        serde_json::to_string(&Stored(self)).unwrap_or_default()
    }

    /// A list element of the history, in this encoding or an earlier version's object.
    pub fn decode(raw: &str) -> Result<Turn, serde_json::Error> {
        serde_json::from_str::<Decoded>(raw).map(|decoded| decoded.0)
    }
}

const TEXT: &str = "text";

fn is_text(kind: &str) -> bool {
    kind == TEXT
}

/// The stored form: `[role, ts, id ('' none), text]`, then `delivery` ('' none) when it or a
/// rare field is set, then the rare fields as an object when any is set.
struct Stored<'a>(&'a Turn);

#[derive(Serialize, Deserialize, Default)]
struct Rare {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    rl: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fe: Option<DeliveryError>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    re: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    qi: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rx: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<String>,
}

impl Rare {
    fn of(turn: &Turn) -> Option<Rare> {
        let rare = Rare {
            k: (turn.kind != TEXT).then(|| turn.kind.clone()),
            rl: turn.rate_limited,
            ed: turn.edited,
            fe: turn.failure.clone(),
            re: turn.reengaged,
            qi: turn.quoted.clone(),
            rx: turn.reaction.clone(),
            by: turn.by.clone(),
        };
        let any = rare.k.is_some()
            || rare.rl
            || rare.ed
            || rare.fe.is_some()
            || rare.re
            || rare.qi.is_some()
            || rare.rx.is_some()
            || rare.by.is_some();
        any.then_some(rare)
    }
}

impl Serialize for Stored<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let turn = self.0;
        let rare = Rare::of(turn);
        let len = match (&rare, &turn.delivery) {
            (Some(_), _) => 6,
            (None, Some(_)) => 5,
            (None, None) => 4,
        };
        let mut seq = serializer.serialize_seq(Some(len))?;
        seq.serialize_element(&turn.role)?;
        seq.serialize_element(&turn.at)?;
        seq.serialize_element(turn.id.as_deref().unwrap_or(""))?;
        seq.serialize_element(&turn.text)?;
        if len > 4 {
            seq.serialize_element(turn.delivery.as_deref().unwrap_or(""))?;
        }
        if let Some(rare) = &rare {
            seq.serialize_element(rare)?;
        }
        seq.end()
    }
}

/// A turn as earlier versions stored it: an object, with the user message's digest in `w` and
/// Meta's full wamid of ours in `o`.
#[derive(Deserialize)]
struct Legacy {
    r: Role,
    t: String,
    #[serde(default)]
    w: Option<String>,
    #[serde(default)]
    o: Option<String>,
    ts: i64,
    #[serde(default)]
    k: Option<String>,
    #[serde(default)]
    rl: bool,
    #[serde(default)]
    ed: bool,
    #[serde(default)]
    d: Option<String>,
    #[serde(default)]
    fe: Option<DeliveryError>,
    #[serde(default)]
    re: bool,
}

struct Decoded(Turn);

impl<'de> Deserialize<'de> for Decoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TurnVisitor)
    }
}

struct TurnVisitor;

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

impl<'de> Visitor<'de> for TurnVisitor {
    type Value = Decoded;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stored turn: [role, ts, id, text, delivery?, rare?] or an object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Decoded, A::Error> {
        let missing = |at: usize| de::Error::invalid_length(at, &"at least 4 elements");
        let role: Role = seq.next_element()?.ok_or_else(|| missing(0))?;
        // Lua's cjson writes numbers as doubles; a whole second is exact in one.
        let at: f64 = seq.next_element()?.ok_or_else(|| missing(1))?;
        let id: String = seq.next_element()?.ok_or_else(|| missing(2))?;
        let text: String = seq.next_element()?.ok_or_else(|| missing(3))?;
        let delivery: Option<Option<String>> = seq.next_element()?;
        let rare: Option<Option<Rare>> = seq.next_element()?;
        // Elements a later version may add are skipped.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        let rare = rare.flatten().unwrap_or_default();
        Ok(Decoded(Turn {
            role,
            text,
            id: non_empty(Some(id)),
            at: at as i64,
            kind: non_empty(rare.k).unwrap_or_else(|| TEXT.into()),
            rate_limited: rare.rl,
            edited: rare.ed,
            delivery: non_empty(delivery.flatten()),
            failure: rare.fe,
            reengaged: rare.re,
            quoted: non_empty(rare.qi),
            reaction: non_empty(rare.rx),
            by: non_empty(rare.by),
        }))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Decoded, A::Error> {
        let old = Legacy::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Decoded(Turn {
            role: old.r,
            text: old.t,
            id: old.w.or_else(|| old.o.as_deref().map(marker_digest)),
            at: old.ts,
            kind: non_empty(old.k).unwrap_or_else(|| TEXT.into()),
            rate_limited: old.rl,
            edited: old.ed,
            delivery: non_empty(old.d),
            failure: old.fe,
            reengaged: old.re,
            quoted: None,
            reaction: None,
            by: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str, at: i64) -> Turn {
        Turn {
            at,
            id: Some("0123456789abcdef".into()),
            ..Turn::plain(Role::User, text.into())
        }
    }

    #[test]
    fn a_plain_turn_is_four_elements() {
        assert_eq!(
            user("hi \"you\"", 5).encode(),
            r#"["u",5,"0123456789abcdef","hi \"you\""]"#
        );
        let sent = Turn::sent(Role::Bot, "ok".into(), "text", "wamid.X", 7);
        assert_eq!(
            sent.encode(),
            format!(r#"["b",7,"{}","ok"]"#, marker_digest("wamid.X"))
        );
        assert!(sent.is_message("wamid.X"));
        assert!(!sent.is_message("wamid.Y"));
    }

    #[test]
    fn delivery_and_rare_fields_follow_only_when_set() {
        let read = Turn {
            delivery: Some("read".into()),
            ..user("a", 1)
        };
        assert_eq!(read.encode(), r#"["u",1,"0123456789abcdef","a","read"]"#);
        let failed = Turn::failed(
            Role::Bot,
            "b".into(),
            "image",
            DeliveryError {
                code: 131026,
                title: None,
            },
            2,
        );
        assert_eq!(
            failed.encode(),
            r#"["b",2,"","b","failed",{"k":"image","fe":{"code":131026}}]"#
        );
        let limited = Turn {
            rate_limited: true,
            ..user("c", 3)
        };
        assert_eq!(
            limited.encode(),
            r#"["u",3,"0123456789abcdef","c","",{"rl":true}]"#
        );
        for turn in [read, failed, limited] {
            assert_eq!(Turn::decode(&turn.encode()).expect("decodes"), turn);
        }
    }

    #[test]
    fn what_lua_writes_decodes() {
        // cjson: numbers as doubles, `/` escaped, an empty delivery before the rare fields.
        let turn =
            Turn::decode(r#"["b",1796000002,"","a\/b","",{"ed":true},"later"]"#).expect("decodes");
        assert_eq!(turn.text, "a/b");
        assert_eq!(turn.at, 1_796_000_002);
        assert_eq!(turn.id, None);
        assert!(turn.edited);
        assert_eq!(turn.delivery, None);
        assert!(Turn::decode(r#"["u",1,"x"]"#).is_err());
        assert!(Turn::decode(r#"{"r":"u"}"#).is_err());
        assert!(Turn::decode("7").is_err());
    }

    #[test]
    fn turns_of_earlier_versions_still_read() {
        let old = Turn::decode(r#"{"r":"b","t":"hi","o":"wamid.X","ts":9,"d":"read","k":"image"}"#)
            .expect("decodes");
        assert!(old.is_message("wamid.X"));
        assert_eq!(old.delivery.as_deref(), Some("read"));
        assert_eq!(old.kind, "image");
        let user_turn =
            Turn::decode(r#"{"r":"u","t":"hi","w":"0123456789abcdef","ts":5}"#).expect("decodes");
        assert_eq!(user_turn, user("hi", 5));
    }

    #[test]
    fn marker_digest_is_the_scripts_one() {
        // redis.sha1hex gives the same hex; the scripts keep its first 16 digits.
        assert_eq!(
            marker_digest("abc"),
            "a9993e364706816a" // SHA-1("abc") = a9993e364706816aba3e25717850c26c9cd0d89d
        );
    }
}
