//! The durable pipeline end to end: accept in Redis, workers, crash safety (DESIGN.md §1-2).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    assert_replies_in_order, eventually, graph_bodies, graph_called, graph_ok, mount_graph_ok,
    replies, spawn, text_delivery, wait_for_dead_letters, wait_for_replies, wait_until_drained,
    AppOptions, RedisServer, APP_SECRET,
};

const PNID: &str = "113948572261094";
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_message_is_answered_from_the_receiving_number() {
    let app = spawn(AppOptions::default()).await;
    let body = text_delivery("555000111", "4915123456789", "wamid.one", "hello");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    let got = wait_for_replies(&app.graph, 1, WAIT).await;
    assert_eq!(got[0].text, "echo: hello");
    assert_eq!(got[0].to, "+4915123456789");
    assert_eq!(got[0].from_phone_number_id, "555000111");
    let request = &app.graph.received_requests().await.expect("recorded")[0];
    assert_eq!(
        request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer EAAG-test-access-token")
    );
}

#[tokio::test]
async fn bsuid_only_user_is_answered_with_recipient() {
    let app = spawn(AppOptions::default()).await;
    let body = crate::helpers::fixture("batch_two_messages.json");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    let got = wait_for_replies(&app.graph, 2, WAIT).await;
    let mut to: Vec<&str> = got.iter().map(|r| r.to.as_str()).collect();
    to.sort();
    assert_eq!(to, ["+4915123456789", "US.13491208655302741918"]);
    let bodies = graph_bodies(&app.graph).await;
    let bsuid = bodies
        .iter()
        .find(|b| b.get("recipient").is_some())
        .expect("a send with `recipient`");
    assert!(bsuid.get("to").is_none());
}

