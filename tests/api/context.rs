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

/// A webhook delivery of one message from `user` with Meta's `message` fields.
fn delivery_of(user: &str, message: Value) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": user}],
        "messages": [message]
    }}]}]})
    .to_string()
    .into_bytes()
}

/// The Graph API's send of `text`, once it came.
async fn sent_text(graph: &MockServer, text: &str) -> Value {
    crate::helpers::graph_body_where(graph, |b| b["text"]["body"] == text)
        .await
        .unwrap_or_else(|| panic!("{text:?} was not sent"))
}

/// The bot quotes the message it answers when the backend says `quote: true`, an operator
/// quotes the user's last message (API `reply_to: "last"`, the console's checkbox), and a
/// contact request goes out as Meta's `request_contact_info`, its answer reaching the backend.
#[tokio::test]
async fn the_bot_and_operators_quote_and_the_bot_asks_for_a_number() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bot"))
        .and(wiremock::matchers::body_string_contains(
            "\"requested\":true",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "actions": [{"type": "text", "text": "Thanks, we will call you"}]
        })))
        .with_priority(1)
        .mount(&backend)
        .await;
    Mock::given(method("POST"))
        .and(path("/bot"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "actions": [{"type": "text", "text": "Noted"},
                {"type": "contact_request", "text": "May we have your number?"}],
            "quote": true
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
    let user = "4915000000504";
    // Timestamps of now: operators may write only inside the 24-hour window.
    app.deliver(&crate::console::user_text(user, "wamid.q1", "book me in"))
        .await;
    let noted = sent_text(&graph, "Noted").await;
    assert_eq!(noted["context"], json!({"message_id": "wamid.q1"}));
    let asked = crate::helpers::graph_body_where(&graph, |b| {
        b["interactive"]["type"] == "request_contact_info"
    })
    .await
    .expect("the contact request went out");
    assert_eq!(
        asked["interactive"]["action"],
        json!({"name": "request_contact_info"})
    );
    assert!(asked.get("context").is_none(), "only the first part quotes");
    wait_until_drained(&app.queue().await, WAIT).await;
    let (pnid, uid) = conversation_ids(PNID, user);
    let store = app.conversations().await;
    let view = conversation(&store, &pnid, &uid).await;
    let asked_turn = view.turns.iter().find(|t| t.text == "Noted").expect("kept");
    assert_eq!(
        asked_turn.quoted, view.turns[0].id,
        "the bot's turn names the user's message it quotes"
    );
    assert_eq!(view.last_user_message.as_deref(), Some("wamid.q1"));

    // The user shares their number through the button.
    app.deliver(&delivery_of(
        user,
        json!({"from": user, "id": "wamid.q2", "timestamp": crate::console::now_secs().to_string(), "type": "contacts",
            "contacts": [{"origin": "contact_request",
                "phones": [{"phone": "+4915000000504", "wa_id": user, "type": "CELL"}]}]}),
    ))
    .await;
    let shared = asked_about(&backend, "wamid.q2").await;
    assert_eq!(shared["message"]["content"]["requested"], true);
    assert_eq!(
        shared["message"]["content"]["phones"],
        json!(["+4915000000504"])
    );
    sent_text(&graph, "Thanks, we will call you").await;
    wait_until_drained(&app.queue().await, WAIT).await;

    // An operator quotes the user's last message through the API...
    let post = |body: Value| {
        let app = &app;
        async move {
            app.http
                .post(format!(
                    "{}/admin/conversations/{PNID}/{user}/messages",
                    app.address
                ))
                .bearer_auth(crate::console::TOKEN)
                .json(&body)
                .send()
                .await
                .expect("sent")
        }
    };
    let queued = post(json!({"text": "An operator here", "reply_to": "last"})).await;
    assert_eq!(queued.status(), 202);
    let operator = sent_text(&graph, "An operator here").await;
    assert_eq!(operator["context"], json!({"message_id": "wamid.q2"}));
    for bad in [json!(""), json!("x".repeat(300)), json!(7)] {
        let refused = post(json!({"text": "no", "reply_to": bad})).await;
        assert_eq!(refused.status(), 400, "reply_to {bad}");
    }
    // ...and through the console's checkbox.
    wait_until_drained(&app.queue().await, WAIT).await;
    let mut client = crate::console::signed_in(&app).await;
    let (html, csrf) = client.page(&format!("/console/c/{PNID}/{user}")).await;
    assert!(
        html.contains("id=\"quote-last\"") && html.contains("value=\"wamid.q2\""),
        "the quote checkbox names the user's last message"
    );
    let answer = client
        .post(
            &format!("/console/c/{PNID}/{user}/reply"),
            &[
                ("csrf", &csrf),
                ("text", "From the console"),
                ("key", "console-quote-1"),
                ("quote", "wamid.q2"),
            ],
        )
        .await;
    assert_eq!(answer.status(), 303);
    let console = sent_text(&graph, "From the console").await;
    assert_eq!(console["context"], json!({"message_id": "wamid.q2"}));
    wait_until_drained(&app.queue().await, WAIT).await;
    let (html, _) = client.page(&format!("/console/c/{PNID}/{user}")).await;
    assert!(
        html.matches("<blockquote class=\"quote\">").count() >= 3,
        "the bot's and the operators' quotes are shown"
    );
}

/// With the http backend, a reaction is given to it (what it reacts to included) and its
/// answer is sent; an empty answer says nothing, and no read receipt or typing indicator goes
/// out for a reaction. `responder.http.reactions = false` keeps them from the backend.
#[tokio::test]
async fn reactions_reach_the_http_backend_which_decides_whether_to_answer() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bot"))
        .and(wiremock::matchers::body_string_contains("\"emoji\":\"👍\""))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "actions": [{"type": "text", "text": "Glad you like it"}]
        })))
        .with_priority(1)
        .mount(&backend)
        .await;
    Mock::given(method("POST"))
        .and(path("/bot"))
        .and(wiremock::matchers::body_string_contains(
            "\"type\":\"reaction\"",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"actions": []})))
        .with_priority(2)
        .mount(&backend)
        .await;
    Mock::given(method("POST"))
        .and(path("/bot"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "actions": [{"type": "text", "text": "Tuesday at 10:30"}]
        })))
        .mount(&backend)
        .await;
    for reactions in [true, false] {
        let graph = graph_ok().await;
        let mut env = vec![
            ("RESPONDER", "http"),
            ("HTTP_RESPONDER_SECRET", "bot-secret"),
            ("WABOT_WHATSAPP__MARK_AS_READ", "true"),
        ];
        let url = format!("{}/bot", backend.uri());
        env.push(("HTTP_RESPONDER_URL", &url));
        if !reactions {
            env.push(("WABOT_RESPONDER__HTTP__REACTIONS", "false"));
        }
        let app = crate::helpers::spawn(crate::helpers::AppOptions {
            graph: Some(graph.clone()),
            ..crate::helpers::AppOptions::with_env(&env)
        })
        .await;
        let user = if reactions {
            "4915000000505"
        } else {
            "4915000000506"
        };
        let first = format!("wamid.rb1.{reactions}");
        let ours = exchange(&app, &graph, user, &first, "when?").await;
        let react = |wamid: &str, emoji: &str| {
            delivery_of(
                user,
                json!({"from": user, "id": wamid, "timestamp": "1793452300", "type": "reaction",
                    "reaction": {"message_id": ours[0], "emoji": emoji}}),
            )
        };
        let liked = format!("wamid.rb2.{reactions}");
        let loved = format!("wamid.rb3.{reactions}");
        app.deliver(&react(&liked, "👍")).await;
        app.deliver(&react(&loved, "❤️")).await;
        wait_until_drained(&app.queue().await, WAIT).await;
        let asked: Vec<Value> = backend
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|b| {
                b["message"]["id"] == liked.as_str() || b["message"]["id"] == loved.as_str()
            })
            .collect();
        let replies: Vec<String> = crate::helpers::replies(&graph)
            .await
            .into_iter()
            .map(|r| r.text)
            .collect();
        let read_receipts = crate::helpers::graph_bodies(&graph)
            .await
            .into_iter()
            .filter(|b| b["status"] == "read")
            .map(|b| b["message_id"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>();
        assert_eq!(read_receipts, vec![first.as_str()], "none for a reaction");
        if reactions {
            assert_eq!(asked.len(), 2, "both reactions reached the backend");
            let like = asked
                .iter()
                .find(|b| b["message"]["id"] == liked.as_str())
                .expect("asked about the like");
            assert_eq!(like["message"]["type"], "reaction");
            assert_eq!(
                like["message"]["reaction"],
                json!({"emoji": "👍", "to": {"id": ours[0], "role": "bot", "text": "Tuesday at 10:30"}})
            );
            assert_eq!(
                replies,
                ["Tuesday at 10:30", "Glad you like it"],
                "the like was answered, the empty answer to the heart said nothing"
            );
        } else {
            assert!(asked.is_empty(), "{asked:?}");
            assert_eq!(replies, ["Tuesday at 10:30"]);
        }
        let (pnid, uid) = conversation_ids(PNID, user);
        let view = conversation(&app.conversations().await, &pnid, &uid).await;
        let bot = view
            .turns
            .iter()
            .find(|t| t.text == "Tuesday at 10:30")
            .expect("kept");
        assert_eq!(
            bot.reaction.as_deref(),
            Some("❤️"),
            "kept on its turn either way"
        );
    }
}
