//! The operator console over HTTP: off without a token, sign-in and its cookie, CSRF refusals,
//! escaping and security headers, the lists, the actions, and dead letters. The same flow in a
//! real browser: `console_browser.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wabot::store::conversation::Owner;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    conversation, conversation_ids, eventually, graph_bodies, graph_ok, mount_graph_ok, owner,
    spawn, text_delivery, wait_for_replies, AppOptions, TestApp,
};

pub const PNID: &str = "113948572261094";
pub const TOKEN: &str = "console-admin-token-0123456789";
pub const WAIT: Duration = Duration::from_secs(30);

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A text the user writes now (the 24-hour window is open).
pub fn user_text(user: &str, wamid: &str, body: &str) -> Vec<u8> {
    user_text_to(PNID, user, wamid, body)
}

/// A text the user writes now to business number `number`.
pub fn user_text_to(number: &str, user: &str, wamid: &str, body: &str) -> Vec<u8> {
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": number},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": user}],
            "messages": [{"from": user, "id": wamid, "timestamp": now_secs().to_string(),
                "type": "text", "text": {"body": body}}]
        }}
    ]}]})
    .to_string()
    .into_bytes()
}

/// A delivery status Meta reports for one of our messages.
pub fn status(user: &str, wamid: &str, status: &str, error: Option<(i64, &str)>) -> Vec<u8> {
    let mut entry = serde_json::json!({"id": wamid, "status": status,
        "timestamp": now_secs().to_string(), "recipient_id": user});
    if let Some((code, title)) = error {
        entry["errors"] = serde_json::json!([{"code": code, "title": title}]);
    }
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": PNID},
            "statuses": [entry]
        }}
    ]}]})
    .to_string()
    .into_bytes()
}

pub async fn console_app(graph: Arc<MockServer>, extra: &[(&str, &str)]) -> TestApp {
    let mut extra_env = vec![("ADMIN_TOKEN".to_string(), TOKEN.to_string())];
    extra_env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    spawn(AppOptions {
        graph: Some(graph),
        extra_env,
        max_attempts: 2,
        ..AppOptions::default()
    })
    .await
}

async fn ok_app() -> TestApp {
    let graph = graph_ok().await;
    console_app(graph, &[]).await
}

/// A client that keeps cookies the way a browser would (by name; `Max-Age=0` removes) and does
/// not follow redirects, so each answer can be checked.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: HashMap<String, String>,
    pub set_cookies: Vec<String>,
}

impl Client {
    pub fn new(app: &TestApp) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: app.address.clone(),
            cookies: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let raw = value.to_str().expect("ascii cookie").to_string();
            let pair = raw.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').expect("name=value");
            if raw.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
            self.set_cookies.push(raw);
        }
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .send()
            .await
            .expect("sent");
        self.keep(&response);
        response
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .expect("sent");
        self.keep(&response);
        response
    }

    /// The page at `path` (200) and its CSRF token.
    pub async fn page(&mut self, path: &str) -> (String, String) {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let html = response.text().await.expect("body");
        let csrf = csrf_of(&html);
        (html, csrf)
    }
}

/// The CSRF token a page's forms carry.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .map(|i| i + marker.len())
        .expect("a form with a CSRF token");
    html[start..start + 64].to_string()
}

/// Text as the pages escape it.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Signs in with `token`; returns the answer to the POST.
pub async fn sign_in_with(client: &mut Client, token: &str) -> reqwest::Response {
    let (_, csrf) = client.page("/console/sign-in").await;
    client
        .post("/console/sign-in", &[("csrf", &csrf), ("token", token)])
        .await
}

pub async fn signed_in(app: &TestApp) -> Client {
    let mut client = Client::new(app);
    let response = sign_in_with(&mut client, TOKEN).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/console/conversations");
    client
}

fn conversation_path(user: &str) -> String {
    format!("/console/c/{PNID}/{user}")
}