#[tokio::test]
async fn duplicate_deliveries_sequential_and_parallel_give_one_reply() {
    let app = spawn(AppOptions::default()).await;
    let body = text_delivery(PNID, "447700900123", "wamid.dup", "once please");
    let parallel =
        futures_util::future::join_all((0..8).map(|_| app.post_signed(&body, APP_SECRET))).await;
    assert!(parallel.iter().all(|r| r.status() == 200));
    for _ in 0..3 {
        assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    }
    wait_for_replies(&app.graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(replies(&app.graph).await.len(), 1);
}

/// Stream order is the order of acceptance; replies must follow it exactly for one user.
#[tokio::test]
async fn fifty_concurrent_messages_of_one_user_are_answered_in_order() {
    let redis = RedisServer::start();
    let graph = graph_ok().await;
    let prefix = "order";
    // Intake only: the messages pile up in the inbox in the order Redis accepted them.
    let intake = spawn(
        AppOptions {
            workers: false,
            ..AppOptions::default()
        }
        .replica_of(&redis.url(), &graph, prefix),
    )
    .await;
    let posts = (0..50).map(|i| {
        let body = text_delivery(
            PNID,
            "5511987654321",
            &format!("wamid.o{i:02}"),
            &format!("m{i:02}"),
        );
        let intake = &intake;
        async move { intake.post_signed(&body, APP_SECRET).await.status() }
    });
    let statuses = futures_util::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let accepted_order = accepted_texts(&intake).await;
    assert_eq!(accepted_order.len(), 50);

    let _worker = spawn(AppOptions::default().replica_of(&redis.url(), &graph, prefix)).await;
    let got = wait_for_replies(&graph, 50, WAIT).await;
    let texts: Vec<String> = got
        .iter()
        .map(|r| r.text.trim_start_matches("echo: ").to_string())
        .collect();
    assert_eq!(texts, accepted_order);
}

/// A backlog far above `worker.max_in_flight`: the partition reads a little, pauses, and reads
/// on as entries finish; every message is answered once, each user's in order.
#[tokio::test]
async fn a_backlog_above_the_in_flight_bound_is_answered_in_order() {
    let redis = RedisServer::start();
    let graph = graph_ok().await;
    let prefix = "bounded";
    let options = || AppOptions {
        partitions: 1,
        ..AppOptions::with_env(&[
            ("WABOT_WORKER__MAX_IN_FLIGHT", "2"),
            ("WABOT_WORKER__READ_BATCH", "1"),
            ("WABOT_WORKER__CONCURRENCY", "2"),
        ])
    };
    let intake = spawn(
        AppOptions {
            workers: false,
            ..options()
        }
        .replica_of(&redis.url(), &graph, prefix),
    )
    .await;
    let users: Vec<String> = (0..4).map(|u| format!("1555000100{u}")).collect();
    for i in 0..6 {
        for user in &users {
            let body = text_delivery(PNID, user, &format!("wamid.{user}.{i}"), &format!("m{i}"));
            assert_eq!(intake.post_signed(&body, APP_SECRET).await.status(), 200);
        }
    }
    // Every reply takes 200 ms, so the backlog is still there while we look.
    crate::helpers::mount_slow_send(&graph, "echo: m", Duration::from_millis(200)).await;
    let worker = spawn(options().replica_of(&redis.url(), &graph, prefix)).await;
    wait_for_replies(&graph, 2, WAIT).await;
    // Read but not acknowledged: the 2 held, and at most one read ahead in the reader's hands
    // and one in its channel. The other ~20 are still unread in the stream.
    let delivered = pending_count(&worker, 0).await;
    assert!(delivered <= 4, "{delivered} entries read at once");
    let got = wait_for_replies(&graph, 24, WAIT).await;
    wait_until_drained(&worker.queue().await, WAIT).await;
    assert_eq!(replies(&graph).await.len(), 24, "no reply twice");
    assert_replies_in_order(&got, &users, |_| (0..6).map(|i| format!("m{i}")).collect());
}

/// A batch's task is spawned only once it holds one of `worker.concurrency` permits: a backlog of
/// waiting conversations costs their entries, not a processing task (and its memory) each.
#[tokio::test]
async fn conversations_waiting_for_a_permit_hold_no_task() {
    let redis = RedisServer::start();
    let graph = graph_ok().await;
    let worker = spawn(
        AppOptions {
            partitions: 1,
            ..AppOptions::with_env(&[
                ("WABOT_WORKER__MAX_IN_FLIGHT", "64"),
                ("WABOT_WORKER__READ_BATCH", "64"),
                ("WABOT_WORKER__CONCURRENCY", "1"),
            ])
        }
        .replica_of(&redis.url(), &graph, "permits"),
    )
    .await;
    // Warm: the partition is owned and the Graph API client has its connections.
    let body = text_delivery(PNID, "15550002000", "wamid.warm", "warm");
    assert_eq!(worker.post_signed(&body, APP_SECRET).await.status(), 200);
    wait_for_replies(&graph, 1, WAIT).await;
    wait_until_drained(&worker.queue().await, WAIT).await;
    let idle = worker.worker_tasks();

    crate::helpers::mount_slow_send(&graph, "echo: m", Duration::from_millis(150)).await;
    let users: Vec<String> = (0..30).map(|u| format!("155500021{u:02}")).collect();
    for user in &users {
        let body = text_delivery(PNID, user, &format!("wamid.{user}"), "m");
        assert_eq!(worker.post_signed(&body, APP_SECRET).await.status(), 200);
    }
    // All 30 read and held by the partition, one processed at a time (150 ms each).
    eventually(WAIT, || async {
        (pending_count(&worker, 0).await >= 25).then_some(())
    })
    .await
    .expect("the backlog is read");
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(worker.worker_tasks());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The one batch running, and a Graph API connection or two it may open.
    assert!(
        most <= idle + 4,
        "{most} tasks alive with 30 conversations waiting (idle: {idle})"
    );
    let got = wait_for_replies(&graph, 31, WAIT).await;
    assert_eq!(got.len(), 31);
}

/// Entries of a partition delivered to a consumer and not acknowledged yet (`XPENDING`).
async fn pending_count(app: &crate::helpers::TestApp, partition: u32) -> u64 {
    let client = wabot::store::connect(&app.settings.redis).expect("client");
    fred::prelude::ClientLike::wait_for_connect(&client)
        .await
        .expect("connects");
    let summary: fred::types::Value = fred::prelude::StreamsInterface::xpending(
        &client,
        app.keys().inbox(partition),
        wabot::store::keys::GROUP,
        (),
    )
    .await
    .expect("XPENDING");
    let _ = fred::prelude::ClientLike::quit(&client).await;
    match summary {
        fred::types::Value::Array(fields) => fields
            .first()
            .and_then(|count| count.as_u64())
            .expect("a count"),
        other => panic!("XPENDING answered {other:?}"),
    }
}

/// Texts in the inboxes, in stream order (one user: one partition).
async fn accepted_texts(app: &crate::helpers::TestApp) -> Vec<String> {
    use fred::prelude::StreamsInterface;
    let keys = app.keys();
    let client = wabot::store::connect(&app.settings.redis).expect("client");
    fred::prelude::ClientLike::wait_for_connect(&client)
        .await
        .expect("connects");
    let mut texts = Vec::new();
    for p in 0..keys.partitions() {
        let entries: Vec<(String, HashMap<String, String>)> = client
            .xrange(keys.inbox(p), "-", "+", None)
            .await
            .expect("xrange");
        for (_, fields) in entries {
            let value: serde_json::Value = serde_json::from_str(&fields["m"]).expect("stored json");
            texts.push(value["content"]["body"].as_str().expect("text").to_string());
        }
    }
    texts
}

#[tokio::test]
async fn a_slow_reply_to_one_user_does_not_delay_another() {
    let graph = Arc::new(MockServer::start().await);
    crate::helpers::mount_slow_send(&graph, "slow", Duration::from_secs(8)).await;
    mount_graph_ok(&graph).await;
    // One partition: both users share it, so only per-conversation concurrency can help.
    let options = AppOptions {
        partitions: 1,
        ..AppOptions::default()
    };
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..options
    })
    .await;
    let slow = text_delivery(PNID, "15550000001", "wamid.a1", "slow please");
    assert_eq!(app.post_signed(&slow, APP_SECRET).await.status(), 200);
    wait_for_replies(&graph, 1, WAIT).await;
    let fast = text_delivery(PNID, "15550000002", "wamid.b1", "fast please");
    assert_eq!(app.post_signed(&fast, APP_SECRET).await.status(), 200);
    // B's reply must arrive while A's send is still waiting on its 8 s response.
    let b_answered = eventually(Duration::from_secs(6), || async {
        replies(&graph)
            .await
            .iter()
            .any(|r| r.text == "echo: fast please")
            .then_some(())
    })
    .await;
    assert!(b_answered.is_some(), "B was blocked behind A");
}

