//! Outbound HTTP hygiene: the access token only goes to Meta, and answers are read with a size
//! limit.

use wabot::domain::PhoneNumberId;
use wabot::meta::cloud_api::{CloudApi, CloudApiError, Recipient};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{settings_from, test_env, ACCESS_TOKEN};

const MEDIA_ID: &str = "1862047395512308";

fn client(graph: &MockServer) -> CloudApi {
    let env = test_env("redis://127.0.0.1:1/0", &graph.uri());
    CloudApi::new(&settings_from(&env).whatsapp).expect("client")
}

fn pnid() -> PhoneNumberId {
    PhoneNumberId::parse("123").expect("pnid")
}

async fn media_info_pointing_at(graph: &MockServer, url: &str) {
    graph.reset().await;
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{MEDIA_ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "messaging_product": "whatsapp", "url": url, "mime_type": "image/jpeg",
            "sha256": "x", "file_size": 11, "id": MEDIA_ID
        })))
        .mount(graph)
        .await;
}

#[tokio::test]
async fn a_media_url_outside_meta_never_receives_the_token() {
    let graph = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"jpeg-bytes!".to_vec()))
        .mount(&elsewhere)
        .await;
    let port = elsewhere.address().port();
    let api = client(&graph);
    for url in [
        // Same machine, other name: another host.
        format!("http://localhost:{port}/files/abc"),
        // Same host as the Graph API, other port: another service.
        format!("http://127.0.0.1:{port}/files/abc"),
        // Look-alikes of Meta's hosts.
        "https://lookaside.fbsbx.com.evil.example/files/abc".to_string(),
        "https://evilfbcdn.net/files/abc".to_string(),
        // A Meta host without TLS.
        "http://lookaside.fbsbx.com/files/abc".to_string(),
    ] {
        media_info_pointing_at(&graph, &url).await;
        let error = api
            .download_media(&pnid(), MEDIA_ID, u64::MAX)
            .await
            .expect_err("refused");
        assert!(
            matches!(&error, CloudApiError::Decode(m) if m.contains("not a Meta host")),
            "{url}: {error}"
        );
        assert!(!error.to_string().contains(ACCESS_TOKEN));
    }
    let reached = elsewhere.received_requests().await.unwrap_or_default();
    assert!(reached.is_empty(), "{} requests reached it", reached.len());
}

#[tokio::test]
async fn a_2_mib_graph_answer_is_an_error_not_a_memory_spike() {
    let graph = MockServer::start().await;
    let huge = format!(
        "{{\"messaging_product\":\"whatsapp\",\"pad\":\"{}\",\"messages\":[{{\"id\":\"wamid.x\"}}]}}",
        "x".repeat(2 * 1024 * 1024)
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(huge.clone(), "application/json"))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_raw(huge, "application/json"))
        .mount(&graph)
        .await;
    let api = client(&graph);
    let error = api
        .send_text(
            &pnid(),
            &Recipient::Phone("+15551234567".into()),
            "hi",
            None,
        )
        .await
        .expect_err("too large");
    assert!(
        matches!(&error, CloudApiError::Decode(m) if m.contains("larger than 1048576 bytes")),
        "{error}"
    );
    // Error answers are bounded the same way.
    let error = api
        .download_media(&pnid(), MEDIA_ID, u64::MAX)
        .await
        .expect_err("too large");
    assert!(error.to_string().contains("larger than"), "{error}");
}
