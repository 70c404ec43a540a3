//! OpenTelemetry tracing end to end: a `wabot serve` process (the subscriber and the exporter are
//! process-global) exports over OTLP/HTTP protobuf to an in-process receiver, and the spans of one
//! message — webhook, stored entry, worker, engine, responder, Graph API send — form one trace.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    eventually, graph_ok, spawn, text_delivery, wait_for_replies, AppOptions, RedisServer, Served,
    APP_SECRET,
};

const WAIT: Duration = Duration::from_secs(30);
const PNID: &str = "106540352242922";
const USER: &str = "4915123456789";

async fn serve(redis: &RedisServer, graph: &MockServer, extra: &[(&str, String)]) -> Served {
    serve_logging(redis, graph, extra, None).await
}

/// Like [`serve`]; with `log`, standard output (the log lines) goes to that file.
async fn serve_logging(
    redis: &RedisServer,
    graph: &MockServer,
    extra: &[(&str, String)],
    log: Option<&std::path::Path>,
) -> Served {
    let stdout = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
        None => Stdio::null(),
    };
    // The log level (off) does not decide what is traced: spans are still exported.
    Served::start(&redis.url(), &graph.uri(), |command| {
        command
            .env("WABOT_WORKER__PARTITIONS", "4")
            .env("WABOT_WHATSAPP__THROUGHPUT_PER_SEC", "0")
            .env("WABOT_WHATSAPP__RECIPIENT_INTERVAL_MS", "0")
            .env(
                "WABOT_REDIS__KEY_PREFIX",
                format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            )
            .env("RESPONDER", "echo")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(stdout)
    })
    .await
}

/// An OTLP/HTTP receiver: accepts every export with an empty (valid) protobuf answer.
async fn collector() -> MockServer {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("content-type", "application/x-protobuf"),
        )
        .mount(&collector)
        .await;
    collector
}

/// The OTLP variables an operator sets, pointing at `collector`; exports every 100 ms.
fn otel_env(collector: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.uri()),
        ("OTEL_SERVICE_NAME", "wabot-under-test".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]
}

/// Everything exported so far: the raw bodies and the decoded spans with their service name.
async fn exported(collector: &MockServer) -> (Vec<Vec<u8>>, Vec<(String, Span)>) {
    let mut bodies = Vec::new();
    let mut spans = Vec::new();
    for request in collector.received_requests().await.unwrap_or_default() {
        let Ok(export) = ExportTraceServiceRequest::decode(request.body.as_slice()) else {
            continue;
        };
        for resource_spans in export.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| string_value(kv.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        bodies.push(request.body);
    }
    (bodies, spans)
}

fn string_value(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| string_value(kv.value.as_ref()?.value.as_ref()?))
}

/// The one span named `name` whose `wamid` attribute is `wamid` (`None` for the request span).
fn find<'a>(spans: &'a [(String, Span)], name: &str, wamid: Option<&str>) -> Option<&'a Span> {
    spans.iter().map(|(_, s)| s).find(|s| {
        s.name == name && wamid.is_none_or(|w| attribute(s, "wamid").as_deref() == Some(w))
    })
}

