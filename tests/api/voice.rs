//! Voice notes: the audio is fetched through the Graph API (wiremock), sent to a wiremock
//! transcription endpoint, recorded as `[voice] ...` and answered like text.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wabot::store::conversation::{Owner, Role};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    conversation, mount_graph_ok, replies, spawn, wait_for_replies, wait_until_drained, AppOptions,
    TestApp, ACCESS_TOKEN, APP_SECRET,
};

const PNID: &str = "113948572261094";
const MEDIA_ID: &str = "2459183647781234";
const AUDIO: &[u8] = b"OggS\x00\x02fake-opus-voice-note";
const WAIT: Duration = Duration::from_secs(30);

fn voice_delivery(user: &str, wamid: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": user}],
        "messages": [{"from": user, "id": wamid, "timestamp": "1793452190", "type": "audio",
            "audio": {"mime_type": "audio/ogg; codecs=opus", "sha256": "x", "id": MEDIA_ID, "voice": true}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

async fn graph_with_media() -> Arc<MockServer> {
    let graph = Arc::new(MockServer::start().await);
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{MEDIA_ID}")))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp", "url": format!("{}/media/voice.ogg", graph.uri()),
            "mime_type": "audio/ogg", "sha256": "x", "file_size": AUDIO.len(), "id": MEDIA_ID
        })))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/media/voice.ogg"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(AUDIO.to_vec()))
        .mount(&graph)
        .await;
    mount_graph_ok(&graph).await;
    graph
}

async fn app(graph: Arc<MockServer>, whisper: &MockServer) -> TestApp {
    spawn(AppOptions {
        graph: Some(graph),
        ..AppOptions::with_env(&[
            ("RESPONDER", "rules"),
            ("WABOT_CONVERSATION__LANGUAGE", "auto"),
            (
                "WABOT_TRANSCRIPTION__BASE_URL",
                &format!("{}/v1", whisper.uri()),
            ),
            ("WABOT_TRANSCRIPTION__MODEL", "whisper-small"),
        ])
    })
    .await
}

/// A transcription endpoint that hears `text` in every upload.
async fn whisper_hearing(text: &str) -> MockServer {
    let whisper = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/transcriptions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"text": text})))
        .mount(&whisper)
        .await;
    whisper
}

/// The app with a Graph API serving the voice note and a transcription endpoint hearing `text`.
async fn app_hearing(text: &str) -> (Arc<MockServer>, MockServer, TestApp) {
    let graph = graph_with_media().await;
    let whisper = whisper_hearing(text).await;
    let app = app(graph.clone(), &whisper).await;
    (graph, whisper, app)
}

async fn post_voice(app: &TestApp, user: &str, wamid: &str) {
    assert_eq!(
        app.post_signed(&voice_delivery(user, wamid), APP_SECRET)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_voice_note_is_transcribed_recorded_and_answered_like_text() {
    let (graph, whisper, app) = app_hearing(" What are your opening hours? ").await;
    let user = "4915000000077";
    post_voice(&app, user, "wamid.voice1").await;
    let got = wait_for_replies(&graph, 1, WAIT).await;
    assert!(got[0].text.starts_with("We are open Monday"), "{got:?}");
    let requests = whisper.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 1);
    let content_type = requests[0]
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{content_type}"
    );
    let body = &requests[0].body;
    assert!(
        body.windows(AUDIO.len()).any(|w| w == AUDIO),
        "the audio bytes are uploaded"
    );
    assert!(String::from_utf8_lossy(body).contains("whisper-small"));
    wait_until_drained(&app.queue().await, WAIT).await;
    let (pnid, uid) = crate::helpers::conversation_ids(PNID, user);
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    let turns = crate::helpers::roles_and_texts(&view);
    assert_eq!(
        turns[0],
        (Role::User, "[voice] What are your opening hours?")
    );
    assert_eq!(view.turns[0].kind, "audio");
    assert!(turns[1].1.starts_with("We are open Monday"));
}

#[tokio::test]
async fn a_voice_note_that_cannot_be_transcribed_gets_the_could_not_listen_text() {
    let graph = graph_with_media().await;
    let whisper = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&whisper)
        .await;
    let app = app(graph.clone(), &whisper).await;
    post_voice(&app, "4915000000078", "wamid.voice2").await;
    let got = wait_for_replies(&graph, 1, WAIT).await;
    assert_eq!(
        got[0].text,
        "Sorry, I could not listen to your voice message. Could you type it instead?"
    );
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(replies(&graph).await.len(), 1, "said once");
}

#[tokio::test]
async fn a_voice_note_in_a_merged_burst_is_still_transcribed() {
    let graph = graph_with_media().await;
    let whisper = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"text": "When are you open?"})),
        )
        .mount(&whisper)
        .await;
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..AppOptions::with_env(&[
            ("RESPONDER", "rules"),
            ("WABOT_CONVERSATION__MERGE_WINDOW_MS", "500"),
            (
                "WABOT_TRANSCRIPTION__BASE_URL",
                &format!("{}/v1", whisper.uri()),
            ),
        ])
    })
    .await;
    let user = "4915000000079";
    // A text and a voice note in one delivery: one burst.
    let mut delivery: serde_json::Value =
        serde_json::from_slice(&voice_delivery(user, "wamid.burst2")).expect("json");
    let text = json!({"from": user, "id": "wamid.burst1", "timestamp": "1793452189",
        "type": "text", "text": {"body": "thanks"}});
    if let Some(messages) = delivery
        .pointer_mut("/entry/0/changes/0/value/messages")
        .and_then(|m| m.as_array_mut())
    {
        messages.insert(0, text);
    }
    assert_eq!(
        app.post_signed(delivery.to_string().as_bytes(), APP_SECRET)
            .await
            .status(),
        200
    );
    wait_for_replies(&graph, 2, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let got = replies(&graph).await;
    assert!(got[1].text.starts_with("We are open Monday"), "{got:?}");
    let (pnid, uid) = crate::helpers::conversation_ids(PNID, user);
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    assert!(crate::helpers::roles_and_texts(&view)
        .contains(&(Role::User, "[voice] When are you open?")));
}

#[tokio::test]
async fn a_voice_note_asking_for_a_person_hands_the_conversation_over() {
    let (graph, _whisper, app) =
        app_hearing("Hola, quiero hablar con una persona, por favor").await;
    let user = "4915000000080";
    post_voice(&app, user, "wamid.voice3").await;
    app.expect_handoff_reply(
        wabot::bot::i18n::Language::Es,
        "the handoff text, in the language spoken",
    )
    .await;
    let (pnid, uid) = crate::helpers::conversation_ids(PNID, user);
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    assert_eq!(view.handoff.owner, Owner::Human);
    // A person has it now: the bot records the next message and stays silent.
    let text = crate::helpers::text_delivery(PNID, user, "wamid.voice4", "hola?");
    assert_eq!(app.post_signed(&text, APP_SECRET).await.status(), 200);
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(replies(&graph).await.len(), 1, "answered once, by the bot");
}
