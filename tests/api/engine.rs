//! The conversation engine against a real redis-server and wiremock Graph/LLM APIs.

use std::time::Duration;

use wabot::domain::{PhoneNumberId, UserId};
use wabot::store::conversation::Role;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    conversation, eventually, fixture, graph_bodies, replies, spawn, text_delivery,
    wait_for_replies, wait_until_drained, AppOptions, TestApp, APP_SECRET,
};

const PNID: &str = "113948572261094";
const WAIT: Duration = Duration::from_secs(30);

async fn app_with(env: &[(&str, &str)]) -> TestApp {
    spawn(AppOptions {
        extra_env: crate::helpers::env_vars(env),
        ..AppOptions::default()
    })
    .await
}

fn ids(user: &str) -> (PhoneNumberId, UserId) {
    crate::helpers::conversation_ids(PNID, user)
}

async fn post_text(app: &TestApp, user: &str, wamid: &str, text: &str) {
    let body = text_delivery(PNID, user, wamid, text);
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
}

#[tokio::test]
async fn three_messages_make_six_turns_in_order_with_a_sliding_ttl() {
    let app = app_with(&[("SESSION_EXPIRE_TIME", "120")]).await;
    let store = app.conversations().await;
    let (pnid, user) = ids("4915123456789");
    for i in 1..=3 {
        post_text(
            &app,
            user.as_str(),
            &format!("wamid.h{i}"),
            &format!("message {i}"),
        )
        .await;
        wait_for_replies(&app.graph, i, WAIT).await;
        wait_until_drained(&app.queue().await, WAIT).await;
        let view = conversation(&store, &pnid, &user).await;
        assert!(
            view.ttl_secs > 100 && view.ttl_secs <= 120,
            "ttl {}",
            view.ttl_secs
        );
    }
    let view = conversation(&store, &pnid, &user).await;
    assert_eq!(
        crate::helpers::roles_and_texts(&view),
        [
            (Role::User, "message 1"),
            (Role::Bot, "echo: message 1"),
            (Role::User, "message 2"),
            (Role::Bot, "echo: message 2"),
            (Role::User, "message 3"),
            (Role::Bot, "echo: message 3"),
        ]
    );
    assert_eq!(view.profile_name.as_deref(), Some("Tester"));
    // Each reply's turn is the message Meta accepted (its wamid's digest).
    let sent = crate::helpers::sent_wamids(&app.graph, &view);
    assert_eq!(sent.len(), 3);
    assert!(view.turns[1].is_message(&sent[0]));
}

#[tokio::test]
async fn ttl_slides_with_each_write_and_an_expired_conversation_starts_fresh() {
    let app = app_with(&[("SESSION_EXPIRE_TIME", "5")]).await;
    let store = app.conversations().await;
    let (pnid, user) = ids("4915000000001");
    post_text(&app, user.as_str(), "wamid.t1", "first").await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    // Let the TTL run down, then write again: it must go back up (towards 5 s).
    let lowered = eventually(WAIT, || async {
        let ttl = store.get(&pnid, &user).await.ok()??.ttl_secs;
        (ttl <= 3).then_some(ttl)
    })
    .await
    .expect("TTL runs down");
    post_text(&app, user.as_str(), "wamid.t2", "second").await;
    wait_for_replies(&app.graph, 2, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &user).await;
    assert!(
        view.ttl_secs > lowered,
        "TTL refreshed by the write: {} after {lowered}",
        view.ttl_secs
    );
    assert_eq!(view.turns.len(), 4);
    // No activity: the conversation expires; the next message starts a fresh one.
    let expired = eventually(WAIT, || async {
        store.get(&pnid, &user).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(expired.is_some(), "conversation expired");
    post_text(&app, user.as_str(), "wamid.t3", "third").await;
    wait_for_replies(&app.graph, 3, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &user).await;
    let texts: Vec<&str> = view.turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["third", "echo: third"]);
}

#[tokio::test]
async fn a_redelivered_wamid_is_neither_recorded_nor_answered_twice() {
    let app = app_with(&[]).await;
    let store = app.conversations().await;
    let (pnid, user) = ids("4915000000002");
    post_text(&app, user.as_str(), "wamid.re1", "only once").await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    // Bypass the inbox dedup (as a worker crash after sending would): the engine sees it again.
    let keys = app.keys();
    let p = keys.partition(&pnid, &user);
    app.redis
        .as_ref()
        .expect("redis")
        .cli(&["DEL", &keys.seen(p, "wamid.re1")]);
    post_text(&app, user.as_str(), "wamid.re1", "only once").await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(replies(&app.graph).await.len(), 1);
    let view = conversation(&store, &pnid, &user).await;
    assert_eq!(view.turns.len(), 2);
}

#[tokio::test]
async fn history_is_trimmed_to_max_history() {
    let app = app_with(&[("WABOT_CONVERSATION__MAX_HISTORY", "4")]).await;
    let store = app.conversations().await;
    let (pnid, user) = ids("4915000000003");
    for i in 1..=4 {
        post_text(
            &app,
            user.as_str(),
            &format!("wamid.m{i}"),
            &format!("n{i}"),
        )
        .await;
        wait_for_replies(&app.graph, i, WAIT).await;
    }
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &user).await;
    let texts: Vec<&str> = view.turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["n3", "echo: n3", "n4", "echo: n4"]);
    assert_eq!(view.count, 8);
    // Markers of trimmed turns are gone too: the hash stays bounded.
    let keys = app.keys();
    let fields = app.redis.as_ref().expect("redis").cli(&[
        "HLEN",
        &keys.conversation(keys.partition(&pnid, &user), &pnid, &user),
    ]);
    let fields: usize = fields.parse().expect("number");
    assert!(fields <= 4 + 2 * 2 + 5, "hash has {fields} fields");
}

