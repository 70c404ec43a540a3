//! `wabot doctor` against a wiremock Graph API: the real binary, its output and its exit code.

use std::process::{Command, Output, Stdio};

use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{APP_SECRET, VERIFY_TOKEN};

const WABA: &str = "102290129340398";
const PNID: &str = "106540352242922";
const APP_ID: &str = "67084523";
const TOKEN: &str = "EAAG-doctor-token";

/// Runs `wabot doctor [args]` against `graph`, with the re-engagement template `welcome_back`.
fn doctor(graph: &MockServer, args: &[&str]) -> (bool, String) {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    wabot(graph, &all, &[])
}

/// Runs `wabot [args]` configured like `doctor`, with `env` on top.
fn wabot(graph: &MockServer, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_wabot"))
        .args(args)
        .env_clear()
        .env("APP_CONFIG_DIR", "/nonexistent-wabot-test-config")
        .env("WHATSAPP_APP_SECRET", APP_SECRET)
        .env("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN)
        .env("WHATSAPP_ACCESS_TOKEN", TOKEN)
        .env("WHATSAPP_PHONE_NUMBER_ID", PNID)
        .env("WHATSAPP_API_BASE_URL", graph.uri())
        .env("WABOT_WHATSAPP__BUSINESS_ACCOUNT_ID", WABA)
        .env("WABOT_WHATSAPP__SEND_ATTEMPTS", "1")
        .env(
            "WABOT_WHATSAPP__REENGAGEMENT_TEMPLATE__NAME",
            "welcome_back",
        )
        .env("WABOT_WHATSAPP__REENGAGEMENT_TEMPLATE__LANGUAGE", "pt_BR")
        .env("RUST_LOG", "off")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("wabot doctor runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), output)
}

fn ok(body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

async fn mount_app(graph: &MockServer) {
    mount_app_for(graph, TOKEN).await;
}

async fn mount_app_for(graph: &MockServer, token: &str) {
    Mock::given(method("GET"))
        .and(path("/v24.0/app"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ok(serde_json::json!({"id": APP_ID, "name": "wabot shop"})))
        .mount(graph)
        .await;
}

fn subscribed(ids: &[&str]) -> ResponseTemplate {
    let data: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({"whatsapp_business_api_data": {
                "id": id, "name": format!("app {id}"),
                "link": format!("https://www.facebook.com/games/?app_id={id}")
            }})
        })
        .collect();
    ok(serde_json::json!({ "data": data }))
}

async fn mount_subscriptions(graph: &MockServer, ids: &[&str]) {
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{WABA}/subscribed_apps")))
        .respond_with(subscribed(ids))
        .mount(graph)
        .await;
}

async fn mount_number(graph: &MockServer, status: &str) {
    mount_number_at(graph, PNID, status).await;
}

async fn mount_number_at(graph: &MockServer, number: &str, status: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{number}")))
        .and(query_param(
            "fields",
            "display_phone_number,verified_name,status,quality_rating,platform_type,throughput,\
             messaging_limit_tier,name_status",
        ))
        .respond_with(ok(serde_json::json!({
            "id": number,
            "display_phone_number": "+1 555-000-0000",
            "verified_name": "wabot shop",
            "status": status,
            "quality_rating": "GREEN",
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
            "messaging_limit_tier": "TIER_1K",
            "name_status": "APPROVED"
        })))
        .mount(graph)
        .await;
}

async fn mount_templates(graph: &MockServer, status: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{WABA}/message_templates")))
        .and(query_param("name", "welcome_back"))
        .respond_with(ok(serde_json::json!({"data": [
            {"name": "welcome_back_v2", "language": "pt_BR", "status": "REJECTED", "id": "1"},
            {"name": "welcome_back", "language": "en_US", "status": "APPROVED", "id": "2"},
            {"name": "welcome_back", "language": "pt_BR", "status": status, "id": "3",
             "category": "MARKETING", "rejected_reason": if status == "REJECTED" { "INVALID_FORMAT" } else { "NONE" }}
        ], "paging": {"cursors": {"before": "a", "after": "b"}}})))
        .mount(graph)
        .await;
}

async fn healthy_graph(subscriptions: &[&str]) -> MockServer {
    let graph = MockServer::start().await;
    mount_app(&graph).await;
    mount_subscriptions(&graph, subscriptions).await;
    mount_number(&graph, "CONNECTED").await;
    mount_templates(&graph, "APPROVED").await;
    graph
}

async fn subscribe_calls(graph: &MockServer) -> usize {
    graph
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            r.method.as_str() == "POST" && r.url.path() == format!("/v24.0/{WABA}/subscribed_apps")
        })
        .count()
}