#[tokio::test]
async fn two_replicas_split_partitions_and_survive_a_kill() {
    let redis = RedisServer::start();
    let graph = graph_ok().await;
    let prefix = "pair";
    let a = spawn(AppOptions::default().replica_of(&redis.url(), &graph, prefix)).await;
    let b = spawn(AppOptions::default().replica_of(&redis.url(), &graph, prefix)).await;
    let keys = a.keys();
    // Both replicas end up owning half of the 8 partitions.
    let split = eventually(WAIT, || async {
        let mut owners: HashMap<String, usize> = HashMap::new();
        for p in 0..keys.partitions() {
            let owner = redis.cli(&["GET", &keys.lease(p)]);
            if !owner.is_empty() {
                *owners.entry(owner).or_default() += 1;
            }
        }
        (owners.len() == 2 && owners.values().all(|n| *n == 4)).then_some(owners)
    })
    .await;
    assert!(split.is_some(), "partitions not split between the replicas");

    a.kill();
    // 10 users x 4 messages through the survivor; A's partitions wait for its leases to expire.
    for round in 0..4 {
        let posts = (0..10).map(|user| {
            let body = text_delivery(
                PNID,
                &format!("1555000{user:04}"),
                &format!("wamid.k{user}.{round}"),
                &format!("u{user} r{round}"),
            );
            let b = &b;
            async move { b.post_signed(&body, APP_SECRET).await.status() }
        });
        assert!(futures_util::future::join_all(posts)
            .await
            .iter()
            .all(|s| *s == 200));
    }
    let got = wait_for_replies(&graph, 40, WAIT).await;
    wait_until_drained(&b.queue().await, WAIT).await;
    let got_after = replies(&graph).await;
    assert_eq!(got_after.len(), 40, "no duplicates: {got:?}");
    let users: Vec<String> = (0..10).map(|u| format!("1555000{u:04}")).collect();
    assert_replies_in_order(&got_after, &users, |user| {
        let n: u32 = user[7..].parse().expect("user number");
        (0..4).map(|round| format!("u{n} r{round}")).collect()
    });
    // The survivor now owns every partition.
    let survivor_owns_all = eventually(WAIT, || async {
        let owners: std::collections::HashSet<String> = (0..keys.partitions())
            .map(|p| redis.cli(&["GET", &keys.lease(p)]))
            .collect();
        (owners.len() == 1 && !owners.contains("")).then_some(())
    })
    .await;
    assert!(survivor_owns_all.is_some());
}

