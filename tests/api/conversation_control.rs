//! Conversation control: a person taking over (asked for, by an operator, from the WhatsApp
//! Business app), events out, operator messages and notifications in the conversation's order,
//! the 24-hour window and its template, and delivery states per turn.

use std::sync::Arc;
use std::time::Duration;

use wabot::domain::{PhoneNumberId, UserId};
use wabot::store::conversation::{ConversationStore, Owner, Role};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{
    conversation, conversation_ids, eventually, graph_bodies, graph_ok, mount_graph_ok, owner,
    replies, sent_wamids, spawn, wait_for_replies, wait_until_drained, AppOptions, TestApp,
};

const PNID: &str = "113948572261094";
const TOKEN: &str = "admin-token-for-tests";
const EVENTS_SECRET: &str = "events-secret";
const WAIT: Duration = Duration::from_secs(30);

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn delivery(field: &str, value: serde_json::Value) -> Vec<u8> {
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": field, "value": value}
    ]}]})
    .to_string()
    .into_bytes()
}

fn metadata() -> serde_json::Value {
    serde_json::json!({"display_phone_number": "15550000000", "phone_number_id": PNID})
}

/// A text the user writes now (the 24-hour window counts from Meta's timestamp).
fn user_text(user: &str, wamid: &str, body: &str) -> Vec<u8> {
    delivery(
        "messages",
        serde_json::json!({
            "messaging_product": "whatsapp", "metadata": metadata(),
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": user}],
            "messages": [{"from": user, "id": wamid, "timestamp": now_secs().to_string(),
                "type": "text", "text": {"body": body}}]
        }),
    )
}

fn status(user: &str, wamid: &str, status: &str, error: Option<(i64, &str)>) -> Vec<u8> {
    let mut entry = serde_json::json!({"id": wamid, "status": status,
        "timestamp": now_secs().to_string(), "recipient_id": user});
    if let Some((code, title)) = error {
        entry["errors"] = serde_json::json!([{"code": code, "title": title}]);
    }
    delivery(
        "messages",
        serde_json::json!({"messaging_product": "whatsapp", "metadata": metadata(),
            "statuses": [entry]}),
    )
}

async fn admin_post(app: &TestApp, path: &str, body: serde_json::Value) -> reqwest::Response {
    app.http
        .post(format!("{}{path}", app.address))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("sent")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    crate::helpers::env_vars(pairs)
}

/// An app with the admin API, events to `receiver` (when given) and `extra` settings.
async fn app(
    graph: Arc<MockServer>,
    receiver: Option<&MockServer>,
    extra: &[(&str, &str)],
) -> TestApp {
    let mut extra_env = env(&[("ADMIN_TOKEN", TOKEN)]);
    if let Some(receiver) = receiver {
        extra_env.extend(env(&[
            (
                "WABOT_EVENTS__WEBHOOK_URL",
                &format!("{}/events", receiver.uri()),
            ),
            ("WABOT_EVENTS__SECRET", EVENTS_SECRET),
            ("WABOT_EVENTS__RETRY_MAX_MS", "200"),
        ]));
    }
    extra_env.extend(env(extra));
    spawn(AppOptions {
        graph: Some(graph),
        extra_env,
        ..AppOptions::default()
    })
    .await
}

/// The events the receiver got, each checked against its signature; duplicates (a redelivery)
/// kept.
async fn events(receiver: &MockServer) -> Vec<serde_json::Value> {
    receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|request: &Request| {
            let signature = request
                .headers
                .get("x-wabot-signature-256")
                .and_then(|v| v.to_str().ok())
                .expect("signed")
                .to_string();
            assert_eq!(
                signature,
                wabot::meta::webhook::signature::sign(EVENTS_SECRET, &request.body),
                "the signature covers the raw body"
            );
            serde_json::from_slice(&request.body).expect("an event is JSON")
        })
        .collect()
}

fn of_type<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// An app whose responder is a model that takes 1.5 s to answer `text`.
async fn slow_llm_app(graph: Arc<MockServer>, text: &str) -> (TestApp, MockServer) {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({
                    "id": "c1", "object": "chat.completion", "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant",
                        "content": text}, "finish_reason": "stop"}]
                }))
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&llm)
        .await;
    let base = format!("{}/v1", llm.uri());
    let app = app(
        graph,
        None,
        &[
            ("RESPONDER", "openai"),
            ("OPENAI_BASE_URL", &base),
            ("OPENAI_MODEL", "m"),
            ("WABOT_RESPONDER__OPENAI__TIMEOUT_MS", "5000"),
        ],
    )
    .await;
    (app, llm)
}