#[tokio::test]
async fn a_healthy_setup_passes_every_check() {
    let graph = healthy_graph(&["999", APP_ID]).await;
    let (success, output) = doctor(&graph, &[]);
    assert!(success, "{output}");
    assert!(output.contains("all checks passed"), "{output}");
    assert!(
        output.contains("belongs to the app \"wabot shop\""),
        "{output}"
    );
    assert!(output.contains("the app is subscribed"), "{output}");
    assert!(output.contains("CONNECTED"), "{output}");
    assert!(
        output.contains("throughput STANDARD (80 messages/s)"),
        "{output}"
    );
    assert!(
        output.contains("\"welcome_back\" (pt_BR): exists and is approved"),
        "{output}"
    );
    assert!(!output.contains("FAIL"), "{output}");
    assert!(!output.contains(TOKEN), "the token was printed:\n{output}");
    assert_eq!(
        subscribe_calls(&graph).await,
        0,
        "nothing is changed without --fix"
    );
}

#[tokio::test]
async fn an_unsubscribed_app_fails_with_the_fix() {
    let graph = healthy_graph(&["999"]).await;
    let (success, output) = doctor(&graph, &[]);
    assert!(!success, "exit 1 expected:\n{output}");
    assert!(
        output.contains("FAIL  webhook subscription of WABA 102290129340398"),
        "{output}"
    );
    assert!(
        output.contains("the app is not subscribed (subscribed: app 999)"),
        "{output}"
    );
    assert!(output.contains("fix: run `wabot doctor --fix`"), "{output}");
    assert!(
        output.contains(&format!("{}/v24.0/{WABA}/subscribed_apps", graph.uri())),
        "the manual fix names the endpoint:\n{output}"
    );
    assert!(output.contains("1 check failed"), "{output}");
    assert_eq!(
        subscribe_calls(&graph).await,
        0,
        "nothing is changed without --fix"
    );
}

#[tokio::test]
async fn fix_subscribes_the_app() {
    let graph = MockServer::start().await;
    mount_app(&graph).await;
    mount_number(&graph, "CONNECTED").await;
    mount_templates(&graph, "APPROVED").await;
    // Unsubscribed until the POST, subscribed after it.
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{WABA}/subscribed_apps")))
        .respond_with(subscribed(&[]))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&graph)
        .await;
    mount_subscriptions(&graph, &[APP_ID]).await;
    Mock::given(method("POST"))
        .and(path(format!("/v24.0/{WABA}/subscribed_apps")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ok(serde_json::json!({"success": true})))
        .expect(1)
        .mount(&graph)
        .await;
    let (success, output) = doctor(&graph, &["--fix"]);
    assert!(success, "{output}");
    assert!(output.contains("subscribed it now (--fix)"), "{output}");
    assert_eq!(subscribe_calls(&graph).await, 1);
}

#[tokio::test]
async fn a_rejected_template_and_a_pending_number_fail_with_their_reasons() {
    let graph = MockServer::start().await;
    mount_app(&graph).await;
    mount_subscriptions(&graph, &[APP_ID]).await;
    mount_number(&graph, "PENDING").await;
    mount_templates(&graph, "REJECTED").await;
    let (success, output) = doctor(&graph, &[]);
    assert!(!success, "{output}");
    assert!(
        output.contains("\"welcome_back\" (pt_BR): is REJECTED (INVALID_FORMAT)"),
        "{output}"
    );
    assert!(
        output.contains(&format!("FAIL  phone number {PNID}")),
        "{output}"
    );
    assert!(
        output.contains(&format!("POST {}/v24.0/{PNID}/register", graph.uri())),
        "{output}"
    );
    assert!(output.contains("2 checks failed"), "{output}");
}