#[tokio::test]
async fn pending_entries_of_a_killed_replica_are_replayed_in_order() {
    let redis = RedisServer::start();
    let graph = Arc::new(MockServer::start().await);
    // The Graph API is down: the first replica keeps retrying, entries stay pending.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&graph)
        .await;
    let prefix = "replay";
    let options = AppOptions {
        max_attempts: 1000,
        ..AppOptions::default()
    };
    let a = spawn(options.replica_of(&redis.url(), &graph, prefix)).await;
    for i in 0..5 {
        let body = text_delivery(
            PNID,
            "4915111111111",
            &format!("wamid.r{i}"),
            &format!("r{i}"),
        );
        assert_eq!(a.post_signed(&body, APP_SECRET).await.status(), 200);
    }
    // Wait until A has tried at least once (the entries are pending in its partition).
    assert!(graph_called(&graph, WAIT).await, "A tried to send");
    a.kill();
    // B talks to a Graph API of its own: A is killed in-process, so a request it had already
    // handed to its HTTP connection can still arrive, and must not be counted as B's.
    let graph_b = graph_ok().await;
    let b = spawn(AppOptions::default().replica_of(&redis.url(), &graph_b, prefix)).await;
    let got = wait_for_replies(&graph_b, 5, WAIT).await;
    let texts: Vec<&str> = got.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        texts,
        ["echo: r0", "echo: r1", "echo: r2", "echo: r3", "echo: r4"]
    );
    wait_until_drained(&b.queue().await, WAIT).await;
    assert_eq!(replies(&graph_b).await.len(), 5);
}

#[tokio::test]
async fn redis_restart_loses_nothing_acknowledged() {
    let mut redis = RedisServer::start_durable();
    let url = redis.url();
    let app = spawn(AppOptions {
        redis_url: Some(url.clone()),
        lease_ttl_ms: 10_000,
        ..AppOptions::default()
    })
    .await;
    let graph = app.graph.clone();
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for i in 0..30 {
        if i == 10 {
            redis.kill();
        }
        if i == 20 {
            redis.restart();
        }
        let text = format!("n{i}");
        let body = text_delivery(
            PNID,
            &format!("1666000{:04}", i % 5),
            &format!("wamid.n{i}"),
            &text,
        );
        let status = app.post_signed(&body, APP_SECRET).await.status();
        match status.as_u16() {
            200 => acknowledged.push(format!("echo: {text}")),
            503 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        refused >= 5,
        "POSTs while Redis is down must be refused with 503 (got {refused})"
    );
    // Every 200 is answered once Redis is back (scripts reloaded after the restart).
    let done = eventually(WAIT, || async {
        let texts: Vec<String> = replies(&graph).await.into_iter().map(|r| r.text).collect();
        acknowledged.iter().all(|a| texts.contains(a)).then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "acknowledged messages lost: {acknowledged:?} vs {:?}",
        replies(&graph).await
    );
    // An outage of our own Redis is not the messages' fault: none was dead-lettered.
    let queue = app.queue().await;
    assert!(queue.dead_letters(10).await.expect("readable").is_empty());
}

#[tokio::test]
async fn graph_failing_three_times_then_succeeding_sends_once() {
    let graph = Arc::new(MockServer::start().await);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_json(serde_json::json!({
            "error": {"message": "(#131000) Something went wrong", "type": "OAuthException", "code": 131000, "fbtrace_id": "X"}
        })))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&graph)
        .await;
    mount_graph_ok(&graph).await;
    let options = AppOptions {
        max_attempts: 5,
        ..AppOptions::default()
    };
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..options
    })
    .await;
    let body = text_delivery(PNID, "15557770000", "wamid.retry", "try again");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    wait_for_replies(&graph, 4, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(
        replies(&graph).await.len(),
        4,
        "3 failed attempts and 1 success"
    );
    assert!(app
        .queue()
        .await
        .dead_letters(10)
        .await
        .expect("readable")
        .is_empty());
}

#[tokio::test]
async fn graph_failing_always_ends_in_the_dead_letter_stream() {
    let graph = Arc::new(MockServer::start().await);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&graph)
        .await;
    let options = AppOptions {
        max_attempts: 3,
        ..AppOptions::default()
    };
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..options
    })
    .await;
    let body = text_delivery(PNID, "15557770001", "wamid.dead", "doomed");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    let queue = app.queue().await;
    let dead = wait_for_dead_letters(&queue, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].error.contains("503"), "{}", dead[0].error);
    assert!(dead[0].message_json.contains("wamid.dead"));
    wait_until_drained(&queue, WAIT).await;
    assert_eq!(graph.received_requests().await.expect("recorded").len(), 3);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let graph = Arc::new(MockServer::start().await);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": {"message": "(#131026) Message undeliverable", "type": "OAuthException", "code": 131026,
                      "error_data": {"messaging_product": "whatsapp", "details": "Receiver is incapable of receiving this message"}, "fbtrace_id": "T"}
        })))
        .mount(&graph)
        .await;
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..AppOptions::default()
    })
    .await;
    let body = text_delivery(PNID, "15557770002", "wamid.perm", "late");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    let queue = app.queue().await;
    let dead = wait_for_dead_letters(&queue, WAIT).await;
    assert_eq!(dead[0].attempts, 1);
    assert!(dead[0].error.contains("131026"), "{}", dead[0].error);
    assert_eq!(graph.received_requests().await.expect("recorded").len(), 1);
}

