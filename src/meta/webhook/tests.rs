//! Parser tests over every fixture copied from `../shared/fixtures`, plus property tests.

use super::*;
use crate::domain::DeliveryStatus;
use proptest::prelude::*;

fn fixture(name: &str) -> WebhookBatch {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse(&VerifiedBody::trusted(bytes)).expect("fixture parses")
}

fn only_message(batch: &WebhookBatch) -> &InboundMessage {
    assert_eq!(batch.messages.len(), 1, "{batch:?}");
    &batch.messages[0]
}

#[test]
fn text_message_with_escaped_unicode() {
    let batch = fixture("text_message.json");
    let m = only_message(&batch);
    assert_eq!(
        m.id.as_str(),
        "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBQjdDNDFFMDlEMkY1QTgzQzZFMUQA"
    );
    assert_eq!(m.phone_number_id.as_str(), "113948572261094");
    assert_eq!(m.user.as_str(), "5511987654321");
    assert_eq!(m.sender.profile_name.as_deref(), Some("Ana Souza"));
    assert_eq!(m.timestamp, 1793452187);
    assert_eq!(
        m.content,
        MessageContent::Text {
            body: "Olá! Qual é o horário de funcionamento? 😊".into()
        }
    );
}

#[test]
fn image_message() {
    let batch = fixture("image_message.json");
    let m = only_message(&batch);
    assert_eq!(m.user.as_str(), "4915123456789");
    match &m.content {
        MessageContent::Media {
            media,
            id,
            mime_type,
            caption,
            ..
        } => {
            assert_eq!(*media, MediaKind::Image);
            assert_eq!(id.as_deref(), Some("1862047395512308"));
            assert_eq!(mime_type.as_deref(), Some("image/jpeg"));
            assert_eq!(caption.as_deref(), Some("Rechnung 2026/10 – bitte prüfen"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn interactive_button_and_list_replies() {
    let batch = fixture("interactive_button_reply.json");
    let m = only_message(&batch);
    assert_eq!(
        m.content,
        MessageContent::InteractiveReply {
            reply: InteractiveKind::ButtonReply,
            id: "confirm_booking".into(),
            title: "Confirm".into(),
            description: None,
        }
    );
    assert_eq!(
        m.reply_to.as_deref(),
        Some("wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgSNEQxRjBCOEEyQzZFOTM1NzFBMjQA")
    );
    let batch = fixture("interactive_list_reply.json");
    assert_eq!(
        only_message(&batch).content,
        MessageContent::InteractiveReply {
            reply: InteractiveKind::ListReply,
            id: "plan_pro".into(),
            title: "Pro plan".into(),
            description: Some("Up to 5 users, priority support".into()),
        }
    );
}

#[test]
fn statuses_are_not_messages() {
    let batch = fixture("status_updates.json");
    assert!(batch.messages.is_empty());
    let kinds: Vec<&str> = batch.statuses.iter().map(|s| s.status.as_str()).collect();
    assert_eq!(kinds, ["sent", "read", "failed"]);
    assert_eq!(
        batch.statuses[0].pricing_category.as_deref(),
        Some("service")
    );
    let failed = &batch.statuses[2];
    assert_eq!(failed.status, DeliveryStatus::Failed);
    assert_eq!(failed.errors[0].code, 131047);
    assert_eq!(failed.recipient.as_deref(), Some("447700900123"));
}

#[test]
fn batch_of_two_changes_gives_two_messages_including_bsuid_only_user() {
    let batch = fixture("batch_two_messages.json");
    assert_eq!(batch.messages.len(), 2);
    let first = &batch.messages[0];
    assert_eq!(first.user.as_str(), "4915123456789");
    assert_eq!(
        first.sender.bsuid.as_deref(),
        Some("DE.8420571193648201337")
    );
    assert_eq!(first.sender.profile_name.as_deref(), Some("Jürgen Müller"));
    let second = &batch.messages[1];
    assert_eq!(second.sender.phone, None);
    assert_eq!(second.user.as_str(), "US.13491208655302741918");
    assert!(!second.user.is_phone());
    assert_eq!(second.sender.username.as_deref(), Some("@sam.rivers"));
    assert_eq!(
        second.content,
        MessageContent::Text {
            body: "hi, is this still available?".into()
        }
    );
}

#[test]
fn unsupported_message_is_kept_with_its_code() {
    let batch = fixture("unsupported_message.json");
    assert_eq!(
        only_message(&batch).content,
        MessageContent::Unsupported {
            kind: "poll_creation".into(),
            error_code: Some(131051),
        }
    );
}

#[test]
fn value_level_errors_are_collected() {
    let batch = fixture("value_errors.json");
    assert!(batch.messages.is_empty() && batch.statuses.is_empty());
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].code, 130429);
}

#[test]
fn signature_fixture_parses() {
    let batch = fixture("signature/raw_body_escaped.json");
    assert_eq!(
        only_message(&batch).content,
        MessageContent::Text {
            body: "Café um 10/11 @ 50% Rabatt? 😀 <ok>".into()
        }
    );
}

fn wrap(message: serde_json::Value) -> WebhookBatch {
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "123"},
            "contacts": [{"profile": {"name": "X"}, "wa_id": "15551230000"}],
            "messages": [message]
        }}]}]
    });
    parse(&VerifiedBody::trusted(body.to_string())).expect("parses")
}

