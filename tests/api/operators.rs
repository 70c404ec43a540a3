//! Named operators: accounts made by the admin API and the CLI (only an Argon2id hash kept),
//! the console signed in with them, their names on takeovers, replies and assignments, their
//! role keeping operators from dead letters, and a changed password or a removed account
//! ending their sessions.

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};

use crate::console::{console_app, user_text, Client, TOKEN};
use crate::helpers::{graph_ok, wait_until_drained, TestApp};

const PNID: &str = "113948572261094";
const WAIT: Duration = Duration::from_secs(30);

pub async fn put(app: &TestApp, name: &str, body: Value) -> reqwest::Response {
    app.http
        .put(format!("{}/admin/operators/{name}", app.address))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("sent")
}

pub async fn sign_in(app: &TestApp, name: &str, password: &str) -> (Client, reqwest::Response) {
    let mut client = Client::new(app);
    let (_, csrf) = client.page("/console/sign-in").await;
    let response = client
        .post(
            "/console/sign-in",
            &[("csrf", &csrf), ("name", name), ("password", password)],
        )
        .await;
    (client, response)
}

#[tokio::test]
async fn named_operators_sign_in_and_their_names_follow_what_they_do() {
    let graph = graph_ok().await;
    let app = console_app(graph.clone(), &[]).await;
    // Accounts through the admin API; bad ones are refused with the reason.
    assert_eq!(
        put(
            &app,
            "Marta",
            json!({"role": "operator", "password": "marta's long password"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        put(
            &app,
            "Luis",
            json!({"role": "operator", "password": "luis's long password"})
        )
        .await
        .status(),
        200
    );
    for (name, body) in [
        ("Short", json!({"role": "operator", "password": "short"})),
        (
            "Bad%3Cname%3E",
            json!({"role": "operator", "password": "long enough password"}),
        ),
        (
            "Role",
            json!({"role": "owner", "password": "long enough password"}),
        ),
    ] {
        assert_eq!(put(&app, name, body).await.status(), 400, "{name}");
    }
    let listed: Value = app
        .http
        .get(format!("{}/admin/operators", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["operators"]
            .as_array()
            .expect("list")
            .iter()
            .map(|o| (
                o["name"].as_str().unwrap_or_default(),
                o["role"].as_str().unwrap_or_default()
            ))
            .collect::<Vec<_>>(),
        [("Luis", "operator"), ("Marta", "operator")]
    );
    assert!(!listed.to_string().contains("argon2"), "no hash is shown");
    // The CLI makes an admin, the password from standard input.
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_wabot"))
        .args(["operators", "add", "Ana", "--role", "admin"])
        .env_clear()
        .env("APP_CONFIG_DIR", "/nonexistent-wabot-test-config")
        .env("WHATSAPP_APP_SECRET", crate::helpers::APP_SECRET)
        .env("WHATSAPP_VERIFY_TOKEN", "verify")
        .env("WHATSAPP_ACCESS_TOKEN", "token")
        .env("REDIS_URL", &app.settings.redis.url)
        .env("WABOT_REDIS__KEY_PREFIX", &app.settings.redis.key_prefix)
        .env("RUST_LOG", "off")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wabot runs");
    cli.stdin
        .take()
        .expect("stdin")
        .write_all(b"ana's long password\n")
        .expect("written");
    let made = cli.wait_with_output().expect("finished");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&made.stdout),
        "Ana\tadmin\tall tenants\n"
    );

    // Wrong passwords and unknown names get the same answer.
    for (name, password) in [
        ("Marta", "not her password"),
        ("Nobody", "marta's long password"),
    ] {
        let (_, refused) = sign_in(&app, name, password).await;
        assert_eq!(refused.status(), 401, "{name}");
        assert!(refused
            .text()
            .await
            .unwrap_or_default()
            .contains("Wrong name or password."));
    }
    let (mut marta, signed) = sign_in(&app, "Marta", "marta's long password").await;
    assert_eq!(signed.status(), 303);
    // An operator is kept from the dead letters; an admin account is not.
    assert_eq!(marta.get("/console/dead-letters").await.status(), 403);
    let (mut ana, _) = sign_in(&app, "Ana", "ana's long password").await;
    assert_eq!(ana.get("/console/dead-letters").await.status(), 200);

    let user = "4915000000801";
    app.deliver(&user_text(user, "wamid.op1", "hello")).await;
    crate::helpers::wait_for_replies(&graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let page = format!("/console/c/{PNID}/{user}");
    let (html, csrf) = marta.page(&page).await;
    assert!(
        html.contains("<option value=\"Luis\">"),
        "colleagues to assign to"
    );
    let taken = marta
        .post(&format!("{page}/take-over"), &[("csrf", &csrf)])
        .await;
    assert_eq!(taken.status(), 303);
    let (html, csrf) = marta.page(&page).await;
    assert!(html.contains("Marta has it for"), "{html}");
    let replied = marta
        .post(
            &format!("{page}/reply"),
            &[("csrf", &csrf), ("text", "Marta here"), ("key", "marta-1")],
        )
        .await;
    assert_eq!(replied.status(), 303);
    crate::helpers::wait_for_replies(&graph, 2, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let (pnid, uid) = crate::helpers::conversation_ids(PNID, user);
    let view = crate::helpers::conversation(&app.conversations().await, &pnid, &uid).await;
    let said = view
        .turns
        .iter()
        .find(|t| t.text == "Marta here")
        .expect("kept");
    assert_eq!(said.by.as_deref(), Some("Marta"));
    let (html, csrf) = marta.page(&page).await;
    assert!(
        html.contains("<span class=\"by\">Marta</span>"),
        "the console names her"
    );
    // Assigned to a colleague: Luis has it.
    let assigned = marta
        .post(
            &format!("{page}/assign"),
            &[("csrf", &csrf), ("to", "Luis")],
        )
        .await;
    assert_eq!(assigned.status(), 303);
    let (html, csrf) = marta.page(&page).await;
    assert!(html.contains("Luis has it for"), "{html}");
    let nobody = marta
        .post(
            &format!("{page}/assign"),
            &[("csrf", &csrf), ("to", "Nobody")],
        )
        .await;
    assert_eq!(nobody.status(), 400);
    let view = crate::helpers::conversation(&app.conversations().await, &pnid, &uid).await;
    let info = view.handoff.info.expect("handoff info");
    assert_eq!(
        (info["by"].as_str(), info["assigned_by"].as_str()),
        (Some("Luis"), Some("Marta"))
    );

    // The admin API's operator messages name their writer too.
    let queued = app
        .http
        .post(format!(
            "{}/admin/conversations/{PNID}/{user}/messages",
            app.address
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"text": "Luis here", "by": "Luis"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(queued.status(), 202);
    let refused = app
        .http
        .post(format!(
            "{}/admin/conversations/{PNID}/{user}/messages",
            app.address
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"text": "x", "by": "<script>"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 400);
    crate::helpers::wait_for_replies(&graph, 3, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let view = crate::helpers::conversation(&app.conversations().await, &pnid, &uid).await;
    let luis = view
        .turns
        .iter()
        .find(|t| t.text == "Luis here")
        .expect("kept");
    assert_eq!(luis.by.as_deref(), Some("Luis"));

    // A new password ends her sessions; a removed account ends its own.
    assert_eq!(
        put(
            &app,
            "Marta",
            json!({"role": "operator", "password": "marta's new password"})
        )
        .await
        .status(),
        200
    );
    let ended = marta.get("/console/conversations").await;
    assert_eq!(ended.status(), 303, "signed out by the new password");
    assert_eq!(ana.get("/console/conversations").await.status(), 200);
    let removed = app
        .http
        .delete(format!("{}/admin/operators/Ana", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(removed.status(), 204);
    assert_eq!(ana.get("/console/conversations").await.status(), 303);
    // The admin token still signs in, as before.
    let mut admin = crate::console::signed_in(&app).await;
    assert_eq!(admin.get("/console/dead-letters").await.status(), 200);
}
