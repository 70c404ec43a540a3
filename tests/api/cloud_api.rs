//! The Cloud API client against a wiremock Graph API: splitting, retry classes, timeouts,
//! multi-number tokens, media download.

use std::time::{Duration, Instant};

use wabot::domain::PhoneNumberId;
use wabot::meta::cloud_api::{CloudApi, CloudApiError, ErrorClass, Recipient};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    mount_graph_ok, mount_slow_send, replies, settings_from, spawn, test_env, text_delivery,
    wait_for_replies, AppOptions, APP_SECRET,
};

fn client(graph: &MockServer, extra: &[(&str, &str)]) -> CloudApi {
    let mut env = test_env("redis://127.0.0.1:1/0", &graph.uri());
    env.insert("WABOT_WHATSAPP__SEND_ATTEMPTS".into(), "3".into());
    env.insert("WABOT_WHATSAPP__RETRY_BASE_MS".into(), "20".into());
    env.insert("WABOT_WHATSAPP__RETRY_MAX_MS".into(), "100".into());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    CloudApi::new(&settings_from(&env).whatsapp).expect("client")
}

fn pnid(id: &str) -> PhoneNumberId {
    PhoneNumberId::parse(id).expect("pnid")
}

fn to() -> Recipient {
    Recipient::Phone("+15551234567".into())
}

fn meta_error(status: u16, code: i64) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({
        "error": {"message": format!("(#{code}) error"), "type": "OAuthException", "code": code,
                  "error_data": {"messaging_product": "whatsapp", "details": "details here"},
                  "fbtrace_id": "AbCdEf"}
    }))
}

#[tokio::test]
async fn a_5000_character_text_is_sent_as_two_parts_in_order() {
    let graph = MockServer::start().await;
    mount_graph_ok(&graph).await;
    let api = client(&graph, &[]);
    let paragraph = "Ünïcödé paragraph with emoji 😀 and words. ".repeat(50);
    let text = format!("{paragraph}\n\n{paragraph}\n\n{}", "tail 😀 ".repeat(50));
    assert!(text.chars().count() > 4096 && text.chars().count() < 8192);
    let sent = api
        .send_long_text(&pnid("123"), &to(), &text, None)
        .await
        .expect("sent");
    assert_eq!(sent.len(), 2);
    let got = replies(&graph).await;
    assert_eq!(got.len(), 2);
    for part in &got {
        assert!(part.text.encode_utf16().count() <= 4096);
    }
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    assert_eq!(
        squash(&format!("{}{}", got[0].text, got[1].text)),
        squash(&text)
    );
}

#[tokio::test]
async fn throughput_errors_are_retried_with_backoff_then_sent_once() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(meta_error(400, 130429).insert_header("Retry-After", "1"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&graph)
        .await;
    mount_graph_ok(&graph).await;
    let api = client(&graph, &[]);
    let started = Instant::now();
    let sent = api
        .send_text(&pnid("123"), &to(), "hello", None)
        .await
        .expect("sent");
    assert!(sent.wamid.starts_with("wamid.out."));
    assert_eq!(graph.received_requests().await.expect("recorded").len(), 3);
    // Meta asked for 1 s twice: the client waited.
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn permanent_errors_return_at_once() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(meta_error(400, 131047))
        .mount(&graph)
        .await;
    let api = client(&graph, &[]);
    let error = api
        .send_text(&pnid("123"), &to(), "late", None)
        .await
        .expect_err("fails");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(error.code(), Some(131047));
    match &error {
        CloudApiError::Api {
            details,
            fbtrace_id,
            ..
        } => {
            assert_eq!(details.as_deref(), Some("details here"));
            assert_eq!(fbtrace_id.as_deref(), Some("AbCdEf"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(graph.received_requests().await.expect("recorded").len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&graph)
        .await;
    let api = client(&graph, &[]);
    let error = api
        .send_text(&pnid("123"), &to(), "x", None)
        .await
        .expect_err("fails");
    assert_eq!(error.class(), ErrorClass::Retryable);
    assert_eq!(graph.received_requests().await.expect("recorded").len(), 3);
}

/// A timeout after the request reached Meta may mean it was sent: retried only as configured.
#[tokio::test]
async fn timeouts_are_retried_at_most_as_configured() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&graph)
        .await;
    let api = client(
        &graph,
        &[
            ("WABOT_WHATSAPP__REQUEST_TIMEOUT_MS", "300"),
            ("WABOT_WHATSAPP__SEND_ATTEMPTS", "2"),
        ],
    );
    let error = api
        .send_text(&pnid("123"), &to(), "x", None)
        .await
        .expect_err("times out");
    assert!(matches!(error, CloudApiError::Timeout(_)), "{error:?}");
    assert_eq!(graph.received_requests().await.expect("recorded").len(), 2);
}

#[tokio::test]
async fn each_number_uses_its_own_token() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v24.0/222/messages"))
        .and(header("authorization", "Bearer token-for-b"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"messages": [{"id": "wamid.B"}]})),
        )
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/111/messages"))
        .and(header("authorization", "Bearer EAAG-test-access-token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"messages": [{"id": "wamid.A"}]})),
        )
        .mount(&graph)
        .await;
    let api = client(
        &graph,
        &[("WABOT_WHATSAPP__ACCESS_TOKENS", "222=token-for-b")],
    );
    assert_eq!(
        api.send_text(&pnid("111"), &to(), "a", None)
            .await
            .expect("A")
            .wamid,
        "wamid.A"
    );
    assert_eq!(
        api.send_text(&pnid("222"), &to(), "b", None)
            .await
            .expect("B")
            .wamid,
        "wamid.B"
    );
}