#[tokio::test]
async fn graceful_stop_releases_leases() {
    let mut app = spawn(AppOptions::default()).await;
    let redis = app.redis.take().expect("redis");
    let keys = app.keys();
    let leases = || -> Vec<String> {
        (0..keys.partitions())
            .map(|p| redis.cli(&["GET", &keys.lease(p)]))
            .filter(|owner| !owner.is_empty())
            .collect()
    };
    let leased = eventually(WAIT, || async { (leases().len() == 8).then_some(()) }).await;
    assert!(
        leased.is_some(),
        "all partitions leased by the only replica"
    );
    let body = text_delivery(PNID, "15551112222", "wamid.bye", "bye");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    wait_for_replies(&app.graph, 1, WAIT).await;
    app.stop().await;
    assert!(
        leases().is_empty(),
        "leases left after a graceful stop: {:?}",
        leases()
    );
}

/// A graceful stop (what SIGTERM triggers) during load: in-flight work finishes, the rest is left
/// pending and the other replica answers it: nothing lost, nothing twice, order kept.
#[tokio::test]
async fn graceful_stop_under_load_loses_nothing() {
    let redis = RedisServer::start();
    let graph = Arc::new(MockServer::start().await);
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"messages": [{"id": "wamid.slowish"}]}))
                .set_delay(Duration::from_millis(150)),
        )
        .mount(&graph)
        .await;
    let prefix = "sigterm";
    let a = spawn(AppOptions::default().replica_of(&redis.url(), &graph, prefix)).await;
    let b = spawn(AppOptions::default().replica_of(&redis.url(), &graph, prefix)).await;
    for round in 0..3 {
        for user in 0..10 {
            let body = text_delivery(
                PNID,
                &format!("1888000{user:04}"),
                &format!("wamid.t{user}.{round}"),
                &format!("u{user} r{round}"),
            );
            assert_eq!(a.post_signed(&body, APP_SECRET).await.status(), 200);
        }
    }
    // Stop A while its messages are being answered (each send takes 150 ms).
    a.stop().await;
    let got = wait_for_replies(&graph, 30, WAIT).await;
    wait_until_drained(&b.queue().await, WAIT).await;
    let got_after = replies(&graph).await;
    assert_eq!(got_after.len(), 30, "nothing twice: {got:?}");
    let users: Vec<String> = (0..10).map(|u| format!("1888000{u:04}")).collect();
    assert_replies_in_order(&got_after, &users, |user| {
        let n: u32 = user[7..].parse().expect("user number");
        (0..3).map(|round| format!("u{n} r{round}")).collect()
    });
}

/// Name and nice value of each thread of a process (`/proc/<pid>/task/*/stat`).
#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> Vec<(String, i64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            // `tid (comm) state ...`: comm may hold spaces; nice is the 19th field.
            let (head, tail) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_owned();
            let nice = tail.split_whitespace().nth(16)?.parse().ok()?;
            Some((name, nice))
        })
        .collect()
}