async fn deliver_to(address: &str, body: Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!("{address}/webhook"))
        .header("Content-Type", "application/json")
        .header(
            "X-Hub-Signature-256",
            wabot::meta::webhook::sign(APP_SECRET, &body),
        )
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn one_trace_from_the_webhook_post_to_the_graph_api_send() {
    let redis = RedisServer::start();
    let graph = graph_ok().await;
    let collector = collector().await;
    let served = serve(&redis, &graph, &otel_env(&collector)).await;
    let wamid = format!("wamid.trace.{}", uuid::Uuid::new_v4().simple());
    let text = "my secret order number is 4711";
    deliver_to(&served.address, text_delivery(PNID, USER, &wamid, text)).await;
    wait_for_replies(&graph, 1, WAIT).await;

    let names = [
        "POST /webhook",
        "inbox.accept",
        "worker.process",
        "engine.handle",
        "responder",
        "graph.send",
    ];
    let (bodies, spans) = eventually(WAIT, || async {
        let (bodies, spans) = exported(&collector).await;
        let accept = find(&spans, "inbox.accept", Some(&wamid))?;
        // Every span of the message's trace has arrived (they are exported as they end).
        names
            .iter()
            .all(|name| {
                spans
                    .iter()
                    .any(|(_, s)| s.name == *name && s.trace_id == accept.trace_id)
            })
            .then_some((bodies, spans))
    })
    .await
    .unwrap_or_else(|| panic!("the message's spans were not all exported within {WAIT:?}"));

    let accept = find(&spans, "inbox.accept", Some(&wamid)).expect("accept span");
    let in_trace = |name: &str| -> &Span {
        let found: Vec<&Span> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name && s.trace_id == accept.trace_id)
            .collect();
        assert_eq!(found.len(), 1, "one {name} span in the trace");
        found[0]
    };
    // Named by route (`otel.name`), never by path.
    let http = in_trace("POST /webhook");
    let worker = in_trace("worker.process");
    let engine = in_trace("engine.handle");
    let responder = in_trace("responder");
    let send = in_trace("graph.send");

    // Parent and child, through the stored stream entry between the webhook and the worker.
    assert!(
        http.parent_span_id.is_empty(),
        "the webhook request starts the trace"
    );
    for (child, parent, why) in [
        (accept, http, "accept under the request"),
        (worker, accept, "worker continues the stored entry's trace"),
        (engine, worker, "engine under the worker"),
        (responder, engine, "responder under the engine"),
        (send, engine, "Graph API send under the engine"),
    ] {
        assert_eq!(child.parent_span_id, parent.span_id, "{why}");
    }

    // The wamid and the masked user as attributes.
    let masked = wabot::domain::mask_user(USER);
    for span in [accept, worker, engine] {
        assert_eq!(
            attribute(span, "wamid").as_deref(),
            Some(wamid.as_str()),
            "{}",
            span.name
        );
        assert_eq!(
            attribute(span, "user").as_deref(),
            Some(masked.as_str()),
            "{}",
            span.name
        );
    }
    assert_eq!(attribute(send, "user").as_deref(), Some(masked.as_str()));
    assert_eq!(
        attribute(send, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(
        attribute(send, "wamid").is_some_and(|w| w.starts_with("wamid.out.")),
        "the sent message's id"
    );
    assert_eq!(attribute(http, "status").as_deref(), Some("200"));
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    let kinds = [
        (http, SpanKind::Server),
        (accept, SpanKind::Producer),
        (worker, SpanKind::Consumer),
        (send, SpanKind::Client),
    ];
    for (span, kind) in kinds {
        assert_eq!(span.kind, kind as i32, "{}", span.name);
    }
    assert_eq!(attribute(responder, "kind").as_deref(), Some("echo"));
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "wabot-under-test"),
        "OTEL_SERVICE_NAME"
    );

    // Never the message text or the full phone number, anywhere in what was exported.
    for body in &bodies {
        let raw = String::from_utf8_lossy(body);
        assert!(!raw.contains(USER), "the full phone number was exported");
        assert!(
            !raw.contains("secret order"),
            "the message text was exported"
        );
    }
}

