//! The WhatsApp Flows endpoint against vectors made by an independent implementation
//! (`tests/fixtures/flows/make_vectors.py`, Python's `cryptography`): every answer must be the
//! exact bytes that implementation seals, and the error codes Meta's protocol names.

use std::path::PathBuf;

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{spawn, AppOptions, TestApp, APP_SECRET};

const BACKEND_SECRET: &str = "flows-backend-secret";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flows")
        .join(name)
}

fn vectors() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("vectors.json")).expect("vectors"))
        .expect("json")
}

async fn app(backend: &MockServer) -> TestApp {
    spawn(AppOptions::with_env(&[
        (
            "WABOT_FLOWS__PRIVATE_KEY_FILE",
            fixture("private_key.pem").to_str().expect("utf-8 path"),
        ),
        (
            "WABOT_FLOWS__BACKEND_URL",
            &format!("{}/flows", backend.uri()),
        ),
        ("WABOT_FLOWS__BACKEND_SECRET", BACKEND_SECRET),
    ]))
    .await
}

async fn post(app: &TestApp, body: &[u8], secret: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/flows", app.address))
        .header("Content-Type", "application/json")
        .header(
            "X-Hub-Signature-256",
            wabot::meta::webhook::sign(secret, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("sent")
}

fn envelope(vectors: &Value, name: &str) -> Vec<u8> {
    vectors[name]["envelope"].to_string().into_bytes()
}

#[tokio::test]
async fn the_endpoint_answers_each_action_with_the_bytes_an_independent_implementation_seals() {
    let vectors = vectors();
    let backend = MockServer::start().await;
    let exchange = &vectors["data_exchange"];
    Mock::given(method("POST"))
        .and(path("/flows"))
        .and(wiremock::matchers::body_json(&exchange["request"]))
        .respond_with(ResponseTemplate::new(200).set_body_json(&exchange["answer"]))
        .mount(&backend)
        .await;
    let expired = &vectors["expired_token"];
    Mock::given(method("POST"))
        .and(path("/flows"))
        .and(wiremock::matchers::body_json(&expired["request"]))
        .respond_with(ResponseTemplate::new(427).set_body_json(&expired["answer"]))
        .mount(&backend)
        .await;
    let app = app(&backend).await;
    for (name, status) in [
        ("ping", 200),
        ("error_report", 200),
        ("data_exchange", 200),
        ("expired_token", 427),
    ] {
        let response = post(&app, &envelope(&vectors, name), APP_SECRET).await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/plain"),
            "{name}"
        );
        let body = response.text().await.expect("body");
        assert_eq!(
            body,
            vectors[name]["sealed_answer"].as_str().expect("sealed"),
            "{name}"
        );
    }
    // The backend got the decrypted requests, signed; ping and the error report never reached it.
    let calls = backend.received_requests().await.unwrap_or_default();
    assert_eq!(calls.len(), 2, "only the screen changes are the backend's");
    for call in &calls {
        let signature = call
            .headers
            .get("x-wabot-signature-256")
            .and_then(|v| v.to_str().ok())
            .expect("signed");
        assert_eq!(
            signature,
            wabot::meta::webhook::sign(BACKEND_SECRET, &call.body)
        );
    }
}

#[tokio::test]
async fn bad_requests_get_the_codes_of_meta_s_protocol() {
    let vectors = vectors();
    let backend = MockServer::start().await;
    let app = app(&backend).await;
    let ping = envelope(&vectors, "ping");
    // Meta's signature over the raw body comes first.
    assert_eq!(
        post(&app, &ping, "not-the-app-secret")
            .await
            .status()
            .as_u16(),
        432
    );
    let unsigned = app
        .http
        .post(format!("{}/flows", app.address))
        .body(ping.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(unsigned.status().as_u16(), 432);
    // Not an envelope, or not base64: the sender's mistake.
    assert_eq!(
        post(&app, b"{\"hello\": 1}", APP_SECRET).await.status(),
        400
    );
    let mut not_base64 = vectors["ping"]["envelope"].clone();
    not_base64["initial_vector"] = "***".into();
    assert_eq!(
        post(&app, not_base64.to_string().as_bytes(), APP_SECRET)
            .await
            .status(),
        400
    );
    // Sealed with another IV (tampered): cannot be decrypted, so Meta re-fetches the key.
    let mut tampered = vectors["ping"]["envelope"].clone();
    tampered["initial_vector"] = vectors["error_report"]["envelope"]["initial_vector"].clone();
    assert_eq!(
        post(&app, tampered.to_string().as_bytes(), APP_SECRET)
            .await
            .status()
            .as_u16(),
        421
    );
    // Sealed for another business's key.
    let other = spawn(AppOptions::with_env(&[(
        "WABOT_FLOWS__PRIVATE_KEY_FILE",
        fixture("other_private_key.pem")
            .to_str()
            .expect("utf-8 path"),
    )]))
    .await;
    assert_eq!(post(&other, &ping, APP_SECRET).await.status().as_u16(), 421);
    // Without a key the endpoint does not exist.
    let off = spawn(AppOptions::default()).await;
    assert_eq!(post(&off, &ping, APP_SECRET).await.status(), 404);
    assert!(backend
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty());
}

/// `wabot flows keygen` writes a private key only its owner can read (never over an existing
/// file), prints the public key, and uploads it to the number where Meta takes it; `wabot flows
/// upload-key` uploads the configured key's public half again.
#[tokio::test]
async fn keygen_writes_a_private_key_and_uploads_its_public_half() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v24.0/106540352242922/whatsapp_business_encryption"))
        .and(wiremock::matchers::header(
            "authorization",
            "Bearer flows-token",
        ))
        .and(wiremock::matchers::body_string_contains(
            "business_public_key=-----BEGIN+PUBLIC+KEY",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true})),
        )
        .mount(&graph)
        .await;
    let dir = std::env::temp_dir().join(format!("wabot-flows-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = dir.join("flows.pem");
    let wabot = |args: &[&str], extra: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wabot"))
            .args(args)
            .env_clear()
            .env("APP_CONFIG_DIR", "/nonexistent-wabot-test-config")
            .env("WHATSAPP_APP_SECRET", APP_SECRET)
            .env("WHATSAPP_VERIFY_TOKEN", "verify")
            .env("WHATSAPP_ACCESS_TOKEN", "flows-token")
            .env("WHATSAPP_API_BASE_URL", graph.uri())
            .env("WHATSAPP_API_VERSION", "v24.0")
            .env("RUST_LOG", "off")
            .envs(extra.iter().copied())
            .output()
            .expect("wabot runs")
    };
    let path_arg = out.to_str().expect("utf-8 path");
    let made = wabot(
        &[
            "flows",
            "keygen",
            "--out",
            path_arg,
            "--upload",
            "106540352242922",
        ],
        &[],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let public = String::from_utf8_lossy(&made.stdout).to_string();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    let private = std::fs::read_to_string(&out).expect("written");
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(!public.contains("PRIVATE"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner reads it");
    }
    let again = wabot(&["flows", "keygen", "--out", path_arg], &[]);
    assert!(
        !again.status.success(),
        "an existing key is never overwritten"
    );
    assert_eq!(std::fs::read_to_string(&out).expect("kept"), private);
    let uploaded = wabot(
        &["flows", "upload-key", "106540352242922"],
        &[("WABOT_FLOWS__PRIVATE_KEY_FILE", path_arg)],
    );
    assert!(
        uploaded.status.success(),
        "{}",
        String::from_utf8_lossy(&uploaded.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&uploaded.stdout), public);
    assert_eq!(graph.received_requests().await.unwrap_or_default().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A flow from end to end with a fake Graph API: the http backend answers with a `flow`
/// action, the user's phone gets the flow's button, and the completed flow (`nfm_reply`)
/// reaches the backend as structured answers with the flow's token.
#[tokio::test]
async fn a_flow_goes_out_as_a_button_and_its_answers_come_back_to_the_backend() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bot"))
        .and(wiremock::matchers::body_string_contains("\"nfm_reply\""))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "actions": [{"type": "text", "text": "Booked: Tuesday at 10:30"}]
        })))
        .with_priority(1)
        .mount(&backend)
        .await;
    Mock::given(method("POST"))
        .and(path("/bot"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "actions": [{"type": "flow", "text": "Book a visit", "flow_id": "1234567890",
                "flow_token": "book.4915000000401", "cta": "Book", "screen": "DETAILS"}]
        })))
        .mount(&backend)
        .await;
    let app = spawn(AppOptions::with_env(&[
        ("RESPONDER", "http"),
        ("HTTP_RESPONDER_URL", &format!("{}/bot", backend.uri())),
        ("HTTP_RESPONDER_SECRET", "bot-secret"),
    ]))
    .await;
    let user = "4915000000401";
    app.deliver(&crate::helpers::text_delivery(
        "113948572261094",
        user,
        "wamid.flow1",
        "I want to book",
    ))
    .await;
    let sent = crate::helpers::graph_body_where(&app.graph, |b| b["interactive"]["type"] == "flow")
        .await
        .expect("the flow went out");
    let parameters = &sent["interactive"]["action"]["parameters"];
    assert_eq!(parameters["flow_token"], "book.4915000000401");
    assert_eq!(parameters["flow_action"], "navigate");
    assert_eq!(parameters["flow_action_payload"]["screen"], "DETAILS");
    assert_eq!(sent["interactive"]["action"]["name"], "flow");

    let completed = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": "113948572261094"},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": user}],
        "messages": [{"from": user, "id": "wamid.flow2", "timestamp": "1793452200", "type": "interactive",
            "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                "response_json": "{\"flow_token\":\"book.4915000000401\",\"day\":\"2026-12-09\",\"slot\":\"10:30\"}"}}}]
    }}]}]});
    app.deliver(completed.to_string().as_bytes()).await;
    let booked = crate::helpers::eventually(std::time::Duration::from_secs(30), || async {
        let replies = crate::helpers::replies(&app.graph).await;
        replies
            .iter()
            .any(|r| r.text == "Booked: Tuesday at 10:30")
            .then_some(())
    })
    .await;
    assert!(
        booked.is_some(),
        "the backend's answer to the completed flow went out"
    );
    let calls = backend.received_requests().await.unwrap_or_default();
    let answered = calls
        .iter()
        .filter_map(|c| serde_json::from_slice::<Value>(&c.body).ok())
        .find(|b| b["message"]["id"] == "wamid.flow2")
        .expect("the backend got the completed flow");
    assert_eq!(
        answered["message"]["flow"],
        serde_json::json!({"flow_token": "book.4915000000401", "day": "2026-12-09", "slot": "10:30"})
    );
    let replies = crate::helpers::replies(&app.graph).await;
    assert!(
        replies.iter().any(|r| r.text == "Booked: Tuesday at 10:30"),
        "{replies:?}"
    );
}

