//! Poison messages, kinds that are never answered, leases through hand-back and failed
//! heartbeats, per-part progress of split replies, commands under the rate limit, pacing shared
//! by replicas, and statuses through the inbox.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wabot::domain::{PhoneNumberId, UserId};
use wabot::store::conversation::Role;
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{
    conversation, eventually, fixture, graph_called, mount_graph_ok, replies, spawn, text_delivery,
    wait_for_dead_letters, wait_for_replies, wait_until_drained, AppOptions, RedisServer, TestApp,
};

const PNID: &str = "113948572261094";
const WAIT: Duration = Duration::from_secs(30);

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    crate::helpers::env_vars(pairs)
}

fn ids(user: &str) -> (PhoneNumberId, UserId) {
    crate::helpers::conversation_ids(PNID, user)
}

fn delivery(field: &str, value: serde_json::Value) -> Vec<u8> {
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": field, "value": value}
    ]}]})
    .to_string()
    .into_bytes()
}

fn texts_to(replies: &[crate::helpers::Reply], user: &str) -> Vec<String> {
    replies
        .iter()
        .filter(|r| r.to == format!("+{user}"))
        .map(|r| r.text.clone())
        .collect()
}

#[tokio::test]
async fn a_corrupt_conversation_dead_letters_its_message_and_the_user_is_answered_again() {
    let app = spawn(AppOptions {
        max_attempts: 3,
        ..AppOptions::default()
    })
    .await;
    let graph = app.graph.clone();
    let user = "4915000000101";
    app.deliver(&text_delivery(PNID, user, "wamid.p1", "one"))
        .await;
    wait_for_replies(&graph, 1, WAIT).await;
    // Corrupt the conversation by hand: a string where the hash should be.
    let keys = app.keys();
    let (pnid, uid) = ids(user);
    let key = keys.conversation(keys.partition(&pnid, &uid), &pnid, &uid);
    let redis = app.redis.as_ref().expect("own redis");
    assert_eq!(redis.cli(&["SET", &key, "garbage"]), "OK");
    app.deliver(&text_delivery(PNID, user, "wamid.p2", "two"))
        .await;
    let dead = wait_for_dead_letters(&app.queue().await, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3, "{:?}", dead[0]);
    assert!(dead[0].message_json.contains("wamid.p2"));
    // Other users were never blocked, and the same user's next message starts afresh.
    app.deliver(&text_delivery(PNID, "4915000000102", "wamid.q1", "other"))
        .await;
    app.deliver(&text_delivery(PNID, user, "wamid.p3", "three"))
        .await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let got = replies(&graph).await;
    assert_eq!(texts_to(&got, user), ["echo: one", "echo: three"]);
    assert_eq!(texts_to(&got, "4915000000102"), ["echo: other"]);
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    assert_eq!(
        view.turns.len(),
        2,
        "a fresh conversation: {:?}",
        view.turns
    );
}

