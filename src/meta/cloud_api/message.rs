//! The Graph API's edge of the one action model: the exact JSON body Meta documents for each
//! `Action` (send-messages, text, reaction, interactive reply buttons and lists, template and
//! media pages). No message type of its own: what goes out is the domain `Action`.

use serde_json::{json, Map, Value};

use super::client::Recipient;
use crate::domain::action::{Action, MediaKind, MediaSource};

/// Why an action makes no Graph API request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSendable {
    #[error("a handoff sends no message")]
    Handoff,
    #[error("a reaction needs the message it reacts to")]
    ReactionWithoutTarget,
    #[error("media to upload is sent by its media id, once uploaded")]
    NotUploaded,
}

/// The `type` Meta expects for an action; `None` for a handoff, which sends nothing.
pub fn graph_type(action: &Action) -> Option<&'static str> {
    (!matches!(action, Action::Handoff { .. })).then(|| action.message_type())
}

/// The request body for `POST /{phone_number_id}/messages`. `context` is the message a reaction
/// reacts to; for any other action, the message it quotes (Meta's `context.message_id`).
pub fn to_body(
    action: &Action,
    to: &Recipient,
    context: Option<&str>,
) -> Result<Value, NotSendable> {
    let kind = graph_type(action).ok_or(NotSendable::Handoff)?;
    if let Action::Media {
        source: MediaSource::Upload(_),
        ..
    } = action
    {
        return Err(NotSendable::NotUploaded);
    }
    let mut body = Map::new();
    body.insert("messaging_product".into(), json!("whatsapp"));
    body.insert("recipient_type".into(), json!("individual"));
    match to {
        Recipient::Phone(phone) => body.insert("to".into(), json!(phone)),
        Recipient::Bsuid(id) => body.insert("recipient".into(), json!(id)),
    };
    body.insert("type".into(), json!(kind));
    let payload = match action {
        // Meta does not allow a reaction to carry a context: its target is in the payload.
        Action::React { emoji } => {
            let target = context.ok_or(NotSendable::ReactionWithoutTarget)?;
            json!({ "message_id": target, "emoji": emoji })
        }
        other => {
            if let Some(id) = context {
                body.insert("context".into(), json!({ "message_id": id }));
            }
            payload(other)
        }
    };
    body.insert(kind.into(), payload);
    Ok(Value::Object(body))
}

