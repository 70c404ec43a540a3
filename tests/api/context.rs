//! Quoted replies: a user who swipes to reply to a message quotes it; the quoted turn reaches the
//! http backend (`message.replying_to`) and the model ("replying to ..."), and the console shows
//! it above the reply.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    conversation, conversation_ids, eventually, graph_ok, sent_wamids, wait_for_replies,
    wait_until_drained,
};

const PNID: &str = "113948572261094";
const WAIT: Duration = Duration::from_secs(30);

/// A text from `user` that quotes `quoted` (Meta's `context`).
fn quoting(user: &str, wamid: &str, quoted: &str, body: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": user}],
        "messages": [{"from": user, "id": wamid, "timestamp": "1793452200", "type": "text",
            "context": {"from": "15550000000", "id": quoted}, "text": {"body": body}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

/// `user` writes `text` and gets the bot's answer; the wamids Meta gave the bot's messages.
async fn exchange(
    app: &crate::helpers::TestApp,
    graph: &MockServer,
    user: &str,
    wamid: &str,
    text: &str,
) -> Vec<String> {
    app.deliver(&crate::helpers::text_delivery(PNID, user, wamid, text))
        .await;
    wait_for_replies(graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let (pnid, uid) = conversation_ids(PNID, user);
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    sent_wamids(graph, &view)
}

/// The backend's request about the message `wamid`, once it came.
async fn asked_about(backend: &MockServer, wamid: &str) -> Value {
    eventually(WAIT, || async {
        backend
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .find(|b| b["message"]["id"] == wamid)
    })
    .await
    .unwrap_or_else(|| panic!("the backend was not asked about {wamid}"))
}

#[tokio::test]
async fn a_quoted_message_reaches_the_backend_and_the_console_shows_it() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bot"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "actions": [{"type": "text", "text": "Tuesday 10:30 or Wednesday 16:00?"}]
        })))
        .mount(&backend)
        .await;
    let graph = graph_ok().await;
    let app = crate::console::console_app(
        graph.clone(),
        &[
            ("RESPONDER", "http"),
            ("HTTP_RESPONDER_URL", &format!("{}/bot", backend.uri())),
            ("HTTP_RESPONDER_SECRET", "bot-secret"),
        ],
    )
    .await;
    let user = "4915000000501";
    let ours = exchange(&app, &graph, user, "wamid.ctx1", "when can I come?").await;
    assert_eq!(ours.len(), 1, "{ours:?}");

    app.deliver(&quoting(user, "wamid.ctx2", &ours[0], "this one"))
        .await;
    let asked = asked_about(&backend, "wamid.ctx2").await;
    assert_eq!(
        asked["message"]["replying_to"],
        json!({"id": ours[0], "role": "bot", "text": "Tuesday 10:30 or Wednesday 16:00?"})
    );
    // Nothing quoted: null.
    let first = backend.received_requests().await.unwrap_or_default();
    let first: Value = serde_json::from_slice(&first[0].body).expect("json");
    assert!(first["message"]["replying_to"].is_null());
    // A quote of something no longer kept still names what was quoted.
    app.deliver(&quoting(user, "wamid.ctx3", "wamid.long-gone", "and that?"))
        .await;
    let gone = asked_about(&backend, "wamid.ctx3").await;
    assert_eq!(
        gone["message"]["replying_to"],
        json!({"id": "wamid.long-gone", "role": null, "text": null})
    );
    wait_until_drained(&app.queue().await, WAIT).await;

    let mut client = crate::console::signed_in(&app).await;
    let (html, _) = client.page(&format!("/console/c/{PNID}/{user}")).await;
    let quote_at = html
        .find("<blockquote class=\"quote\">")
        .expect("a quote is shown");
    let quote = &html[quote_at..quote_at + 300];
    assert!(quote.contains("Tuesday 10:30"), "{quote}");
    assert!(html.contains("a message no longer kept"));
}

#[tokio::test]
async fn the_model_is_told_what_the_user_replies_to() {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"message": {"role": "assistant", "content": "Booked."}}]
        })))
        .mount(&llm)
        .await;
    let graph = graph_ok().await;
    let app = crate::helpers::spawn(crate::helpers::AppOptions {
        graph: Some(graph.clone()),
        ..crate::helpers::AppOptions::with_env(&[
            ("RESPONDER", "openai"),
            ("OPENAI_BASE_URL", &format!("{}/v1", llm.uri())),
            ("OPENAI_MODEL", "test-model"),
        ])
    })
    .await;
    let user = "4915000000502";
    let ours = exchange(&app, &graph, user, "wamid.llm1", "when can I come?").await;
    app.deliver(&quoting(user, "wamid.llm2", &ours[0], "yes, that"))
        .await;
    wait_for_replies(&graph, 2, WAIT).await;
    let calls = llm.received_requests().await.unwrap_or_default();
    let last: Value = serde_json::from_slice(&calls[calls.len() - 1].body).expect("json");
    let messages = last["messages"].as_array().expect("messages");
    let content = messages[messages.len() - 1]["content"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        content,
        "(replying to the assistant: \"Booked.\") yes, that"
    );
}

/// A reaction: recorded, never answered, and kept on the turn it is about (shown in the
/// console); taking it back removes it.
#[tokio::test]
async fn a_reaction_is_kept_on_the_turn_it_is_about_and_never_answered() {
    let graph = graph_ok().await;
    let app = crate::console::console_app(graph.clone(), &[]).await;
    let user = "4915000000503";
    let ours = exchange(&app, &graph, user, "wamid.rx1", "hola").await;
    let (pnid, uid) = conversation_ids(PNID, user);
    let store = app.conversations().await;
    let react = |wamid: &str, emoji: &str| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": PNID},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": user}],
            "messages": [{"from": user, "id": wamid, "timestamp": "1793452300", "type": "reaction",
                "reaction": {"message_id": ours[0], "emoji": emoji}}]
        }}]}]})
        .to_string()
        .into_bytes()
    };
    app.deliver(&react("wamid.rx2", "👍")).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &uid).await;
    let bot = view
        .turns
        .iter()
        .find(|t| t.role == wabot::store::conversation::Role::Bot)
        .expect("the bot's turn");
    assert_eq!(bot.reaction.as_deref(), Some("👍"));
    assert_eq!(
        crate::helpers::replies(&graph).await.len(),
        1,
        "never answered"
    );
    let mut client = crate::console::signed_in(&app).await;
    let (html, _) = client.page(&format!("/console/c/{PNID}/{user}")).await;
    assert!(html.contains("<span class=\"reaction\""), "shown");
    // Taken back: an empty emoji.
    app.deliver(&react("wamid.rx3", "")).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &uid).await;
    let bot = view
        .turns
        .iter()
        .find(|t| t.role == wabot::store::conversation::Role::Bot)
        .expect("the bot's turn");
    assert_eq!(bot.reaction, None);
}