#[tokio::test]
async fn revokes_edits_echoes_and_standby_copies_are_recorded_never_answered() {
    let app = spawn(AppOptions::default()).await;
    let graph = app.graph.clone();
    let user = "4915000000201";
    app.deliver(&text_delivery(PNID, user, "wamid.o1", "precio plan basico"))
        .await;
    wait_for_replies(&graph, 1, WAIT).await;
    let metadata =
        serde_json::json!({"display_phone_number": "15550000000", "phone_number_id": PNID});
    let contacts = serde_json::json!([{"profile": {"name": "Ana"}, "wa_id": user}]);
    let edit = delivery(
        "messages",
        serde_json::json!({
            "messaging_product": "whatsapp", "metadata": metadata, "contacts": contacts,
            "messages": [{"from": user, "id": "wamid.o2", "timestamp": "1793452190", "type": "edit",
                "edit": {"original_message_id": "wamid.o1",
                         "message": {"type": "text", "text": {"body": "precio plan pro"}}}}]
        }),
    );
    let revoke = delivery(
        "messages",
        serde_json::json!({
            "messaging_product": "whatsapp", "metadata": metadata, "contacts": contacts,
            "messages": [{"from": user, "id": "wamid.o3", "timestamp": "1793452191", "type": "revoke",
                "revoke": {"original_message_id": "wamid.o1"}}]
        }),
    );
    let echo = delivery(
        "smb_message_echoes",
        serde_json::json!({
            "messaging_product": "whatsapp", "metadata": metadata,
            "message_echoes": [{"from": "15550000000", "to": user, "id": "wamid.o4",
                "timestamp": "1793452192", "type": "text", "text": {"body": "Te llamo en 5 minutos"}}]
        }),
    );
    let standby = delivery(
        "standby",
        serde_json::json!({
            "messaging_product": "whatsapp", "metadata": metadata, "contacts": contacts,
            "messages": [{"from": user, "id": "wamid.o5", "timestamp": "1793452193", "type": "text",
                "text": {"body": "hola?"}}]
        }),
    );
    for body in [&edit, &revoke, &echo, &standby] {
        app.deliver(body).await;
    }
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(
        replies(&graph).await.len(),
        1,
        "only the first message is answered"
    );
    let (pnid, uid) = ids(user);
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    assert_eq!(
        crate::helpers::roles_and_texts(&view),
        [
            (Role::User, "precio plan pro"),
            (Role::Bot, "echo: precio plan basico"),
            (Role::User, "[deleted a message]"),
            (Role::Operator, "Te llamo en 5 minutos"),
            (Role::User, "hola?"),
        ]
    );
    assert!(view.turns[0].edited);
}

/// A Graph API whose sends answer after `delay` when their body contains `slow`.
async fn slow_graph(delay: Duration) -> Arc<MockServer> {
    let graph = Arc::new(MockServer::start().await);
    Mock::given(method("POST"))
        .and(body_string_contains("slow"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"messages": [{"id": "wamid.slow.out"}]}))
                .set_delay(delay),
        )
        .with_priority(1)
        .mount(&graph)
        .await;
    mount_graph_ok(&graph).await;
    graph
}

/// A user whose conversation lives in `partition` of `partitions`.
fn user_in_partition(partition: u32, partitions: u32) -> String {
    let keys = wabot::store::Keys::new("any", partitions);
    let pnid = PhoneNumberId::parse(PNID).expect("pnid");
    (0..1000u32)
        .map(|i| format!("49151000{i:05}"))
        .find(|u| keys.partition(&pnid, &UserId::parse(u).expect("user")) == partition)
        .expect("a user in that partition")
}

async fn replica(
    redis: &RedisServer,
    graph: &Arc<MockServer>,
    prefix: &str,
    partitions: u32,
) -> TestApp {
    let options = AppOptions {
        partitions,
        ..AppOptions::default()
    };
    spawn(options.replica_of(&redis.url(), graph, prefix)).await
}

async fn wait_until_sent(graph: &MockServer, needle: &str) {
    eventually(WAIT, || async {
        let requests = graph.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains(needle))
            .then_some(())
    })
    .await
    .expect("the send started");
}

/// Replica A of `prefix` alone on two partitions, answering a message of a user in `partition`
/// through a Graph API slower than the lease TTL; returns once the send has started.
async fn slow_send_on(
    redis: &RedisServer,
    prefix: &str,
    partition: u32,
    text: &str,
) -> (TestApp, Arc<MockServer>, String) {
    // Slower than the 2 s lease TTL: without renewals the lease expires mid-send.
    let graph = slow_graph(Duration::from_secs(5)).await;
    let a = replica(redis, &graph, prefix, 2).await;
    let user = user_in_partition(partition, 2);
    eventually(WAIT, || async {
        let owned = redis.cli(&["GET", &format!("{{{prefix}:{partition}}}:lease")]);
        (!owned.is_empty()).then_some(())
    })
    .await
    .expect("A owns the partition");
    a.deliver(&text_delivery(
        PNID,
        &user,
        &format!("wamid.{prefix}"),
        text,
    ))
    .await;
    wait_until_sent(&graph, text).await;
    (a, graph, user)
}