/// The booking example's flow through the real endpoint: its screens come from the rules file
/// (sealed as the independent implementation seals them, the backend never asked), and the
/// completed flow is answered by the rule its token names.
#[tokio::test]
async fn the_rules_file_answers_its_flow_s_screens_and_its_completion() {
    let vectors = vectors();
    let backend = MockServer::start().await;
    let graph = crate::helpers::graph_ok().await;
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..AppOptions::with_env(&[
            (
                "WABOT_FLOWS__PRIVATE_KEY_FILE",
                fixture("private_key.pem").to_str().expect("utf-8 path"),
            ),
            (
                "WABOT_FLOWS__BACKEND_URL",
                &format!("{}/flows", backend.uri()),
            ),
            ("WABOT_FLOWS__BACKEND_SECRET", BACKEND_SECRET),
            ("RESPONDER", "rules"),
            ("ADMIN_TOKEN", crate::console::TOKEN),
            (
                "WABOT_RESPONDER__RULES_FILE",
                concat!(env!("CARGO_MANIFEST_DIR"), "/examples/booking/rules.toml"),
            ),
        ])
    })
    .await;
    let user = "4915000000601";
    app.deliver(&crate::console::user_text(user, "wamid.book1", "book"))
        .await;
    let sent = crate::helpers::graph_body_where(&graph, |b| b["interactive"]["type"] == "flow")
        .await
        .expect("the flow went out");
    let parameters = &sent["interactive"]["action"]["parameters"];
    assert_eq!(parameters["flow_token"], format!("booking.{user}"));
    assert_eq!(parameters["flow_action"], "data_exchange", "opened at INIT");
    for name in ["rules_init", "rules_details", "rules_complete"] {
        let response = post(&app, &envelope(&vectors, name), APP_SECRET).await;
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(
            response.text().await.expect("body"),
            vectors[name]["sealed_answer"].as_str().expect("sealed"),
            "{name}"
        );
    }
    assert!(
        backend
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "the rules file answered every screen"
    );
    // A token the rules file does not know still goes to the backend.
    Mock::given(method("POST"))
        .and(path("/flows"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&vectors["data_exchange"]["answer"]))
        .mount(&backend)
        .await;
    let response = post(&app, &envelope(&vectors, "data_exchange"), APP_SECRET).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        backend.received_requests().await.unwrap_or_default().len(),
        1
    );

    let params =
        &vectors["rules_complete"]["answer"]["data"]["extension_message_response"]["params"];
    let completed = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": "113948572261094"},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": user}],
        "messages": [{"from": user, "id": "wamid.book2", "timestamp": crate::console::now_secs().to_string(), "type": "interactive",
            "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent",
                "response_json": params.to_string()}}}]
    }}]}]});
    app.deliver(completed.to_string().as_bytes()).await;
    let booked = crate::helpers::eventually(std::time::Duration::from_secs(30), || async {
        crate::helpers::replies(&graph)
            .await
            .into_iter()
            .find(|r| r.text.starts_with("Booked"))
    })
    .await
    .expect("the completed flow was answered");
    assert_eq!(booked.text, "Booked: Tuesday at 10:30. See you then!");
    // The history keeps the answers; the console shows them as a form.
    crate::helpers::wait_until_drained(&app.queue().await, std::time::Duration::from_secs(30))
        .await;
    let (pnid, uid) = crate::helpers::conversation_ids("113948572261094", user);
    let view = crate::helpers::conversation(&app.conversations().await, &pnid, &uid).await;
    assert!(
        view.turns
            .iter()
            .any(|t| t.text == r#"[flow] {"day":"Tuesday","time":"10:30"}"#),
        "{:?}",
        view.turns
    );
    let mut client = crate::console::signed_in(&app).await;
    let (html, _) = client
        .page(&format!("/console/c/113948572261094/{user}"))
        .await;
    let form = html
        .find("<dl class=\"flow\"")
        .expect("the answers as a form");
    assert!(
        html[form..].starts_with(
            "<dl class=\"flow\" title=\"the completed flow's answers\"><dt>day</dt><dd>Tuesday</dd><dt>time</dt><dd>10:30</dd></dl>"
        ),
        "{}",
        &html[form..form + 200]
    );
}