fn content(message: serde_json::Value) -> MessageContent {
    let mut message = message;
    message["from"] = "15551230000".into();
    message["id"] = "wamid.X".into();
    message["timestamp"] = "1700000000".into();
    only_message(&wrap(message)).content.clone()
}

#[test]
fn every_documented_type_becomes_content() {
    use serde_json::json;
    assert_eq!(
        content(
            json!({"type": "audio", "audio": {"id": "a1", "mime_type": "audio/ogg", "voice": true}})
        ),
        MessageContent::Media {
            media: MediaKind::Audio,
            id: Some("a1".into()),
            mime_type: Some("audio/ogg".into()),
            caption: None,
            filename: None,
            voice: true,
            animated: false
        }
    );
    assert_eq!(
        content(json!({"type": "video", "video": {"id": "v"}})).kind(),
        "video"
    );
    assert!(matches!(
        content(json!({"type": "document", "document": {"id": "d", "filename": "a.pdf"}})),
        MessageContent::Media { media: MediaKind::Document, filename: Some(f), .. } if f == "a.pdf"
    ));
    assert!(matches!(
        content(json!({"type": "sticker", "sticker": {"id": "s", "animated": true}})),
        MessageContent::Media {
            media: MediaKind::Sticker,
            animated: true,
            ..
        }
    ));
    assert_eq!(
        content(
            json!({"type": "location", "location": {"latitude": 38.9, "longitude": -77.0, "name": "HQ"}})
        ),
        MessageContent::Location {
            latitude: 38.9,
            longitude: -77.0,
            name: Some("HQ".into()),
            address: None
        }
    );
    assert_eq!(
        content(
            json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ann Lee", "first_name": "Ann"}, "phones": [{"phone": "+1 555", "type": "HOME"}]}]})
        ),
        MessageContent::Contacts {
            names: vec!["Ann Lee".into()],
            phones: vec!["+1 555".into()],
            requested: false,
        }
    );
    assert_eq!(
        content(
            json!({"type": "contacts", "contacts": [{"origin": "contact_request", "phones": [{"phone": "+16505551234", "wa_id": "16505551234", "type": "CELL"}]}]})
        ),
        MessageContent::Contacts {
            names: vec![],
            phones: vec!["+16505551234".into()],
            requested: true,
        },
        "the answer to a request_contact_info button"
    );
    assert_eq!(
        content(
            json!({"type": "interactive", "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{\"a\":1}"}}})
        ),
        MessageContent::InteractiveReply {
            reply: InteractiveKind::NfmReply,
            id: "flow".into(),
            title: "Sent".into(),
            description: Some("{\"a\":1}".into())
        }
    );
    assert_eq!(
        content(
            json!({"type": "button", "button": {"payload": "STOP", "text": "Stop promotions"}})
        ),
        MessageContent::TemplateButton {
            payload: "STOP".into(),
            text: "Stop promotions".into()
        }
    );
    assert_eq!(
        content(json!({"type": "reaction", "reaction": {"message_id": "wamid.Y", "emoji": "👍"}})),
        MessageContent::Reaction {
            message_id: "wamid.Y".into(),
            emoji: Some("👍".into())
        }
    );
    assert_eq!(
        content(json!({"type": "reaction", "reaction": {"message_id": "wamid.Y"}})),
        MessageContent::Reaction {
            message_id: "wamid.Y".into(),
            emoji: None
        }
    );
    assert_eq!(
        content(
            json!({"type": "order", "order": {"catalog_id": "c", "text": "t", "product_items": [{"product_retailer_id": "p", "quantity": 2, "item_price": 7.99, "currency": "USD"}]}})
        ),
        MessageContent::Order {
            catalog_id: Some("c".into()),
            text: Some("t".into()),
            items: 1
        }
    );
    assert_eq!(
        content(
            json!({"type": "system", "system": {"body": "changed", "wa_id": "15559990000", "type": "user_changed_number"}})
        ),
        MessageContent::System {
            system_type: "user_changed_number".into(),
            body: Some("changed".into()),
            new_wa_id: Some("15559990000".into()),
            new_user_id: None
        }
    );
    assert_eq!(
        content(
            json!({"type": "text", "text": {"body": "hi"}, "referral": {"source_url": "https://fb.me/x", "source_type": "ad", "ctwa_clid": "abc"}})
        ),
        MessageContent::Text { body: "hi".into() }
    );
    assert_eq!(
        content(json!({"type": "hologram", "hologram": {"x": 1}})),
        MessageContent::Unsupported {
            kind: "hologram".into(),
            error_code: None
        }
    );
    assert_eq!(
        content(json!({"type": "text", "text": "not an object"})),
        MessageContent::Unsupported {
            kind: "malformed".into(),
            error_code: None
        }
    );
}