/// Once everything is done, `user` got `text` exactly once, whoever finished it.
async fn answered_once(a: &TestApp, graph: &MockServer, user: &str, text: &str) {
    wait_until_drained(&a.queue().await, WAIT).await;
    assert_eq!(
        texts_to(&replies(graph).await, user),
        [format!("echo: {text}")]
    );
}

#[tokio::test]
async fn a_reply_in_flight_while_its_partition_is_handed_back_is_sent_once() {
    let redis = RedisServer::start();
    // A owns both partitions; when B joins, A hands the highest (1) back mid-send.
    let (a, graph, user) = slow_send_on(&redis, "handback", 1, "slow one").await;
    let _b = replica(&redis, &graph, "handback", 2).await;
    answered_once(&a, &graph, &user, "slow one").await;
}

#[tokio::test]
async fn a_failed_heartbeat_does_not_stop_lease_renewals() {
    let redis = RedisServer::start();
    let (a, graph, user) = slow_send_on(&redis, "heartbeat", 0, "slow two").await;
    // Every heartbeat write fails from now on (the replicas key has the wrong type).
    redis.cli(&["DEL", "heartbeat:replicas"]);
    assert_eq!(redis.cli(&["SET", "heartbeat:replicas", "x"]), "OK");
    let _b = replica(&redis, &graph, "heartbeat", 2).await;
    answered_once(&a, &graph, &user, "slow two").await;
}

/// A Graph API that answers the first send whose body contains `needle` (any send, when empty)
/// with `failure`, and every other send with success.
async fn graph_failing_once(needle: &str, failure: ResponseTemplate) -> Arc<MockServer> {
    let graph = crate::helpers::graph_ok().await;
    Mock::given(method("POST"))
        .and(body_string_contains(needle))
        .respond_with(failure)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&graph)
        .await;
    graph
}

#[tokio::test]
async fn a_split_reply_that_fails_midway_continues_where_it_stopped() {
    let graph = graph_failing_once(
        "bravo",
        ResponseTemplate::new(500).set_body_json(serde_json::json!({
            "error": {"message": "(#131000) Something went wrong", "code": 131000, "fbtrace_id": "X"}
        })),
    )
    .await;
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..AppOptions::default()
    })
    .await;
    let text = format!(
        "{}{}{}",
        "alpha ".repeat(700),
        "bravo ".repeat(700),
        "charlie ".repeat(300)
    );
    let user = "4915000000301";
    app.deliver(&text_delivery(PNID, user, "wamid.s1", text.trim_end()))
        .await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let sent = texts_to(&replies(&graph).await, user);
    // Part 1, part 2 (refused once), part 2 again, part 3: nothing delivered twice.
    assert_eq!(
        sent.len(),
        4,
        "{:?}",
        sent.iter().map(|s| &s[..20]).collect::<Vec<_>>()
    );
    assert_eq!(sent[1], sent[2]);
    assert!(sent[0].starts_with("echo: alpha"));
    assert_eq!(
        sent.iter().filter(|s| s.starts_with("echo: alpha")).count(),
        1
    );
    assert!(sent[3].contains("charlie"));
}

#[tokio::test]
async fn commands_count_against_the_rate_limit() {
    let app = spawn(AppOptions::with_env(&[
        ("WABOT_RATE_LIMIT__MESSAGES", "3"),
        ("RESPONDER", "rules"),
    ]))
    .await;
    let graph = app.graph.clone();
    let user = "4915000000401";
    for i in 0..6 {
        let command = if i % 2 == 0 { "/help" } else { "/reset" };
        app.deliver(&text_delivery(PNID, user, &format!("wamid.rl{i}"), command))
            .await;
    }
    wait_until_drained(&app.queue().await, WAIT).await;
    // Three within the limit, then one notice for the window.
    let sent = texts_to(&replies(&graph).await, user);
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert!(sent[3].contains("faster"), "{}", sent[3]);
}

