//! Responders a business plugs its logic into: the rules menu (lists and buttons routed by id),
//! built-in sentences in the conversation's language, and the `http` responder against a
//! wiremock backend. Real redis-server, wiremock Graph API.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wabot::store::conversation::Role;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    conversation, eventually, free_port, graph_bodies, mount_graph_ok, replies, spawn,
    text_delivery, wait_for_replies, wait_until_drained, AppOptions, TestApp,
};

const PNID: &str = "113948572261094";
const WAIT: Duration = Duration::from_secs(30);
const BACKEND_SECRET: &str = "backend-shared-secret";

pub async fn app_with(env: &[(&str, &str)]) -> TestApp {
    spawn(AppOptions {
        extra_env: crate::helpers::env_vars(env),
        ..AppOptions::default()
    })
    .await
}

fn list_reply(user: &str, wamid: &str, id: &str, title: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": user}],
        "messages": [{"from": user, "id": wamid, "timestamp": "1793452190", "type": "interactive",
            "context": {"from": "15550000000", "id": "wamid.out.menu"},
            "interactive": {"type": "list_reply", "list_reply": {"id": id, "title": title}}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

/// Graph API message bodies (not read receipts), in arrival order.
async fn sends(graph: &MockServer) -> Vec<Value> {
    graph_bodies(graph)
        .await
        .into_iter()
        .filter(|b| b.get("type").is_some())
        .collect()
}

async fn wait_for_sends(graph: &MockServer, n: usize) -> Vec<Value> {
    eventually(WAIT, || async {
        let got = sends(graph).await;
        (got.len() >= n).then_some(got)
    })
    .await
    .unwrap_or_else(|| panic!("expected {n} sends within {WAIT:?}"))
}

#[tokio::test]
async fn the_rules_menu_is_a_list_whose_rows_route_and_a_redelivered_tap_is_not_answered_twice() {
    let app = app_with(&[("RESPONDER", "rules")]).await;
    let user = "34612345678";
    app.deliver(&text_delivery(PNID, user, "wamid.menu1", "Hola"))
        .await;
    let got = wait_for_sends(&app.graph, 1).await;
    assert_eq!(
        got[0],
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": format!("+{user}"),
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "¡Hola! 👋 ¿En qué te puedo ayudar?"},
                "action": {
                    "button": "Ver opciones",
                    "sections": [{"title": "Menú", "rows": [
                        {"id": "menu_hours", "title": "1 Horarios", "description": "Cuándo estamos abiertos"},
                        {"id": "menu_prices", "title": "2 Precios", "description": "Planes y tarifas"},
                        {"id": "menu_human", "title": "3 Hablar con alguien", "description": "Te atiende una persona del equipo"}
                    ]}]
                }
            }
        })
    );
    // Tapping row 2.
    let tap = list_reply(user, "wamid.tap2", "menu_prices", "2 Precios");
    app.deliver(&tap).await;
    let got = wait_for_sends(&app.graph, 2).await;
    assert_eq!(got[1]["type"], "interactive");
    assert_eq!(got[1]["interactive"]["type"], "button");
    let body = got[1]["interactive"]["body"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(body.contains("Pro: 29 €/mes"), "the prices answer: {body}");
    assert_eq!(
        got[1]["interactive"]["action"]["buttons"][0]["reply"]["id"],
        "menu_human"
    );
    wait_until_drained(&app.queue().await, WAIT).await;
    // The same tap again, past the inbox's dedup (as after a crash between send and ack).
    let (pnid, uid) = crate::helpers::conversation_ids(PNID, user);
    let keys = app.keys();
    let p = keys.partition(&pnid, &uid);
    app.redis
        .as_ref()
        .expect("redis")
        .cli(&["DEL", &keys.seen(p, "wamid.tap2")]);
    app.deliver(&tap).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(sends(&app.graph).await.len(), 2, "no second answer");
    // Row 3 hands off: the text is sent, the handoff is recorded.
    app.deliver(&list_reply(
        user,
        "wamid.tap3",
        "menu_human",
        "3 Hablar con alguien",
    ))
    .await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    let turns = crate::helpers::roles_and_texts(&view);
    assert_eq!(turns.len(), 7, "{turns:?}");
    assert_eq!(turns[0], (Role::User, "Hola"));
    assert!(turns[1]
        .1
        .starts_with("[list: 1 Horarios | 2 Precios | 3 Hablar con alguien]"));
    assert_eq!(turns[2], (Role::User, "2 Precios"));
    assert!(turns[3]
        .1
        .starts_with("[buttons: Hablar con alguien | Menú] Básico"));
    assert_eq!(turns[4], (Role::User, "3 Hablar con alguien"));
    assert!(turns[5].1.starts_with("Te paso con una persona"));
    assert_eq!(
        turns[6],
        (Role::Bot, "[handoff] asked for a person from the menu")
    );
    assert_eq!(view.turns[6].kind, "handoff");
}