#[tokio::test]
async fn rate_limit_answers_exactly_the_budget_and_one_notice_per_window() {
    let app = app_with(&[
        ("WABOT_RATE_LIMIT__MESSAGES", "3"),
        ("WABOT_RATE_LIMIT__WINDOW_SECS", "6"),
        ("WABOT_RATE_LIMIT__NOTICE", "slow down"),
    ])
    .await;
    let user = "4915000000004";
    for i in 0..8 {
        post_text(&app, user, &format!("wamid.rl{i}"), &format!("q{i}")).await;
    }
    // Another user has a budget of their own.
    post_text(&app, "4915000000005", "wamid.other", "other user").await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let got = replies(&app.graph).await;
    let to_user: Vec<&str> = got
        .iter()
        .filter(|r| r.to == format!("+{user}"))
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(
        to_user.iter().filter(|t| t.starts_with("echo:")).count(),
        3,
        "{to_user:?}"
    );
    assert_eq!(
        to_user.iter().filter(|t| **t == "slow down").count(),
        1,
        "{to_user:?}"
    );
    assert!(got.iter().any(|r| r.text == "echo: other user"));
    // Rate-limited messages are recorded as such.
    let store = app.conversations().await;
    let (pnid, uid) = ids(user);
    let view = conversation(&store, &pnid, &uid).await;
    assert_eq!(view.turns.iter().filter(|t| t.rate_limited).count(), 5);
    // Once the budget refills (the 6 s window) the user is answered again: asked every 300 ms,
    // each try a message of its own, until one is answered; the limit has to let one through.
    let mut tries = 0;
    let answered = eventually(Duration::from_secs(20), || {
        tries += 1;
        let (app, wamid) = (&app, format!("wamid.rl.after.{tries}"));
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            post_text(app, user, &wamid, "back again").await;
            wait_until_drained(&app.queue().await, WAIT).await;
            let got = replies(&app.graph).await;
            got.iter()
                .any(|r| r.text == "echo: back again")
                .then_some(())
        }
    })
    .await;
    assert!(answered.is_some(), "never answered again after the window");
    // Still exactly one notice in this window and the one after.
    let notices = replies(&app.graph)
        .await
        .iter()
        .filter(|r| r.to == format!("+{user}") && r.text == "slow down")
        .count();
    assert!((1..=2).contains(&notices), "{notices} notices");
}

