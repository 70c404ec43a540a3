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