#[tokio::test]
async fn in_spanish_reset_and_the_rate_limit_notice_are_spanish() {
    let app = app_with(&[
        ("WABOT_CONVERSATION__LANGUAGE", "es"),
        ("WABOT_RATE_LIMIT__MESSAGES", "1"),
        ("WABOT_RATE_LIMIT__WINDOW_SECS", "60"),
    ])
    .await;
    let user = "34600000001";
    app.deliver(&text_delivery(PNID, user, "wamid.es1", "/reset"))
        .await;
    app.deliver(&text_delivery(PNID, user, "wamid.es2", "otra vez"))
        .await;
    let got = wait_for_replies(&app.graph, 2, WAIT).await;
    assert_eq!(
        got[0].text,
        "Tu conversación se ha reiniciado. ¿En qué puedo ayudarte?"
    );
    assert_eq!(
        got[1].text,
        "Estás enviando mensajes más rápido de lo que puedo responder. Espera un momento antes de volver a escribir."
    );
}

#[tokio::test]
async fn auto_answers_each_user_in_the_language_they_write_and_overrides_win() {
    let app = app_with(&[
        ("WABOT_CONVERSATION__LANGUAGE", "auto"),
        ("WABOT_TEXTS__EN__RESET", "Fresh start."),
        ("RESPONDER", "rules"),
    ])
    .await;
    // Nothing matches: the fallback in the language of the text.
    app.deliver(&text_delivery(
        PNID,
        "5511900000001",
        "wamid.a1",
        "você não sabe nada",
    ))
    .await;
    app.deliver(&text_delivery(
        PNID,
        "34600000002",
        "wamid.a2",
        "¿y tú qué sabes?",
    ))
    .await;
    let got = wait_for_replies(&app.graph, 2, WAIT).await;
    let to = |user: &str| {
        got.iter()
            .find(|r| r.to == format!("+{user}"))
            .map(|r| r.text.clone())
    };
    assert_eq!(
        to("5511900000001").as_deref(),
        Some("Desculpe, não entendi. Digite *ajuda* para ver o que posso fazer.")
    );
    assert_eq!(
        to("34600000002").as_deref(),
        Some("Lo siento, no te he entendido. Escribe *ayuda* para ver lo que puedo hacer.")
    );
    // A command gives no language away: the conversation's is kept...
    app.deliver(&text_delivery(PNID, "34600000002", "wamid.a3", "/reset"))
        .await;
    let got = wait_for_replies(&app.graph, 3, WAIT).await;
    assert_eq!(
        got[2].text,
        "Tu conversación se ha reiniciado. ¿En qué puedo ayudarte?"
    );
    // ...and a new conversation has the default one, overridden in config.
    app.deliver(&text_delivery(PNID, "447700900999", "wamid.a4", "/reset"))
        .await;
    let got = wait_for_replies(&app.graph, 4, WAIT).await;
    assert_eq!(got[3].text, "Fresh start.");
}

// ---------------------------------------------------------------------------------------------
// The http responder

