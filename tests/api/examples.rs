//! The backends under `examples/` run against wabot: the FastAPI one when a Python with fastapi
//! and uvicorn is there (`WABOT_EXAMPLE_PYTHON`, default `python3`), the Node one when `node` is.
//! Each is skipped with a printed note otherwise.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{eventually, free_port, graph_bodies, text_delivery, TestApp, APP_SECRET};

const PNID: &str = "113948572261094";
const SECRET: &str = "example-backend-secret";
const WAIT: Duration = Duration::from_secs(30);

/// A child process killed when dropped.
struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn available(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn examples_dir(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn listening(port: u16) -> bool {
    eventually(WAIT, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await
    .is_some()
}

/// wabot with the http responder pointing at `url`; "hola", then a tap on the "human" button.
async fn converse_with(url: &str) {
    let app: TestApp = crate::responders::app_with(&[
        ("RESPONDER", "http"),
        ("HTTP_RESPONDER_URL", url),
        ("HTTP_RESPONDER_SECRET", SECRET),
    ])
    .await;
    let user = "34600000099";
    assert_eq!(
        app.post_signed(&text_delivery(PNID, user, "wamid.ex1", "hola"), APP_SECRET)
            .await
            .status(),
        200
    );
    let sent = eventually(WAIT, || async {
        let got = graph_bodies(&app.graph).await;
        (got.len() >= 2).then_some(got)
    })
    .await
    .expect("two sends from the example's answer");
    assert_eq!(sent[0]["text"]["body"], "Hola Tester, recibí: hola");
    assert_eq!(sent[1]["interactive"]["type"], "button");
    assert_eq!(
        sent[1]["interactive"]["action"]["buttons"][1]["reply"]["id"],
        "human"
    );
}

#[tokio::test]
async fn the_fastapi_example_answers_through_wabot() {
    let python = std::env::var("WABOT_EXAMPLE_PYTHON").unwrap_or_else(|_| "python3".into());
    if !available(&python, &["-c", "import fastapi, uvicorn"]) {
        println!(
            "skipped: `{python}` without fastapi and uvicorn (pip install -r examples/fastapi/requirements.txt, \
             or point WABOT_EXAMPLE_PYTHON at a Python that has them)"
        );
        return;
    }
    let port = free_port();
    let child = Command::new(&python)
        .args(["-m", "uvicorn", "main:app", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--log-level", "warning"])
        .current_dir(examples_dir("fastapi"))
        .env("WABOT_SECRET", SECRET)
        // The source tree stays as it is.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(Stdio::null())
        .spawn()
        .expect("uvicorn starts");
    let _backend = Backend(child);
    assert!(listening(port).await, "the FastAPI example listens");
    converse_with(&format!("http://127.0.0.1:{port}/wabot")).await;
}

#[tokio::test]
async fn the_node_example_answers_through_wabot() {
    if !available("node", &["--version"]) {
        println!("skipped: no `node` on PATH");
        return;
    }
    let port = free_port();
    let child = Command::new("node")
        .arg("server.js")
        .current_dir(examples_dir("node"))
        .env("WABOT_SECRET", SECRET)
        .env("PORT", port.to_string())
        .spawn()
        .expect("node starts");
    let _backend = Backend(child);
    assert!(listening(port).await, "the Node example listens");
    converse_with(&format!("http://127.0.0.1:{port}/wabot")).await;
}