#[test]
fn malformed_shapes_are_not_fatal() {
    for body in [
        r#"{}"#,
        r#"{"entry": 5}"#,
        r#"{"entry": [{"changes": [{"field": "messages", "value": "x"}]}]}"#,
        r#"{"entry": [{"changes": [{"field": "messages", "value": {"messages": [{"type": "text"}]}}]}]}"#,
        r#"{"entry": [{"changes": [{"field": "account_update", "value": {"event": "VERIFIED"}}]}]}"#,
    ] {
        assert!(parse(&VerifiedBody::trusted(body)).is_ok(), "{body}");
    }
    let batch = parse(&VerifiedBody::trusted(
        r#"{"entry": [{"changes": [{"field": "account_update", "value": {}}, {"field": "messages", "value": {"metadata": {"phone_number_id": "1"}, "messages": [{"type": "text"}]}}]}]}"#,
    ))
    .expect("parses");
    assert_eq!(batch.ignored_changes, 1);
    assert_eq!(batch.dropped_messages, 1);
}

#[test]
fn not_json_or_not_object_fails() {
    assert!(matches!(
        parse(&VerifiedBody::trusted("{nope")),
        Err(ParseError::NotJson(_))
    ));
    assert_eq!(
        parse(&VerifiedBody::trusted("[1,2]")),
        Err(ParseError::NotObject)
    );
    assert_eq!(
        parse(&VerifiedBody::trusted("\"x\"")),
        Err(ParseError::NotObject)
    );
}

/// A body the direct decoding refuses (a key sent twice) is read through a `Value`: the last
/// one wins, at every level, as serde_json's maps do.
#[test]
fn a_key_sent_twice_is_read_with_the_last_one_winning() {
    let body = r#"{"object": "whatsapp_business_account", "entry": [{"changes": [
        {"field": "messages", "value": {
            "metadata": {"phone_number_id": "123"},
            "messages": [
                {"from": "15551230000", "id": "wamid.A", "type": "text",
                 "text": {"body": "first"}, "text": {"body": "second"}},
                {"from": "15551230000", "id": "wamid.B", "type": "text", "text": {"body": "ok"}}
            ],
            "statuses": [{"id": "wamid.S", "status": "sent", "status": "read", "timestamp": 7}]
        }}]}]}"#;
    // Twice at the envelope too: the whole body goes the slow way.
    let envelope_twice = body.replacen('{', r#"{"object": "x", "#, 1);
    for body in [body.to_string(), envelope_twice] {
        let batch = parse(&VerifiedBody::trusted(body)).expect("parses");
        a_key_sent_twice_gives(&batch);
    }
}

