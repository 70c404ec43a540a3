//! `/metrics` of a freshly started process: every family is there before any traffic, and label
//! values from outside cannot create series. The recorder is process-global, so this runs the
//! `wabot` binary (a process of its own) rather than an app inside the test binary.

use crate::helpers::{RedisServer, Served, APP_SECRET};

async fn serve(redis: &RedisServer) -> Served {
    Served::start(&redis.url(), "http://127.0.0.1:9", |command| {
        command.env("WABOT_WORKER__ENABLED", "false")
    })
    .await
}

async fn metrics(address: &str) -> String {
    reqwest::get(format!("{address}/metrics"))
        .await
        .expect("scraped")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn every_family_is_exported_at_zero_right_after_start() {
    let redis = RedisServer::start();
    let served = serve(&redis).await;
    let text = metrics(&served.address).await;
    for family in wabot::ops::monitoring::FAMILIES {
        let present = text.lines().any(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(['{', ' ', '_']))
        });
        assert!(present, "{family} missing right after start:\n{text}");
    }
    let build = format!(
        "wabot_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.lines().any(|l| l == build), "{build} missing:\n{text}");
    assert!(
        text.lines()
            .any(|l| l == "wabot_webhook_deliveries_total{outcome=\"200\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_status_is_counted_as_other_without_a_series_of_its_own() {
    let redis = RedisServer::start();
    let served = serve(&redis).await;
    let invented = format!("bogus{}", uuid::Uuid::new_v4().simple());
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": "123"},
            "statuses": [{"id": "wamid.status1", "status": invented, "timestamp": "1793452387",
                          "recipient_id": "15550001111"}]
        }}]}]
    })
    .to_string();
    let response = reqwest::Client::new()
        .post(format!("{}/webhook", served.address))
        .header("Content-Type", "application/json")
        .header(
            "X-Hub-Signature-256",
            wabot::meta::webhook::sign(APP_SECRET, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let text = metrics(&served.address).await;
    assert!(
        !text.contains(&invented),
        "{invented} became a label:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "wabot_statuses_total{status=\"other\"} 1"),
        "{text}"
    );
}

#[test]
fn labels_from_outside_map_onto_a_fixed_set() {
    use wabot::ops::monitoring::{code_label, status_label};
    assert_eq!(status_label("delivered"), "delivered");
    assert_eq!(status_label("DELIVERED"), "other");
    assert_eq!(status_label("x\"y"), "other");
    assert_eq!(code_label(Some(131047)), "131047");
    assert_eq!(code_label(Some(987654321)), "other");
    assert_eq!(code_label(None), "none");
}