/// Records when each send arrived.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<Instant>>>);

impl Respond for Arrivals {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        if let Ok(mut times) = self.0.lock() {
            times.push(Instant::now());
        }
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "messages": [{"id": format!("wamid.out.{}", uuid::Uuid::new_v4().simple())}]
        }))
    }
}

#[tokio::test]
async fn two_replicas_share_one_number_throughput() {
    let redis = RedisServer::start();
    let graph = Arc::new(MockServer::start().await);
    let arrivals = Arrivals::default();
    Mock::given(method("POST"))
        .respond_with(arrivals.clone())
        .mount(&graph)
        .await;
    let options = AppOptions {
        extra_env: env(&[
            ("WABOT_WHATSAPP__THROUGHPUT_PER_SEC", "4"),
            ("WABOT_WHATSAPP__RECIPIENT_INTERVAL_MS", "0"),
        ]),
        ..AppOptions::default()
    };
    let prefix = "paced";
    let a = spawn(options.clone().replica_of(&redis.url(), &graph, prefix)).await;
    let _b = spawn(options.replica_of(&redis.url(), &graph, prefix)).await;
    eventually(WAIT, || async {
        let leases: usize = (0..8)
            .filter(|p| {
                !redis
                    .cli(&["GET", &format!("{{{prefix}:{p}}}:lease")])
                    .is_empty()
            })
            .count();
        let owners = redis.cli(&["ZCARD", &format!("{prefix}:replicas")]);
        (leases == 8 && owners == "2").then_some(())
    })
    .await
    .expect("both replicas run");
    let users: Vec<String> = (0..16).map(|i| format!("4915000005{i:02}")).collect();
    for (i, user) in users.iter().enumerate() {
        a.deliver(&text_delivery(PNID, user, &format!("wamid.tp{i}"), "hi"))
            .await;
    }
    wait_for_replies(&graph, 16, WAIT).await;
    let times = arrivals.0.lock().expect("not poisoned").clone();
    // 4 per second across both replicas (one replica alone would already do 4/s).
    let busiest = times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && **t < *start + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(busiest <= 6, "{busiest} sends within one second");
}

#[tokio::test]
async fn a_burst_from_one_user_is_answered_at_once_within_the_pair_limit() {
    let app = spawn(AppOptions::with_env(&[
        ("WABOT_WHATSAPP__RECIPIENT_INTERVAL_MS", "6000"),
        ("WABOT_WHATSAPP__RECIPIENT_BURST", "45"),
    ]))
    .await;
    let graph = app.graph.clone();
    let user = "4915000000601";
    for i in 0..10 {
        app.deliver(&text_delivery(
            PNID,
            user,
            &format!("wamid.b{i}"),
            &format!("m{i}"),
        ))
        .await;
    }
    // Spaced 6 s apart these would take a minute; the burst allowance sends them at once.
    let got = wait_for_replies(&graph, 10, Duration::from_secs(8)).await;
    let expected: Vec<String> = (0..10).map(|i| format!("echo: m{i}")).collect();
    assert_eq!(texts_to(&got, user), expected);
}

#[tokio::test]
async fn statuses_are_queued_once_per_message_and_value() {
    let app = spawn(AppOptions {
        workers: false,
        ..AppOptions::default()
    })
    .await;
    let statuses = fixture("status_updates.json");
    app.deliver(&statuses).await;
    app.deliver(&statuses).await;
    let queue = app.queue().await;
    let mut stored = 0;
    for p in 0..queue.keys().partitions() {
        stored += queue.depth(p).await.expect("depth");
    }
    let distinct: std::collections::HashSet<(String, String)> = {
        let value: serde_json::Value = serde_json::from_slice(&statuses).expect("json");
        value
            .pointer("/entry/0/changes/0/value/statuses")
            .and_then(|s| s.as_array())
            .expect("statuses")
            .iter()
            .map(|s| (s["id"].to_string(), s["status"].to_string()))
            .collect()
    };
    assert_eq!(
        stored as usize,
        distinct.len(),
        "one entry per (message, status)"
    );
}