async fn http_app(backend_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("RESPONDER", "http"),
        ("HTTP_RESPONDER_URL", backend_url),
        ("HTTP_RESPONDER_SECRET", BACKEND_SECRET),
        ("WABOT_RESPONDER__HTTP__RETRY_BASE_MS", "10"),
        ("WABOT_RESPONDER__HTTP__TIMEOUT_MS", "2000"),
    ];
    env.extend_from_slice(extra);
    app_with(&env).await
}

/// Matches the backend requests about a message with this text (the history holds earlier ones).
fn message_text(text: &str) -> wiremock::matchers::BodyPartialJsonMatcher {
    wiremock::matchers::body_partial_json(json!({"message": {"text": text}}))
}

fn actions(actions: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "actions": actions }))
}

#[tokio::test]
async fn the_backend_gets_a_signed_body_with_the_history_and_its_actions_are_sent_in_order() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bot"))
        .respond_with(actions(json!([
            {"type": "text", "text": "Hola"},
            {"type": "buttons", "text": "¿Algo más?",
             "buttons": [{"id": "yes", "title": "Sí"}, {"id": "no", "title": "No"}]},
            {"type": "image", "link": "https://example.com/a.jpg", "caption": "Nuestra tienda"}
        ])))
        .mount(&backend)
        .await;
    let app = http_app(&format!("{}/bot", backend.uri()), &[]).await;
    let user = "34600000010";
    app.deliver(&text_delivery(PNID, user, "wamid.b1", "primero"))
        .await;
    let got = wait_for_sends(&app.graph, 3).await;
    let kinds: Vec<&str> = got.iter().filter_map(|b| b["type"].as_str()).collect();
    assert_eq!(kinds, ["text", "interactive", "image"]);
    assert_eq!(got[0]["text"]["body"], "Hola");
    assert_eq!(
        got[1]["interactive"]["action"]["buttons"],
        json!([{"type": "reply", "reply": {"id": "yes", "title": "Sí"}},
               {"type": "reply", "reply": {"id": "no", "title": "No"}}])
    );
    assert_eq!(
        got[2]["image"],
        json!({"link": "https://example.com/a.jpg", "caption": "Nuestra tienda"})
    );
    wait_until_drained(&app.queue().await, WAIT).await;
    app.deliver(&text_delivery(PNID, user, "wamid.b2", "segundo"))
        .await;
    wait_for_sends(&app.graph, 6).await;
    let requests = backend.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        let signature = request
            .headers
            .get("x-wabot-signature-256")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(
            signature,
            wabot::meta::webhook::sign(BACKEND_SECRET, &request.body)
        );
    }
    let second: Value = serde_json::from_slice(&requests[1].body).expect("JSON");
    assert_eq!(second["message"]["id"], "wamid.b2");
    assert_eq!(second["message"]["type"], "text");
    assert_eq!(second["message"]["text"], "segundo");
    assert_eq!(second["contact"]["wa_id"], user);
    assert_eq!(second["contact"]["name"], "Tester");
    assert_eq!(second["conversation"]["phone_number_id"], PNID);
    assert_eq!(
        second["conversation"]["window_open_until"],
        1793452187 + 24 * 3600
    );
    let history: Vec<(&str, &str)> = second["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|t| {
            (
                t["role"].as_str().unwrap_or(""),
                t["text"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("user", "primero"),
            ("bot", "Hola"),
            ("bot", "[buttons: Sí | No] ¿Algo más?"),
            ("bot", "[image] Nuestra tienda"),
            ("user", "segundo"),
        ]
    );
}

#[tokio::test]
async fn a_backend_failing_twice_then_answering_gives_one_answer() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .up_to_n_times(2)
        .mount(&backend)
        .await;
    Mock::given(method("POST"))
        .respond_with(actions(
            json!([{"type": "text", "text": "al tercer intento"}]),
        ))
        .mount(&backend)
        .await;
    let app = http_app(&backend.uri(), &[]).await;
    app.deliver(&text_delivery(PNID, "34600000011", "wamid.r1", "hola"))
        .await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let got = replies(&app.graph).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, "al tercer intento");
    assert_eq!(
        backend.received_requests().await.unwrap_or_default().len(),
        3
    );
}

