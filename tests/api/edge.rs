//! The HTTP edge under hostile or broken clients: slow bodies, memory budget, shutdown with a
//! stalled client. Raw TCP, because an HTTP client library would not stall on purpose.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wiremock::MockServer;

use crate::helpers::{eventually, spawn, AppOptions};

/// Liveness bound for anything the server must eventually do; not a performance expectation.
const LIVENESS: Duration = Duration::from_secs(40);

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Opens a connection and sends a `POST /webhook` declaring `declared` bytes but sending only
/// `sent` of them; the connection then stays open without sending more.
pub async fn stalled_post(address: &str, declared: usize, sent: usize) -> TcpStream {
    let host = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.expect("connects");
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         X-Hub-Signature-256: sha256=00\r\nContent-Length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head sent");
    stream
        .write_all(&vec![b' '; sent])
        .await
        .expect("part of the body sent");
    stream.flush().await.expect("flushed");
    stream
}

/// The response head (status line and headers), or what arrived before the connection closed.
pub async fn response_head(stream: &mut TcpStream) -> String {
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    tokio::time::timeout(LIVENESS, read)
        .await
        .expect("the server answered or closed the connection")
}

fn status_of(head: &str) -> Option<u16> {
    head.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_body_that_stalls_halfway_gets_408() {
    let graph = Arc::new(MockServer::start().await);
    let options = AppOptions {
        workers: false,
        extra_env: env(&[("WABOT_SERVER__REQUEST_TIMEOUT_SECS", "1")]),
        ..AppOptions::default()
    };
    let app = spawn(AppOptions {
        graph: Some(graph),
        ..options
    })
    .await;
    let mut stream = stalled_post(&app.address, 2000, 1000).await;
    let head = response_head(&mut stream).await;
    assert_eq!(status_of(&head), Some(408), "{head}");
    // The server itself is fine.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn declared_bodies_beyond_the_budget_get_503_with_retry_after() {
    let graph = Arc::new(MockServer::start().await);
    let options = AppOptions {
        workers: false,
        extra_env: env(&[
            ("WABOT_SERVER__REQUEST_TIMEOUT_SECS", "3"),
            ("WABOT_SERVER__MAX_BODY_BYTES", "65536"),
            // Room for two of the bodies below at a time.
            ("WABOT_SERVER__MAX_INFLIGHT_BODY_BYTES", "131072"),
        ]),
        ..AppOptions::default()
    };
    let app = spawn(AppOptions {
        graph: Some(graph),
        ..options
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(stalled_post(&app.address, 60_000, 100).await);
    }
    let mut heads = Vec::new();
    for stream in &mut streams {
        heads.push(response_head(stream).await);
    }
    let statuses: Vec<Option<u16>> = heads.iter().map(|h| status_of(h)).collect();
    let refused: Vec<&String> = heads.iter().filter(|h| status_of(h) == Some(503)).collect();
    assert!(!refused.is_empty(), "no 503 among {statuses:?}");
    for head in refused {
        assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    }
    // The ones that got in stalled and timed out; nothing else happened.
    assert!(
        statuses.iter().all(|s| matches!(s, Some(503) | Some(408))),
        "{statuses:?}"
    );
    // The budget is given back: a normal delivery is read again (401: it is not signed).
    assert_eq!(app.post_webhook(b"{}", None).await.status(), 401);
}

#[tokio::test]
async fn shutdown_drains_workers_while_a_client_stalls_and_ends() {
    let app = spawn(AppOptions {
        partitions: 4,
        lease_ttl_ms: 2000,
        extra_env: [
            ("WABOT_SERVER__SHUTDOWN_TIMEOUT_SECS", "15"),
            ("WABOT_SERVER__REQUEST_TIMEOUT_SECS", "15"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec(),
        ..AppOptions::default()
    })
    .await;
    let redis = app.redis.as_ref().expect("a redis-server of its own");
    let address = app.address.clone();
    let replicas = format!("{}:replicas", app.settings.redis.key_prefix);
    let registered = eventually(LIVENESS, || async {
        (redis.cli(&["ZCARD", &replicas]) == "1").then_some(())
    })
    .await;
    assert!(registered.is_some(), "the worker never registered");

    let stalled = stalled_post(&address, 2000, 1000).await;
    // Connections are accepted in order: once a later one is answered, the stalled one is in.
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{address}/health"))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
    app.begin_stop();

    // The workers stop (and deregister) while the stalled request is still open.
    let deregistered = eventually(LIVENESS, || async {
        (redis.cli(&["ZCARD", &replicas]) == "0").then_some(())
    })
    .await;
    assert!(deregistered.is_some(), "the workers did not stop");
    let mut probe = [0u8; 64];
    assert!(
        matches!(stalled.try_read(&mut probe), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the stalled request ended before the workers stopped: the drains ran one after the other"
    );

    let finished = app.stopped(LIVENESS).await;
    assert!(
        matches!(finished, Some(Ok(()))),
        "the app did not stop: {finished:?}"
    );
}