#[tokio::test]
async fn rules_answer_every_fixture_type() {
    let app = app_with(&[
        ("RESPONDER", "rules"),
        ("WABOT_RESPONDER__RULES_FILE", "config/rules.toml"),
    ])
    .await;
    let cases = [
        // Portuguese, answered in Portuguese.
        (
            "text_message.json",
            "+5511987654321",
            "Abrimos de segunda a sexta",
        ),
        (
            "image_message.json",
            "+4915123456789",
            "I can only read text",
        ),
        (
            "interactive_button_reply.json",
            "+447700900123",
            "Your booking is confirmed",
        ),
        // A tap in the same (Portuguese) conversation.
        (
            "interactive_list_reply.json",
            "+5511987654321",
            "Pro: 29 €/mês, até 5 usuários",
        ),
        (
            "unsupported_message.json",
            "+447700900123",
            "I can only read text",
        ),
    ];
    for (n, (name, to, expected)) in cases.iter().enumerate() {
        assert_eq!(
            app.post_signed(&fixture(name), APP_SECRET).await.status(),
            200
        );
        let got = wait_for_replies(&app.graph, n + 1, WAIT).await;
        let last = got.last().expect("a reply");
        assert_eq!(&last.to, to, "{name}");
        assert!(last.text.contains(expected), "{name}: {}", last.text);
    }
    assert_eq!(
        app.post_signed(&fixture("batch_two_messages.json"), APP_SECRET)
            .await
            .status(),
        200
    );
    // Two messages: one text answer and one menu (below).
    let got = wait_for_replies(&app.graph, cases.len() + 1, WAIT).await;
    // German is not a shipped language: not understood, in the default language.
    let german = got
        .iter()
        .find(|r| r.to == "+4915123456789" && r.text.starts_with("Sorry, I did not understand"));
    assert!(german.is_some(), "German question answered: {got:?}");
    // "hi" opens the English menu (a list, not a text).
    let menu = eventually(WAIT, || async {
        graph_bodies(&app.graph).await.into_iter().find(|b| {
            b["recipient"] == "US.13491208655302741918" || b["to"] == "US.13491208655302741918"
        })
    })
    .await
    .expect("the greeting is answered");
    assert_eq!(
        menu["interactive"]["body"]["text"], "Hi! 👋 How can I help you?",
        "{menu}"
    );
    // Statuses and reactions are recorded but not answered.
    assert_eq!(
        app.post_signed(&fixture("status_updates.json"), APP_SECRET)
            .await
            .status(),
        200
    );
    let reaction = serde_json::json!({"entry": [{"changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": PNID},
        "contacts": [{"profile": {"name": "R"}, "wa_id": "15550009999"}],
        "messages": [{"from": "15550009999", "id": "wamid.react", "timestamp": "1", "type": "reaction",
                      "reaction": {"message_id": "wamid.x", "emoji": "👍"}}]
    }}]}]});
    assert_eq!(
        app.post_signed(reaction.to_string().as_bytes(), APP_SECRET)
            .await
            .status(),
        200
    );
    wait_until_drained(&app.queue().await, WAIT).await;
    // Nothing more than the texts above (the menu is not a text).
    assert_eq!(replies(&app.graph).await.len(), cases.len() + 1);
    let store = app.conversations().await;
    let (pnid, user) = ids("15550009999");
    let view = conversation(&store, &pnid, &user).await;
    assert_eq!(view.turns[0].text, "[reaction 👍]");
}

#[tokio::test]
async fn reset_empties_the_history_and_help_answers() {
    let app = app_with(&[("RESPONDER", "rules")]).await;
    let store = app.conversations().await;
    let (pnid, user) = ids("4915000000006");
    post_text(&app, user.as_str(), "wamid.c1", "when are you open?").await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    post_text(&app, user.as_str(), "wamid.c2", "/help").await;
    let got = wait_for_replies(&app.graph, 2, WAIT).await;
    assert!(got[1].text.contains("hours"), "{}", got[1].text);
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(conversation(&store, &pnid, &user).await.turns.len(), 4);
    post_text(&app, user.as_str(), "wamid.c3", "/reset").await;
    let got = wait_for_replies(&app.graph, 3, WAIT).await;
    assert!(got[2].text.contains("reset"));
    wait_until_drained(&app.queue().await, WAIT).await;
    // The history starts over with the confirmation; the record of it makes a redelivered
    // `/reset` a duplicate instead of a second reset.
    let view = conversation(&store, &pnid, &user).await;
    let texts: Vec<&str> = view.turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, [got[2].text.as_str()]);
    post_text(&app, user.as_str(), "wamid.c3", "/reset").await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(replies(&app.graph).await.len(), 3);
}

async fn openai_app(llm: &MockServer, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("RESPONDER", "openai"),
        ("OPENAI_MODEL", "test-model"),
        ("OPENAI_API_KEY", "sk-test"),
        (
            "WABOT_RESPONDER__OPENAI__SYSTEM_PROMPT",
            "You are the test bot.",
        ),
        ("WABOT_RESPONDER__OPENAI__FALLBACK", "fallback text"),
        ("WABOT_RESPONDER__OPENAI__TIMEOUT_MS", "700"),
    ];
    env.extend_from_slice(extra);
    let base = format!("{}/v1", llm.uri());
    env.push(("OPENAI_BASE_URL", &base));
    app_with(&env).await
}