#[tokio::test]
async fn the_console_does_not_exist_without_an_admin_token() {
    let app = spawn(AppOptions::default()).await;
    let mut client = Client::new(&app);
    for path in [
        "/console",
        "/console/sign-in",
        "/console/conversations",
        "/console/static/console.js",
        "/console/dead-letters",
    ] {
        assert_eq!(client.get(path).await.status(), 404, "{path}");
    }
    let response = client
        .post("/console/sign-in", &[("csrf", "x"), ("token", "")])
        .await;
    assert_eq!(response.status(), 404);
    let response = client
        .http
        .post(format!("{}/console/sign-in", client.base))
        .header("Content-Type", "text/plain")
        .body("not a form")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 404, "not even the form is read");
    // Indistinguishable from a path that never existed.
    let body = client
        .get("/console/sign-in")
        .await
        .text()
        .await
        .expect("body");
    let nothing = client
        .get("/no-such-path")
        .await
        .text()
        .await
        .expect("body");
    assert_eq!(body, nothing);
}

#[tokio::test]
async fn sign_in_gives_a_strict_http_only_session_and_sign_out_ends_it() {
    let app = ok_app().await;
    let mut client = Client::new(&app);

    // Not signed in: pages send the browser to the form, the live endpoint says 401.
    let response = client.get("/console/conversations").await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/console/sign-in");
    assert_eq!(
        client
            .get(&format!("{}/live", conversation_path("1")))
            .await
            .status(),
        401
    );

    let response = sign_in_with(&mut client, TOKEN).await;
    assert_eq!(response.status(), 303);
    let session = client
        .set_cookies
        .iter()
        .find(|c| c.starts_with("wabot_console=") && !c.contains("Max-Age=0"))
        .expect("a session cookie")
        .clone();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    // Gone when the browser closes; how long it lives unused is the session's TTL in Redis.
    assert!(
        !session.contains("Max-Age") && !session.contains("Expires"),
        "{session}"
    );
    // Secure by default even over plain HTTP: whether the browser used TLS is not something the
    // request itself may decide (`admin.secure_cookies`).
    assert!(session.ends_with("; Secure"), "{session}");
    assert!(!session.contains(TOKEN));
    let id = client.cookies["wabot_console"].clone();
    assert_eq!(id.len(), 64);

    // Redis holds the session under a digest of the id, never the id or the token.
    let redis = app.redis.as_ref().expect("own redis");
    let keys = redis.cli(&["--scan", "--pattern", "*console:session:*"]);
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(!keys.contains(&id));
    let stored = redis.cli(&["get", keys.trim()]);
    assert!(!stored.contains(TOKEN) && !stored.contains(&id));
    let ttl: i64 = redis.cli(&["ttl", keys.trim()]).parse().expect("ttl");
    assert!(ttl > 0 && ttl <= 28_800, "{ttl}");

    // The token is in no page.
    let (html, csrf) = client.page("/console/conversations").await;
    assert!(!html.contains(TOKEN));

    // Sign-out deletes the session; the old cookie no longer works.
    let response = client.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/console/sign-in");
    assert!(!client.cookies.contains_key("wabot_console"));
    assert_eq!(
        redis.cli(&["--scan", "--pattern", "*console:session:*"]),
        ""
    );
    client.cookies.insert("wabot_console".into(), id);
    let response = client.get("/console/conversations").await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/console/sign-in");
}

