//! Typed outgoing messages and the exact JSON body Meta documents for each (send-messages,
//! text, reaction, interactive reply buttons and lists, template and media pages).

use serde_json::{json, Map, Value};

use super::client::Recipient;

/// A message to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Text {
        body: String,
        preview_url: bool,
    },
    /// `emoji` empty removes our reaction.
    Reaction {
        message_id: String,
        emoji: String,
    },
    /// Up to 3 reply buttons `(id, title)`.
    Buttons {
        body: String,
        header: Option<String>,
        footer: Option<String>,
        buttons: Vec<(String, String)>,
    },
    List {
        body: String,
        header: Option<String>,
        footer: Option<String>,
        /// The label of the button that opens the list.
        button: String,
        sections: Vec<ListSection>,
    },
    /// Needed outside the 24-hour window. `components` as Meta documents them.
    Template {
        name: String,
        language: String,
        components: Vec<Value>,
    },
    Media {
        kind: OutgoingMedia,
        source: MediaSource,
        caption: Option<String>,
        /// Documents only.
        filename: Option<String>,
    },
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListSection {
    /// Empty: no title (allowed when the list has one section).
    pub title: String,
    pub rows: Vec<ListRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListRow {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingMedia {
    Image,
    Audio,
    Video,
    Document,
    Sticker,
}

impl OutgoingMedia {
    fn as_str(self) -> &'static str {
        match self {
            OutgoingMedia::Image => "image",
            OutgoingMedia::Audio => "audio",
            OutgoingMedia::Video => "video",
            OutgoingMedia::Document => "document",
            OutgoingMedia::Sticker => "sticker",
        }
    }
}

/// An uploaded media id, or a public HTTPS link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    Id(String),
    Link(String),
}

impl Outgoing {
    pub fn text(body: impl Into<String>) -> Outgoing {
        Outgoing::Text {
            body: body.into(),
            preview_url: false,
        }
    }

    /// The `type` Meta expects.
    pub fn kind(&self) -> &'static str {
        match self {
            Outgoing::Text { .. } => "text",
            Outgoing::Reaction { .. } => "reaction",
            Outgoing::Buttons { .. } | Outgoing::List { .. } => "interactive",
            Outgoing::Template { .. } => "template",
            Outgoing::Media { kind, .. } => kind.as_str(),
            Outgoing::Location { .. } => "location",
        }
    }

    /// The request body for `POST /{phone_number_id}/messages`. `reply_to` quotes a message
    /// (ignored for reactions, which Meta does not allow to carry a context).
    pub fn to_body(&self, to: &Recipient, reply_to: Option<&str>) -> Value {
        let mut body = Map::new();
        body.insert("messaging_product".into(), json!("whatsapp"));
        body.insert("recipient_type".into(), json!("individual"));
        match to {
            Recipient::Phone(phone) => body.insert("to".into(), json!(phone)),
            Recipient::Bsuid(id) => body.insert("recipient".into(), json!(id)),
        };
        body.insert("type".into(), json!(self.kind()));
        body.insert(self.kind().into(), self.payload());
        if let (Some(id), false) = (reply_to, matches!(self, Outgoing::Reaction { .. })) {
            body.insert("context".into(), json!({ "message_id": id }));
        }
        Value::Object(body)
    }

    fn payload(&self) -> Value {
        match self {
            Outgoing::Text { body, preview_url } => {
                json!({ "preview_url": preview_url, "body": body })
            }
            Outgoing::Reaction { message_id, emoji } => {
                json!({ "message_id": message_id, "emoji": emoji })
            }
            Outgoing::Buttons {
                body,
                header,
                footer,
                buttons,
            } => {
                let buttons: Vec<Value> = buttons
                    .iter()
                    .map(|(id, title)| json!({ "type": "reply", "reply": { "id": id, "title": title } }))
                    .collect();
                interactive(
                    "button",
                    body,
                    header,
                    footer,
                    json!({ "buttons": buttons }),
                )
            }
            Outgoing::List {
                body,
                header,
                footer,
                button,
                sections,
            } => {
                let sections: Vec<Value> = sections
                    .iter()
                    .map(|s| {
                        let rows: Vec<Value> = s
                            .rows
                            .iter()
                            .map(|r| {
                                let mut row = json!({ "id": r.id, "title": r.title });
                                if let Some(d) = &r.description {
                                    row["description"] = json!(d);
                                }
                                row
                            })
                            .collect();
                        if s.title.is_empty() {
                            json!({ "rows": rows })
                        } else {
                            json!({ "title": s.title, "rows": rows })
                        }
                    })
                    .collect();
                interactive(
                    "list",
                    body,
                    header,
                    footer,
                    json!({ "button": button, "sections": sections }),
                )
            }
            Outgoing::Template {
                name,
                language,
                components,
            } => {
                let mut template = json!({ "name": name, "language": { "code": language } });
                if !components.is_empty() {
                    template["components"] = json!(components);
                }
                template
            }
            Outgoing::Media {
                kind,
                source,
                caption,
                filename,
            } => {
                let mut media = match source {
                    MediaSource::Id(id) => json!({ "id": id }),
                    MediaSource::Link(link) => json!({ "link": link }),
                };
                // Audio and stickers take no caption.
                if let (Some(caption), false) = (
                    caption,
                    matches!(kind, OutgoingMedia::Audio | OutgoingMedia::Sticker),
                ) {
                    media["caption"] = json!(caption);
                }
                if let (Some(filename), OutgoingMedia::Document) = (filename, kind) {
                    media["filename"] = json!(filename);
                }
                media
            }
            Outgoing::Location {
                latitude,
                longitude,
                name,
                address,
            } => {
                let mut location = json!({ "latitude": latitude, "longitude": longitude });
                if let Some(name) = name {
                    location["name"] = json!(name);
                }
                if let Some(address) = address {
                    location["address"] = json!(address);
                }
                location
            }
        }
    }
}

