//! How an outbound message's action is stored in the inbox (`{"type": "text" | "template" |
//! "message", ...}`): the form every version wrote, so entries queued before an upgrade read the
//! same and a replica of the previous version reads what this one queues.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Action, WireAction};

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Envelope {
    Text {
        text: String,
    },
    Template {
        name: String,
        language: String,
        #[serde(default)]
        components: Vec<serde_json::Value>,
    },
    /// Buttons, list, media, location in the public action schema.
    Message {
        message: WireAction,
    },
}

pub fn serialize<S: Serializer>(action: &Action, serializer: S) -> Result<S::Ok, S::Error> {
    let envelope = match action {
        Action::Text(text) => Envelope::Text { text: text.clone() },
        Action::Template {
            name,
            language,
            components,
        } => Envelope::Template {
            name: name.clone(),
            language: language.clone(),
            components: components.clone(),
        },
        other => Envelope::Message {
            message: WireAction::from(other.clone()),
        },
    };
    envelope.serialize(serializer)
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Action, D::Error> {
    Ok(match Envelope::deserialize(deserializer)? {
        Envelope::Text { text } => Action::Text(text),
        Envelope::Template {
            name,
            language,
            components,
        } => Action::Template {
            name,
            language,
            components,
        },
        Envelope::Message { message } => message.into_action().map_err(serde::de::Error::custom)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Holder {
        #[serde(with = "super")]
        content: Action,
    }

    /// The JSON earlier versions stored reads as the same action and is written back unchanged.
    #[test]
    fn stored_outbound_content_reads_and_writes_the_earlier_form() {
        for stored in [
            r#"{"content":{"type":"text","text":"Your order shipped"}}"#,
            r#"{"content":{"type":"template","name":"order_update","language":"en","components":[{"type":"body"}]}}"#,
            r#"{"content":{"type":"message","message":{"type":"buttons","text":"Pick","buttons":[{"id":"a","title":"A"}]}}}"#,
        ] {
            let holder: Holder = serde_json::from_str(stored).expect(stored);
            assert_eq!(serde_json::to_string(&holder).expect("writes"), stored);
        }
        let holder: Holder =
            serde_json::from_str(r#"{"content":{"type":"template","name":"t","language":"en"}}"#)
                .expect("components are optional");
        assert!(
            matches!(holder.content, Action::Template { components, .. } if components.is_empty())
        );
        assert!(serde_json::from_str::<Holder>(
            r#"{"content":{"type":"message","message":{"type":"buttons","text":"x"}}}"#
        )
        .is_err());
    }
}