/// With `admin.secure_cookies = false` (a console on plain HTTP), cookies are `Secure` only when
/// a proxy says the browser used TLS. With `admin.hsts_max_age_secs`, console and admin answers
/// carry `Strict-Transport-Security`; by default they do not.
#[tokio::test]
async fn without_secure_cookies_only_a_tls_proxy_makes_them_secure_and_hsts_is_opt_in() {
    let cookie_of = |response: &reqwest::Response| {
        response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let graph = graph_ok().await;
    let app = console_app(
        graph,
        &[
            ("WABOT_ADMIN__SECURE_COOKIES", "false"),
            ("WABOT_ADMIN__HSTS_MAX_AGE_SECS", "31536000"),
        ],
    )
    .await;
    let client = Client::new(&app);
    let sign_in = format!("{}/console/sign-in", client.base);
    let plain = client.http.get(&sign_in).send().await.expect("sent");
    assert!(
        !cookie_of(&plain).contains("Secure"),
        "{}",
        cookie_of(&plain)
    );
    assert_eq!(
        plain
            .headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000")
    );
    let proxied = client
        .http
        .get(&sign_in)
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .expect("sent");
    assert!(
        cookie_of(&proxied).ends_with("; Secure"),
        "{}",
        cookie_of(&proxied)
    );
    let admin = client
        .http
        .get(format!("{}/admin/conversations", client.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(admin.status(), 200);
    assert!(admin.headers().contains_key("strict-transport-security"));

    let default = ok_app().await;
    let response = reqwest::get(format!("{}/console/sign-in", default.address))
        .await
        .expect("sent");
    assert!(!response.headers().contains_key("strict-transport-security"));
}

#[tokio::test]
async fn wrong_tokens_are_refused_and_repeated_failures_lock_the_client_out() {
    let app = ok_app().await;
    let mut client = Client::new(&app);
    let response = sign_in_with(&mut client, "not-the-token").await;
    assert_eq!(response.status(), 401);
    assert!(!client.cookies.contains_key("wabot_console"));
    let html = response.text().await.expect("body");
    assert!(html.contains("Wrong admin token"));

    // Without the form's own token (another site posting the form) nothing is checked.
    let mut stranger = Client::new(&app);
    let response = stranger.post("/console/sign-in", &[("token", TOKEN)]).await;
    assert_eq!(response.status(), 403);
    assert!(!stranger.cookies.contains_key("wabot_console"));

    for _ in 1..10 {
        assert_eq!(sign_in_with(&mut client, "guess").await.status(), 401);
    }
    // Ten failures: even the right token is refused for a while.
    let response = sign_in_with(&mut client, TOKEN).await;
    assert_eq!(response.status(), 429);
    assert!(!client.cookies.contains_key("wabot_console"));
}

#[tokio::test]
async fn posts_without_the_sessions_csrf_token_are_refused() {
    let app = ok_app().await;
    let user = "34600111001";
    app.deliver(&user_text(user, "wamid.csrf.1", "hola")).await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    let mut client = signed_in(&app).await;
    let (_, csrf) = client.page(&conversation_path(user)).await;
    let path = format!("{}/take-over", conversation_path(user));
    assert_eq!(client.post(&path, &[]).await.status(), 403);
    let wrong = "0".repeat(64);
    assert_eq!(client.post(&path, &[("csrf", &wrong)]).await.status(), 403);
    let reply = format!("{}/reply", conversation_path(user));
    assert_eq!(
        client.post(&reply, &[("text", "sneaky")]).await.status(),
        403
    );
    assert_eq!(client.post("/console/sign-out", &[]).await.status(), 403);

    let store = app.conversations().await;
    let (pnid, uid) = conversation_ids(PNID, user);
    assert_eq!(owner(&store, &pnid, &uid).await, Owner::Bot);
    assert!(!graph_bodies(&app.graph)
        .await
        .iter()
        .any(|b| b.to_string().contains("sneaky")));

    // The same form with its token works.
    let response = client.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(owner(&store, &pnid, &uid).await, Owner::Human);
}

#[tokio::test]
async fn hostile_text_is_shown_as_text_under_a_strict_csp() {
    let app = ok_app().await;
    let user = "34600111002";
    let hostile = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    app.deliver(&user_text(user, "wamid.xss.1", hostile)).await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    let mut client = signed_in(&app).await;
    let response = client.get(&conversation_path(user)).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = response.text().await.expect("body");
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"));
    assert!(
        html.contains("&lt;script&gt;alert('x')&lt;/script&gt;"),
        "{html}"
    );
    // The only script is the console's own file, and no element has an inline handler or style.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<script src=\"/console/static/console.js\" defer></script>"));
    assert!(!html.contains(" onerror=\"") && !html.contains(" style=\""));

    // The live fragments are escaped the same way.
    let live: serde_json::Value = client
        .get(&format!("{}/live", conversation_path(user)))
        .await
        .json()
        .await
        .expect("json");
    let fragment = live["history"].as_str().expect("history");
    assert!(!fragment.contains("<script>") && fragment.contains("&lt;script&gt;"));

    // The assets are files of the binary.
    let js = client.get("/console/static/console.js").await;
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/javascript"));
}

#[tokio::test]
async fn the_list_shows_who_waits_for_a_person_first_and_searches_by_phone() {
    let app = ok_app().await;
    let (calm, waiting) = ("34600222001", "34600333002");
    app.deliver(&user_text(calm, "wamid.list.1", "hola")).await;
    app.deliver(&user_text(waiting, "wamid.list.2", "/agent"))
        .await;
    let store = app.conversations().await;
    let (pnid, uid) = conversation_ids(PNID, waiting);
    eventually(WAIT, || async {
        let view = store.get(&pnid, &uid).await.ok()??;
        (view.handoff.owner == Owner::Human).then_some(())
    })
    .await
    .expect("the user is with a person");
    wait_for_replies(&app.graph, 2, WAIT).await;

    let mut client = signed_in(&app).await;
    let (html, _) = client.page("/console/conversations").await;
    let waiting_at = html.find("id=\"waiting\"").expect("a waiting section");
    let active_at = html.find("id=\"active\"").expect("an active section");
    assert!(waiting_at < active_at);
    let waiting_section = &html[waiting_at..active_at];
    assert!(
        waiting_section.contains(&format!("+{waiting}")),
        "{waiting_section}"
    );
    assert!(
        waiting_section.contains("waiting "),
        "how long: {waiting_section}"
    );
    assert!(waiting_section.contains("left"));
    assert!(waiting_section.contains("the user asked for a person"));
    assert!(!waiting_section.contains(calm));
    assert!(html[active_at..].contains(&format!("+{calm}")));
    assert!(!html[active_at..].contains(waiting), "listed once");

    // Search by a prefix and by the whole number (with or without +).
    let (found, _) = client.page("/console/conversations?q=346002").await;
    assert!(found.contains(calm) && !found.contains(waiting), "{found}");
    let (found, _) = client
        .page(&format!("/console/conversations?q=%2B{waiting}"))
        .await;
    assert!(found.contains(waiting) && !found.contains(calm));
    let (found, _) = client.page("/console/conversations?q=999").await;
    assert!(!found.contains(waiting) && !found.contains(calm));
    assert_eq!(
        client.get("/console/conversations?q=*").await.status(),
        400,
        "globs are not searches"
    );
    assert_eq!(
        client.get("/console/conversations?cursor=x").await.status(),
        400
    );
}

#[tokio::test]
async fn an_operator_takes_over_replies_and_gives_back() {
    let app = ok_app().await;
    let user = "34600444001";
    app.deliver(&user_text(user, "wamid.op.1", "hola")).await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    let store = app.conversations().await;
    let (pnid, uid) = conversation_ids(PNID, user);
    let mut client = signed_in(&app).await;
    let page = conversation_path(user);

    let (html, csrf) = client.page(&page).await;
    assert!(html.contains("24-hour window open"));
    assert!(html.contains("id=\"take-over\""));
    let response = client
        .post(&format!("{page}/take-over"), &[("csrf", &csrf)])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("{page}?done=taken"));
    let view = conversation(&store, &pnid, &uid).await;
    assert_eq!(view.handoff.owner, Owner::Human);
    assert_eq!(view.handoff.info.as_ref().expect("info")["by"], "console");

    let (html, csrf) = client.page(&format!("{page}?done=taken")).await;
    assert!(html.contains("id=\"give-back\""));
    assert!(html.contains("You have the conversation"));
    let key = {
        let marker = "name=\"key\" value=\"";
        let at = html.find(marker).expect("a reply key") + marker.len();
        html[at..at + 64].to_string()
    };
    let reply = format!("{page}/reply");
    let form = [
        ("csrf", csrf.as_str()),
        ("key", &key),
        ("text", "Soy Marta, te ayudo"),
    ];
    assert_eq!(client.post(&reply, &form).await.status(), 303);
    // A resubmitted form (reload, back) is the same message.
    assert_eq!(client.post(&reply, &form).await.status(), 303);
    let got = wait_for_replies(&app.graph, 2, WAIT).await;
    assert_eq!(got[1].text, "Soy Marta, te ayudo");
    assert_eq!(got[1].to, format!("+{user}"));
    let view = eventually(WAIT, || async {
        let view = store.get(&pnid, &uid).await.ok()??;
        view.turns
            .iter()
            .any(|t| t.text == "Soy Marta, te ayudo")
            .then_some(view)
    })
    .await
    .expect("the operator turn is recorded");
    assert_eq!(
        view.turns
            .iter()
            .filter(|t| t.role == wabot::store::conversation::Role::Operator)
            .count(),
        1
    );
    let live: serde_json::Value = client
        .get(&format!("{page}/live"))
        .await
        .json()
        .await
        .expect("json");
    assert!(live["history"]
        .as_str()
        .expect("history")
        .contains("Soy Marta, te ayudo"));
    assert_eq!(live["owner"], "human");

    let response = client
        .post(&format!("{page}/give-back"), &[("csrf", &csrf)])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(owner(&store, &pnid, &uid).await, Owner::Bot);
    assert_eq!(replies_total(&app).await, 2, "nothing more was sent");

    // Unknown conversations are 404 pages.
    assert_eq!(
        client.get(&conversation_path("34699999999")).await.status(),
        404
    );
    assert_eq!(client.get("/console/c/x!/y").await.status(), 404);
    assert_eq!(client.get("/console/nothing-here").await.status(), 404);
}

async fn replies_total(app: &TestApp) -> usize {
    crate::helpers::replies(&app.graph).await.len()
}

#[tokio::test]
async fn a_closed_window_disables_the_reply_and_offers_the_template() {
    let graph = graph_ok().await;
    let app = console_app(
        graph,
        &[
            ("WABOT_WHATSAPP__REENGAGEMENT_TEMPLATE__NAME", "follow_up"),
            ("WABOT_WHATSAPP__REENGAGEMENT_TEMPLATE__LANGUAGE", "es"),
        ],
    )
    .await;
    let user = "34600555001";
    // An old timestamp: the user wrote long ago.
    app.deliver(&text_delivery(PNID, user, "wamid.old.1", "hola"))
        .await;
    wait_for_replies(&app.graph, 1, WAIT).await;
    let mut client = signed_in(&app).await;
    let page = conversation_path(user);
    let (html, csrf) = client.page(&page).await;
    assert!(html.contains("24-hour window closed"));
    assert!(
        html.contains("id=\"reply-disabled\""),
        "the reason is shown"
    );
    assert!(html.contains("textarea id=\"reply-text\" name=\"text\" rows=\"3\" disabled"));
    assert!(html.contains("follow_up"));
    let response = client
        .post(
            &format!("{page}/reply"),
            &[("csrf", &csrf), ("text", "hola?")],
        )
        .await;
    assert_eq!(response.status(), 409);

    let response = client
        .post(&format!("{page}/template"), &[("csrf", &csrf)])
        .await;
    assert_eq!(response.status(), 303);
    let template = eventually(WAIT, || async {
        graph_bodies(&app.graph)
            .await
            .into_iter()
            .find(|b| b["type"] == "template")
    })
    .await
    .expect("the template is sent");
    assert_eq!(template["template"]["name"], "follow_up");
    assert_eq!(template["template"]["language"]["code"], "es");
}

#[tokio::test]
async fn dead_letters_are_listed_with_their_error_and_replayed() {
    let graph = Arc::new(MockServer::start().await);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&graph)
        .await;
    let app = console_app(graph, &[]).await;
    let user = "34600666001";
    app.deliver(&user_text(user, "wamid.dead.1", "<b>never</b> delivered"))
        .await;
    let queue = app.queue().await;
    let letter = crate::helpers::wait_for_dead_letters(&queue, WAIT).await[0].clone();

    let mut client = signed_in(&app).await;
    let (html, csrf) = client.page("/console/dead-letters").await;
    assert!(html.contains(&letter.public_id()));
    assert!(!letter.error.is_empty());
    assert!(html.contains(&escaped(&letter.error)), "the error: {html}");
    assert!(
        html.contains("&lt;b&gt;never&lt;/b&gt;"),
        "the message, escaped"
    );
    assert!(!html.contains("<b>never"));

    // A replay without the token is refused; with it, the message goes back and is answered.
    let path = format!("/console/dead-letters/{}/replay", letter.public_id());
    assert_eq!(client.post(&path, &[]).await.status(), 403);
    app.graph.reset().await;
    mount_graph_ok(&app.graph).await;
    let response = client.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/console/dead-letters?done=replayed");
    let got = wait_for_replies(&app.graph, 1, WAIT).await;
    assert_eq!(got[0].text, "echo: <b>never</b> delivered");
    assert_eq!(client.post(&path, &[("csrf", &csrf)]).await.status(), 409);
    let (html, _) = client.page("/console/dead-letters?done=replayed").await;
    assert!(html.contains("No dead letters."));
    assert_eq!(
        client.get("/console/dead-letters/x/replay").await.status(),
        404
    );
    assert_eq!(
        client
            .post("/console/dead-letters/99999:1-0/replay", &[("csrf", &csrf)])
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn each_turn_shows_its_role_kind_and_delivery_tick_with_the_error() {
    let app = ok_app().await;
    let user = "34600888001";
    for (i, text) in ["uno", "dos", "tres", "cuatro"].iter().enumerate() {
        app.deliver(&user_text(user, &format!("wamid.tick.{i}"), text))
            .await;
    }
    let image = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1",
        "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": PNID},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": user}],
            "messages": [{"from": user, "id": "wamid.tick.img", "timestamp": now_secs().to_string(),
                "type": "image", "image": {"id": "media-1", "mime_type": "image/jpeg", "caption": "mi foto"}}]
        }}]}]})
    .to_string()
    .into_bytes();
    app.deliver(&image).await;
    wait_for_replies(&app.graph, 4, WAIT).await;
    let store = app.conversations().await;
    let (pnid, uid) = conversation_ids(PNID, user);
    let view = eventually(WAIT, || async {
        let view = store.get(&pnid, &uid).await.ok()??;
        let recorded = crate::helpers::sent_wamids(&app.graph, &view);
        (recorded.len() >= 4).then_some(recorded)
    })
    .await
    .expect("four replies recorded");
    let sent = view;
    app.deliver(&status(user, &sent[0], "sent", None)).await;
    app.deliver(&status(user, &sent[1], "delivered", None))
        .await;
    app.deliver(&status(user, &sent[2], "read", None)).await;
    app.deliver(&status(
        user,
        &sent[3],
        "failed",
        Some((131026, "Message undeliverable")),
    ))
    .await;
    eventually(WAIT, || async {
        let view = store.get(&pnid, &uid).await.ok()??;
        view.turns
            .iter()
            .any(|t| t.delivery.as_deref() == Some("failed"))
            .then_some(())
    })
    .await
    .expect("the failure is recorded");
    let mut client = signed_in(&app).await;
    let (html, _) = client.page(&conversation_path(user)).await;
    for expected in [
        "class=\"turn user\"",
        "class=\"turn bot\"",
        "✓ sent",
        "✓✓ delivered",
        "class=\"tick read\"",
        "✗ failed",
        "131026: Message undeliverable",
        "<span class=\"kind\">image</span>",
    ] {
        assert!(html.contains(expected), "{expected} in {html}");
    }
}

