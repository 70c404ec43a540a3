//! Many businesses on one deployment: tenants of files and of the admin API answer their own
//! numbers with their own settings (responder, token, texts), a number nobody has is recorded
//! and never answered, a tenant's hung backend holds only its own share of the workers, and a
//! tenant's API token reaches its own conversations and dead letters only.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    eventually, graph_ok, spawn, text_delivery, wait_for_dead_letters, wait_until_drained,
    AppOptions, TestApp, ACCESS_TOKEN, APP_SECRET, OLD_APP_SECRET,
};

const WAIT: Duration = Duration::from_secs(30);
const ADMIN: &str = "admin-token-0123456789abcdef";
const CLINIC_TOKEN: &str = "clinic-api-token-0123456789";
/// base64 of 32 bytes of 7.
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// A directory of tenant files, removed with the value.
struct TenantDir(PathBuf);

impl TenantDir {
    fn new(files: &[(&str, String)]) -> TenantDir {
        let dir = std::env::temp_dir().join(format!("wabot-tenants-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("tenant dir");
        for (id, document) in files {
            std::fs::write(dir.join(format!("{id}.toml")), document).expect("tenant file");
        }
        TenantDir(dir)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TenantDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Graph API calls made with `token`, as (number, recipient, text).
async fn sent_with(graph: &MockServer, token: &str) -> Vec<(String, String, String)> {
    let bearer = format!("Bearer {token}");
    graph
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| {
            r.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(bearer.as_str())
        })
        .filter_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            Some((
                r.url.path().split('/').nth(2)?.to_string(),
                body["to"].as_str()?.trim_start_matches('+').to_string(),
                body.pointer("/text/body")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.expect("metrics")
}

use crate::helpers::metric;

#[tokio::test]
async fn each_tenant_answers_its_own_numbers_and_a_number_nobody_has_is_only_recorded() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/clinic"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "actions": [{"type": "text", "text": "Clínica Sol: ¿en qué le ayudo?"}]
        })))
        .mount(&backend)
        .await;
    let clinic = format!(
        r#"
[tenant]
name = "Clínica Sol"
numbers = ["1110001"]

[whatsapp]
access_token = "clinic-access-token"

[responder]
kind = "http"

[responder.http]
url = "{}/clinic"
secret = "clinic-backend-secret"
"#,
        backend.uri()
    );
    let shop = r#"
[tenant]
numbers = ["2220001", "2220002"]

[whatsapp]
access_token = "shop-access-token"
"#
    .to_string();
    let dir = TenantDir::new(&[("clinic", clinic), ("shop", shop)]);
    let graph = graph_ok().await;
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..AppOptions::with_env(&[
            ("WABOT_TENANTS__DIR", &dir.path()),
            ("WHATSAPP_PHONE_NUMBER_ID", "9990001"),
        ])
    })
    .await;
    let before = metrics(&app).await;
    for (number, user, text) in [
        ("1110001", "15550001001", "hola"),
        ("2220002", "15550001002", "shop says hi"),
        ("9990001", "15550001003", "default says hi"),
        ("5550001", "15550001004", "nobody's number"),
    ] {
        let body = text_delivery(number, user, &format!("wamid.t.{user}"), text);
        assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    }
    wait_until_drained(&app.queue().await, WAIT).await;

    // Each number was answered by its tenant's responder, with its tenant's token.
    let clinic_sent = sent_with(&graph, "clinic-access-token").await;
    assert_eq!(
        clinic_sent,
        [(
            "1110001".to_string(),
            "15550001001".to_string(),
            "Clínica Sol: ¿en qué le ayudo?".to_string()
        )]
    );
    let shop_sent = sent_with(&graph, "shop-access-token").await;
    assert_eq!(shop_sent.len(), 1, "{shop_sent:?}");
    assert_eq!(shop_sent[0].0, "2220002");
    assert!(
        shop_sent[0].2.contains("shop says hi"),
        "echo: {shop_sent:?}"
    );
    let default_sent = sent_with(&graph, ACCESS_TOKEN).await;
    assert_eq!(default_sent.len(), 1, "{default_sent:?}");
    assert_eq!(default_sent[0].0, "9990001");
    // The clinic's backend heard the clinic's user only.
    let asked = backend.received_requests().await.unwrap_or_default();
    assert_eq!(asked.len(), 1);
    let asked = String::from_utf8_lossy(&asked[0].body).to_string();
    assert!(
        asked.contains("15550001001") && asked.contains("hola"),
        "{asked}"
    );
    for other in ["15550001002", "15550001003", "15550001004"] {
        assert!(!asked.contains(other), "{asked}");
    }

    // Nobody's number: nothing sent from it, the message kept, counted.
    let all = graph.received_requests().await.unwrap_or_default();
    assert!(
        !all.iter().any(|r| r.url.path().contains("5550001")),
        "nothing is sent from a number no tenant has"
    );
    let conversation = app
        .conversations()
        .await
        .get(
            &wabot::domain::PhoneNumberId::parse("5550001").expect("pnid"),
            &wabot::domain::UserId::parse("15550001004").expect("user"),
        )
        .await
        .expect("redis")
        .expect("the unrouted message is kept");
    assert_eq!(conversation.turns.len(), 1);
    assert_eq!(conversation.turns[0].text, "nobody's number");
    let after = metrics(&app).await;
    assert!(
        metric(&after, "wabot_unrouted_total", "kind=\"message\"")
            > metric(&before, "wabot_unrouted_total", "kind=\"message\"")
    );
    for tenant in ["clinic", "shop", "default", "unrouted"] {
        let labels = format!("tenant=\"{tenant}\",kind=\"message\"");
        assert!(
            metric(&after, "wabot_tenant_items_total", &labels)
                > metric(&before, "wabot_tenant_items_total", &labels),
            "{tenant}: {after}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_whose_backend_hangs_holds_only_its_own_share_of_the_workers() {
    let backend = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/slow"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(3))
                .set_body_json(serde_json::json!({
                    "actions": [{"type": "text", "text": "slow answer"}]
                })),
        )
        .mount(&backend)
        .await;
    let slow = format!(
        r#"
[tenant]
numbers = ["3330001"]
max_concurrency = 2

[whatsapp]
access_token = "slow-access-token"

[responder]
kind = "http"

[responder.http]
url = "{}/slow"
secret = "slow-backend-secret"
timeout_ms = 10000
attempts = 1
"#,
        backend.uri()
    );
    let fast = "[tenant]\nnumbers = [\"4440001\"]\nmax_concurrency = 2\n\n[whatsapp]\naccess_token = \"fast-access-token\"\n".to_string();
    let dir = TenantDir::new(&[("slow", slow), ("fast", fast)]);
    let graph = graph_ok().await;
    // Three conversations at once on this replica: without the tenants' bounds, the slow
    // tenant's six would take all three and the fast tenant's users would wait for its backend.
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..AppOptions::with_env(&[
            ("WABOT_TENANTS__DIR", &dir.path()),
            ("WABOT_WORKER__CONCURRENCY", "3"),
        ])
    })
    .await;
    for i in 0..6 {
        let user = format!("1555000200{i}");
        let body = text_delivery("3330001", &user, &format!("wamid.slow.{i}"), "hello?");
        assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    }
    // The slow tenant's conversations are all started (or waiting for its share) first.
    eventually(WAIT, || async {
        (backend.received_requests().await.unwrap_or_default().len() >= 2).then_some(())
    })
    .await
    .expect("the slow backend is asked");
    for i in 0..3 {
        let user = format!("1555000300{i}");
        let body = text_delivery("4440001", &user, &format!("wamid.fast.{i}"), "quick one");
        assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    }
    let replies = eventually(WAIT, || async {
        let order: Vec<String> = crate::helpers::replies(&graph)
            .await
            .into_iter()
            .map(|reply| reply.from_phone_number_id)
            .collect();
        (order.iter().filter(|n| *n == "3330001").count() == 6).then_some(order)
    })
    .await
    .expect("every slow answer goes out in the end");
    let first_slow = replies
        .iter()
        .position(|n| n == "3330001")
        .expect("a slow reply");
    let fast_before = replies[..first_slow]
        .iter()
        .filter(|n| *n == "4440001")
        .count();
    assert_eq!(
        fast_before, 3,
        "the fast tenant's users were answered while the slow backend hung: {replies:?}"
    );
    // At most two of the slow tenant's conversations were at its backend at once.
    assert!(
        metric(&metrics(&app).await, "wabot_tenant_bound_waits_total", "") >= 1.0,
        "some of the slow tenant's conversations waited for its share"
    );
    app.stop().await;
}