fn completion(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "id": "c1", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
    }))
}

#[tokio::test]
async fn openai_gets_the_system_prompt_and_prior_turns_in_order() {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(completion("model says hi"))
        .mount(&llm)
        .await;
    let app = openai_app(&llm, &[]).await;
    let user = "4915000000007";
    post_text(&app, user, "wamid.ai1", "first question").await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    post_text(&app, user, "wamid.ai2", "second question").await;
    let got = wait_for_replies(&app.graph, 2, WAIT).await;
    assert_eq!(got[1].text, "model says hi");
    let requests = llm.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer sk-test")
    );
    let body: serde_json::Value = serde_json::from_slice(&requests[1].body).expect("json");
    assert_eq!(body["model"], "test-model");
    let messages: Vec<(String, String)> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or("").to_string(),
                m["content"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("system", "You are the test bot."),
        // The conversation's language ("first question": English), after the prompt.
        (
            "system",
            "The conversation's language is English (en). Answer in English unless the user's \
             latest message is clearly written in another language.",
        ),
        ("user", "first question"),
        ("assistant", "model says hi"),
        ("user", "second question"),
    ]
    .iter()
    .map(|(r, c)| (r.to_string(), c.to_string()))
    .collect();
    assert_eq!(messages, expected);
}

#[tokio::test]
async fn openai_error_or_timeout_sends_the_fallback_and_records_the_turn() {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&llm)
        .await;
    Mock::given(method("POST"))
        .respond_with(completion("too late").set_delay(Duration::from_secs(3)))
        .mount(&llm)
        .await;
    let app = openai_app(&llm, &[]).await;
    let store = app.conversations().await;
    let (pnid, user) = ids("4915000000008");
    post_text(&app, user.as_str(), "wamid.f1", "will fail").await;
    let got = wait_for_replies(&app.graph, 1, WAIT).await;
    assert_eq!(got[0].text, "fallback text");
    post_text(&app, user.as_str(), "wamid.f2", "will time out").await;
    let got = wait_for_replies(&app.graph, 2, WAIT).await;
    assert_eq!(got[1].text, "fallback text");
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = conversation(&store, &pnid, &user).await;
    let texts: Vec<&str> = view.turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "will fail",
            "fallback text",
            "will time out",
            "fallback text"
        ]
    );
}

#[tokio::test]
async fn mark_as_read_with_typing_goes_out_before_the_reply() {
    let app = app_with(&[("WABOT_WHATSAPP__MARK_AS_READ", "true")]).await;
    post_text(&app, "4915000000009", "wamid.read", "read me").await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    let bodies = graph_bodies(&app.graph).await;
    assert_eq!(
        bodies[0],
        serde_json::json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.read",
                           "typing_indicator": {"type": "text"}})
    );
    assert_eq!(bodies[1]["text"]["body"], "echo: read me");
}