#[tokio::test]
async fn an_expired_token_stops_at_the_first_check() {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v24.0/app"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(serde_json::json!({"error": {
                "message": "Error validating access token: Session has expired",
                "type": "OAuthException", "code": 190, "error_subcode": 463, "fbtrace_id": "AbC"
            }})),
        )
        .mount(&graph)
        .await;
    let (success, output) = doctor(&graph, &[]);
    assert!(!success, "{output}");
    assert!(output.contains("FAIL  access token"), "{output}");
    assert!(output.contains("System User access token"), "{output}");
    let calls = graph.received_requests().await.unwrap_or_default().len();
    assert_eq!(calls, 1, "nothing else is asked with a dead token");
}

const TENANT_TOKEN: &str = "EAAG-bakery-token";
const TENANT_NUMBER: &str = "222000111";

/// A tenants directory with `bakery.toml` (its own token and number, the same WABA) and, with
/// `broken`, a second file that does not build.
fn tenant_dir(broken: bool) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wabot-doctor-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("bakery.toml"),
        format!(
            "[tenant]\nname = \"Bakery\"\nnumbers = [\"{TENANT_NUMBER}\"]\n\n[whatsapp]\n\
             access_token = \"{TENANT_TOKEN}\"\nbusiness_account_id = \"{WABA}\"\n"
        ),
    )
    .expect("tenant file");
    if broken {
        std::fs::write(dir.join("shop.toml"), "[tenant]\nnumbers = []\n").expect("file");
    }
    dir
}

#[tokio::test]
async fn doctor_checks_one_tenant_with_its_token_and_numbers_only() {
    let graph = MockServer::start().await;
    mount_app_for(&graph, TENANT_TOKEN).await;
    mount_subscriptions(&graph, &[APP_ID]).await;
    mount_number_at(&graph, TENANT_NUMBER, "CONNECTED").await;
    mount_templates(&graph, "APPROVED").await;
    let dir = tenant_dir(false);
    let env = [("WABOT_TENANTS__DIR", dir.to_str().expect("utf-8"))];
    let (success, output) = wabot(&graph, &["doctor", "--tenant", "bakery"], &env);
    assert!(success, "{output}");
    assert!(output.contains("checking tenant bakery"), "{output}");
    assert!(
        output.contains(&format!("phone number {TENANT_NUMBER}")),
        "{output}"
    );
    assert!(
        !output.contains(PNID),
        "the deployment's number is not the tenant's:\n{output}"
    );
    let requests = graph.received_requests().await.unwrap_or_default();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(
            request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {TENANT_TOKEN}").as_str()),
            "{}",
            request.url
        );
    }

    // A tenant that is neither a file nor stored: named, with the ones there are.
    let redis = crate::helpers::RedisServer::start();
    let url = redis.url();
    let env = [
        ("WABOT_TENANTS__DIR", dir.to_str().expect("utf-8")),
        ("REDIS_URL", url.as_str()),
    ];
    let (success, output) = wabot(&graph, &["doctor", "--tenant", "nobody"], &env);
    assert!(!success, "{output}");
    assert!(output.contains("no tenant nobody"), "{output}");
    assert!(output.contains("bakery"), "{output}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn check_config_lists_the_tenant_files_and_fails_on_one_that_does_not_build() {
    let graph = MockServer::start().await;
    let dir = tenant_dir(false);
    let env = [("WABOT_TENANTS__DIR", dir.to_str().expect("utf-8"))];
    let (success, output) = wabot(&graph, &["check-config"], &env);
    assert!(success, "{output}");
    assert!(output.contains("tenant files in"), "{output}");
    assert!(
        output.contains(&format!(
            "bakery (Bakery): numbers {TENANT_NUMBER}; responder"
        )),
        "{output}"
    );
    assert!(
        !output.contains(TENANT_TOKEN),
        "a secret was printed:\n{output}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    let dir = tenant_dir(true);
    let env = [("WABOT_TENANTS__DIR", dir.to_str().expect("utf-8"))];
    let (success, output) = wabot(&graph, &["check-config"], &env);
    assert!(!success, "{output}");
    assert!(output.contains("shop"), "{output}");
    assert!(output.contains("at least one phone number id"), "{output}");
    let _ = std::fs::remove_dir_all(&dir);
}
