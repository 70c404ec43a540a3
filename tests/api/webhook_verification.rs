use std::sync::Arc;

use crate::helpers::{spawn, AppOptions, RecordingSink, TestApp, VERIFY_TOKEN};

async fn app() -> TestApp {
    spawn(AppOptions {
        sink: Some(Arc::new(RecordingSink::default())),
        ..AppOptions::default()
    })
    .await
}

async fn handshake(app: &TestApp, query: &[(&str, &str)]) -> reqwest::Response {
    app.http
        .get(format!("{}/webhook", app.address))
        .query(query)
        .send()
        .await
        .expect("request sent")
}

#[tokio::test]
async fn right_token_echoes_the_challenge_byte_for_byte() {
    let app = app().await;
    for challenge in ["1158201444", "a random string/with+plus & ümlaut", "0042"] {
        let response = handshake(
            &app,
            &[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", VERIFY_TOKEN),
                ("hub.challenge", challenge),
            ],
        )
        .await;
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert_eq!(response.bytes().await.expect("body"), challenge.as_bytes());
    }
}

#[tokio::test]
async fn wrong_missing_token_or_wrong_mode_is_forbidden() {
    let app = app().await;
    let cases: [&[(&str, &str)]; 5] = [
        &[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", "wrong"),
            ("hub.challenge", "1"),
        ],
        &[("hub.mode", "subscribe"), ("hub.challenge", "1")],
        &[
            ("hub.mode", "unsubscribe"),
            ("hub.verify_token", VERIFY_TOKEN),
            ("hub.challenge", "1"),
        ],
        &[("hub.verify_token", VERIFY_TOKEN), ("hub.challenge", "1")],
        &[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", "verify-me-pleasE"),
            ("hub.challenge", "1"),
        ],
    ];
    for query in cases {
        let response = handshake(&app, query).await;
        assert_eq!(response.status(), 403, "{query:?}");
        assert_ne!(
            response.text().await.expect("body"),
            "1",
            "challenge must not be echoed"
        );
    }
    // A token that is a prefix of the real one must fail too.
    let response = handshake(
        &app,
        &[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", "verify"),
            ("hub.challenge", "1"),
        ],
    )
    .await;
    assert_eq!(response.status(), 403);
}