async fn admin(
    app: &TestApp,
    verb: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<String>,
) -> reqwest::Response {
    let mut request = app
        .http
        .request(verb, format!("{}{path}", app.address))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/toml")
            .body(body);
    }
    request.send().await.expect("sent")
}

#[tokio::test]
async fn tenants_stored_through_the_admin_api_reach_every_replica_sealed() {
    let graph = graph_ok().await;
    let redis = crate::helpers::RedisServer::start();
    let prefix = format!("ten{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let file = TenantDir::new(&[("clinic", "[tenant]\nnumbers = [\"1110002\"]\n".to_string())]);
    let env = [
        ("ADMIN_TOKEN", ADMIN),
        ("WABOT_TENANTS__KEY", KEY),
        ("WABOT_TENANTS__RELOAD_MS", "200"),
        ("WABOT_TENANTS__DIR", &file.path()),
    ];
    let a = spawn(AppOptions::with_env(&env).replica_of(&redis.url(), &graph, &prefix)).await;
    let b = spawn(AppOptions::with_env(&env).replica_of(&redis.url(), &graph, &prefix)).await;
    let shop = "[tenant]\nname = \"Shop\"\nnumbers = [\"6660001\"]\napi_token = \"shop-api-token-0123456789\"\n\n[whatsapp]\naccess_token = \"shop-secret-access\"\n\n[conversation]\nlanguage = \"es\"\n";
    let created = admin(
        &a,
        reqwest::Method::PUT,
        "/admin/tenants/shop",
        ADMIN,
        Some(shop.into()),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created = created.text().await.expect("body");
    assert!(
        !created.contains("shop-secret-access") && !created.contains("shop-api-token"),
        "{created}"
    );
    // Sealed at rest: neither the token nor the document is readable in Redis.
    let stored = redis.cli(&["HGET", &format!("{prefix}:{{tenants}}"), "shop"]);
    assert!(stored.starts_with("v1."), "{stored}");
    assert!(
        !stored.contains("shop-secret-access") && !stored.contains("6660001"),
        "{stored}"
    );

    // Refused with the reason: a document that does not build, a number the file tenant has, a
    // file tenant's id, a deployment-wide section, a tenant's token.
    let refused = [
        (
            "/admin/tenants/bad",
            "[tenant]\nnumbers = [\"7\"]\n[responder]\nkind = \"http\"\n",
            400,
            "responder.http",
        ),
        (
            "/admin/tenants/other",
            "[tenant]\nnumbers = [\"1110002\"]\n",
            409,
            "clinic's",
        ),
        (
            "/admin/tenants/clinic",
            "[tenant]\nnumbers = [\"8\"]\n",
            409,
            "file",
        ),
        (
            "/admin/tenants/bad",
            "[tenant]\nnumbers = [\"7\"]\n[redis]\nurl = \"redis://x\"\n",
            400,
            "[redis]",
        ),
    ];
    for (path, document, status, named) in refused {
        let response = admin(&a, reqwest::Method::PUT, path, ADMIN, Some(document.into())).await;
        assert_eq!(response.status(), status, "{path} {document}");
        let text = response.text().await.expect("body");
        assert!(text.contains(named), "{text}");
    }
    let response = admin(
        &a,
        reqwest::Method::PUT,
        "/admin/tenants/x",
        "shop-api-token-0123456789",
        Some(shop.into()),
    )
    .await;
    assert_eq!(response.status(), 403);

    // The other replica answers the new tenant's number with its token, within its reload.
    let body = text_delivery("6660001", "15550004001", "wamid.stored.1", "hola tienda");
    assert_eq!(b.post_signed(&body, APP_SECRET).await.status(), 200);
    let sent = eventually(WAIT, || async {
        let sent = sent_with(&graph, "shop-secret-access").await;
        (!sent.is_empty()).then_some(sent)
    })
    .await
    .expect("the stored tenant answers");
    assert_eq!(sent[0].0, "6660001");
    let listed: Value = admin(&b, reqwest::Method::GET, "/admin/tenants", ADMIN, None)
        .await
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = listed["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, ["clinic", "shop"]);
    assert_eq!(listed["tenants"][1]["language"], "es");
    assert_eq!(listed["tenants"][1]["api_token"], true);
    assert_eq!(
        listed["tenants"][0]["source"]
            .as_str()
            .map(|s| s.ends_with("clinic.toml")),
        Some(true)
    );

    // Removed: its number is nobody's now, on every replica.
    let removed = admin(
        &b,
        reqwest::Method::DELETE,
        "/admin/tenants/shop",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(removed.status(), 204);
    assert_eq!(
        admin(
            &a,
            reqwest::Method::DELETE,
            "/admin/tenants/clinic",
            ADMIN,
            None
        )
        .await
        .status(),
        409
    );
    // A removal reaches the workers with their next reload (every 200 ms here).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let body = text_delivery("6660001", "15550004002", "wamid.stored.2", "¿hay alguien?");
    assert_eq!(a.post_signed(&body, APP_SECRET).await.status(), 200);
    wait_until_drained(&a.queue().await, WAIT).await;
    let sent = sent_with(&graph, "shop-secret-access").await;
    assert_eq!(
        sent.len(),
        1,
        "nothing more from a removed tenant: {sent:?}"
    );
    a.stop().await;
    b.stop().await;
}

/// Two file tenants: the clinic at `clinic` (API token `CLINIC_TOKEN`), the shop at `shop`,
/// whose sends fail for good (its messages become dead letters), one attempt each.
async fn clinic_and_failing_shop(
    clinic: &str,
    shop: &str,
    admin_token: &str,
) -> (std::sync::Arc<MockServer>, TenantDir, TestApp) {
    let graph = graph_ok().await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer shop-access-token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100}
        })))
        .with_priority(1)
        .mount(&graph)
        .await;
    let dir = TenantDir::new(&[
        (
            "clinic",
            format!("[tenant]\nnumbers = [\"{clinic}\"]\napi_token = \"{CLINIC_TOKEN}\"\n"),
        ),
        (
            "shop",
            format!(
                "[tenant]\nnumbers = [\"{shop}\"]\n[whatsapp]\naccess_token = \"shop-access-token\"\n"
            ),
        ),
    ]);
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        max_attempts: 1,
        ..AppOptions::with_env(&[
            ("ADMIN_TOKEN", admin_token),
            ("WABOT_TENANTS__DIR", &dir.path()),
        ])
    })
    .await;
    (graph, dir, app)
}