#[tokio::test]
async fn a_huge_text_is_bounded_in_the_history_and_in_the_reply() {
    let app = spawn(AppOptions::with_env(&[
        ("WABOT_CONVERSATION__MAX_TURN_CHARS", "10000"),
        ("WABOT_CONVERSATION__MAX_REPLY_PARTS", "3"),
    ]))
    .await;
    let graph = app.graph.clone();
    let user = "4915000000701";
    let huge = "palabra ".repeat(50_000);
    app.deliver(&text_delivery(PNID, user, "wamid.big", huge.trim_end()))
        .await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(texts_to(&replies(&graph).await, user).len(), 3);
    let (pnid, uid) = ids(user);
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    for turn in &view.turns {
        assert!(turn.text.chars().count() <= 10_001, "{}", turn.text.len());
    }
}

#[tokio::test]
async fn a_draining_replica_starts_nothing_new_and_the_next_one_answers_the_rest_once() {
    let redis = RedisServer::start();
    let graph = Arc::new(MockServer::start().await);
    // The first reply is slow: it holds the only permit while the others wait for it.
    crate::helpers::mount_slow_send(&graph, "echo: first", Duration::from_millis(1500)).await;
    mount_graph_ok(&graph).await;
    let options = AppOptions {
        extra_env: env(&[("WABOT_WORKER__CONCURRENCY", "1")]),
        ..AppOptions::default()
    };
    let app = spawn(options.clone().replica_of(&redis.url(), &graph, "drain")).await;
    app.deliver(&text_delivery(PNID, "4915000000401", "wamid.dr1", "first"))
        .await;
    assert!(
        graph_called(&graph, WAIT).await,
        "the first reply is in flight"
    );
    app.deliver(&text_delivery(PNID, "4915000000402", "wamid.dr2", "second"))
        .await;
    app.deliver(&text_delivery(PNID, "4915000000403", "wamid.dr3", "third"))
        .await;
    // Read by the replica (pending), waiting for the permit, when the stop comes.
    let queue = app.queue().await;
    eventually(WAIT, || async {
        let mut pending = 0;
        for p in 0..queue.keys().partitions() {
            pending += queue.depth(p).await.unwrap_or(0);
        }
        (pending == 3).then_some(())
    })
    .await
    .expect("all three stored");
    app.stop().await;
    let sent = replies(&graph).await;
    assert_eq!(
        sent.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["echo: first"],
        "nothing new started while draining"
    );
    let next = spawn(options.replica_of(&redis.url(), &graph, "drain")).await;
    wait_until_drained(&next.queue().await, WAIT).await;
    let mut texts: Vec<String> = replies(&graph).await.into_iter().map(|r| r.text).collect();
    texts.sort();
    assert_eq!(
        texts,
        ["echo: first", "echo: second", "echo: third"],
        "each once"
    );
    next.stop().await;
}

#[tokio::test]
async fn a_merged_burst_that_fails_once_is_answered_once_on_retry() {
    let graph = graph_failing_once("", ResponseTemplate::new(500)).await;
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        extra_env: env(&[("WABOT_CONVERSATION__MERGE_WINDOW_MS", "800")]),
        ..AppOptions::default()
    })
    .await;
    let user = "4915000000411";
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        app.deliver(&text_delivery(PNID, user, &format!("wamid.mr{i}"), text))
            .await;
    }
    wait_until_drained(&app.queue().await, WAIT).await;
    let requests = graph.received_requests().await.unwrap_or_default().len();
    assert_eq!(requests, 2, "the failed try and one retry");
    let got = replies(&graph).await;
    assert_eq!(
        got.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["echo: three", "echo: three"],
        "the refused try and the one that went through"
    );
    let (pnid, uid) = ids(user);
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    let texts: Vec<&str> = view.turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        texts,
        ["one", "two", "three", "echo: three"],
        "recorded once"
    );
    app.stop().await;
}