/// The read receipt is in flight while the backend is asked (the Graph API holds it until the
/// backend has the request; before, the responder only started once the receipt was answered),
/// and the reply goes out only after the receipt's answer.
#[tokio::test]
async fn the_backend_is_asked_while_the_read_receipt_is_in_flight() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let asked = Arc::new(AtomicBool::new(false));
    let receipt_answered = Arc::new(AtomicBool::new(false));
    let backend = MockServer::start().await;
    let flag = asked.clone();
    Mock::given(method("POST"))
        .respond_with(move |_: &wiremock::Request| {
            flag.store(true, Ordering::SeqCst);
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"actions": [{"type": "text", "text": "Claro"}]}))
        })
        .mount(&backend)
        .await;
    let graph = std::sync::Arc::new(MockServer::start().await);
    let (seen, answered) = (asked.clone(), receipt_answered.clone());
    let backend_seen_by_receipt = Arc::new(Mutex::new(None));
    let record = backend_seen_by_receipt.clone();
    // Each MockServer runs on its own thread: holding the receipt here does not hold the backend.
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_partial_json(
            serde_json::json!({"status": "read"}),
        ))
        .respond_with(move |_: &wiremock::Request| {
            let until = std::time::Instant::now() + Duration::from_secs(3);
            while !seen.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Ok(mut slot) = record.lock() {
                *slot = Some(seen.load(Ordering::SeqCst));
            }
            answered.store(true, Ordering::SeqCst);
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true}))
        })
        .mount(&graph)
        .await;
    let sent_after_receipt = Arc::new(Mutex::new(Vec::new()));
    let (answered, sends) = (receipt_answered.clone(), sent_after_receipt.clone());
    Mock::given(method("POST"))
        .and(path(format!("/v24.0/{PNID}/messages")))
        .respond_with(move |_: &wiremock::Request| {
            if let Ok(mut sends) = sends.lock() {
                sends.push(answered.load(Ordering::SeqCst));
            }
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"messages": [{"id": "wamid.out.claro"}]}))
        })
        .mount(&graph)
        .await;
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..AppOptions::with_env(&[
            ("WABOT_WHATSAPP__MARK_AS_READ", "true"),
            ("RESPONDER", "http"),
            ("HTTP_RESPONDER_URL", backend.uri().as_str()),
            ("HTTP_RESPONDER_SECRET", "backend-shared-secret"),
        ])
    })
    .await;
    post_text(&app, "34600000031", "wamid.concurrent", "¿Tenéis talla M?").await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(
        *backend_seen_by_receipt.lock().expect("not poisoned"),
        Some(true),
        "the backend was asked while the read receipt was held"
    );
    assert_eq!(
        *sent_after_receipt.lock().expect("not poisoned"),
        [true],
        "one reply, sent after the receipt was answered"
    );
    let bodies = graph_bodies(&graph).await;
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0]["status"], "read");
    assert_eq!(bodies[1]["text"]["body"], "Claro");
}

/// Reports the Redis memory of a 40-turn conversation (~100 characters a turn) against the raw
/// text, and bounds the layout's overhead.
#[tokio::test]
async fn memory_of_a_forty_turn_conversation() {
    let app = app_with(&[]).await;
    let user = "4915000000010";
    let text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore";
    for i in 0..20 {
        // Real wamids are ~60 characters; the markers and turns carry them.
        let wamid =
            format!("wamid.HBgNNDkxNTEyMzQ1Njc4ORUCABIYFDNBNkIyRDlFMEY0QTdDMTM1ODhEMk{i:02}");
        post_text(&app, user, &wamid, text).await;
    }
    wait_for_replies(&app.graph, 20, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let (pnid, uid) = ids(user);
    let keys = app.keys();
    let partition = keys.partition(&pnid, &uid);
    let redis = app.redis.as_ref().expect("redis");
    let usage = |key: String| -> usize {
        redis
            .cli(&["MEMORY", "USAGE", &key])
            .parse()
            .expect("number")
    };
    // The hash (metadata, markers) and the list of turns beside it.
    let bytes = usage(keys.conversation(partition, &pnid, &uid))
        + usage(keys.history(partition, &pnid, &uid));
    let raw: usize = (text.len() + "echo: ".len() + text.len()) * 20;
    println!(
        "MEMORY USAGE of a 40-turn conversation: {bytes} bytes for {raw} bytes of text ({:.2}x)",
        bytes as f64 / raw as f64
    );
    // ~2x: the turns live in a compact list, the hash holds short markers (both listpacks);
    // what is left is JSON keys, timestamps and the sent wamid of each reply.
    assert!(
        bytes * 10 <= raw * 22,
        "{bytes} bytes for {raw} bytes of text"
    );
}

#[tokio::test]
async fn a_burst_within_the_merge_window_is_answered_once() {
    let app = app_with(&[("WABOT_CONVERSATION__MERGE_WINDOW_MS", "1500")]).await;
    let store = app.conversations().await;
    let (pnid, user) = ids("4915000000011");
    for (i, text) in ["hi", "I have a question", "about my invoice"]
        .iter()
        .enumerate()
    {
        post_text(&app, user.as_str(), &format!("wamid.burst{i}"), text).await;
    }
    wait_until_drained(&app.queue().await, WAIT).await;
    let got = replies(&app.graph).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].text, "echo: about my invoice");
    let view = conversation(&store, &pnid, &user).await;
    let texts: Vec<&str> = view.turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "hi",
            "I have a question",
            "about my invoice",
            "echo: about my invoice"
        ]
    );
    // After the window, the next message is answered on its own.
    post_text(&app, user.as_str(), "wamid.burst.later", "thanks").await;
    let got = wait_for_replies(&app.graph, 2, WAIT).await;
    assert_eq!(got[1].text, "echo: thanks");
}