#[tokio::test]
async fn a_tenant_token_reaches_its_own_conversations_and_dead_letters_only() {
    let (_graph, _dir, app) = clinic_and_failing_shop("1110003", "2220003", ADMIN).await;
    for (number, user) in [("1110003", "15550005001"), ("2220003", "15550005002")] {
        let body = text_delivery(number, user, &format!("wamid.scope.{user}"), "hi");
        assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    }
    let letters = wait_for_dead_letters(&app.queue().await, WAIT).await;
    let shop_letter = letters[0].public_id();
    wait_until_drained(&app.queue().await, WAIT).await;

    let get = |path: &str, token: &str| {
        let request = app
            .http
            .get(format!("{}{path}", app.address))
            .bearer_auth(token);
        async move { request.send().await.expect("sent") }
    };
    let post = |path: &str, token: &str, body: Value| {
        let request = app
            .http
            .post(format!("{}{path}", app.address))
            .bearer_auth(token)
            .json(&body);
        async move { request.send().await.expect("sent") }
    };
    // The admin token sees both tenants' conversations; the clinic's token its own.
    let listed = |value: Value| -> Vec<String> {
        value["conversations"]
            .as_array()
            .expect("conversations")
            .iter()
            .filter_map(|c| c["phone_number_id"].as_str().map(str::to_string))
            .collect()
    };
    let mut all = listed(
        get("/admin/conversations", ADMIN)
            .await
            .json()
            .await
            .expect("json"),
    );
    all.sort();
    assert_eq!(all, ["1110003", "2220003"]);
    let own = listed(
        get("/admin/conversations", CLINIC_TOKEN)
            .await
            .json()
            .await
            .expect("json"),
    );
    assert_eq!(own, ["1110003"]);
    assert_eq!(
        get("/admin/conversations/1110003/15550005001", CLINIC_TOKEN)
            .await
            .status(),
        200
    );

    // Another tenant's conversation is "no such conversation" to every verb, guessed or not.
    let theirs = "/admin/conversations/2220003/15550005002";
    assert_eq!(get(theirs, CLINIC_TOKEN).await.status(), 404);
    assert_eq!(get(theirs, ADMIN).await.status(), 200);
    for (suffix, body) in [
        ("/handoff", serde_json::json!({})),
        ("/resume", serde_json::json!({})),
        (
            "/messages",
            serde_json::json!({"text": "hello from the clinic"}),
        ),
    ] {
        let response = post(&format!("{theirs}{suffix}"), CLINIC_TOKEN, body).await;
        assert_eq!(response.status(), 404, "{suffix}");
    }
    let deleted = app
        .http
        .delete(format!("{}{theirs}", app.address))
        .bearer_auth(CLINIC_TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 404);
    assert_eq!(get(theirs, ADMIN).await.status(), 200, "still there");
    let notification = post(
        "/admin/messages",
        CLINIC_TOKEN,
        serde_json::json!({"phone_number_id": "2220003", "to": "15550005002", "text": "hi"}),
    )
    .await;
    assert_eq!(notification.status(), 404);

    // Dead letters: the shop's is not the clinic's to list or replay.
    let letters_of = |value: Value| -> Vec<String> {
        value["dead_letters"]
            .as_array()
            .expect("dead letters")
            .iter()
            .filter_map(|d| d["id"].as_str().map(str::to_string))
            .collect()
    };
    let clinic_letters = letters_of(
        get("/admin/dead-letters", CLINIC_TOKEN)
            .await
            .json()
            .await
            .expect("json"),
    );
    assert!(clinic_letters.is_empty(), "{clinic_letters:?}");
    let admin_letters = letters_of(
        get("/admin/dead-letters", ADMIN)
            .await
            .json()
            .await
            .expect("json"),
    );
    assert_eq!(admin_letters, std::slice::from_ref(&shop_letter));
    let replay = format!("/admin/dead-letters/{shop_letter}/replay");
    assert_eq!(
        post(&replay, CLINIC_TOKEN, serde_json::json!({}))
            .await
            .status(),
        404
    );

    // Deployment-wide routes are the admin token's.
    for path in ["/admin/tenants", "/admin/operators"] {
        assert_eq!(get(path, CLINIC_TOKEN).await.status(), 403, "{path}");
    }
    assert_eq!(
        get("/admin/conversations", "not-a-token").await.status(),
        401
    );
    app.stop().await;
}