#[tokio::test]
async fn a_backend_that_is_down_gets_the_fallback_once() {
    let url = format!("http://127.0.0.1:{}/bot", free_port());
    let app = http_app(
        &url,
        &[
            ("WABOT_RESPONDER__HTTP__ATTEMPTS", "2"),
            ("WABOT_RESPONDER__HTTP__FALLBACK", "Volvemos enseguida."),
        ],
    )
    .await;
    app.deliver(&text_delivery(PNID, "34600000012", "wamid.d1", "hola"))
        .await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let got = replies(&app.graph).await;
    assert_eq!(
        got.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["Volvemos enseguida."]
    );
}

#[tokio::test]
async fn a_huge_or_non_json_or_malformed_answer_gets_the_fallback() {
    let backend = MockServer::start().await;
    let huge = json!({"actions": [{"type": "text", "text": "x".repeat(2 * 1024 * 1024)}]});
    Mock::given(method("POST"))
        .and(message_text("huge"))
        .respond_with(ResponseTemplate::new(200).set_body_json(huge))
        .mount(&backend)
        .await;
    Mock::given(method("POST"))
        .and(message_text("html"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>Bad gateway</html>"))
        .mount(&backend)
        .await;
    Mock::given(method("POST"))
        .and(message_text("shape"))
        .respond_with(actions(json!([{"type": "hologram"}])))
        .mount(&backend)
        .await;
    let app = http_app(&backend.uri(), &[("WABOT_CONVERSATION__LANGUAGE", "es")]).await;
    for (n, text) in ["huge", "html", "shape"].iter().enumerate() {
        app.deliver(&text_delivery(
            PNID,
            "34600000013",
            &format!("wamid.m{n}"),
            text,
        ))
        .await;
    }
    wait_for_replies(&app.graph, 3, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let got = replies(&app.graph).await;
    let fallback = "Lo siento, ahora no puedo responder. Inténtalo de nuevo en un momento.";
    assert_eq!(
        got.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        [fallback, fallback, fallback]
    );
    // Not retried: a malformed answer will not get better.
    assert_eq!(
        backend.received_requests().await.unwrap_or_default().len(),
        3
    );
}

#[tokio::test]
async fn an_action_over_meta_limits_is_sent_as_text_and_nothing_says_nothing() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(message_text("silence please"))
        .respond_with(actions(json!([])))
        .mount(&backend)
        .await;
    Mock::given(method("POST"))
        .respond_with(actions(json!([
            {"type": "buttons", "text": "Elige", "buttons": [
                {"id": "a", "title": "Un título demasiado largo para Meta"},
                {"id": "b", "title": "Corto"}]},
            {"type": "location", "latitude": 40.4168, "longitude": -3.7038, "name": "Sol"},
            {"type": "reaction", "emoji": "👍"}
        ])))
        .mount(&backend)
        .await;
    let app = http_app(&backend.uri(), &[]).await;
    let user = "34600000014";
    app.deliver(&text_delivery(PNID, user, "wamid.s1", "silence please"))
        .await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert!(
        sends(&app.graph).await.is_empty(),
        "an empty list says nothing"
    );
    app.deliver(&text_delivery(PNID, user, "wamid.s2", "botones"))
        .await;
    let got = wait_for_sends(&app.graph, 3).await;
    assert_eq!(got[0]["type"], "text");
    assert_eq!(
        got[0]["text"]["body"],
        "Elige\n• Un título demasiado largo para Meta\n• Corto"
    );
    assert_eq!(
        got[1]["location"],
        json!({"latitude": 40.4168, "longitude": -3.7038, "name": "Sol"})
    );
    assert_eq!(
        got[2]["reaction"],
        json!({"message_id": "wamid.s2", "emoji": "👍"})
    );
}

#[tokio::test]
async fn a_retry_after_a_failed_part_sends_only_the_parts_not_yet_sent() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(actions(json!([
            {"type": "text", "text": "Uno"},
            {"type": "buttons", "text": "Dos", "buttons": [{"id": "a", "title": "A"}]},
            {"type": "document", "link": "https://example.com/tres.pdf", "filename": "tres.pdf"}
        ])))
        .mount(&backend)
        .await;
    let graph = Arc::new(MockServer::start().await);
    // The document fails once with an error worth retrying; the worker retries the message.
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_partial_json(
            json!({"type": "document"}),
        ))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "error": {"message": "Something went wrong", "type": "OAuthException", "code": 131000}
        })))
        .up_to_n_times(1)
        .mount(&graph)
        .await;
    mount_graph_ok(&graph).await;
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..AppOptions::with_env(&[
            ("RESPONDER", "http"),
            ("HTTP_RESPONDER_URL", backend.uri().as_str()),
            ("HTTP_RESPONDER_SECRET", BACKEND_SECRET),
        ])
    })
    .await;
    app.deliver(&text_delivery(PNID, "34600000015", "wamid.p1", "hola"))
        .await;
    let got = wait_for_sends(&graph, 4).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let got_now = sends(&graph).await;
    assert_eq!(got_now.len(), got.len(), "nothing after the drain");
    let kinds: Vec<&str> = got_now.iter().filter_map(|b| b["type"].as_str()).collect();
    assert_eq!(kinds, ["text", "interactive", "document", "document"]);
    assert_eq!(
        backend.received_requests().await.unwrap_or_default().len(),
        2
    );
}