/// An app with the re-engagement template `follow_up` in `language`.
async fn template_app(graph: Arc<MockServer>, language: &str) -> TestApp {
    app(
        graph,
        None,
        &[
            ("WABOT_WHATSAPP__REENGAGEMENT_TEMPLATE__NAME", "follow_up"),
            ("WABOT_WHATSAPP__REENGAGEMENT_TEMPLATE__LANGUAGE", language),
        ],
    )
    .await
}

/// The user writes once and the bot's answer is sent and recorded.
async fn first_exchange(app: &TestApp, user: &str, wamid: &str, text: &str) {
    let before = replies(&app.graph).await.len();
    app.deliver(&user_text(user, wamid, text)).await;
    wait_for_replies(&app.graph, before + 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
}

/// The wamid Meta (`graph`) gave the first message we sent in the conversation.
async fn first_sent_wamid(
    graph: &MockServer,
    store: &ConversationStore,
    pnid: &PhoneNumberId,
    user: &UserId,
) -> String {
    let view = conversation(store, pnid, user).await;
    sent_wamids(graph, &view)
        .into_iter()
        .next()
        .expect("our reply")
}

async fn receiver_ok() -> MockServer {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/events"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    receiver
}

#[tokio::test]
async fn a_user_asking_for_a_person_is_answered_once_then_the_operator_talks_until_resumed() {
    let graph = graph_ok().await;
    let receiver = receiver_ok().await;
    let app = app(graph.clone(), Some(&receiver), &[]).await;
    let user = "4915000000201";
    let (pnid, uid) = conversation_ids(PNID, user);
    let store = app.conversations().await;

    app.deliver(&user_text(user, "wamid.h1", "quiero hablar con un asesor"))
        .await;
    // Asked in Spanish: answered in Spanish.
    app.expect_handoff_reply(wabot::bot::i18n::Language::Es, "the handoff text, once")
        .await;
    for (i, text) in ["hola?", "sigo aquí", "necesito ayuda"].iter().enumerate() {
        app.deliver(&user_text(user, &format!("wamid.h{}", i + 2), text))
            .await;
    }
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &uid).await;
    assert_eq!(view.handoff.owner, Owner::Human);
    let partition = app.keys().partition(&pnid, &uid);
    let queue = app.queue().await;
    assert_eq!(
        queue.with_person(partition).await.expect("count"),
        1,
        "waiting for a person"
    );
    assert_eq!(
        view.turns.iter().filter(|t| t.role == Role::User).count(),
        4,
        "every message is recorded: {:?}",
        view.turns
    );
    assert_eq!(
        replies(&graph).await.len(),
        1,
        "nothing sent while a person has it"
    );

    let sent = eventually(WAIT, || async {
        let events = events(&receiver).await;
        (of_type(&events, "message.received").len() >= 3).then_some(events)
    })
    .await
    .expect("events delivered");
    let requested = of_type(&sent, "handoff.requested");
    assert_eq!(requested.len(), 1, "{sent:?}");
    assert_eq!(requested[0]["user"], user);
    assert_eq!(requested[0]["phone_number_id"], PNID);
    assert_eq!(
        requested[0]["message"]["text"],
        "quiero hablar con un asesor"
    );
    let received: Vec<_> = of_type(&sent, "message.received")
        .iter()
        .map(|e| e["message"]["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(received, ["hola?", "sigo aquí", "necesito ayuda"]);

    // The operator answers through the conversation's queue.
    let path = format!("/admin/conversations/{PNID}/{user}/messages");
    let response = admin_post(&app, &path, serde_json::json!({"text": "Hola, soy Marta"})).await;
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("out.")));
    let got = wait_for_replies(&graph, 2, WAIT).await;
    assert_eq!(got[1].text, "Hola, soy Marta");
    assert_eq!(got[1].to, format!("+{user}"));
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &uid).await;
    let last = view.turns.last().expect("turns");
    assert_eq!(
        (last.role, last.text.as_str()),
        (Role::Operator, "Hola, soy Marta")
    );
    assert_eq!(sent_wamids(&graph, &view).len(), 2, "the bot's and Marta's");
    assert!(last.is_message(&sent_wamids(&graph, &view)[1]));

    // Back to the bot: the next message is answered by the responder.
    let path = format!("/admin/conversations/{PNID}/{user}/resume");
    let response = admin_post(&app, &path, serde_json::json!({})).await;
    assert_eq!(response.status(), 200);
    let shown: serde_json::Value = response.json().await.expect("json");
    assert_eq!(shown["handoff"]["owner"], "bot");
    assert_eq!(queue.with_person(partition).await.expect("count"), 0);
    app.deliver(&user_text(user, "wamid.h9", "gracias")).await;
    let got = wait_for_replies(&graph, 3, WAIT).await;
    assert_eq!(got[2].text, "echo: gracias");
    let view = conversation(&store, &pnid, &uid).await;
    assert!(view.window_open, "the user wrote just now");
    app.stop().await;
}