#[tokio::test]
async fn a_tenants_operators_reach_its_conversations_only_and_the_audit_names_who_did_what() {
    use crate::console::{signed_in, user_text_to, TOKEN};
    use crate::operators::{put, sign_in};
    let (graph, _dir, app) = clinic_and_failing_shop("1110006", "2220006", TOKEN).await;
    for (name, role, tenants) in [
        ("Clara", "operator", vec!["clinic"]),
        ("Cleo", "admin", vec!["clinic"]),
        ("Sam", "operator", vec!["shop"]),
    ] {
        let saved = put(
            &app,
            name,
            serde_json::json!({"role": role, "password": "a long enough password", "tenants": tenants}),
        )
        .await;
        assert_eq!(saved.status(), 200, "{name}");
        let saved: Value = saved.json().await.expect("json");
        assert_eq!(saved["tenants"], serde_json::json!(tenants));
    }
    let typo = put(
        &app,
        "Typo",
        serde_json::json!({"role": "operator", "password": "a long enough password", "tenants": ["clinik"]}),
    )
    .await;
    assert_eq!(typo.status(), 400, "an unknown tenant is refused");

    let (clinic_user, shop_user) = ("15550006001", "15550006002");
    app.deliver(&user_text_to("1110006", clinic_user, "wamid.staff.1", "hi"))
        .await;
    app.deliver(&user_text_to("2220006", shop_user, "wamid.staff.2", "hi"))
        .await;
    let letters = wait_for_dead_letters(&app.queue().await, WAIT).await;
    let shop_letter = letters[0].public_id();
    crate::helpers::wait_for_replies(&graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;

    let (mut clara, signed) = sign_in(&app, "Clara", "a long enough password").await;
    assert_eq!(signed.status(), 303);
    let (mut sam, _) = sign_in(&app, "Sam", "a long enough password").await;
    let (mut cleo, _) = sign_in(&app, "Cleo", "a long enough password").await;
    let clinic_page = format!("/console/c/1110006/{clinic_user}");
    let shop_page = format!("/console/c/2220006/{shop_user}");

    // The list and the search show the clinic's conversation only; the shop's is "not found"
    // to every page and form, guessed or not.
    let (list, csrf) = clara.page("/console/conversations").await;
    assert!(
        list.contains(clinic_user) && !list.contains(shop_user),
        "{list}"
    );
    let (found, _) = clara.page("/console/conversations?q=1555000600").await;
    assert!(
        found.contains(clinic_user) && !found.contains(shop_user),
        "{found}"
    );
    assert_eq!(clara.get(&shop_page).await.status(), 404);
    assert_eq!(clara.get(&format!("{shop_page}/live")).await.status(), 404);
    for action in ["take-over", "give-back", "reply", "template", "assign"] {
        let refused = clara
            .post(
                &format!("{shop_page}/{action}"),
                &[
                    ("csrf", &csrf),
                    ("text", "from the clinic"),
                    ("to", "Clara"),
                ],
            )
            .await;
        assert_eq!(refused.status(), 404, "{action}");
    }
    let (pnid, uid) = crate::helpers::conversation_ids("2220006", shop_user);
    assert_ne!(
        crate::helpers::owner(&app.conversations().await, &pnid, &uid).await,
        wabot::store::conversation::Owner::Human,
        "the shop's conversation was not taken"
    );

    // Sam takes the shop's conversation: it waits in Sam's list, never in Clara's.
    let (_, sam_csrf) = sam.page(&shop_page).await;
    let taken = sam
        .post(&format!("{shop_page}/take-over"), &[("csrf", &sam_csrf)])
        .await;
    assert_eq!(taken.status(), 303);
    let (sam_list, _) = sam.page("/console/conversations").await;
    assert!(sam_list.contains(shop_user) && !sam_list.contains(clinic_user));
    let (list, _) = clara.page("/console/conversations").await;
    assert!(!list.contains(shop_user), "{list}");

    // Clara takes the clinic's, offered only to colleagues who see it, and hands it to Cleo.
    let (html, csrf) = clara.page(&clinic_page).await;
    assert!(html.contains("<option value=\"Cleo\">"), "{html}");
    assert!(!html.contains("<option value=\"Sam\">"), "{html}");
    for (action, form) in [
        ("take-over", vec![("csrf", csrf.as_str())]),
        (
            "reply",
            vec![
                ("csrf", csrf.as_str()),
                ("text", "Clara here"),
                ("key", "c-1"),
            ],
        ),
    ] {
        let done = clara.post(&format!("{clinic_page}/{action}"), &form).await;
        assert_eq!(done.status(), 303, "{action}");
    }
    let to_sam = clara
        .post(
            &format!("{clinic_page}/assign"),
            &[("csrf", &csrf), ("to", "Sam")],
        )
        .await;
    assert_eq!(to_sam.status(), 400, "Sam does not see the clinic");
    let to_cleo = clara
        .post(
            &format!("{clinic_page}/assign"),
            &[("csrf", &csrf), ("to", "Cleo")],
        )
        .await;
    assert_eq!(to_cleo.status(), 303);

    // Dead letters: Cleo (an admin of the clinic) neither sees nor replays the shop's; the
    // admin token sees it.
    let (letters_page, cleo_csrf) = cleo.page("/console/dead-letters").await;
    assert!(!letters_page.contains(&shop_letter), "{letters_page}");
    let replay = cleo
        .post(
            &format!("/console/dead-letters/{shop_letter}/replay"),
            &[("csrf", &cleo_csrf)],
        )
        .await;
    assert_eq!(replay.status(), 409);
    let mut admin = signed_in(&app).await;
    let (letters_page, _) = admin.page("/console/dead-letters").await;
    assert!(letters_page.contains(&shop_letter), "still there");

    // The audit: Cleo reads the clinic's (and only it); operators read none.
    assert_eq!(clara.get("/console/audit").await.status(), 403);
    let (audit, _) = cleo.page("/console/audit").await;
    for said in ["Clara", "take over", "assign", "to Cleo", "message"] {
        assert!(audit.contains(said), "{said}: {audit}");
    }
    assert!(
        !audit.contains("Sam<"),
        "the shop's actions are not the clinic's"
    );
    assert_eq!(cleo.get("/console/audit?tenant=shop").await.status(), 404);
    let (admin_audit, _) = admin.page("/console/audit?tenant=shop").await;
    assert!(admin_audit.contains("Sam"), "{admin_audit}");

    // The same through the API, newest first and paged; a tenant's token reads its own only.
    let get = |path: &str, token: &str| {
        let request = app
            .http
            .get(format!("{}{path}", app.address))
            .bearer_auth(token);
        async move { request.send().await.expect("sent") }
    };
    let entries = |value: &Value| -> Vec<(String, String)> {
        value["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                (
                    e["by"].as_str().unwrap_or_default().to_string(),
                    e["action"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let clinic: Value = get("/admin/audit?tenant=clinic", TOKEN)
        .await
        .json()
        .await
        .expect("json");
    let pair = |by: &str, action: &str| (by.to_string(), action.to_string());
    assert_eq!(
        entries(&clinic),
        [
            pair("Clara", "assign"),
            pair("Clara", "message"),
            pair("Clara", "take_over")
        ]
    );
    assert_eq!(clinic["entries"][0]["detail"], "to Cleo");
    assert_eq!(clinic["entries"][0]["user"], clinic_user);
    let own: Value = get("/admin/audit", CLINIC_TOKEN)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(own["tenant"], "clinic");
    assert_eq!(entries(&own), entries(&clinic));
    assert_eq!(
        get("/admin/audit?tenant=shop", CLINIC_TOKEN).await.status(),
        404
    );
    let first: Value = get("/admin/audit?tenant=clinic&limit=1", TOKEN)
        .await
        .json()
        .await
        .expect("json");
    let cursor = first["next_cursor"].as_str().expect("more");
    let second: Value = get(
        &format!("/admin/audit?tenant=clinic&limit=1&cursor={cursor}"),
        TOKEN,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(entries(&second), [pair("Clara", "message")]);
    assert_eq!(
        get("/admin/audit?cursor=%2B", TOKEN).await.status(),
        400,
        "a cursor is a stream id"
    );
    let deployment: Value = get("/admin/audit", TOKEN).await.json().await.expect("json");
    let saved: Vec<String> = deployment["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "operator_saved")
        .filter_map(|e| e["detail"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        saved,
        [
            "Sam (operator; tenants shop)",
            "Cleo (admin; tenants clinic)",
            "Clara (operator; tenants clinic)"
        ]
    );
    app.stop().await;
}

const BAKERY_TOKEN: &str = "bakery-business-token";

/// Meta's side of Embedded Signup: the code `good-code` is worth `BAKERY_TOKEN`, `spent-code`
/// was used already; WABA 9001 subscribes; numbers 7770001 and 7770002 register, the second
/// failing once first.
async fn mount_signup(graph: &MockServer) {
    use wiremock::matchers::{body_partial_json, query_param};
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("client_id", "4242"))
        .and(query_param("client_secret", APP_SECRET))
        .and(query_param("code", "good-code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": BAKERY_TOKEN, "token_type": "bearer"}),
        ))
        .mount(graph)
        .await;
    // The deployment lists the old secret first while rotating: Meta refuses it.
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("client_secret", OLD_APP_SECRET))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": {
                "message": "Error validating client secret.", "type": "OAuthException", "code": 1
            }})),
        )
        .mount(graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v24.0/oauth/access_token"))
        .and(query_param("client_secret", APP_SECRET))
        .and(query_param("code", "spent-code"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": {
                "message": "This authorization code has been used.",
                "type": "OAuthException", "code": 100, "error_subcode": 36009
            }})),
        )
        .mount(graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/9001/subscribed_apps"))
        .and(header(
            "authorization",
            format!("Bearer {BAKERY_TOKEN}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true})),
        )
        .mount(graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/v24.0/7770002/register"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": {
                "message": "Two step verification PIN Mismatch", "code": 133005
            }})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(graph)
        .await;
    for number in ["7770001", "7770002"] {
        Mock::given(method("POST"))
            .and(path(format!("/v24.0/{number}/register")))
            .and(header(
                "authorization",
                format!("Bearer {BAKERY_TOKEN}").as_str(),
            ))
            .and(body_partial_json(
                serde_json::json!({"messaging_product": "whatsapp", "pin": "246810"}),
            ))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"success": true})),
            )
            .with_priority(2)
            .mount(graph)
            .await;
    }
}

