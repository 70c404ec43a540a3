//! Operations: admin API, metrics, status bookkeeping, CLI against Redis.

use std::sync::Arc;
use std::time::Duration;

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    eventually, fixture, mount_graph_ok, spawn, text_delivery, wait_for_replies,
    wait_until_drained, AppOptions, TestApp, APP_SECRET,
};

const TOKEN: &str = "admin-secret-token";
const WAIT: Duration = Duration::from_secs(30);

async fn admin_app(graph_ok: bool) -> TestApp {
    let graph = if graph_ok {
        crate::helpers::graph_ok().await
    } else {
        let graph = Arc::new(MockServer::start().await);
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&graph)
            .await;
        graph
    };
    spawn(AppOptions {
        graph: Some(graph),
        max_attempts: 2,
        ..AppOptions::with_env(&[("ADMIN_TOKEN", TOKEN)])
    })
    .await
}

async fn admin(
    app: &TestApp,
    verb: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = app.http.request(verb, format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("sent")
}

#[tokio::test]
async fn admin_api_needs_the_token_and_shows_and_deletes_conversations() {
    let app = admin_app(true).await;
    for path in [
        "/admin/conversations",
        "/admin/dead-letters",
        "/admin/conversations/123/15550001111",
    ] {
        assert_eq!(
            admin(&app, reqwest::Method::GET, path, None).await.status(),
            401,
            "{path}"
        );
        assert_eq!(
            admin(&app, reqwest::Method::GET, path, Some("wrong"))
                .await
                .status(),
            401,
            "{path}"
        );
    }
    for user in ["15550001111", "15550002222"] {
        let body = text_delivery("123", user, &format!("wamid.adm{user}"), "hello admin");
        assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    }
    wait_for_replies(&app.graph, 2, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;

    // Paginate with a small page size until the cursor ends.
    let mut cursor: Option<String> = None;
    let mut users = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/conversations?count=1&cursor={c}"),
            None => "/admin/conversations?count=1".into(),
        };
        let page: serde_json::Value = admin(&app, reqwest::Method::GET, &path, Some(TOKEN))
            .await
            .json()
            .await
            .expect("json");
        for c in page["conversations"].as_array().expect("array") {
            users.push(c["user"].as_str().expect("user").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    users.sort();
    users.dedup();
    assert_eq!(users, ["15550001111", "15550002222"]);

    let one = admin(
        &app,
        reqwest::Method::GET,
        "/admin/conversations/123/15550001111",
        Some(TOKEN),
    )
    .await;
    assert_eq!(one.status(), 200);
    let one: serde_json::Value = one.json().await.expect("json");
    assert_eq!(one["count"], 2);
    assert_eq!(one["turns"][0]["t"], "hello admin");
    assert_eq!(one["turns"][1]["t"], "echo: hello admin");
    assert!(one["ttl_secs"].as_i64().expect("ttl") > 3000);

    let deleted = admin(
        &app,
        reqwest::Method::DELETE,
        "/admin/conversations/123/15550001111",
        Some(TOKEN),
    )
    .await;
    assert_eq!(deleted.status(), 204);
    let gone = admin(
        &app,
        reqwest::Method::GET,
        "/admin/conversations/123/15550001111",
        Some(TOKEN),
    )
    .await;
    assert_eq!(gone.status(), 404);
    let keys = app.keys();
    let pnid = wabot::domain::PhoneNumberId::parse("123").expect("pnid");
    let user = wabot::domain::UserId::parse("15550001111").expect("user");
    let key = keys.conversation(keys.partition(&pnid, &user), &pnid, &user);
    assert_eq!(
        app.redis.as_ref().expect("redis").cli(&["EXISTS", &key]),
        "0",
        "really deleted"
    );
}

#[tokio::test]
async fn admin_api_is_off_without_a_token() {
    let app = spawn(AppOptions::default()).await;
    let response = admin(
        &app,
        reqwest::Method::GET,
        "/admin/conversations",
        Some("anything"),
    )
    .await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed() {
    let app = admin_app(false).await;
    let body = text_delivery("123", "15550003333", "wamid.dl", "never delivered");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    let letters = eventually(WAIT, || async {
        let list = dead_letters(&app).await?;
        (!list.is_empty()).then_some(list)
    })
    .await
    .expect("a dead letter");
    let letter = &letters[0];
    assert_eq!(letter["attempts"], 2);
    assert_eq!(letter["message"]["id"], "wamid.dl");
    let id = letter["id"].as_str().expect("id").to_string();

    // The Graph API recovers; the operator replays the message and it is answered.
    app.graph.reset().await;
    mount_graph_ok(&app.graph).await;
    assert_eq!(replay(&app, &id).await.status(), 202);
    let got = wait_for_replies(&app.graph, 1, WAIT).await;
    assert_eq!(got[0].text, "echo: never delivered");
    assert_eq!(replay(&app, &id).await.status(), 404);
    assert_eq!(dead_letters(&app).await.map(|l| l.len()), Some(0));
}

/// `GET /admin/dead-letters` with the token.
async fn dead_letters(app: &TestApp) -> Option<Vec<serde_json::Value>> {
    let list: serde_json::Value = admin(
        app,
        reqwest::Method::GET,
        "/admin/dead-letters",
        Some(TOKEN),
    )
    .await
    .json()
    .await
    .ok()?;
    list["dead_letters"].as_array().cloned()
}

async fn replay(app: &TestApp, id: &str) -> reqwest::Response {
    let path = format!("/admin/dead-letters/{id}/replay");
    admin(app, reqwest::Method::POST, &path, Some(TOKEN)).await
}

use crate::helpers::metric;

#[tokio::test]
async fn metrics_move_when_messages_flow() {
    let app = spawn(AppOptions::default()).await;
    let before = app.get("/metrics").await.text().await.expect("text");
    let body = text_delivery("123", "15550004444", "wamid.metrics", "count me");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    assert_eq!(app.post_webhook(&body, None).await.status(), 401);
    assert_eq!(
        app.post_signed(&fixture("status_updates.json"), APP_SECRET)
            .await
            .status(),
        200
    );
    wait_for_replies(&app.graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let after = eventually(WAIT, || async {
        let text = app.get("/metrics").await.text().await.ok()?;
        (metric(&text, "wabot_processing_seconds_count", "")
            > metric(&before, "wabot_processing_seconds_count", ""))
        .then_some(text)
    })
    .await
    .expect("processing recorded");
    // Counters are process-wide (other tests run in parallel): they must have grown by at least ours.
    let grew = |name: &str, labels: &str, by: f64| {
        let delta = metric(&after, name, labels) - metric(&before, name, labels);
        assert!(
            delta >= by,
            "{name}{{{labels}}} grew by {delta}, expected at least {by}"
        );
    };
    grew("wabot_webhook_deliveries_total", "outcome=\"200\"", 3.0);
    grew("wabot_webhook_deliveries_total", "outcome=\"401\"", 1.0);
    grew("wabot_messages_accepted_total", "", 1.0);
    grew("wabot_messages_duplicate_total", "", 1.0);
    grew("wabot_statuses_total", "status=\"failed\"", 1.0);
    grew("wabot_replies_total", "outcome=\"sent\"", 1.0);
    grew("wabot_responder_seconds_count", "kind=\"echo\"", 1.0);
    // Backlog gauges are refreshed on the workers' lease tick.
    let gauges = eventually(WAIT, || async {
        let text = app.get("/metrics").await.text().await.ok()?;
        [
            "wabot_queue_depth{",
            "wabot_partitions_owned",
            "wabot_queue_oldest_age_seconds{",
        ]
        .iter()
        .all(|series| text.contains(series))
        .then_some(())
    })
    .await;
    assert!(gauges.is_some(), "backlog gauges missing");
}

#[tokio::test]
async fn a_failed_status_marks_the_conversations_last_reply() {
    let app = admin_app(true).await;
    let body = text_delivery("113948572261094", "447700900123", "wamid.before", "hi");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    wait_for_replies(&app.graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    assert_eq!(
        app.post_signed(&fixture("status_updates.json"), APP_SECRET)
            .await
            .status(),
        200
    );
    // Statuses are processed by the workers, in order with the conversation's messages.
    wait_until_drained(&app.queue().await, WAIT).await;
    let view: serde_json::Value = admin(
        &app,
        reqwest::Method::GET,
        "/admin/conversations/113948572261094/447700900123",
        Some(TOKEN),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(view["last_failure"]["code"], 131047);
}

#[tokio::test]
async fn cli_lists_shows_and_deletes_through_redis() {
    let app = spawn(AppOptions::default()).await;
    let body = text_delivery("123", "15550005555", "wamid.cli", "via cli");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    wait_for_replies(&app.graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let run = |args: &[&str]| crate::helpers::run_cli(&app.settings, args);
    let list = run(&["conversations", "list"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("15550005555"));
    let show = run(&["conversations", "show", "123", "15550005555"]);
    assert!(String::from_utf8_lossy(&show.stdout).contains("echo: via cli"));
    assert!(run(&["conversations", "delete", "123", "15550005555"])
        .status
        .success());
    assert!(!run(&["conversations", "show", "123", "15550005555"])
        .status
        .success());
    let dead = run(&["dead-letters", "list"]);
    assert!(dead.status.success());
    assert!(!run(&["dead-letters", "replay", "0:1-0"]).status.success());
}

/// A wrong bearer token counts against the failure budget the console's sign-in uses: 40
/// guesses in parallel get 10 answers, the rest 429 without a comparison, and then even the
/// right token waits for the window to end.
#[tokio::test]
async fn wrong_admin_tokens_spend_a_failure_budget_even_in_parallel() {
    let app = admin_app(true).await;
    let guesses = (0..40).map(|i| {
        let app = &app;
        async move {
            admin(
                app,
                reqwest::Method::GET,
                "/admin/conversations",
                Some(&format!("guess-{i:02}-of-the-admin-token")),
            )
            .await
            .status()
            .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        30,
        "{statuses:?}"
    );
    let response = admin(
        &app,
        reqwest::Method::GET,
        "/admin/conversations",
        Some(TOKEN),
    )
    .await;
    assert_eq!(response.status(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("900")
    );
}

/// Behind a proxy in `admin.trusted_proxies`, each client forwarded has its own budget; from
/// anyone else, `X-Forwarded-For` is the client's own words and changes nothing.
#[tokio::test]
async fn forwarded_clients_have_their_own_budget_only_behind_a_trusted_proxy() {
    async fn spend(app: &TestApp, forwarded_for: &str) {
        for _ in 0..10 {
            let response = app
                .http
                .get(format!("{}/admin/conversations", app.address))
                .bearer_auth("a-wrong-admin-token-guess")
                .header("X-Forwarded-For", forwarded_for)
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status(), 401);
        }
    }
    async fn status(app: &TestApp, forwarded_for: &str) -> u16 {
        app.http
            .get(format!("{}/admin/conversations", app.address))
            .bearer_auth(TOKEN)
            .header("X-Forwarded-For", forwarded_for)
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16()
    }
    let behind_proxy = spawn(AppOptions::with_env(&[
        ("ADMIN_TOKEN", TOKEN),
        ("WABOT_ADMIN__TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
    ]))
    .await;
    // The client wrote the first address itself; the proxy appended the real one.
    spend(&behind_proxy, "198.51.100.1, 203.0.113.7").await;
    assert_eq!(status(&behind_proxy, "203.0.113.7").await, 429);
    assert_eq!(status(&behind_proxy, "203.0.113.8").await, 200);
    assert_eq!(status(&behind_proxy, "203.0.113.8, 203.0.113.7").await, 429);

    let direct = spawn(AppOptions::with_env(&[("ADMIN_TOKEN", TOKEN)])).await;
    spend(&direct, "203.0.113.7").await;
    assert_eq!(status(&direct, "203.0.113.8").await, 429);
}

/// With `admin.listen`, the admin API, the console and `/metrics` answer only there, and the
/// public port only the webhook and the probes.
#[tokio::test]
async fn with_admin_listen_the_operators_routes_leave_the_public_port() {
    let app = spawn(AppOptions::with_env(&[
        ("ADMIN_TOKEN", TOKEN),
        ("ADMIN_LISTEN", "127.0.0.1:0"),
    ]))
    .await;
    let private = app.admin_address.clone().expect("an admin port");
    assert_ne!(private, app.address);
    let get = |base: &str, path: &str| {
        app.http
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
    };
    for path in ["/admin/conversations", "/console/sign-in", "/metrics"] {
        let public = get(&app.address, path).await.expect("sent");
        assert_eq!(public.status(), 404, "public {path}");
        let operators = get(&private, path).await.expect("sent");
        assert_eq!(operators.status(), 200, "admin port {path}");
    }
    for path in ["/health", "/ready"] {
        assert_eq!(get(&app.address, path).await.expect("sent").status(), 200);
        assert_eq!(get(&private, path).await.expect("sent").status(), 200);
    }
    // The webhook still works on the public port, and only there.
    let body = text_delivery("123", "15550009999", "wamid.listen1", "hello");
    assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    wait_for_replies(&app.graph, 1, WAIT).await;
    let on_private = app
        .http
        .post(format!("{private}/webhook"))
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(on_private.status(), 404);
}