/// The real binary: SIGTERM → graceful stop → exit code 0.
#[tokio::test]
async fn the_binary_exits_zero_on_sigterm() {
    let redis = RedisServer::start();
    let graph = MockServer::start().await;
    let port = crate::helpers::free_port();
    let mut env = crate::helpers::test_env(&redis.url(), &graph.uri());
    env.insert("PORT".into(), port.to_string());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wabot"))
        .arg("serve")
        .env_clear()
        .envs(&env)
        .env("APP_CONFIG_DIR", "/nonexistent")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wabot starts");
    let http = reqwest::Client::new();
    let healthy = eventually(WAIT, || async {
        let response = http
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    assert!(healthy.is_some(), "the server came up");
    #[cfg(target_os = "linux")]
    {
        // `serve` runs the workers on their own, nicer threads (issue 12), not the receiver's.
        let threads = threads_of(child.id());
        let nice_of = |name: &str| threads.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        let receiver = nice_of("wabot").expect("the main thread");
        let worker = nice_of(wabot::pipeline::worker::runtime::THREAD_NAME);
        assert_eq!(
            worker,
            Some((receiver + 10).min(19)),
            "a worker thread, worker.nice (10) lower than the receiver: {threads:?}"
        );
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitable") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn a_reply_redis_refuses_to_record_is_still_acknowledged() {
    let graph = Arc::new(MockServer::start().await);
    crate::helpers::mount_slow_send(&graph, "record me", Duration::from_secs(1)).await;
    mount_graph_ok(&graph).await;
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..AppOptions::default()
    })
    .await;
    let user = "15550000003";
    let body = text_delivery(PNID, user, "wamid.rec1", "record me");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    eventually(WAIT, || async {
        let requests = graph.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("echo: record me"))
            .then_some(())
    })
    .await
    .expect("the reply's send started");
    // While the reply is on its way, the conversation becomes something Redis cannot record
    // into: the record (run with the acknowledgement) fails as a data error, not an outage.
    let keys = app.keys();
    let (pnid, user_id) = (
        wabot::domain::PhoneNumberId::parse(PNID).expect("pnid"),
        wabot::domain::UserId::parse(user).expect("user"),
    );
    let partition = keys.partition(&pnid, &user_id);
    let redis = app.redis.as_ref().expect("own redis");
    redis.cli(&[
        "DEL",
        &keys.conversation(partition, &pnid, &user_id),
        &keys.history(partition, &pnid, &user_id),
    ]);
    redis.cli(&["SET", &keys.conversation(partition, &pnid, &user_id), "x"]);
    // The entry is acknowledged without its record instead of being retried forever.
    let queue = app.queue().await;
    wait_until_drained(&queue, WAIT).await;
    assert!(queue
        .dead_letters(10)
        .await
        .expect("dead letters")
        .is_empty());
    let sent: Vec<String> = replies(&graph).await.into_iter().map(|r| r.text).collect();
    assert_eq!(sent, ["echo: record me"]);
}

/// A message whose processing kills the worker every time (here: the replica is killed while
/// its reply is on the way, as an out-of-memory kill would) is dead-lettered after
/// `worker.max_attempts` starts, counted in Redis across replicas, instead of crash-looping
/// every replica that takes the partition over.
#[tokio::test]
async fn a_message_that_keeps_killing_its_worker_is_dead_lettered_whoever_runs_it() {
    let redis = RedisServer::start();
    let graph = Arc::new(MockServer::start().await);
    crate::helpers::mount_slow_send(&graph, "echo: heavy", Duration::from_secs(300)).await;
    mount_graph_ok(&graph).await;
    let prefix = "crashloop";
    let options = || {
        AppOptions {
            max_attempts: 2,
            ..AppOptions::default()
        }
        .replica_of(&redis.url(), &graph, prefix)
    };
    let user = "4915111112222";
    let heavy_sends = || async {
        let requests = graph.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("echo: heavy"))
            .count()
    };
    for replica in 1..=2 {
        let app = spawn(options()).await;
        if replica == 1 {
            let body = text_delivery(PNID, user, "wamid.heavy", "heavy");
            assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
        }
        let started = eventually(WAIT, || async {
            (heavy_sends().await >= replica).then_some(())
        })
        .await;
        assert!(started.is_some(), "replica {replica} started the message");
        app.kill();
    }
    let app = spawn(options()).await;
    let dead = crate::helpers::wait_for_dead_letters(&app.queue().await, WAIT).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].error.contains("started 3 times"),
        "the reason names the starts: {}",
        dead[0].error
    );
    assert_eq!(
        heavy_sends().await,
        2,
        "the third replica did not run it again"
    );
    // The conversation goes on, and the count went with the dead letter.
    let body = text_delivery(PNID, user, "wamid.light", "light");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    let answered = eventually(WAIT, || async {
        let got = replies(&graph).await;
        got.iter().any(|r| r.text == "echo: light").then_some(())
    })
    .await;
    assert!(answered.is_some(), "the next message is answered");
    let keys = app.keys();
    let (pnid, uid) = crate::helpers::conversation_ids(PNID, user);
    let starts = keys.starts(keys.partition(&pnid, &uid));
    assert_eq!(redis.cli(&["HLEN", &starts]), "0");
}