/// The Graph API requests to `path_end` so far.
async fn calls_to(graph: &MockServer, path_end: &str) -> usize {
    graph
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().ends_with(path_end))
        .count()
}

#[tokio::test]
async fn embedded_signup_turns_a_code_into_a_stored_tenant_that_answers_its_number() {
    let graph = graph_ok().await;
    mount_signup(&graph).await;
    let app = spawn(AppOptions {
        graph: Some(graph.clone()),
        ..AppOptions::with_env(&[
            ("ADMIN_TOKEN", ADMIN),
            ("WABOT_TENANTS__KEY", KEY),
            ("WABOT_WHATSAPP__APP_ID", "4242"),
            ("WABOT_TENANTS__RELOAD_MS", "200"),
        ])
    })
    .await;
    let signup = |id: &str, body: Value| {
        let request = app
            .http
            .post(format!("{}/admin/tenants/{id}/signup", app.address))
            .bearer_auth(ADMIN)
            .json(&body);
        async move { request.send().await.expect("sent") }
    };
    let body = |code: Option<&str>, number: &str| {
        let mut body = serde_json::json!({
            "waba_id": "9001", "phone_number_id": number, "pin": "246810", "name": "Panadería"
        });
        if let Some(code) = code {
            body["code"] = code.into();
        }
        body
    };

    // Bad input is refused before Meta is asked.
    for (bad, named) in [
        (
            serde_json::json!({"code": "good-code", "waba_id": "9001", "phone_number_id": "7770001", "pin": "12"}),
            "pin",
        ),
        (
            serde_json::json!({"code": "good-code", "waba_id": "9001", "phone_number_id": "+1 555", "pin": "246810"}),
            "phone_number_id",
        ),
        (
            serde_json::json!({"code": "good-code", "waba_id": "9001"}),
            "expected",
        ),
    ] {
        let response = signup("bakery", bad.clone()).await;
        assert_eq!(response.status(), 400, "{bad}");
        assert!(response.text().await.expect("body").contains(named));
    }
    assert_eq!(calls_to(&graph, "/oauth/access_token").await, 0);

    // The code becomes the business's token; the app is subscribed, the number registered.
    let response = signup("bakery", body(Some("good-code"), "7770001")).await;
    let status = response.status();
    let answer = response.text().await.expect("body");
    assert_eq!(status, 201, "{answer}");
    assert!(!answer.contains(BAKERY_TOKEN), "{answer}");
    let answer: Value = serde_json::from_str(&answer).expect("json");
    assert_eq!(answer["tenant"]["name"], "Panadería");
    assert_eq!(answer["tenant"]["numbers"], serde_json::json!(["7770001"]));
    assert_eq!(answer["steps"]["subscribed_apps"]["ok"], true, "{answer}");
    assert_eq!(answer["steps"]["register"]["ok"], true, "{answer}");
    let stored = app.redis.as_ref().expect("own redis").cli(&[
        "HGET",
        &format!("{}:{{tenants}}", app.settings.redis.key_prefix),
        "bakery",
    ]);
    assert!(
        stored.starts_with("v1.") && !stored.contains(BAKERY_TOKEN),
        "{stored}"
    );

    // Its number is answered with its token, once the workers' directory has reloaded (every
    // 200 ms here).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivery = text_delivery("7770001", "15550007001", "wamid.signup.1", "pan de hoy?");
    assert_eq!(app.post_signed(&delivery, APP_SECRET).await.status(), 200);
    let sent = eventually(WAIT, || async {
        let sent = sent_with(&graph, BAKERY_TOKEN).await;
        (!sent.is_empty()).then_some(sent)
    })
    .await
    .expect("the onboarded tenant answers");
    assert_eq!(
        sent_with(&graph, ACCESS_TOKEN).await,
        [],
        "never with the deployment's token"
    );
    assert_eq!(
        (sent[0].0.as_str(), sent[0].1.as_str()),
        ("7770001", "15550007001")
    );

    // A spent code is Meta's 400, named; nothing is stored.
    let response = signup("rival", body(Some("spent-code"), "7770009")).await;
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .expect("body")
        .contains("Meta refused the code"));
    let missing = app
        .http
        .get(format!("{}/admin/tenants/rival", app.address))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status(), 404);
    // A number another tenant has: refused without spending the code.
    let before = calls_to(&graph, "/oauth/access_token").await;
    let response = signup("rival", body(Some("good-code"), "7770001")).await;
    assert_eq!(response.status(), 409);
    assert!(response.text().await.expect("body").contains("bakery's"));
    assert_eq!(calls_to(&graph, "/oauth/access_token").await, before);

    // A second number whose registration fails: stored with its token all the same, 502 naming
    // the step; the same body without the code finishes it.
    let response = signup("bakery", body(None, "7770002")).await;
    assert_eq!(response.status(), 502);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["steps"]["register"]["ok"], false, "{answer}");
    assert!(answer["steps"]["register"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("PIN Mismatch")));
    assert_eq!(
        answer["tenant"]["numbers"],
        serde_json::json!(["7770001", "7770002"])
    );
    let response = signup("bakery", body(None, "7770002")).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["steps"]["register"]["ok"], true, "{answer}");
    // Without a stored token there is nothing to finish with.
    let response = signup("newcomer", body(None, "7770003")).await;
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .expect("body")
        .contains("code is required"));

    let audit: Value = app
        .http
        .get(format!("{}/admin/audit?tenant=bakery", app.address))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["tenant_signup"; 3]);
    app.stop().await;
}

