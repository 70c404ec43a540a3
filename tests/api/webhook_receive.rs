use std::sync::Arc;

use wabot::domain::MessageContent;

use crate::helpers::{
    fixture, spawn, AppOptions, RecordingSink, TestApp, APP_SECRET, OLD_APP_SECRET,
};

async fn app() -> (TestApp, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::default());
    (
        spawn(AppOptions {
            sink: Some(sink.clone()),
            ..AppOptions::default()
        })
        .await,
        sink,
    )
}

fn recorded(sink: &RecordingSink) -> Vec<wabot::domain::InboundMessage> {
    sink.messages.lock().expect("not poisoned").clone()
}

#[tokio::test]
async fn signed_text_message_is_accepted_and_handed_over() {
    let (app, sink) = app().await;
    let response = app
        .post_signed(&fixture("text_message.json"), APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let messages = recorded(&sink);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].user.as_str(), "5511987654321");
    assert!(
        matches!(&messages[0].content, MessageContent::Text { body } if body.starts_with("Olá"))
    );
}

#[tokio::test]
async fn escaped_unicode_vector_verifies_with_its_recorded_signature() {
    let (app, sink) = app().await;
    let body = fixture("signature/raw_body_escaped.json");
    let good = "sha256=4bfbcbf5f62eb0be72eacaa032400e43e43099b4ac9299aea6e79714a551f4fe";
    let twin = "sha256=5df6c64d2ddb796c7f65e18fc0a1325b1b061027ae4c81187340b86146d38dd3";
    assert_eq!(
        app.post_webhook(&body, Some(twin.into())).await.status(),
        401
    );
    assert!(recorded(&sink).is_empty());
    assert_eq!(
        app.post_webhook(&body, Some(good.into())).await.status(),
        200
    );
    assert_eq!(recorded(&sink).len(), 1);
}

#[tokio::test]
async fn wrong_missing_or_malformed_signature_is_401_and_nothing_is_stored() {
    let (app, sink) = app().await;
    let body = fixture("text_message.json");
    let good = wabot::meta::webhook::sign(APP_SECRET, &body);
    let cases = [
        None,
        Some(wabot::meta::webhook::sign("not-our-secret", &body)),
        Some(good.trim_start_matches("sha256=").to_string()),
        Some(good.replace("sha256=", "sha1=")),
        Some("sha256=".to_string()),
        Some(format!("{good}00")),
    ];
    for signature in cases {
        let response = app.post_webhook(&body, signature.clone()).await;
        assert_eq!(response.status(), 401, "{signature:?}");
    }
    // A body changed after signing fails as well.
    let mut tampered = body.clone();
    tampered.push(b' ');
    assert_eq!(app.post_webhook(&tampered, Some(good)).await.status(), 401);
    assert!(recorded(&sink).is_empty());
}

#[tokio::test]
async fn rotated_secrets_are_both_accepted() {
    let (app, sink) = app().await;
    let body = fixture("text_message.json");
    assert_eq!(app.post_signed(&body, OLD_APP_SECRET).await.status(), 200);
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    assert_eq!(recorded(&sink).len(), 2);
}

#[tokio::test]
async fn body_over_three_mib_is_413() {
    let (app, sink) = app().await;
    let limit = 3 * 1024 * 1024;
    // Valid JSON padded to exactly the limit is fine...
    let mut body = br#"{"object":"whatsapp_business_account","entry":[],"pad":""#.to_vec();
    body.resize(limit - 2, b'x');
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), limit);
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    // ...one byte more is not, with or without a Content-Length header.
    body.insert(body.len() - 2, b'x');
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 413);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let response = app
        .http
        .post(format!("{}/webhook", app.address))
        .header(
            "X-Hub-Signature-256",
            wabot::meta::webhook::sign(APP_SECRET, &body),
        )
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 413);
    assert!(recorded(&sink).is_empty());
}

#[tokio::test]
async fn batch_of_two_changes_gives_two_messages() {
    let (app, sink) = app().await;
    let response = app
        .post_signed(&fixture("batch_two_messages.json"), APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let users: Vec<String> = recorded(&sink)
        .iter()
        .map(|m| m.user.as_str().to_string())
        .collect();
    assert_eq!(users, ["4915123456789", "US.13491208655302741918"]);
}

#[tokio::test]
async fn every_fixture_is_answered_200_with_the_expected_messages() {
    let (app, sink) = app().await;
    let expected = [
        ("text_message.json", vec!["text"]),
        ("image_message.json", vec!["image"]),
        ("interactive_button_reply.json", vec!["interactive"]),
        ("interactive_list_reply.json", vec!["interactive"]),
        ("status_updates.json", vec![]),
        ("batch_two_messages.json", vec!["text", "text"]),
        ("unsupported_message.json", vec!["unsupported"]),
        ("value_errors.json", vec![]),
    ];
    for (name, kinds) in expected {
        sink.messages.lock().expect("not poisoned").clear();
        let response = app.post_signed(&fixture(name), APP_SECRET).await;
        assert_eq!(response.status(), 200, "{name}");
        let got: Vec<&str> = recorded(&sink).iter().map(|m| m.content.kind()).collect();
        assert_eq!(got, kinds, "{name}");
    }
}

#[tokio::test]
async fn malformed_json_is_400_and_non_object_too() {
    let (app, _sink) = app().await;
    for body in [&b"{not json"[..], b"", b"[1,2,3]", b"\"hello\""] {
        let response = app.post_signed(body, APP_SECRET).await;
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(body));
    }
}

#[tokio::test]
async fn unknown_types_and_other_fields_are_200_and_ignored_gracefully() {
    let (app, sink) = app().await;
    let account_update = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "time": 1, "changes": [{"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}]}]
    });
    let response = app
        .post_signed(account_update.to_string().as_bytes(), APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    assert!(recorded(&sink).is_empty());

    let future_type = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1555", "phone_number_id": "42"},
            "contacts": [{"profile": {"name": "A"}, "wa_id": "15550001"}],
            "messages": [{"from": "15550001", "id": "wamid.F1", "timestamp": "1", "type": "hologram", "hologram": {"beam": true}, "new_field": [1]}]
        }}]}]
    });
    let response = app
        .post_signed(future_type.to_string().as_bytes(), APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let messages = recorded(&sink);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].content.kind(), "unsupported");
}
