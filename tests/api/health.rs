use std::sync::Arc;

use crate::helpers::{spawn, AppOptions, RecordingSink};

#[tokio::test]
async fn health_and_ready_with_redis() {
    let app = spawn(AppOptions {
        sink: Some(Arc::new(RecordingSink::default())),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/ready").await.status(), 200);
}

#[tokio::test]
async fn redis_down_means_not_ready_but_alive() {
    let app = spawn(AppOptions {
        redis_url: Some(crate::helpers::unreachable_redis()),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(app.get("/health").await.status(), 200);
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 503);
    assert!(ready.headers().contains_key("retry-after"));
    // Still serving after the failed probe: nothing panicked.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn ready_follows_redis_going_down_and_up() {
    let mut app = spawn(AppOptions {
        sink: Some(Arc::new(RecordingSink::default())),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(app.get("/ready").await.status(), 200);
    app.redis.as_mut().expect("redis").kill();
    assert_eq!(app.get("/ready").await.status(), 503);
    app.redis.as_mut().expect("redis").restart();
    let ready = crate::helpers::eventually(std::time::Duration::from_secs(15), || async {
        (app.get("/ready").await.status() == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "ready again after Redis came back");
}