#[tokio::test]
async fn a_payload_for_number_a_is_answered_from_a_and_for_b_from_b() {
    let app = spawn(AppOptions::default()).await;
    let graph = app.graph.clone();
    for (number, wamid) in [("111000111", "wamid.forA"), ("222000222", "wamid.forB")] {
        let body = text_delivery(number, "15550001234", wamid, &format!("to {number}"));
        assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    }
    let got = wait_for_replies(&graph, 2, Duration::from_secs(30)).await;
    for reply in got {
        let number = reply.text.trim_start_matches("echo: to ");
        assert_eq!(reply.from_phone_number_id, number);
    }
}

#[tokio::test]
async fn media_is_downloaded_with_the_token_and_a_size_limit() {
    let graph = MockServer::start().await;
    let file_url = format!("{}/files/abc", graph.uri());
    Mock::given(method("GET"))
        .and(path("/v24.0/1862047395512308"))
        .and(header("authorization", "Bearer EAAG-test-access-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "messaging_product": "whatsapp", "url": file_url, "mime_type": "image/jpeg",
            "sha256": "x", "file_size": 11, "id": "1862047395512308"
        })))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/abc"))
        .and(header("authorization", "Bearer EAAG-test-access-token"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"jpeg-bytes!".to_vec()))
        .mount(&graph)
        .await;
    let api = client(&graph, &[]);
    let file = api
        .download_media(&pnid("123"), "1862047395512308", u64::MAX)
        .await
        .expect("downloaded");
    assert_eq!(&file.bytes[..], b"jpeg-bytes!");
    assert_eq!(file.mime_type.as_deref(), Some("image/jpeg"));
    let small = client(&graph, &[("WABOT_WHATSAPP__MEDIA_MAX_BYTES", "5")]);
    let error = small
        .download_media(&pnid("123"), "1862047395512308", u64::MAX)
        .await
        .expect_err("too large");
    assert!(matches!(error, CloudApiError::TooLarge { limit: 5 }));
    // The caller's own limit (audio for transcription) is below the client's.
    let error = api
        .download_media(&pnid("123"), "1862047395512308", 10)
        .await
        .expect_err("over the caller's limit");
    assert!(matches!(error, CloudApiError::TooLarge { limit: 10 }));
    // A media id from a (signed) payload that is not digits never becomes a Graph path.
    let before = graph.received_requests().await.unwrap_or_default().len();
    for id in ["../../me?fields=id", "123/subscribed_apps", "", "12 3"] {
        let error = api
            .download_media(&pnid("123"), id, u64::MAX)
            .await
            .expect_err("not a media id");
        assert!(
            matches!(error, CloudApiError::InvalidMediaId),
            "{id}: {error}"
        );
    }
    assert_eq!(
        graph.received_requests().await.unwrap_or_default().len(),
        before,
        "nothing was requested"
    );
}

