//! The operator console in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, Debian's `chromium` and `chromium-driver`; `scripts/test` installs them). No
//! skipping: without them this test fails and says how to install them.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use wabot::store::conversation::{Owner, Role};

use super::console::{console_app, status, user_text, PNID, TOKEN, WAIT};
use crate::helpers::{conversation_ids, eventually, free_port, graph_ok, owner, wait_for_replies};

/// A `chromedriver` on a free port, killed when dropped.
struct ChromeDriver {
    port: u16,
    child: Child,
    profile: PathBuf,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start `chromedriver` ({e}). The console's browser test needs \
                     Chromium and its driver: `apt-get install -y chromium chromium-driver` \
                     (scripts/test does this when they are missing)."
                )
            });
        let profile = std::env::temp_dir().join(format!("wabot-chromium-{}", uuid::Uuid::new_v4()));
        let driver = ChromeDriver {
            port,
            child,
            profile,
        };
        for _ in 0..500 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return driver;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("chromedriver did not listen on port {port} within 10 s");
    }

    async fn browser(&self) -> Client {
        let mut args = vec![
            "--headless=new".to_string(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            // The machine has no network beyond localhost: no background connections.
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            // A phone's width: the layout must work there.
            "--window-size=430,1000".into(),
            format!("--user-data-dir={}", self.profile.display()),
        ];
        if running_as_root() {
            args.push("--no-sandbox".into());
        }
        let mut options = serde_json::json!({ "args": args });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = "/usr/bin/chromium".into();
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session through chromedriver")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Waits for an element, failing the test with what was looked for.
async fn element(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` within {WAIT:?}: {e}"))
}

async fn click(browser: &Client, css: &str) {
    element(browser, css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
}

/// Whether some `css` element's text contains `text`.
async fn shows(browser: &Client, css: &str, text: &str) -> bool {
    let Ok(found) = browser.find_all(Locator::Css(css)).await else {
        return false;
    };
    for element in found {
        if element.text().await.is_ok_and(|t| t.contains(text)) {
            return true;
        }
    }
    false
}

async fn wait_until_shown(browser: &Client, css: &str, text: &str) {
    let shown = eventually(WAIT, || async {
        shows(browser, css, text).await.then_some(())
    })
    .await;
    assert!(shown.is_some(), "`{css}` never showed {text:?}");
}

/// Saves what the browser shows as `target/console/<name>` (`conversation.png` is the one in
/// the README: `docs/console.png`).
async fn save_screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console");
    std::fs::create_dir_all(&dir).expect("target dir");
    std::fs::write(dir.join(name), &png).expect("screenshot written");
}

#[tokio::test]
async fn an_operator_uses_the_console_in_a_real_browser() {
    let graph = graph_ok().await;
    let app = console_app(graph, &[]).await;
    let user = "34600777001";
    let hostile = "<script>window.pwned = 1</script>¿Tienen envío a Canarias?";
    app.deliver(&user_text(user, "wamid.browser.1", "hola"))
        .await;
    app.deliver(&user_text(user, "wamid.browser.2", hostile))
        .await;
    wait_for_replies(&app.graph, 2, WAIT).await;

    let driver = ChromeDriver::start();
    let browser = driver.browser().await;
    let base = app.address.clone();

    // Sign in with the token.
    browser
        .goto(&format!("{base}/console"))
        .await
        .expect("opens the console");
    element(&browser, "#token")
        .await
        .send_keys(TOKEN)
        .await
        .expect("types the token");
    click(&browser, "#sign-in").await;
    element(&browser, "#active").await;
    let url = browser.current_url().await.expect("url");
    assert_eq!(url.path(), "/console/conversations");
    assert!(!url.as_str().contains(TOKEN));

    // The conversation the signed webhook created is listed; open it.
    click(&browser, &format!("a[href=\"/console/c/{PNID}/{user}\"]")).await;
    element(&browser, "#history").await;
    assert!(
        shows(&browser, "li.turn.user p.text", hostile).await,
        "the user's <script> shows as text"
    );
    let pwned = browser
        .execute("return window.pwned === undefined;", vec![])
        .await
        .expect("script runs");
    assert_eq!(
        pwned,
        serde_json::json!(true),
        "the user's script never ran"
    );
    assert!(shows(&browser, "#status", "24-hour window open").await);

    // Take over.
    click(&browser, "#take-over").await;
    element(&browser, "#give-back").await;
    let store = app.conversations().await;
    let (pnid, uid) = conversation_ids(PNID, user);
    assert_eq!(owner(&store, &pnid, &uid).await, Owner::Human);

    // The list now shows the conversation as waiting for a person, first.
    click(&browser, "nav a[href=\"/console/conversations\"]").await;
    element(&browser, "#waiting li.waiting").await;
    assert!(shows(&browser, "#waiting li.waiting", &format!("+{user}")).await);
    assert!(shows(&browser, "#waiting li.waiting", "waiting").await);
    save_screenshot(&browser, "conversations.png").await;
    click(
        &browser,
        &format!("#waiting a[href=\"/console/c/{PNID}/{user}\"]"),
    )
    .await;
    element(&browser, "#give-back").await;

    // Reply: the fake Graph API receives it, the page shows it.
    element(&browser, "#reply-text")
        .await
        .send_keys("Sí, enviamos a Canarias en 48 h. Soy Marta.")
        .await
        .expect("types the reply");
    click(&browser, "#send-reply").await;
    let got = wait_for_replies(&app.graph, 3, WAIT).await;
    assert_eq!(got[2].text, "Sí, enviamos a Canarias en 48 h. Soy Marta.");
    assert_eq!(got[2].to, format!("+{user}"));
    wait_until_shown(&browser, "li.turn.operator p.text", "Soy Marta").await;

    // A new message from the user appears without reloading the page.
    let marker = browser
        .execute("window.notReloaded = true; return true;", vec![])
        .await
        .expect("script runs");
    assert_eq!(marker, serde_json::json!(true));
    app.deliver(&user_text(user, "wamid.browser.3", "¡Genial, gracias!"))
        .await;
    wait_until_shown(&browser, "li.turn.user p.text", "¡Genial, gracias!").await;
    let same_page = browser
        .execute("return window.notReloaded === true;", vec![])
        .await
        .expect("script runs");
    assert_eq!(
        same_page,
        serde_json::json!(true),
        "shown by the live update"
    );
    // While a person has it, the bot did not answer.
    assert_eq!(crate::helpers::replies(&app.graph).await.len(), 3);
    // Meta reports delivery states; the ticks change in place.
    let view = crate::helpers::conversation(&store, &pnid, &uid).await;
    let ours = crate::helpers::sent_wamids(&app.graph, &view);
    assert_eq!(ours.len(), 3, "two bot replies and the operator's");
    app.deliver(&status(user, &ours[0], "read", None)).await;
    app.deliver(&status(user, &ours[1], "delivered", None))
        .await;
    app.deliver(&status(user, &ours[2], "sent", None)).await;
    wait_until_shown(&browser, "li.turn.bot .delivery", "read").await;
    wait_until_shown(&browser, "li.turn.bot .delivery", "delivered").await;
    wait_until_shown(&browser, "li.turn.operator .delivery", "sent").await;

    // The screenshot of the conversation page, for people (and the README): the whole page.
    browser
        .set_window_size(430, 1300)
        .await
        .expect("resizes the window");
    browser
        .execute("window.scrollTo(0, 0); return true;", vec![])
        .await
        .expect("scrolls");
    save_screenshot(&browser, "conversation.png").await;

    // A POST without the CSRF token (same origin, with the session cookie) is refused.
    let status = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(location.pathname + '/give-back', {method: 'POST',
                 headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: ''})
               .then(r => done(r.status), () => done(-1));",
            vec![],
        )
        .await
        .expect("fetch runs");
    assert_eq!(status, serde_json::json!(403));
    assert_eq!(owner(&store, &pnid, &uid).await, Owner::Human);

    // Give back to the bot.
    click(&browser, "#give-back").await;
    element(&browser, "#take-over").await;
    let view = crate::helpers::conversation(&store, &pnid, &uid).await;
    assert_eq!(view.handoff.owner, Owner::Bot);
    assert!(view
        .turns
        .iter()
        .any(|t| t.role == Role::Operator && t.text.contains("Soy Marta")));

    // Sign out: back at the form, the console closed.
    click(&browser, "#sign-out").await;
    element(&browser, "#token").await;
    browser
        .goto(&format!("{base}/console/conversations"))
        .await
        .expect("navigates");
    element(&browser, "#token").await;

    browser.close().await.expect("closes the browser");
}
