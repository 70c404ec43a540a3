//! Admin API input errors (400/404 with a JSON reason, 503 only when Redis is down) and paging
//! dead letters past the first thousand.

use std::collections::BTreeSet;

use fred::prelude::{ClientLike, StreamsInterface};

use crate::helpers::{spawn, AppOptions, TestApp};

const TOKEN: &str = "admin-input-token";

/// The admin API alone: no workers, so nothing is ever sent.
async fn admin_app() -> TestApp {
    spawn(AppOptions {
        workers: false,
        partitions: 8,
        ..AppOptions::with_env(&[("ADMIN_TOKEN", TOKEN)])
    })
    .await
}

/// Status and JSON body of an admin call.
async fn call(app: &TestApp, verb: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
    let response = app
        .http
        .request(verb, format!("{}{path}", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

fn error_of(body: &serde_json::Value) -> &str {
    body["error"].as_str().unwrap_or("")
}

#[tokio::test]
async fn malformed_admin_input_is_a_400_with_the_reason() {
    let app = admin_app().await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    for (verb, path, needle) in [
        (&get, "/admin/conversations?cursor=not-a-cursor", "cursor"),
        (&get, "/admin/conversations?cursor=1:2", "cursor"),
        (&get, "/admin/conversations?count=many", "query"),
        (&get, "/admin/conversations?count=0", "count"),
        (
            &get,
            "/admin/conversations/a%21b/15550001111",
            "conversation",
        ),
        (&get, "/admin/dead-letters?cursor=garbage", "cursor"),
        (&get, "/admin/dead-letters?cursor=99:1-0", "cursor"),
        (&get, "/admin/dead-letters?limit=0", "limit"),
        (&get, "/admin/dead-letters?limit=-1", "query"),
        (
            &post,
            "/admin/dead-letters/nonsense/replay",
            "dead-letter id",
        ),
        (
            &post,
            "/admin/dead-letters/3:abc-0/replay",
            "dead-letter id",
        ),
        (
            &post,
            "/admin/dead-letters/3:99999999999999999999999-0/replay",
            "dead-letter id",
        ),
        (&post, "/admin/dead-letters/8:1-0/replay", "out of range"),
    ] {
        let (status, body) = call(&app, verb.clone(), path).await;
        assert_eq!(status, 400, "{verb} {path}: {body}");
        assert!(error_of(&body).contains(needle), "{verb} {path}: {body}");
    }
}

#[tokio::test]
async fn what_does_not_exist_is_a_404_with_the_reason() {
    let app = admin_app().await;
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/admin/dead-letters/3:1-0/replay",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(error_of(&body).contains("no dead letter 3:1-0"), "{body}");
    let (status, body) = call(
        &app,
        reqwest::Method::GET,
        "/admin/conversations/123/15550001111",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(error_of(&body).contains("no such conversation"), "{body}");
    // The answer names no phone number (it is logged).
    assert!(!body.to_string().contains("15550001111"), "{body}");
}

#[tokio::test]
async fn only_a_redis_outage_is_a_503() {
    let mut app = admin_app().await;
    let (status, _) = call(&app, reqwest::Method::GET, "/admin/dead-letters").await;
    assert_eq!(status, 200);
    app.redis.as_mut().expect("own redis").kill();
    for (verb, path) in [
        (reqwest::Method::GET, "/admin/dead-letters"),
        (reqwest::Method::GET, "/admin/conversations"),
        (reqwest::Method::POST, "/admin/dead-letters/3:1-0/replay"),
    ] {
        let (status, body) = call(&app, verb.clone(), path).await;
        assert_eq!(status, 503, "{verb} {path}: {body}");
    }
    // Input errors stay input errors while Redis is down.
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/admin/dead-letters/nonsense/replay",
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn more_than_a_thousand_dead_letters_are_reachable_by_paging() {
    let app = admin_app().await;
    let client = wabot::store::connect(&app.settings.redis).expect("redis client");
    client.wait_for_connect().await.expect("redis connects");
    let keys = app.keys();
    // Spread over partitions (with empty ones between) so pages cross partition boundaries.
    let mut written = BTreeSet::new();
    for i in 0..1005u32 {
        let partition = [0, 3, 7][(i % 3) as usize];
        let message = serde_json::json!({ "id": format!("wamid.dl{i}") }).to_string();
        let id: String = client
            .xadd(
                keys.dead_letters(partition),
                false,
                None,
                "*",
                vec![
                    ("m", message.as_str()),
                    ("error", "graph api down"),
                    ("attempts", "4"),
                    ("failed_at", "1717000000000"),
                ],
            )
            .await
            .expect("xadd");
        written.insert(format!("{partition}:{id}"));
    }
    for limit in [1000, 97] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let path = match &cursor {
                Some(c) => format!("/admin/dead-letters?limit={limit}&cursor={c}"),
                None => format!("/admin/dead-letters?limit={limit}"),
            };
            let (status, page) = call(&app, reqwest::Method::GET, &path).await;
            assert_eq!(status, 200, "{path}: {page}");
            let letters = page["dead_letters"].as_array().expect("array");
            assert!(letters.len() <= limit);
            seen.extend(
                letters
                    .iter()
                    .map(|l| l["id"].as_str().expect("id").to_string()),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "a letter was listed twice");
        assert_eq!(unique, written, "limit {limit}");
    }
}
