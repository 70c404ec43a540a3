//! The whole pipeline on a local 3-master Redis Cluster: every key one script touches shares a
//! hash tag, so nothing fails with CROSSSLOT, and conversations spread over the masters.

use std::process::Command;
use std::time::Duration;

use crate::helpers::{
    conversation, eventually, graph_ok, replies, spawn, text_delivery, wait_for_replies,
    AppOptions, RedisServer, APP_SECRET,
};

struct Cluster {
    nodes: Vec<RedisServer>,
}

impl Cluster {
    /// The keys must spread over the slots of more than one master, or the test proves nothing
    /// about cross-slot work.
    fn assert_keys_on_several_masters(&self) {
        let masters_with_keys = self
            .nodes
            .iter()
            .filter(|n| n.cli(&["DBSIZE"]).trim() != "0")
            .count();
        assert!(
            masters_with_keys >= 2,
            "keys on {masters_with_keys} masters only"
        );
    }

    fn start() -> Cluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with_args(
                    false,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    ],
                )
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        let ok = (0..500).any(|_| {
            let ready = nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if !ready {
                std::thread::sleep(Duration::from_millis(20));
            }
            ready
        });
        assert!(ok, "cluster did not become ok");
        Cluster { nodes }
    }

    fn url(&self) -> String {
        let others: Vec<String> = self.nodes[1..]
            .iter()
            .map(|n| format!("node=127.0.0.1:{}", n.port))
            .collect();
        format!(
            "redis-cluster://127.0.0.1:{}?{}",
            self.nodes[0].port,
            others.join("&")
        )
    }
}
#[tokio::test]
async fn the_pipeline_runs_on_a_three_master_cluster() {
    let cluster = Cluster::start();
    let graph = graph_ok().await;
    let options = AppOptions {
        partitions: 16,
        extra_env: vec![
            ("WABOT_RATE_LIMIT__MESSAGES".into(), "3".into()),
            ("WABOT_RATE_LIMIT__WINDOW_SECS".into(), "60".into()),
            ("WABOT_RATE_LIMIT__NOTICE".into(), "slow down".into()),
        ],
        ..AppOptions::default()
    };
    let app = spawn(options.replica_of(&cluster.url(), &graph, "clu")).await;
    assert_eq!(app.get("/ready").await.status(), 200);
    // 12 users x 2 messages, and one duplicate delivery.
    for round in 0..2 {
        for user in 0..12 {
            let body = text_delivery(
                "123",
                &format!("1777000{user:04}"),
                &format!("wamid.c{user}.{round}"),
                &format!("u{user} r{round}"),
            );
            assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
        }
    }
    let dup = text_delivery("123", "17770000000", "wamid.c0.0", "u0 r0");
    assert_eq!(app.post_signed(&dup, APP_SECRET).await.status(), 200);
    wait_for_replies(&graph, 24, Duration::from_secs(30)).await;
    // One user goes over the rate limit: 3 answers and one notice.
    for i in 0..5 {
        let body = text_delivery(
            "123",
            "17779999999",
            &format!("wamid.rl{i}"),
            &format!("flood {i}"),
        );
        assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    }
    let flood = eventually(Duration::from_secs(30), || async {
        let got: Vec<String> = replies(&graph)
            .await
            .into_iter()
            .filter(|r| r.to == "+17779999999")
            .map(|r| r.text)
            .collect();
        (got.len() >= 4).then_some(got)
    })
    .await
    .expect("flood answered");
    assert_eq!(flood.iter().filter(|t| t.starts_with("echo:")).count(), 3);
    assert_eq!(flood.iter().filter(|t| *t == "slow down").count(), 1);
    let all = replies(&graph).await;
    assert_eq!(
        all.iter().filter(|r| r.text.starts_with("echo: u")).count(),
        24,
        "each once"
    );

    // History lives in the cluster, and keys are spread over the masters.
    let store = app.conversations().await;
    let pnid = wabot::domain::PhoneNumberId::parse("123").expect("pnid");
    let user = wabot::domain::UserId::parse("17770000003").expect("user");
    let view = conversation(&store, &pnid, &user).await;
    assert_eq!(view.turns.len(), 4);
    // Listing walks every primary.
    let mut listed = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list(cursor.as_deref(), 5).await.expect("scan");
        listed.extend(page.conversations.into_iter().map(|c| c.user));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed.len(), 13, "{listed:?}");
    cluster.assert_keys_on_several_masters();
}

#[tokio::test]
async fn the_console_lists_and_searches_conversations_across_the_masters() {
    let cluster = Cluster::start();
    let graph = graph_ok().await;
    let options = AppOptions {
        partitions: 16,
        workers: false,
        extra_env: vec![("ADMIN_TOKEN".into(), crate::console::TOKEN.into())],
        ..AppOptions::default()
    };
    let app = spawn(options.replica_of(&cluster.url(), &graph, "cco")).await;
    let store = app.conversations().await;
    let pnid = wabot::domain::PhoneNumberId::parse("123").expect("pnid");
    let until = wabot::domain::clock::unix_ms() + 3_600_000;
    let users: Vec<String> = (0..8).map(|i| format!("1888000{i:04}")).collect();
    for user in &users[..6] {
        let user = wabot::domain::UserId::parse(user).expect("user");
        store
            .take_over(
                &pnid,
                &user,
                until,
                &serde_json::json!({"reason": "operator"}),
                None,
            )
            .await
            .expect("taken over");
    }
    // Back with the bot: active, not waiting.
    for user in &users[6..] {
        let user = wabot::domain::UserId::parse(user).expect("user");
        let info = serde_json::json!({"reason": "operator"});
        store
            .take_over(&pnid, &user, until, &info, None)
            .await
            .expect("taken over");
        assert!(store.give_back(&pnid, &user).await.expect("given back"));
    }
    cluster.assert_keys_on_several_masters();
    let waiting = store.waiting().await.expect("waiting");
    assert_eq!(waiting.len(), 6, "{waiting:?}");

    // The console: every waiting conversation first, the others after (sessions live there too).
    let mut client = crate::console::signed_in(&app).await;
    let (html, _) = client.page("/console/conversations").await;
    let active_at = html.find("id=\"active\"").expect("an active section");
    for user in &users[..6] {
        let at = html.find(&format!("+{user}")).expect("listed");
        assert!(at < active_at, "{user} waits");
    }
    // The rest, page after page, node after node.
    let mut rest = String::new();
    let mut path = "/console/conversations".to_string();
    for _ in 0..20 {
        let (html, _) = client.page(&path).await;
        let active_at = html.find("id=\"active\"").expect("an active section");
        if path.contains("cursor=") {
            assert!(
                !html.contains("id=\"waiting\""),
                "waiting is on the first page only"
            );
        }
        rest.push_str(&html[active_at..]);
        let marker = "class=\"more\" href=\"";
        match html.find(marker) {
            Some(at) => {
                let start = at + marker.len();
                let end = start + html[start..].find('"').expect("end of href");
                path = html[start..end].replace("&amp;", "&");
            }
            None => break,
        }
    }
    for user in &users[6..] {
        assert!(rest.contains(&format!("+{user}")), "{user} listed");
    }
    // A search reads every node until it finds the number.
    for user in [&users[1], &users[7]] {
        let (found, _) = client
            .page(&format!("/console/conversations?q={user}"))
            .await;
        assert!(found.contains(&format!("+{user}")), "{user} found");
        assert_eq!(
            found.matches("href=\"/console/c/").count(),
            1,
            "only {user}"
        );
    }
}
