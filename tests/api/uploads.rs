//! Media sent by `upload`: a file under `whatsapp.media_dir` or a URL is uploaded to Meta once
//! per number (multipart `POST /{pnid}/media`), its media id kept in Redis and sent by id to
//! every user after; a file that cannot be had is sent as its caption.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{eventually, graph_ok, spawn, AppOptions};

const PNID: &str = "113948572261094";
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_file_or_url_is_uploaded_once_and_sent_by_its_media_id() {
    let media = std::env::temp_dir().join(format!("wabot-media-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(media.join("menus")).expect("media dir");
    std::fs::write(media.join("menus/winter.jpg"), b"JPEG of the menu").expect("file");

    let files = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/card.png"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "image/png")
                .set_body_bytes(b"PNG the card".to_vec()),
        )
        .mount(&files)
        .await;
    let backend = MockServer::start().await;
    let answer = |body: &str, actions: Value| {
        Mock::given(method("POST"))
            .and(path("/bot"))
            .and(body_string_contains(body))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "actions": actions })))
    };
    answer(
        "\"menu please\"",
        json!([{"type": "image", "upload": "menus/winter.jpg", "caption": "Our menu"}]),
    )
    .mount(&backend)
    .await;
    answer(
        "\"card please\"",
        json!([{"type": "image", "upload": format!("{}/card.png", files.uri())}]),
    )
    .mount(&backend)
    .await;
    answer(
        "\"old menu\"",
        json!([{"type": "image", "upload": "menus/summer.jpg", "caption": "The summer menu"}]),
    )
    .mount(&backend)
    .await;

    let graph = graph_ok().await;
    Mock::given(method("POST"))
        .and(path(format!("/v24.0/{PNID}/media")))
        .and(body_string_contains("JPEG of the menu"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "9001"})))
        .with_priority(1)
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v24.0/{PNID}/media")))
        .and(body_string_contains("PNG the card"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "9002"})))
        .with_priority(1)
        .mount(&graph)
        .await;
    let media_dir = media.to_string_lossy().to_string();
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..AppOptions::with_env(&[
            ("RESPONDER", "http"),
            ("HTTP_RESPONDER_URL", &format!("{}/bot", backend.uri())),
            ("HTTP_RESPONDER_SECRET", "bot-secret"),
            ("WABOT_WHATSAPP__MEDIA_DIR", &media_dir),
        ])
    })
    .await;
    // Each ask from a user of its own: the backend's matchers read the whole request, history
    // included.
    let users = ["4915000000701", "4915000000702", "4915000000703"];
    for (n, user) in users.iter().enumerate() {
        app.deliver(&crate::helpers::text_delivery(
            PNID,
            user,
            &format!("wamid.up{n}"),
            "menu please",
        ))
        .await;
    }
    app.deliver(&crate::helpers::text_delivery(
        PNID,
        "4915000000704",
        "wamid.up-card",
        "card please",
    ))
    .await;
    app.deliver(&crate::helpers::text_delivery(
        PNID,
        "4915000000705",
        "wamid.up-old",
        "old menu",
    ))
    .await;
    let sent = eventually(WAIT, || async {
        let bodies = crate::helpers::graph_bodies(&graph).await;
        let images: Vec<Value> = bodies
            .iter()
            .filter(|b| b["type"] == "image")
            .cloned()
            .collect();
        let text = bodies
            .iter()
            .any(|b| b["text"]["body"] == "The summer menu");
        (images.len() == 4 && text).then_some(images)
    })
    .await;
    let Some(sent) = sent else {
        panic!(
            "three menus, the card and the missing menu's caption went out: {:?}",
            crate::helpers::graph_bodies(&graph).await
        );
    };
    let menus: Vec<&Value> = sent.iter().filter(|b| b["image"]["id"] == "9001").collect();
    assert_eq!(menus.len(), 3, "{sent:?}");
    assert!(menus.iter().all(|b| b["image"]["caption"] == "Our menu"));
    assert_eq!(
        sent.iter().filter(|b| b["image"]["id"] == "9002").count(),
        1,
        "the URL's file, by its id"
    );
    let uploads: Vec<wiremock::Request> = graph
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/media"))
        .collect();
    assert_eq!(uploads.len(), 2, "each file uploaded once, for three users");
    let menu = uploads
        .iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains("JPEG of the menu"))
        .expect("the menu's upload");
    let form = String::from_utf8_lossy(&menu.body);
    assert!(
        form.contains("name=\"messaging_product\"\r\n\r\nwhatsapp\r\n"),
        "{form}"
    );
    assert!(
        form.contains("name=\"type\"\r\n\r\nimage/jpeg\r\n"),
        "{form}"
    );
    assert!(
        form.contains("filename=\"winter.jpg\"\r\nContent-Type: image/jpeg"),
        "{form}"
    );
    assert!(menu
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data; boundary=")));
    let card = uploads
        .iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains("PNG the card"))
        .expect("the card's upload");
    assert!(String::from_utf8_lossy(&card.body).contains("Content-Type: image/png"));
    let _ = std::fs::remove_dir_all(&media);
}