fn a_key_sent_twice_gives(batch: &WebhookBatch) {
    assert_eq!(batch.messages.len(), 2, "{batch:?}");
    assert_eq!(
        batch.messages[0].content,
        MessageContent::Text {
            body: "second".into()
        }
    );
    assert_eq!(batch.messages[1].id.as_str(), "wamid.B");
    assert_eq!(batch.statuses.len(), 1);
    assert_eq!(batch.statuses[0].status, DeliveryStatus::parse("read"));
    assert_eq!(batch.statuses[0].timestamp, 7);
}

/// A message whose shape is wrong is still kept by its id and sender, read off the raw JSON.
#[test]
fn a_message_of_the_wrong_shape_keeps_its_id_and_sender() {
    let batch = wrap(serde_json::json!({
        "from": "15551230000", "id": "wamid.W", "type": "text", "text": ["not", "an", "object"]
    }));
    let m = only_message(&batch);
    assert_eq!(m.id.as_str(), "wamid.W");
    assert_eq!(m.user.as_str(), "15551230000");
    assert!(matches!(&m.content, MessageContent::Unsupported { kind, .. } if kind == "malformed"));
}

/// Ids, timestamps and coordinates arrive as strings or numbers; anything else reads as absent
/// without failing the message.
#[test]
fn lenient_scalars_take_strings_and_numbers_and_skip_the_rest() {
    let m = wrap(serde_json::json!({
        "from": 15551230000u64, "id": "wamid.N", "timestamp": {"nested": [1, 2]},
        "type": "location", "location": {"latitude": "-23.5", "longitude": -46}
    }));
    let m = only_message(&m);
    assert_eq!(m.user.as_str(), "15551230000");
    assert_eq!(m.timestamp, 0);
    match &m.content {
        MessageContent::Location {
            latitude,
            longitude,
            ..
        } => {
            assert_eq!(*latitude, -23.5);
            assert_eq!(*longitude, -46.0);
        }
        other => panic!("{other:?}"),
    }
    let m = wrap(serde_json::json!({
        "from": "15551230000", "id": "wamid.F", "timestamp": 1700000000,
        "type": "text", "text": {"body": "x"}
    }));
    assert_eq!(only_message(&m).timestamp, 1700000000);
}

#[test]
fn missing_phone_key_falls_back_to_bsuid() {
    let batch = wrap(serde_json::json!({
        "from_user_id": "BR.777", "id": "wamid.Z", "timestamp": 5, "type": "text", "text": {"body": "oi"}
    }));
    // The single contact entry (wa_id 15551230000) is the sender's profile: its phone is used.
    assert_eq!(only_message(&batch).user.as_str(), "15551230000");
    let body = serde_json::json!({"entry": [{"changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": "123"},
        "messages": [{"from_user_id": "BR.777", "id": "wamid.Z", "type": "text", "text": {"body": "oi"}}]
    }}]}]});
    let batch = parse(&VerifiedBody::trusted(body.to_string())).expect("parses");
    assert_eq!(only_message(&batch).user.as_str(), "BR.777");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&VerifiedBody::trusted(bytes));
    }

    #[test]
    fn arbitrary_json_never_panics(json in arb_json()) {
        let _ = parse(&VerifiedBody::trusted(json.to_string()));
        let wrapped = serde_json::json!({"entry": [{"changes": [{"field": "messages", "value": {
            "metadata": {"phone_number_id": "1"}, "contacts": [json.clone()], "messages": [json.clone()], "statuses": [json]
        }}]}]});
        let _ = parse(&VerifiedBody::trusted(wrapped.to_string()));
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("text".to_string()),
            Just("messages".to_string()),
            Just("".to_string()),
            ".{0,12}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("type".to_string()),
            Just("id".to_string()),
            Just("from".to_string()),
            Just("text".to_string()),
            Just("body".to_string()),
            Just("interactive".to_string()),
            Just("button_reply".to_string()),
            Just("location".to_string()),
            Just("latitude".to_string()),
            Just("entry".to_string()),
            Just("changes".to_string()),
            Just("value".to_string()),
            Just("field".to_string()),
            Just("messages".to_string()),
            "[a-z_]{1,8}"
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(keys, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