/// What a TCP relay in front of the fake Graph API saw: connections, and how each began.
#[derive(Default)]
struct Wire {
    connections: std::sync::atomic::AtomicUsize,
    openings: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// Relays 127.0.0.1:<port> to `upstream`, recording every connection's first bytes.
async fn relay(upstream: std::net::SocketAddr) -> (String, std::sync::Arc<Wire>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind relay");
    let port = listener.local_addr().expect("relay address").port();
    let wire = std::sync::Arc::new(Wire::default());
    let seen = wire.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            seen.connections
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut opening = [0u8; 4];
                if inbound.read_exact(&mut opening).await.is_err() {
                    return;
                }
                seen.openings
                    .lock()
                    .expect("openings")
                    .push(opening.to_vec());
                let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                if outbound.write_all(&opening).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (format!("http://127.0.0.1:{port}"), wire)
}

/// Sends 12 texts at once through the relay, each answered after 300 ms so they overlap.
async fn twelve_overlapping_sends(http2: bool) -> std::sync::Arc<Wire> {
    let graph = MockServer::start().await;
    mount_slow_send(&graph, "overlap", Duration::from_millis(300)).await;
    let (url, wire) = relay(*graph.address()).await;
    let mut env = test_env("redis://127.0.0.1:1/0", &url);
    env.insert("WABOT_WHATSAPP__HTTP2".into(), http2.to_string());
    let api = CloudApi::new(&settings_from(&env).whatsapp).expect("client");
    let sends = (0..12).map(|i| {
        let api = api.clone();
        async move {
            api.send_text(&pnid("123"), &to(), &format!("overlap {i}"), None)
                .await
        }
    });
    for sent in futures_util::future::join_all(sends).await {
        assert!(sent.expect("sent").wamid.starts_with("wamid.slow."));
    }
    assert_eq!(graph.received_requests().await.map(|r| r.len()), Some(12));
    wire
}

#[tokio::test]
async fn with_http2_the_calls_in_flight_share_one_connection() {
    let wire = twelve_overlapping_sends(true).await;
    assert_eq!(
        wire.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // h2c with prior knowledge opens with the connection preface "PRI * HTTP/2.0".
    assert_eq!(
        *wire.openings.lock().expect("openings"),
        vec![b"PRI ".to_vec()]
    );
}

#[tokio::test]
async fn by_default_each_call_in_flight_has_an_http1_connection_of_its_own() {
    let wire = twelve_overlapping_sends(false).await;
    assert_eq!(
        wire.connections.load(std::sync::atomic::Ordering::SeqCst),
        12
    );
    assert!(wire
        .openings
        .lock()
        .expect("openings")
        .iter()
        .all(|opening| opening == b"POST"));
}

/// A Graph answer that redirects elsewhere is not followed (a 307 would re-send the message,
/// the user's words, to wherever it points); a media URL that moves within Meta's hosts is.
#[tokio::test]
async fn redirects_are_followed_only_to_meta_hosts() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"messages": [{"id": "wamid.stolen"}]})),
        )
        .mount(&elsewhere)
        .await;
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v24.0/123/messages"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/collect", elsewhere.uri()).as_str()),
        )
        .mount(&graph)
        .await;
    let api = client(&graph, &[("WABOT_WHATSAPP__SEND_ATTEMPTS", "1")]);
    let result = api
        .send_long_text(&pnid("123"), &to(), "a private message", None)
        .await;
    assert!(result.is_err(), "a redirect is not a sent message");
    assert!(
        elsewhere
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "the message went to the redirect's target"
    );
    // Within the Graph API's own host a media file may move.
    Mock::given(method("GET"))
        .and(path("/v24.0/1862047395512308"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "messaging_product": "whatsapp", "url": format!("{}/files/old", graph.uri()),
            "mime_type": "image/jpeg", "sha256": "x", "file_size": 5, "id": "1862047395512308"
        })))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/old"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/files/new", graph.uri()).as_str()),
        )
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/new"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"jpeg!".to_vec()))
        .mount(&graph)
        .await;
    let file = api
        .download_media(&pnid("123"), "1862047395512308", u64::MAX)
        .await
        .expect("followed within the Graph API's host");
    assert_eq!(&file.bytes[..], b"jpeg!");
}
