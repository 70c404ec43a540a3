//! A stand-in for Meta's Graph API: an in-process actix-web server on 127.0.0.1:0 that records
//! every text message the workers send (recipient, body, arrival time) and answers 200 with a
//! fresh outbound wamid, like `POST /{version}/{phone_number_id}/messages` does.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::dev::ServerHandle;
use actix_web::http::header::ContentType;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;

/// A text message that reached the fake Graph API.
#[derive(Debug, Clone)]
pub struct Reply {
    pub to: String,
    pub text: String,
    pub at: Instant,
}

/// Everything received, in arrival order.
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
    unique: AtomicUsize,
    total: AtomicUsize,
    other_requests: AtomicUsize,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Inner {
    replies: Vec<Reply>,
    texts: HashSet<String>,
}

impl Recorder {
    fn record(&self, to: String, text: String, at: Instant) {
        let mut inner = match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        if inner.texts.insert(text.clone()) {
            self.unique.fetch_add(1, Ordering::Relaxed);
        }
        inner.replies.push(Reply { to, text, at });
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Distinct reply texts so far.
    pub fn unique(&self) -> usize {
        self.unique.load(Ordering::Relaxed)
    }

    /// Text replies so far, duplicates included.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Requests that carried no text message (read receipts, typing indicators, garbage).
    pub fn other_requests(&self) -> usize {
        self.other_requests.load(Ordering::Relaxed)
    }

    /// All text replies received so far, in arrival order.
    pub fn replies(&self) -> Vec<Reply> {
        match self.inner.lock() {
            Ok(inner) => inner.replies.clone(),
            Err(poisoned) => poisoned.into_inner().replies.clone(),
        }
    }
}

/// The running fake server.
pub struct FakeGraph {
    pub url: String,
    pub recorder: Arc<Recorder>,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl FakeGraph {
    /// Binds 127.0.0.1:0 and starts one actix worker thread.
    pub fn start() -> anyhow::Result<FakeGraph> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the fake Graph API")?;
        let port = listener.local_addr()?.port();
        let recorder = Arc::new(Recorder::default());
        let data = web::Data::from(recorder.clone());
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).route(
                "/{version}/{phone_number_id}/messages",
                web::post().to(messages),
            )
        })
        .workers(1)
        .disable_signals()
        // HTTP/1.1, or h2c with prior knowledge when the app runs with `whatsapp.http2`.
        .listen_auto_h2c(listener)
        .context("listening for the fake Graph API")?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        Ok(FakeGraph {
            url: format!("http://127.0.0.1:{port}"),
            recorder,
            handle,
            task,
        })
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
        let _ = self.task.await;
    }
}

async fn messages(body: web::Bytes, recorder: web::Data<Recorder>) -> HttpResponse {
    let at = Instant::now();
    let id = recorder.next_id.fetch_add(1, Ordering::Relaxed);
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(_) => {
            recorder.other_requests.fetch_add(1, Ordering::Relaxed);
            return HttpResponse::BadRequest()
                .content_type(ContentType::json())
                .body(r#"{"error":{"message":"(#100) Invalid JSON","type":"OAuthException","code":100}}"#);
        }
    };
    let text = value.pointer("/text/body").and_then(|v| v.as_str());
    let to = value
        .get("to")
        .or_else(|| value.get("recipient"))
        .and_then(|v| v.as_str());
    match (to, text) {
        (Some(to), Some(text)) => recorder.record(to.to_string(), text.to_string(), at),
        _ => {
            recorder.other_requests.fetch_add(1, Ordering::Relaxed);
        }
    }
    let to = to.unwrap_or("");
    HttpResponse::Ok().json(serde_json::json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to.trim_start_matches('+')}],
        "messages": [{"id": format!("wamid.bench.out.{id}")}],
    }))
}