fn payload(action: &Action) -> Value {
    match action {
        Action::Text(text) => json!({ "preview_url": false, "body": text }),
        Action::Buttons {
            text,
            header,
            footer,
            buttons,
        } => {
            let buttons: Vec<Value> = buttons
                .iter()
                .map(|b| json!({ "type": "reply", "reply": { "id": b.id, "title": b.title } }))
                .collect();
            interactive(
                "button",
                text,
                header,
                footer,
                json!({ "buttons": buttons }),
            )
        }
        Action::List {
            text,
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
                    match s.title.as_deref().filter(|t| !t.is_empty()) {
                        Some(title) => json!({ "title": title, "rows": rows }),
                        None => json!({ "rows": rows }),
                    }
                })
                .collect();
            interactive(
                "list",
                text,
                header,
                footer,
                json!({ "button": button, "sections": sections }),
            )
        }
        Action::Flow {
            text,
            header,
            footer,
            flow_id,
            flow_token,
            cta,
            screen,
            data,
            draft,
        } => {
            let mut parameters = json!({
                "flow_message_version": "3",
                "flow_token": flow_token,
                "flow_id": flow_id,
                "flow_cta": cta,
            });
            // A first screen opens it at once; without one, the endpoint's INIT answer decides.
            match screen {
                Some(screen) => {
                    parameters["flow_action"] = json!("navigate");
                    let mut payload = json!({ "screen": screen });
                    if let Some(data) = data {
                        payload["data"] = data.clone();
                    }
                    parameters["flow_action_payload"] = payload;
                }
                None => parameters["flow_action"] = json!("data_exchange"),
            }
            if *draft {
                parameters["mode"] = json!("draft");
            }
            interactive(
                "flow",
                text,
                header,
                footer,
                json!({ "name": "flow", "parameters": parameters }),
            )
        }
        Action::Link {
            text,
            header,
            footer,
            label,
            url,
        } => interactive(
            "cta_url",
            text,
            header,
            footer,
            json!({ "name": "cta_url", "parameters": { "display_text": label, "url": url } }),
        ),
        Action::AskLocation { text } => interactive(
            "location_request_message",
            text,
            &None,
            &None,
            json!({ "name": "send_location" }),
        ),
        Action::AskContact { text } => interactive(
            "request_contact_info",
            text,
            &None,
            &None,
            json!({ "name": "request_contact_info" }),
        ),
        Action::Template {
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
        Action::Media {
            kind,
            source,
            caption,
            filename,
        } => {
            let mut media = match source {
                MediaSource::Id(id) => json!({ "id": id }),
                MediaSource::Link(link) => json!({ "link": link }),
                // Refused by `to_body` before it gets here.
                MediaSource::Upload(upload) => json!({ "link": upload }),
            };
            // Audio and stickers take no caption.
            let captioned = !matches!(kind, MediaKind::Audio | MediaKind::Sticker);
            if let (Some(caption), true) = (caption, captioned) {
                media["caption"] = json!(caption);
            }
            if let (Some(filename), MediaKind::Document) = (filename, kind) {
                media["filename"] = json!(filename);
            }
            media
        }
        Action::Location {
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
        // Answered by `to_body` before it gets here.
        Action::React { .. } | Action::Handoff { .. } => Value::Null,
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
    use crate::domain::action::{Choice, Section};

    fn phone() -> Recipient {
        Recipient::Phone("+16505551234".into())
    }

    fn body(action: Action, context: Option<&str>) -> Value {
        to_body(&action, &phone(), context).expect("sendable")
    }

    fn choice(id: &str, title: &str, description: Option<&str>) -> Choice {
        Choice {
            id: id.into(),
            title: title.into(),
            description: description.map(Into::into),
        }
    }

    #[test]
    fn text_with_reply_context() {
        let body = body(
            Action::Text("See https://example.com".into()),
            Some("wamid.IN"),
        );
        assert_eq!(
            body,
            json!({
                "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+16505551234",
                "type": "text", "text": {"preview_url": false, "body": "See https://example.com"},
                "context": {"message_id": "wamid.IN"}
            })
        );
    }

    #[test]
    fn bsuid_recipient_replaces_to() {
        let body = to_body(
            &Action::Text("hi".into()),
            &Recipient::Bsuid("US.1349".into()),
            None,
        )
        .expect("sendable");
        assert_eq!(body["recipient"], "US.1349");
        assert!(body.get("to").is_none());
    }

    #[test]
    fn reaction_never_carries_context() {
        let body = body(
            Action::React {
                emoji: "\u{1F600}".into(),
            },
            Some("wamid.X"),
        );
        assert_eq!(
            body,
            json!({
                "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+16505551234",
                "type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "😀"}
            })
        );
    }

    #[test]
    fn a_handoff_or_a_reaction_without_its_target_sends_nothing() {
        let handoff = Action::Handoff { note: None };
        assert_eq!(to_body(&handoff, &phone(), None), Err(NotSendable::Handoff));
        let reaction = Action::React {
            emoji: "👍".into()
        };
        assert_eq!(
            to_body(&reaction, &phone(), None),
            Err(NotSendable::ReactionWithoutTarget)
        );
    }

    #[test]
    fn reply_buttons() {
        let body = body(
            Action::Buttons {
                text: "Confirm your booking?".into(),
                header: Some("Booking".into()),
                footer: Some("Reply below".into()),
                buttons: vec![
                    choice("confirm_booking", "Confirm", None),
                    choice("cancel_booking", "Cancel", None),
                ],
            },
            None,
        );
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
        let body = body(
            Action::List {
                text: "Pick a plan".into(),
                header: None,
                footer: None,
                button: "Plans".into(),
                sections: vec![Section {
                    title: Some("Plans".into()),
                    rows: vec![
                        choice("plan_basic", "Basic", None),
                        choice("plan_pro", "Pro plan", Some("Up to 5 users")),
                    ],
                }],
            },
            None,
        );
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
        let location = body(
            Action::Location {
                latitude: 40.4168,
                longitude: -3.7038,
                name: Some("Sol".into()),
                address: None,
            },
            None,
        );
        assert_eq!(location["type"], "location");
        assert_eq!(
            location["location"],
            json!({"latitude": 40.4168, "longitude": -3.7038, "name": "Sol"})
        );
        let list = body(
            Action::List {
                text: "b".into(),
                header: None,
                footer: None,
                button: "Open".into(),
                sections: vec![Section {
                    title: None,
                    rows: vec![choice("r", "Row", None)],
                }],
            },
            None,
        );
        assert_eq!(
            list["interactive"]["action"]["sections"],
            json!([{"rows": [{"id": "r", "title": "Row"}]}])
        );
    }

    #[test]
    fn template_with_components() {
        let body = body(
            Action::Template {
                name: "order_update".into(),
                language: "en_US".into(),
                components: vec![
                    json!({"type": "body", "parameters": [{"type": "text", "text": "#1234"}]}),
                ],
            },
            None,
        );
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
        let media = |kind, source, caption: Option<&str>, filename: Option<&str>| {
            body(
                Action::Media {
                    kind,
                    source,
                    caption: caption.map(Into::into),
                    filename: filename.map(Into::into),
                },
                None,
            )
        };
        let image = media(
            MediaKind::Image,
            MediaSource::Id("1862047395512308".into()),
            Some("Your receipt"),
            None,
        );
        assert_eq!(image["type"], "image");
        assert_eq!(
            image["image"],
            json!({"id": "1862047395512308", "caption": "Your receipt"})
        );
        let document = media(
            MediaKind::Document,
            MediaSource::Link("https://example.com/a.pdf".into()),
            None,
            Some("a.pdf"),
        );
        assert_eq!(
            document["document"],
            json!({"link": "https://example.com/a.pdf", "filename": "a.pdf"})
        );
        let audio = media(
            MediaKind::Audio,
            MediaSource::Id("9".into()),
            Some("ignored"),
            None,
        );
        assert_eq!(audio["audio"], json!({"id": "9"}));
        let sticker = media(
            MediaKind::Sticker,
            MediaSource::Link("https://example.com/s.webp".into()),
            Some("ignored"),
            None,
        );
        assert_eq!(sticker["type"], "sticker");
        assert_eq!(
            sticker["sticker"],
            json!({"link": "https://example.com/s.webp"})
        );
    }

    #[test]
    fn a_flow_opens_at_its_screen_or_asks_the_endpoint() {
        let flow = |screen: Option<&str>, draft: bool| {
            body(
                Action::Flow {
                    text: "Book a visit".into(),
                    header: None,
                    footer: Some("Takes a minute".into()),
                    flow_id: "1234567890".into(),
                    flow_token: "book.1".into(),
                    cta: "Book".into(),
                    screen: screen.map(Into::into),
                    data: screen.map(|_| json!({"day": "2026-12-09"})),
                    draft,
                },
                None,
            )
        };
        let navigate = flow(Some("DETAILS"), false);
        assert_eq!(navigate["type"], "interactive");
        let interactive = &navigate["interactive"];
        assert_eq!(interactive["type"], "flow");
        assert_eq!(interactive["body"]["text"], "Book a visit");
        assert_eq!(interactive["footer"]["text"], "Takes a minute");
        assert_eq!(interactive["action"]["name"], "flow");
        assert_eq!(
            interactive["action"]["parameters"],
            json!({
                "flow_message_version": "3", "flow_token": "book.1", "flow_id": "1234567890",
                "flow_cta": "Book", "flow_action": "navigate",
                "flow_action_payload": {"screen": "DETAILS", "data": {"day": "2026-12-09"}}
            })
        );
        let exchange = flow(None, true);
        let parameters = &exchange["interactive"]["action"]["parameters"];
        assert_eq!(parameters["flow_action"], "data_exchange");
        assert_eq!(parameters["mode"], "draft");
        assert!(parameters.get("flow_action_payload").is_none());
    }

    #[test]
    fn a_link_button_a_location_request_and_a_contact_request() {
        let link = body(
            Action::Link {
                text: "Our opening hours".into(),
                header: Some("Hours".into()),
                footer: None,
                label: "See them".into(),
                url: "https://example.com/hours".into(),
            },
            None,
        );
        assert_eq!(link["type"], "interactive");
        assert_eq!(
            link["interactive"],
            json!({"type": "cta_url", "header": {"type": "text", "text": "Hours"},
                "body": {"text": "Our opening hours"},
                "action": {"name": "cta_url", "parameters": {"display_text": "See them", "url": "https://example.com/hours"}}})
        );
        let ask = body(
            Action::AskLocation {
                text: "Where should we deliver?".into(),
            },
            None,
        );
        assert_eq!(
            ask["interactive"],
            json!({"type": "location_request_message", "body": {"text": "Where should we deliver?"},
                "action": {"name": "send_location"}})
        );
        let contact = body(
            Action::AskContact {
                text: "May we have your number?".into(),
            },
            None,
        );
        assert_eq!(
            contact["interactive"],
            json!({"type": "request_contact_info", "body": {"text": "May we have your number?"},
                "action": {"name": "request_contact_info"}})
        );
    }
}