#[tokio::test]
async fn each_tenant_s_events_go_to_its_own_receiver_signed_with_its_own_secret() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let clinic = format!(
        "[tenant]\nnumbers = [\"1110001\"]\n\n[events]\nwebhook_url = \"{}/clinic\"\nsecret = \"clinic-events-secret\"\n",
        receiver.uri()
    );
    let dir = TenantDir::new(&[
        ("clinic", clinic),
        // Its own: none.
        (
            "shop",
            "[tenant]\nnumbers = [\"2220001\"]\n\n[events]\nwebhook_url = \"\"\n".to_string(),
        ),
        // The deployment's receiver, as every setting it does not replace.
        ("spa", "[tenant]\nnumbers = [\"3330001\"]\n".to_string()),
    ]);
    let deploy_url = format!("{}/deploy", receiver.uri());
    let app = spawn(AppOptions::with_env(&[
        ("WABOT_TENANTS__DIR", &dir.path()),
        ("WHATSAPP_PHONE_NUMBER_ID", "9990001"),
        ("WABOT_EVENTS__WEBHOOK_URL", &deploy_url),
        ("WABOT_EVENTS__SECRET", "deployment-events-secret"),
        ("WABOT_EVENTS__RETRY_MAX_MS", "200"),
    ]))
    .await;
    for (i, number) in ["1110001", "2220001", "3330001", "9990001"]
        .iter()
        .enumerate()
    {
        let body = text_delivery(number, "15550008001", &format!("wamid.ev.{i}"), "human");
        assert_eq!(app.post_signed(&body, APP_SECRET).await.status(), 200);
    }
    wait_until_drained(&app.queue().await, WAIT).await;
    // (path, number), each checked against its receiver's secret.
    let delivered = eventually(WAIT, || async {
        let delivered: Vec<(String, String)> = receiver
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|request| {
                let secret = match request.url.path() {
                    "/clinic" => "clinic-events-secret",
                    _ => "deployment-events-secret",
                };
                assert_eq!(
                    request
                        .headers
                        .get("x-wabot-signature-256")
                        .and_then(|v| v.to_str().ok()),
                    Some(wabot::meta::webhook::signature::sign(secret, &request.body).as_str()),
                    "{} is signed with its receiver's secret",
                    request.url.path()
                );
                let event: Value = serde_json::from_slice(&request.body).expect("json");
                assert_eq!(event["type"], "handoff.requested", "{event}");
                (
                    request.url.path().to_string(),
                    event["phone_number_id"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        (delivered.len() >= 3).then_some(delivered)
    })
    .await
    .expect("three events");
    let mut delivered = delivered;
    delivered.sort();
    let pair = |path: &str, number: &str| (path.to_string(), number.to_string());
    assert_eq!(
        delivered,
        [
            pair("/clinic", "1110001"),
            pair("/deploy", "3330001"),
            pair("/deploy", "9990001")
        ]
    );
    // Nothing about the shop's number, which has events off, arrives later either.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        receiver.received_requests().await.unwrap_or_default().len(),
        3
    );
    app.stop().await;
}