/// `XRANGE` of every partition, as `redis-cli` prints it.
fn inbox_entries(redis: &RedisServer, prefix: &str, partitions: u32) -> String {
    (0..partitions)
        .map(|p| redis.cli(&["XRANGE", &format!("{{{prefix}:{p}}}:in"), "-", "+"]))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_stored_entry_carries_the_traceparent_only_while_tracing_is_on() {
    // On: the entry's `tp` field is the W3C context of the webhook's trace.
    let redis = RedisServer::start();
    let graph = MockServer::start().await;
    let collector = collector().await;
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut env = otel_env(&collector);
    env.push(("WABOT_WORKER__ENABLED", "false".into()));
    env.push(("WABOT_REDIS__KEY_PREFIX", prefix.clone()));
    let served = serve(&redis, &graph, &env).await;
    let wamid = format!("wamid.tp.{}", uuid::Uuid::new_v4().simple());
    deliver_to(&served.address, text_delivery(PNID, USER, &wamid, "hello")).await;
    let entries = inbox_entries(&redis, &prefix, 4);
    let lines: Vec<&str> = entries.lines().collect();
    let tp = lines
        .iter()
        .position(|l| *l == "tp")
        .and_then(|i| lines.get(i + 1))
        .unwrap_or_else(|| panic!("no tp field in the stored entry:\n{entries}"));
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len()),
        ("00", 32, 16),
        "{tp}"
    );
    let accept = eventually(WAIT, || async {
        let (_, spans) = exported(&collector).await;
        find(&spans, "inbox.accept", Some(&wamid)).cloned()
    })
    .await
    .expect("the accept span was exported");
    assert_eq!(
        parts[1],
        hex(&accept.trace_id),
        "the stored trace is the webhook's"
    );
    assert_eq!(
        parts[2],
        hex(&accept.span_id),
        "the stored parent is the accept span"
    );
    drop(served);

    // Off (no OTEL_EXPORTER_OTLP_ENDPOINT, as in this test process): the same entry, no `tp`.
    let app = spawn(AppOptions {
        workers: false,
        ..AppOptions::default()
    })
    .await;
    let wamid = format!("wamid.notp.{}", uuid::Uuid::new_v4().simple());
    let response = app
        .post_signed(&text_delivery(PNID, USER, &wamid, "hello"), APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let redis = app.redis.as_ref().expect("own redis");
    let entries = inbox_entries(
        redis,
        &app.settings.redis.key_prefix,
        app.settings.worker.partitions,
    );
    assert!(entries.contains(&wamid), "the entry is stored:\n{entries}");
    let fields: HashMap<&str, usize> = entries.lines().fold(HashMap::new(), |mut m, l| {
        *m.entry(l).or_default() += 1;
        m
    });
    assert_eq!(fields.get("m"), Some(&1), "{entries}");
    assert_eq!(
        fields.get("tp"),
        None,
        "no trace field while tracing is off:\n{entries}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn json_logs_stay_json_and_carry_the_trace_id_while_tracing_is_on() {
    let redis = RedisServer::start();
    let graph = graph_ok().await;
    let collector = collector().await;
    let log = std::env::temp_dir().join(format!("wabot-trace-log-{}.jsonl", uuid::Uuid::new_v4()));
    let mut env = otel_env(&collector);
    env.push(("LOG_FORMAT", "json".into()));
    // The intake's line is at debug (one per delivery).
    env.push(("RUST_LOG", "info,wabot::http::routes::webhook=debug".into()));
    let served = serve_logging(&redis, &graph, &env, Some(&log)).await;
    let wamid = format!("wamid.log.{}", uuid::Uuid::new_v4().simple());
    let text = "please do not log this sentence";
    deliver_to(&served.address, text_delivery(PNID, USER, &wamid, text)).await;
    wait_for_replies(&graph, 1, WAIT).await;
    let stored = eventually(WAIT, || async {
        let lines = std::fs::read_to_string(&log).ok()?;
        lines
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["message"] == "webhook items stored")
    })
    .await
    .expect("the intake line was logged");
    // Exported before the process is stopped: the batch exporter sends every 100 ms, and a
    // stop in between would lose the span (a race a busy machine loses).
    let accept = eventually(WAIT, || async {
        let (_, spans) = exported(&collector).await;
        find(&spans, "inbox.accept", Some(&wamid)).cloned()
    })
    .await
    .expect("accept span exported");
    drop(served);
    let lines = std::fs::read_to_string(&log).expect("log file");
    std::fs::remove_file(&log).ok();
    assert!(lines.lines().count() > 2, "{lines}");
    for line in lines.lines() {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["target"].is_string(),
            "{line}"
        );
        assert!(!line.contains(text), "message text at info: {line}");
        assert!(!line.contains(USER), "full phone number: {line}");
    }
    // The request's span fields as before, plus the trace id to look the request up with.
    let span = &stored["span"];
    assert_eq!(span["path"], "/webhook", "{stored}");
    let trace_id = span["trace_id"].as_str().unwrap_or_default();
    assert_eq!(trace_id.len(), 32, "{stored}");
    assert_eq!(
        hex(&accept.trace_id),
        trace_id,
        "the logged trace id is the message's trace"
    );
}