#[tokio::test]
async fn parallel_wrong_sign_ins_get_no_more_guesses_than_the_limit() {
    let app = ok_app().await;
    let mut client = Client::new(&app);
    let (_, csrf) = client.page("/console/sign-in").await;
    let cookie = client
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let attempts = (0..40).map(|_| {
        client
            .http
            .post(format!("{}/console/sign-in", client.base))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str()), ("token", "guess")])
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("answered").status().as_u16())
        .collect();
    let compared = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    // Each attempt is counted before its token is compared: 10 guesses, however parallel.
    assert_eq!((compared, refused), (10, 30), "{statuses:?}");
}

/// The one console session's key and stored value.
fn stored_session(app: &TestApp) -> (String, String) {
    let redis = app.redis.as_ref().expect("redis");
    let keys = redis.cli(&["KEYS", "*:console:session:*"]);
    let key = keys.lines().next().expect("a session").trim().to_string();
    let value = redis.cli(&["GET", &key]);
    (key, value.trim().to_string())
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_and_with_another_admin_token() {
    let app = ok_app().await;
    let redis = app.redis.as_ref().expect("redis");
    for tamper in ["created", "fingerprint"] {
        let mut client = signed_in(&app).await;
        assert_eq!(client.get("/console/conversations").await.status(), 200);
        let (key, value) = stored_session(&app);
        let fields: Vec<&str> = value.splitn(4, ' ').collect();
        assert_eq!(fields[0], "v1", "{value}");
        // As if it had been made 13 h ago (admin.session_max_secs is 12 h), or with a token
        // that is no longer the admin token.
        let changed = match tamper {
            "created" => format!(
                "v1 {} {} {}",
                fields[1].parse::<i64>().unwrap_or(0) - 13 * 3600,
                fields[2],
                fields[3]
            ),
            _ => format!("v1 {} 0000000000000000 {}", fields[1], fields[3]),
        };
        redis.cli(&["SET", &key, &changed, "EX", "3600"]);
        let response = client.get("/console/conversations").await;
        assert_ne!(response.status(), 200, "{tamper}: the session still works");
        assert_eq!(
            redis.cli(&["EXISTS", &key]).trim(),
            "0",
            "{tamper}: not deleted"
        );
    }
}

/// The waiting list is paged: the count is of all of them, a page shows at most
/// `WAITING_PAGE` (one summary read each), and "More waiting" leads to the rest.
#[tokio::test]
async fn the_waiting_list_is_paged_with_the_count_of_all() {
    let app = ok_app().await;
    let store = app.conversations().await;
    let page = wabot::http::console::handlers::WAITING_PAGE;
    let total = page + 7;
    let until = wabot::domain::clock::unix_ms() + 3_600_000;
    let pnid = wabot::domain::PhoneNumberId::parse(PNID).expect("pnid");
    for n in 0..total {
        let user = wabot::domain::UserId::parse(&format!("3460099{n:04}")).expect("user");
        store
            .take_over(
                &pnid,
                &user,
                until + n as i64,
                &serde_json::json!({"reason": "operator"}),
                None,
            )
            .await
            .expect("taken over");
    }
    let mut client = signed_in(&app).await;
    let listed = |html: &str| html.matches("<li class=\"waiting\"").count();
    let (html, _) = client.page("/console/conversations").await;
    assert!(
        html.contains(&format!("<span class=\"count\">{total}</span>")),
        "the count is of all"
    );
    assert_eq!(listed(&html), page);
    let next = format!("/console/conversations?waiting_from={page}");
    assert!(html.contains(&next), "a link to the rest");
    let (rest, _) = client.page(&next).await;
    assert_eq!(listed(&rest), 7);
    assert!(!rest.contains("waiting_from="), "no further page");
    // Together they show every one of them, each on one page only.
    for n in 0..total {
        let phone = format!("+3460099{n:04}");
        assert!(html.contains(&phone) != rest.contains(&phone), "{phone}");
    }
}