#[tokio::test]
async fn a_backend_redirect_is_not_followed_with_the_signed_body() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(actions(json!([{"type": "text", "text": "stolen"}])))
        .mount(&elsewhere)
        .await;
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bot"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/collect", elsewhere.uri()).as_str()),
        )
        .mount(&backend)
        .await;
    let app = http_app(
        &format!("{}/bot", backend.uri()),
        &[("WABOT_RESPONDER__HTTP__ATTEMPTS", "1")],
    )
    .await;
    app.deliver(&text_delivery(PNID, "34600000099", "wamid.redir", "hola"))
        .await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let requests = elsewhere.received_requests().await.unwrap_or_default();
    assert!(
        requests.is_empty(),
        "the body went to the redirect's target"
    );
    // The user still gets an answer: the fallback.
    let got = wait_for_replies(&app.graph, 1, WAIT).await;
    assert_ne!(got[0].text, "stolen");
}

/// A link button and a location request from the backend go out as Meta's `cta_url` and
/// `location_request_message`; the history describes them.
#[tokio::test]
async fn a_backend_sends_a_link_button_and_asks_for_a_location() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bot"))
        .respond_with(actions(json!([
            {"type": "link", "text": "Our opening hours", "label": "See them", "url": "https://example.com/hours"},
            {"type": "location_request", "text": "Where should we deliver?"}
        ])))
        .mount(&backend)
        .await;
    let app = http_app(&format!("{}/bot", backend.uri()), &[]).await;
    let user = "34600000177";
    app.deliver(&text_delivery(PNID, user, "wamid.link1", "hours?"))
        .await;
    let bodies = crate::helpers::eventually(WAIT, || async {
        let bodies = crate::helpers::graph_bodies(&app.graph).await;
        (bodies.len() >= 2).then_some(bodies)
    })
    .await
    .expect("both sent");
    assert_eq!(bodies[0]["interactive"]["type"], "cta_url");
    assert_eq!(
        bodies[0]["interactive"]["action"]["parameters"]["url"],
        "https://example.com/hours"
    );
    assert_eq!(bodies[1]["interactive"]["type"], "location_request_message");
    crate::helpers::wait_until_drained(&app.queue().await, WAIT).await;
    let (pnid, uid) = crate::helpers::conversation_ids(PNID, user);
    let view = crate::helpers::conversation(&app.conversations().await, &pnid, &uid).await;
    let texts = crate::helpers::roles_and_texts(&view);
    assert_eq!(
        texts[1],
        (
            Role::Bot,
            "[link: See them https://example.com/hours] Our opening hours"
        )
    );
    assert_eq!(
        texts[2],
        (Role::Bot, "[location request] Where should we deliver?")
    );
}