#[tokio::test]
async fn an_operator_takes_over_and_gives_back_through_the_admin_api() {
    let graph = graph_ok().await;
    let app = app(graph.clone(), None, &[]).await;
    let user = "4915000000202";
    app.deliver(&user_text(user, "wamid.t1", "hi")).await;
    wait_for_replies(&graph, 1, WAIT).await;
    let path = format!("/admin/conversations/{PNID}/{user}/handoff");
    let response = admin_post(
        &app,
        &path,
        serde_json::json!({"minutes": 30, "note": "VIP", "by": "marta"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let shown: serde_json::Value = response.json().await.expect("json");
    assert_eq!(shown["handoff"]["owner"], "human");
    assert_eq!(shown["handoff"]["info"]["note"], "VIP");
    assert_eq!(shown["handoff"]["info"]["by"], "marta");
    app.deliver(&user_text(user, "wamid.t2", "are you there?"))
        .await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(replies(&graph).await.len(), 1, "the bot stays silent");
    // Bad input is the caller's mistake.
    let bad = admin_post(&app, &path, serde_json::json!({"minutes": 0})).await;
    assert_eq!(bad.status(), 400);
    let bad = admin_post(
        &app,
        &format!("/admin/conversations/{PNID}/{user}/messages"),
        serde_json::json!({"text": "a", "template": {"name": "x", "language": "en"}}),
    )
    .await;
    assert_eq!(bad.status(), 400);
    let missing = admin_post(
        &app,
        &format!("/admin/conversations/{PNID}/4915000000299/resume"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(missing.status(), 404);
    let path = format!("/admin/conversations/{PNID}/{user}/resume");
    assert_eq!(
        admin_post(&app, &path, serde_json::json!({}))
            .await
            .status(),
        200
    );
    app.deliver(&user_text(user, "wamid.t3", "back?")).await;
    let got = wait_for_replies(&graph, 2, WAIT).await;
    assert_eq!(got[1].text, "echo: back?");
    app.stop().await;
}

#[tokio::test]
async fn events_wait_out_a_receiver_outage_and_arrive_once_each_with_unique_ids() {
    let graph = graph_ok().await;
    let receiver = MockServer::start().await;
    // Down for the first deliveries, then up.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(6)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let app = app(graph.clone(), Some(&receiver), &[]).await;
    let users: Vec<String> = (0..6).map(|i| format!("49150000003{i:02}")).collect();
    for (i, user) in users.iter().enumerate() {
        app.deliver(&user_text(user, &format!("wamid.e{i}"), "/agent"))
            .await;
        app.deliver(&user_text(user, &format!("wamid.f{i}"), "still there?"))
            .await;
    }
    app.deliver(&user_text("4915000000399", "wamid.r1", "/reset"))
        .await;
    // 6 requested + 6 received + 1 reset.
    let expected = 13;
    let all = eventually(WAIT, || async {
        let all = events(&receiver).await;
        let ids: std::collections::HashSet<String> = all
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect();
        (ids.len() >= expected).then_some(all)
    })
    .await
    .expect("every event delivered after the outage");
    let ids: std::collections::HashSet<&str> =
        all.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), expected, "ids are unique per event: {all:?}");
    assert!(
        all.len() >= expected + 6,
        "the refused deliveries were retried"
    );
    assert_eq!(
        of_type(&all, "conversation.reset")[0]["user"],
        "4915000000399"
    );
    // Nothing is left waiting once delivered.
    let keys = app.keys();
    let redis = app.redis.as_ref().expect("own redis");
    let left = eventually(WAIT, || async {
        let left: u64 = (0..keys.partitions())
            .map(|p| {
                redis
                    .cli(&["XLEN", &keys.events(p)])
                    .parse::<u64>()
                    .unwrap_or(0)
            })
            .sum();
        (left == 0).then_some(left)
    })
    .await;
    assert_eq!(left, Some(0));
    app.stop().await;
}

fn template_requests(bodies: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    bodies.iter().filter(|b| b["type"] == "template").collect()
}

#[tokio::test]
async fn outside_the_window_the_template_goes_instead_and_131047_sends_it_once() {
    let graph = Arc::new(MockServer::start().await);
    Mock::given(method("POST"))
        .and(body_string_contains("refused by meta"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": {"message": "Re-engagement message", "type": "OAuthException",
                "code": 131047, "fbtrace_id": "t"}
        })))
        .with_priority(1)
        .mount(&graph)
        .await;
    mount_graph_ok(&graph).await;
    let app = template_app(graph.clone(), "es").await;
    let user = "4915000000401";
    let (pnid, uid) = conversation_ids(PNID, user);
    let store = app.conversations().await;
    first_exchange(&app, user, "wamid.w1", "hola").await;
    // The user last wrote 25 h ago.
    let day_ago = (now_secs() - 25 * 3600) * 1000;
    store
        .set_last_user_ms(&pnid, &uid, day_ago)
        .await
        .expect("set");
    assert!(!conversation(&store, &pnid, &uid).await.window_open);
    let path = format!("/admin/conversations/{PNID}/{user}/messages");
    let response = admin_post(
        &app,
        &path,
        serde_json::json!({"text": "¿Sigue interesado?"}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let bodies = eventually(WAIT, || async {
        let bodies = graph_bodies(&graph).await;
        (!template_requests(&bodies).is_empty()).then_some(bodies)
    })
    .await
    .expect("a template was sent");
    let template = template_requests(&bodies)[0];
    assert_eq!(template["template"]["name"], "follow_up");
    assert_eq!(template["template"]["language"]["code"], "es");
    assert!(
        !bodies
            .iter()
            .any(|b| b["text"]["body"] == "¿Sigue interesado?"),
        "no free-form text outside the window"
    );
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &uid).await;
    let last = view.turns.last().expect("turns");
    assert_eq!(
        (last.role, last.kind.as_str()),
        (Role::Operator, "template")
    );

    // Inside the window by our clock, but Meta says 131047: the template once, no loop.
    store
        .set_last_user_ms(&pnid, &uid, now_secs() * 1000)
        .await
        .expect("set");
    let response = admin_post(&app, &path, serde_json::json!({"text": "refused by meta"})).await;
    assert_eq!(response.status(), 202);
    let bodies = eventually(WAIT, || async {
        let bodies = graph_bodies(&graph).await;
        (template_requests(&bodies).len() >= 2).then_some(bodies)
    })
    .await
    .expect("the template after 131047");
    wait_until_drained(&app.queue().await, WAIT).await;
    let bodies_after = graph_bodies(&graph).await;
    assert_eq!(template_requests(&bodies_after).len(), 2, "once");
    assert_eq!(
        bodies
            .iter()
            .filter(|b| b["text"]["body"] == "refused by meta")
            .count(),
        1,
        "the refused text is not retried"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_a_template_a_message_outside_the_window_is_recorded_as_failed() {
    let graph = graph_ok().await;
    let app = app(graph.clone(), None, &[]).await;
    let user = "4915000000402";
    let (pnid, uid) = conversation_ids(PNID, user);
    let response = admin_post(
        &app,
        "/admin/messages",
        serde_json::json!({"phone_number_id": PNID, "to": user, "text": "hello?"}),
    )
    .await;
    assert_eq!(response.status(), 202);
    wait_until_drained(&app.queue().await, WAIT).await;
    assert!(
        graph_bodies(&graph).await.is_empty(),
        "nothing reached Meta"
    );
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    let last = view.turns.last().expect("the refused message is recorded");
    assert_eq!(last.delivery.as_deref(), Some("failed"));
    let failure = last.failure.as_ref().expect("with a reason");
    assert!(
        failure
            .title
            .as_deref()
            .is_some_and(|t| t.contains("reengagement_template")),
        "{failure:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_notification_sends_once_per_idempotency_key_and_after_the_reply_in_flight() {
    let graph = graph_ok().await;
    let (app, llm) = slow_llm_app(graph.clone(), "slow answer").await;
    let user = "4915000000501";
    app.deliver(&user_text(user, "wamid.n1", "what's my order status?"))
        .await;
    // Wait until the reply is being prepared (the model was asked), then notify.
    eventually(WAIT, || async {
        let asked = llm.received_requests().await.unwrap_or_default();
        (!asked.is_empty()).then_some(())
    })
    .await
    .expect("the model is asked");
    let notification = serde_json::json!({
        "phone_number_id": PNID, "to": user, "idempotency_key": "order-42-shipped",
        "template": {"name": "order_shipped", "language": "en", "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "42"}]}]}
    });
    let first = admin_post(&app, "/admin/messages", notification.clone()).await;
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.expect("json");
    let second = admin_post(&app, "/admin/messages", notification).await;
    assert_eq!(second.status(), 202);
    let second: serde_json::Value = second.json().await.expect("json");
    assert_eq!(first["id"], second["id"]);
    assert_eq!(
        (first["status"].as_str(), second["status"].as_str()),
        (Some("queued"), Some("duplicate"))
    );
    eventually(WAIT, || async {
        let bodies = graph_bodies(&graph).await;
        (bodies.len() >= 2).then_some(())
    })
    .await
    .expect("reply and notification sent");
    wait_until_drained(&app.queue().await, WAIT).await;
    let bodies = graph_bodies(&graph).await;
    assert_eq!(bodies.len(), 2, "one reply, one notification: {bodies:?}");
    assert_eq!(
        bodies[0]["text"]["body"], "slow answer",
        "the reply in flight goes first"
    );
    assert_eq!(bodies[1]["template"]["name"], "order_shipped");
    assert_eq!(
        bodies[1]["template"]["components"][0]["parameters"][0]["text"],
        "42"
    );
    app.stop().await;
}

#[tokio::test]
async fn delivery_states_only_move_forward_and_failures_keep_code_and_title() {
    let graph = graph_ok().await;
    let receiver = receiver_ok().await;
    let app = app(graph.clone(), Some(&receiver), &[]).await;
    let user = "4915000000601";
    let (pnid, uid) = conversation_ids(PNID, user);
    let store = app.conversations().await;
    app.deliver(&user_text(user, "wamid.d1", "one")).await;
    app.deliver(&user_text(user, "wamid.d2", "two")).await;
    wait_for_replies(&graph, 2, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &uid).await;
    let sent = sent_wamids(&graph, &view);
    assert_eq!(sent.len(), 2);
    // Out of order and repeated: read first, then late delivered and sent.
    for value in ["read", "delivered", "sent", "delivered", "read"] {
        app.deliver(&status(user, &sent[0], value, None)).await;
    }
    app.deliver(&status(
        user,
        &sent[1],
        "failed",
        Some((131026, "Message undeliverable")),
    ))
    .await;
    app.deliver(&status(user, &sent[1], "delivered", None))
        .await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &uid).await;
    let by_wamid = |wamid: &str| {
        view.turns
            .iter()
            .find(|t| t.is_message(wamid))
            .expect("turn")
            .clone()
    };
    assert_eq!(by_wamid(&sent[0]).delivery.as_deref(), Some("read"));
    let failed = by_wamid(&sent[1]);
    assert_eq!(failed.delivery.as_deref(), Some("failed"));
    let failure = failed.failure.expect("failure");
    assert_eq!(
        (failure.code, failure.title.as_deref()),
        (131026, Some("Message undeliverable"))
    );
    let event = eventually(WAIT, || async {
        let events = events(&receiver).await;
        of_type(&events, "message.failed")
            .first()
            .map(|e| (*e).clone())
    })
    .await
    .expect("message.failed event");
    assert_eq!(event["message_id"], sent[1].as_str());
    assert_eq!(event["error"]["code"], 131026);
    app.stop().await;
}

#[tokio::test]
async fn the_owner_answering_from_the_phone_stops_a_reply_in_preparation_but_our_echo_does_not() {
    let graph = graph_ok().await;
    let (app, llm) = slow_llm_app(graph.clone(), "bot answer").await;
    let store = app.conversations().await;
    let echo = |user: &str, wamid: &str, text: &str| {
        delivery(
            "smb_message_echoes",
            serde_json::json!({"messaging_product": "whatsapp", "metadata": metadata(),
                "message_echoes": [{"from": "15550000000", "to": user, "id": wamid,
                    "timestamp": now_secs().to_string(), "type": "text", "text": {"body": text}}]}),
        )
    };

    // Our own message echoed back never pauses the bot.
    let user = "4915000000701";
    let (pnid, uid) = conversation_ids(PNID, user);
    app.deliver(&user_text(user, "wamid.c1", "first")).await;
    wait_for_replies(&graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let ours = first_sent_wamid(&graph, &store, &pnid, &uid).await;
    app.deliver(&echo(user, &ours, "bot answer")).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(owner(&store, &pnid, &uid).await, Owner::Bot);

    // The owner types on the phone while the model is still thinking.
    let other = "4915000000702";
    let (pnid2, uid2) = conversation_ids(PNID, other);
    let asked_before = llm.received_requests().await.unwrap_or_default().len();
    app.deliver(&user_text(other, "wamid.c2", "hello?")).await;
    eventually(WAIT, || async {
        let asked = llm.received_requests().await.unwrap_or_default().len();
        (asked > asked_before).then_some(())
    })
    .await
    .expect("the model is asked");
    app.deliver(&echo(
        other,
        "wamid.owner1",
        "Hi, it's Pedro, I'll help you",
    ))
    .await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let to_other: Vec<_> = replies(&graph)
        .await
        .into_iter()
        .filter(|r| r.to == format!("+{other}"))
        .collect();
    assert!(
        to_other.is_empty(),
        "the bot's reply was dropped: {to_other:?}"
    );
    let view = conversation(&store, &pnid2, &uid2).await;
    assert_eq!(view.handoff.owner, Owner::Human);
    assert_eq!(
        view.handoff.info.as_ref().map(|i| i["reason"].clone()),
        Some("echo".into())
    );
    let last = view.turns.last().expect("turns");
    assert_eq!(
        (last.role, last.text.as_str()),
        (Role::Operator, "Hi, it's Pedro, I'll help you")
    );
    app.stop().await;
}

#[tokio::test]
async fn the_cli_hands_over_sends_and_resumes_like_the_admin_api() {
    let graph = graph_ok().await;
    let app = app(graph.clone(), None, &[]).await;
    let user = "4915000000801";
    let (pnid, uid) = conversation_ids(PNID, user);
    let store = app.conversations().await;
    app.deliver(&user_text(user, "wamid.cli1", "hola")).await;
    wait_for_replies(&graph, 1, WAIT).await;
    let run = |args: &[&str]| {
        let output = crate::helpers::run_cli(&app.settings, args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    run(&[
        "conversations",
        "handoff",
        PNID,
        user,
        "--minutes",
        "10",
        "--by",
        "cli",
    ]);
    assert_eq!(owner(&store, &pnid, &uid).await, Owner::Human);
    // Sent twice with one idempotency key: queued once.
    let send = || {
        run(&[
            "conversations",
            "send",
            PNID,
            user,
            "--text",
            "from the cli",
            "--idempotency-key",
            "k1",
        ])
    };
    let queued = send();
    assert!(queued.contains("queued"), "{queued}");
    let again = send();
    assert!(again.contains("duplicate"), "{again}");
    let got = wait_for_replies(&graph, 2, WAIT).await;
    assert_eq!(got[1].text, "from the cli");
    run(&[
        "send",
        PNID,
        user,
        "--template",
        "order_shipped",
        "--language",
        "es",
    ]);
    let bodies = eventually(WAIT, || async {
        let bodies = graph_bodies(&graph).await;
        (!template_requests(&bodies).is_empty()).then_some(bodies)
    })
    .await
    .expect("the template notification");
    assert_eq!(
        template_requests(&bodies)[0]["template"]["name"],
        "order_shipped"
    );
    run(&["conversations", "resume", PNID, user]);
    assert_eq!(owner(&store, &pnid, &uid).await, Owner::Bot);
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(
        graph_bodies(&graph).await.len(),
        3,
        "the duplicate was sent once"
    );
    app.stop().await;
}

#[tokio::test]
async fn conversation_routing_decides_whether_the_bot_answers() {
    let graph = graph_ok().await;
    let app = app(graph.clone(), None, &[]).await;
    let user = "4915000000901";
    let (pnid, uid) = conversation_ids(PNID, user);
    let store = app.conversations().await;
    // As seen in production: no `metadata`, the number under `recipient`.
    let handover = |kind: &str, at: i64| {
        delivery(
            "messaging_handovers",
            serde_json::json!({"messaging_product": "whatsapp",
                "recipient": {"display_phone_number": "15550000000", "phone_number_id": PNID},
                "sender": {"phone_number": user}, "timestamp": at.to_string(),
                "type": kind, kind: {"metadata": "escalated"}}),
        )
    };
    let now = now_secs();
    app.deliver(&handover("control_taken", now - 10)).await;
    app.deliver(&user_text(user, "wamid.rt1", "anyone?")).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert!(replies(&graph).await.is_empty(), "another app owns it");
    let view = conversation(&store, &pnid, &uid).await;
    assert_eq!(view.handoff.owner, Owner::OtherApp);
    assert_eq!(view.turns.len(), 1, "still recorded");
    app.deliver(&handover("control_passed", now - 5)).await;
    // A late, older notification changes nothing.
    app.deliver(&handover("control_taken", now - 8)).await;
    app.deliver(&user_text(user, "wamid.rt2", "hello again"))
        .await;
    let got = wait_for_replies(&graph, 1, WAIT).await;
    assert_eq!(got[0].text, "echo: hello again");
    assert_eq!(owner(&store, &pnid, &uid).await, Owner::Bot);
    app.stop().await;
}

#[tokio::test]
async fn two_replicas_never_interleave_operator_messages_with_replies_and_a_killed_one_loses_nothing(
) {
    let redis = crate::helpers::RedisServer::start();
    let graph = Arc::new(MockServer::start().await);
    // The bot's replies are slow to go out; an operator message queued meanwhile must wait.
    crate::helpers::mount_slow_send(&graph, "echo: slow", Duration::from_millis(400)).await;
    mount_graph_ok(&graph).await;
    let receiver = receiver_ok().await;
    let options = AppOptions {
        extra_env: env(&[
            ("ADMIN_TOKEN", TOKEN),
            (
                "WABOT_EVENTS__WEBHOOK_URL",
                &format!("{}/events", receiver.uri()),
            ),
            ("WABOT_EVENTS__SECRET", EVENTS_SECRET),
        ]),
        ..AppOptions::default()
    };
    let url = redis.url();
    let spawn = || spawn(options.clone().replica_of(&url, &graph, "shared"));
    let a = spawn().await;
    let b = spawn().await;
    let texts_to = |bodies: &[serde_json::Value], user: &str| -> Vec<String> {
        bodies
            .iter()
            .filter(|b| b["to"] == format!("+{user}"))
            .filter_map(|b| b["text"]["body"].as_str().map(str::to_string))
            .collect()
    };
    let users: Vec<String> = (0..4).map(|i| format!("49150000010{i:02}")).collect();
    for (i, user) in users.iter().enumerate() {
        a.deliver(&user_text(user, &format!("wamid.s{i}"), "slow"))
            .await;
        let path = format!("/admin/conversations/{PNID}/{user}/messages");
        let response = admin_post(&b, &path, serde_json::json!({"text": format!("op {i}")})).await;
        assert_eq!(response.status(), 202);
    }
    let bodies = eventually(WAIT, || async {
        let bodies = graph_bodies(&graph).await;
        (bodies.len() >= 8).then_some(bodies)
    })
    .await
    .expect("replies and operator messages");
    for (i, user) in users.iter().enumerate() {
        assert_eq!(
            texts_to(&bodies, user),
            ["echo: slow".to_string(), format!("op {i}")],
            "in the conversation's order"
        );
    }

    // A replica dies right after a handoff and queued operator messages: nothing is lost.
    let user = "4915000001099";
    a.deliver(&user_text(user, "wamid.k1", "/agent")).await;
    let path = format!("/admin/conversations/{PNID}/{user}/messages");
    for i in 0..3 {
        let response =
            admin_post(&a, &path, serde_json::json!({"text": format!("after {i}")})).await;
        assert_eq!(response.status(), 202);
    }
    a.kill();
    let expected: Vec<String> = (0..3).map(|i| format!("after {i}")).collect();
    let got = eventually(WAIT, || async {
        let texts = texts_to(&graph_bodies(&graph).await, user);
        let operator: Vec<String> = texts
            .into_iter()
            .filter(|t| t.starts_with("after"))
            .collect();
        let mut first_seen: Vec<String> = Vec::new();
        for text in operator {
            if !first_seen.contains(&text) {
                first_seen.push(text);
            }
        }
        (first_seen.len() == 3).then_some(first_seen)
    })
    .await
    .expect("the surviving replica sends every operator message");
    assert_eq!(got, expected, "in order");
    let requested = eventually(WAIT, || async {
        let events = events(&receiver).await;
        let found = events
            .iter()
            .any(|e| e["type"] == "handoff.requested" && e["user"] == user);
        found.then_some(())
    })
    .await;
    assert!(requested.is_some(), "the handoff event survived the crash");
    b.stop().await;
}

#[tokio::test]
async fn an_operator_can_send_buttons_and_a_bad_one_is_refused_before_meta() {
    let graph = graph_ok().await;
    let app = app(graph.clone(), None, &[]).await;
    let user = "4915000001101";
    app.deliver(&user_text(user, "wamid.b1", "hola")).await;
    wait_for_replies(&graph, 1, WAIT).await;
    let path = format!("/admin/conversations/{PNID}/{user}/messages");
    let buttons = serde_json::json!({"message": {"type": "buttons", "text": "¿Confirmamos la cita?",
        "buttons": [{"id": "yes", "title": "Sí"}, {"id": "no", "title": "No"}]}});
    assert_eq!(admin_post(&app, &path, buttons).await.status(), 202);
    let sent = eventually(WAIT, || async {
        graph_bodies(&graph)
            .await
            .into_iter()
            .find(|b| b["type"] == "interactive")
    })
    .await
    .expect("buttons sent");
    assert_eq!(sent["interactive"]["type"], "button");
    assert_eq!(
        sent["interactive"]["action"]["buttons"][0]["reply"]["title"],
        "Sí"
    );
    let too_long = serde_json::json!({"message": {"type": "buttons", "text": "x",
        "buttons": [{"id": "a", "title": "a title longer than twenty characters"}]}});
    let refused = admin_post(&app, &path, too_long).await;
    assert_eq!(refused.status(), 400);
    wait_until_drained(&app.queue().await, WAIT).await;
    let (pnid, uid) = conversation_ids(PNID, user);
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    let last = view.turns.last().expect("turns");
    assert_eq!(
        (last.role, last.kind.as_str()),
        (Role::Operator, "interactive")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_status_with_131047_sends_the_template_once() {
    let graph = graph_ok().await;
    let app = template_app(graph.clone(), "pt_BR").await;
    let user = "4915000001201";
    let (pnid, uid) = conversation_ids(PNID, user);
    let store = app.conversations().await;
    first_exchange(&app, user, "wamid.a1", "olá").await;
    let ours = first_sent_wamid(&graph, &store, &pnid, &uid).await;
    let failed = status(
        user,
        &ours,
        "failed",
        Some((131047, "Re-engagement message")),
    );
    app.deliver(&failed).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    // The same status once more past the intake's dedup (as after its 1-day marker expired):
    // the template still goes once.
    let keys = app.keys();
    let seen = keys.seen(keys.partition(&pnid, &uid), &format!("{ours}:failed"));
    let redis = app.redis.as_ref().expect("own redis");
    assert_eq!(redis.cli(&["DEL", &seen]), "1");
    app.deliver(&failed).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let templates = template_requests(&graph_bodies(&graph).await)
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(templates.len(), 1, "{templates:?}");
    assert_eq!(templates[0]["template"]["language"]["code"], "pt_BR");
    let view = conversation(&store, &pnid, &uid).await;
    let last = view.turns.last().expect("turns");
    assert_eq!((last.role, last.kind.as_str()), (Role::Bot, "template"));
    // The failed reply is marked as answered by the template (the console flags it), and only it.
    let flagged: Vec<_> = view
        .turns
        .iter()
        .filter(|t| t.reengaged)
        .map(|t| (t.role, t.failure.as_ref().map(|f| f.code)))
        .collect();
    assert_eq!(flagged, [(Role::Bot, Some(131047))]);
    app.stop().await;
}

#[tokio::test]
async fn while_a_person_has_the_conversation_messages_are_marked_read_only_when_configured() {
    for (mark_read, user, expected) in [("false", "4915000000298", 0), ("true", "4915000000299", 1)]
    {
        let graph = graph_ok().await;
        let app = app(
            graph.clone(),
            None,
            &[("WABOT_HANDOFF__MARK_READ", mark_read)],
        )
        .await;
        app.deliver(&user_text(user, "wamid.mr1", "/agent")).await;
        wait_for_replies(&graph, 1, WAIT).await;
        app.deliver(&user_text(user, "wamid.mr2", "hola?")).await;
        wait_until_drained(&app.queue().await, WAIT).await;
        let receipts = graph_bodies(&graph)
            .await
            .into_iter()
            .filter(|body| body["status"] == "read" && body["message_id"] == "wamid.mr2")
            .count();
        assert_eq!(receipts, expected, "handoff.mark_read = {mark_read}");
        assert_eq!(
            replies(&graph).await.len(),
            1,
            "the person answers, not the bot"
        );
        app.stop().await;
    }
}

/// While a person has the conversation the user's rate limit still bounds the events: every
/// message is recorded, but only those within the limit are reported, and a long text is cut
/// in the event (the history keeps it whole).
#[tokio::test]
async fn messages_to_a_person_are_reported_within_the_rate_limit_and_bounded() {
    let graph = graph_ok().await;
    let receiver = receiver_ok().await;
    let app = app(
        graph.clone(),
        Some(&receiver),
        &[
            ("WABOT_RATE_LIMIT__MESSAGES", "3"),
            ("WABOT_RATE_LIMIT__WINDOW_SECS", "3600"),
        ],
    )
    .await;
    let user = "4915000000299";
    let (pnid, uid) = conversation_ids(PNID, user);
    let store = app.conversations().await;
    let path = format!("/admin/conversations/{PNID}/{user}/handoff");
    let response = admin_post(&app, &path, serde_json::json!({})).await;
    assert!(response.status().is_success(), "{}", response.status());
    let long = "a".repeat(5000);
    app.deliver(&user_text(user, "wamid.flood0", &long)).await;
    for i in 1..8 {
        app.deliver(&user_text(
            user,
            &format!("wamid.flood{i}"),
            &format!("flood {i}"),
        ))
        .await;
    }
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &uid).await;
    let users: Vec<_> = view.turns.iter().filter(|t| t.role == Role::User).collect();
    assert_eq!(users.len(), 8, "every message is recorded");
    assert_eq!(
        users[0].text.chars().count(),
        5000,
        "the history keeps it whole"
    );
    assert_eq!(users.iter().filter(|t| t.rate_limited).count(), 5);
    eventually(WAIT, || async {
        let events = events(&receiver).await;
        (of_type(&events, "message.received").len() >= 3).then_some(())
    })
    .await
    .expect("events delivered");
    // Nothing more arrives for the messages over the limit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = events(&receiver).await;
    let received = of_type(&all, "message.received");
    assert_eq!(received.len(), 3, "{received:?}");
    let first = &received[0]["message"];
    assert_eq!(
        first["text"].as_str().map(|t| t.chars().count()),
        Some(wabot::store::conversation::EVENT_TEXT_MAX_CHARS)
    );
    assert_eq!(first["text_truncated"], true);
    assert_eq!(received[1]["message"]["text"], "flood 1");
    assert!(received[1]["message"].get("text_truncated").is_none());
}