fn interactive(
    kind: &str,
    body: &str,
    header: &Option<String>,
    footer: &Option<String>,
    action: Value,
) -> Value {
    let mut value = json!({ "type": kind, "body": { "text": body }, "action": action });
    if let Some(header) = header {
        value["header"] = json!({ "type": "text", "text": header });
    }
    if let Some(footer) = footer {
        value["footer"] = json!({ "text": footer });
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone() -> Recipient {
        Recipient::Phone("+16505551234".into())
    }

    #[test]
    fn text_with_preview_and_reply_context() {
        let body = Outgoing::Text {
            body: "See https://example.com".into(),
            preview_url: true,
        }
        .to_body(&phone(), Some("wamid.IN"));
        assert_eq!(
            body,
            json!({
                "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+16505551234",
                "type": "text", "text": {"preview_url": true, "body": "See https://example.com"},
                "context": {"message_id": "wamid.IN"}
            })
        );
    }

    #[test]
    fn bsuid_recipient_replaces_to() {
        let body = Outgoing::text("hi").to_body(&Recipient::Bsuid("US.1349".into()), None);
        assert_eq!(body["recipient"], "US.1349");
        assert!(body.get("to").is_none());
    }

    #[test]
    fn reaction_never_carries_context() {
        let body = Outgoing::Reaction {
            message_id: "wamid.X".into(),
            emoji: "\u{1F600}".into(),
        }
        .to_body(&phone(), Some("wamid.X"));
        assert_eq!(
            body,
            json!({
                "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+16505551234",
                "type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "😀"}
            })
        );
    }

    #[test]
    fn reply_buttons() {
        let body = Outgoing::Buttons {
            body: "Confirm your booking?".into(),
            header: Some("Booking".into()),
            footer: Some("Reply below".into()),
            buttons: vec![
                ("confirm_booking".into(), "Confirm".into()),
                ("cancel_booking".into(), "Cancel".into()),
            ],
        }
        .to_body(&phone(), None);
        assert_eq!(
            body["interactive"],
            json!({
                "type": "button",
                "header": {"type": "text", "text": "Booking"},
                "body": {"text": "Confirm your booking?"},
                "footer": {"text": "Reply below"},
                "action": {"buttons": [
                    {"type": "reply", "reply": {"id": "confirm_booking", "title": "Confirm"}},
                    {"type": "reply", "reply": {"id": "cancel_booking", "title": "Cancel"}}
                ]}
            })
        );
        assert_eq!(body["type"], "interactive");
    }

    #[test]
    fn list_message() {
        let body = Outgoing::List {
            body: "Pick a plan".into(),
            header: None,
            footer: None,
            button: "Plans".into(),
            sections: vec![ListSection {
                title: "Plans".into(),
                rows: vec![
                    ListRow {
                        id: "plan_basic".into(),
                        title: "Basic".into(),
                        description: None,
                    },
                    ListRow {
                        id: "plan_pro".into(),
                        title: "Pro plan".into(),
                        description: Some("Up to 5 users".into()),
                    },
                ],
            }],
        }
        .to_body(&phone(), None);
        assert_eq!(
            body["interactive"],
            json!({
                "type": "list",
                "body": {"text": "Pick a plan"},
                "action": {"button": "Plans", "sections": [{"title": "Plans", "rows": [
                    {"id": "plan_basic", "title": "Basic"},
                    {"id": "plan_pro", "title": "Pro plan", "description": "Up to 5 users"}
                ]}]}
            })
        );
    }

    #[test]
    fn location_and_an_untitled_section() {
        let body = Outgoing::Location {
            latitude: 40.4168,
            longitude: -3.7038,
            name: Some("Sol".into()),
            address: None,
        }
        .to_body(&phone(), None);
        assert_eq!(body["type"], "location");
        assert_eq!(
            body["location"],
            json!({"latitude": 40.4168, "longitude": -3.7038, "name": "Sol"})
        );
        let list = Outgoing::List {
            body: "b".into(),
            header: None,
            footer: None,
            button: "Open".into(),
            sections: vec![ListSection {
                title: String::new(),
                rows: vec![ListRow {
                    id: "r".into(),
                    title: "Row".into(),
                    description: None,
                }],
            }],
        }
        .to_body(&phone(), None);
        assert_eq!(
            list["interactive"]["action"]["sections"],
            json!([{"rows": [{"id": "r", "title": "Row"}]}])
        );
    }

    #[test]
    fn template_with_components() {
        let body = Outgoing::Template {
            name: "order_update".into(),
            language: "en_US".into(),
            components: vec![
                json!({"type": "body", "parameters": [{"type": "text", "text": "#1234"}]}),
            ],
        }
        .to_body(&phone(), None);
        assert_eq!(
            body["template"],
            json!({
                "name": "order_update", "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "#1234"}]}]
            })
        );
    }

    #[test]
    fn media_by_id_and_by_link() {
        let image = Outgoing::Media {
            kind: OutgoingMedia::Image,
            source: MediaSource::Id("1862047395512308".into()),
            caption: Some("Your receipt".into()),
            filename: None,
        }
        .to_body(&phone(), None);
        assert_eq!(image["type"], "image");
        assert_eq!(
            image["image"],
            json!({"id": "1862047395512308", "caption": "Your receipt"})
        );
        let document = Outgoing::Media {
            kind: OutgoingMedia::Document,
            source: MediaSource::Link("https://example.com/a.pdf".into()),
            caption: None,
            filename: Some("a.pdf".into()),
        }
        .to_body(&phone(), None);
        assert_eq!(
            document["document"],
            json!({"link": "https://example.com/a.pdf", "filename": "a.pdf"})
        );
        let audio = Outgoing::Media {
            kind: OutgoingMedia::Audio,
            source: MediaSource::Id("9".into()),
            caption: Some("ignored".into()),
            filename: None,
        }
        .to_body(&phone(), None);
        assert_eq!(audio["audio"], json!({"id": "9"}));
    }
}
