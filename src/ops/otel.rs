//! OpenTelemetry tracing: the OTLP/HTTP exporter (on only when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set), its tracing layer, and the W3C `traceparent`
//! that carries a trace from the webhook through the stored inbox entry to the worker.
//!
//! What reaches the collector: spans of wabot's own code (the `http` request span and the
//! pipeline's debug-level spans) and, as span events, wabot's log lines at info and above. Debug
//! log lines stay out: they are the only ones that may contain message text.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::{Level, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::{Layer, Registry};

/// The stream entry field that holds the `traceparent` (absent while tracing is off).
pub const TRACEPARENT_FIELD: &str = "tp";

const DEFAULT_SERVICE_NAME: &str = "wabot";
/// Largest collector answer read; real ones are a few bytes.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("{variable}={value:?} is not supported: {reason}")]
    Unsupported {
        variable: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("the OTLP exporter could not be built")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether the environment (`env(name)` → value) asks for traces: an OTLP endpoint is set and
/// neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise.
pub fn requested(env: &dyn Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let is =
        |name: &str, value: &str| env(name).is_some_and(|v| v.trim().eq_ignore_ascii_case(value));
    let off = is("OTEL_SDK_DISABLED", "true") || is("OTEL_TRACES_EXPORTER", "none");
    !off && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Whether spans are being exported by this process.
pub fn is_on() -> bool {
    PROVIDER.get().is_some()
}

/// The protocol the standard variables ask for. The spec's default is `http/protobuf`; the crate's
/// own default would be JSON once both encodings are built in, so it is always set explicitly.
fn protocol(env: &dyn Fn(&str) -> Option<String>) -> Result<Protocol, OtelError> {
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        let Some(value) = env(variable).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        return match value.trim().to_ascii_lowercase().as_str() {
            "http/protobuf" => Ok(Protocol::HttpBinary),
            "http/json" => Ok(Protocol::HttpJson),
            _ => Err(OtelError::Unsupported {
                variable,
                value,
                reason: "wabot exports over OTLP/HTTP: use http/protobuf (port 4318) or http/json",
            }),
        };
    }
    Ok(Protocol::HttpBinary)
}

/// Per-export timeout from `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` / `OTEL_EXPORTER_OTLP_TIMEOUT`
/// (milliseconds); the exporter hands it only to the clients it builds itself.
fn timeout(env: &dyn Fn(&str) -> Option<String>) -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|name| env(name)?.trim().parse::<u64>().ok())
    .map(Duration::from_millis)
    .unwrap_or(Duration::from_secs(10))
}

/// Builds the exporter, the tracer provider and its layer when the environment asks for traces;
/// `Ok(None)` when it does not. Endpoint, headers, compression, sampler (`OTEL_TRACES_SAMPLER`),
/// batching (`OTEL_BSP_*`) and resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`) are read
/// from the standard variables by the OpenTelemetry crates themselves.
pub(crate) fn layer() -> Result<Option<Box<dyn Layer<Registry> + Send + Sync>>, OtelError> {
    let env = |name: &str| std::env::var(name).ok();
    if !requested(&env) || PROVIDER.get().is_some() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol(&env)?)
        .with_http_client(BlockingHttp {
            timeout: timeout(&env),
            client: OnceLock::new(),
        })
        .build()?;
    let named = env("OTEL_SERVICE_NAME").is_some_and(|v| !v.trim().is_empty())
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| v.contains("service.name="));
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if !named {
        resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("wabot");
    if PROVIDER.set(provider).is_err() {
        return Ok(None);
    }
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_filter(filter_fn(|meta| {
            // Only our own code: the exporter's HTTP client must not trace its own exports.
            meta.target().starts_with("wabot")
                && if meta.is_span() {
                    *meta.level() <= Level::DEBUG
                } else {
                    *meta.level() <= Level::INFO
                }
        }));
    Ok(Some(layer.boxed()))
}

/// Standard variables that are set but have no effect here, as lines for the log (the exporter's
/// own warnings come before the subscriber exists and would be lost).
pub(crate) fn ignored_variables() -> Vec<String> {
    let env = |name: &str| std::env::var(name).ok();
    if !requested(&env) {
        return Vec::new();
    }
    [
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ]
    .iter()
    .filter_map(|name| {
        let value = env(name)?;
        let value = value.trim();
        (!value.is_empty() && !value.eq_ignore_ascii_case("none"))
            .then(|| format!("{name}={value} is ignored: compression is not built in"))
    })
    .collect()
}

/// Exports what is still buffered and stops the exporter (at process exit; blocks up to a few
/// seconds when the collector does not answer).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(error) = provider.shutdown() {
            tracing::warn!(error = %error, "the last spans could not be exported");
        }
    }
}

/// The W3C `traceparent` of `span`, or `None` when it is not traced (tracing off, not sampled in
/// or filtered out): then nothing is stored.
pub fn traceparent(span: &Span) -> Option<String> {
    if span.is_disabled() || !is_on() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

fn extract(traceparent: &str) -> Option<opentelemetry::Context> {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` (not yet entered) a child of a stored or received `traceparent`; a malformed one
/// is ignored and the span starts a trace of its own.
pub fn set_parent(span: &Span, traceparent: &str) {
    if span.is_disabled() || !is_on() {
        return;
    }
    if let Some(cx) = extract(traceparent) {
        // Fails only for a span already started or not traced: then there is nothing to link.
        let _ = span.set_parent(cx);
    }
}

/// Links `span` to another trace context (the other messages of a merged burst).
pub fn add_link(span: &Span, traceparent: &str) {
    if span.is_disabled() || !is_on() {
        return;
    }
    if let Some(cx) = extract(traceparent) {
        span.add_link(cx.span().span_context().clone());
    }
}

/// The trace id of `span` in hex, for log lines that an on-call engineer looks up in the tracing
/// backend.
pub fn trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() || !is_on() {
        return None;
    }
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The `kind` and `wamid` attributes of a stored item's spans (the one place that knows the
/// variants, for every span of the pipeline).
pub fn item_attributes(item: &crate::domain::InboxItem) -> (&str, &str) {
    use crate::domain::InboxItem;
    match item {
        InboxItem::Message(m) => (m.content.kind(), m.id.as_str()),
        InboxItem::Status(s) => (s.status.as_str(), s.message_id.as_str()),
        InboxItem::Outbound(o) => (o.content.message_type(), o.id.as_str()),
        InboxItem::Handover(h) => (
            if h.owned {
                "control_passed"
            } else {
                "control_taken"
            },
            "",
        ),
    }
}

/// The exporter's HTTP client: reqwest's blocking client (the one wabot already links, with its
/// TLS). The SDK exports from a thread of its own, where blocking is right; the client is built
/// there on first use, because reqwest refuses to build or drop one inside the async runtime.
#[derive(Debug)]
struct BlockingHttp {
    timeout: Duration,
    client: OnceLock<reqwest::blocking::Client>,
}

#[async_trait]
impl opentelemetry_http::HttpClient for BlockingHttp {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let client = match self.client.get() {
            Some(client) => client,
            None => {
                let built = reqwest::blocking::Client::builder()
                    .timeout(self.timeout)
                    .user_agent(concat!("wabot/", env!("CARGO_PKG_VERSION")))
                    .build()?;
                self.client.get_or_init(|| built)
            }
        };
        let response = client.execute(reqwest::blocking::Request::try_from(request)?)?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        response.take(MAX_RESPONSE_BYTES).read_to_end(&mut body)?;
        let mut answer = opentelemetry_http::Response::builder()
            .status(status)
            .body(opentelemetry_http::Bytes::from(body))?;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_set() {
        assert!(!requested(&env_of(&[])));
        assert!(!requested(&env_of(&[("OTEL_SERVICE_NAME", "wabot")])));
        assert!(!requested(&env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(requested(&env_of(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4318"
        )])));
        assert!(requested(&env_of(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/v1/traces"
        )])));
        for off in [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert!(!requested(&env_of(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                off
            ])));
        }
    }

    #[test]
    fn the_protocol_defaults_to_protobuf_and_grpc_is_refused_by_name() {
        assert_eq!(protocol(&env_of(&[])).ok(), Some(Protocol::HttpBinary));
        assert_eq!(
            protocol(&env_of(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])).ok(),
            Some(Protocol::HttpJson)
        );
        assert_eq!(
            protocol(&env_of(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
            ]))
            .ok(),
            Some(Protocol::HttpBinary)
        );
        let err = protocol(&env_of(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]))
            .expect_err("grpc is not built in");
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{err}"
        );
    }

    #[test]
    fn the_export_timeout_comes_from_the_standard_variables() {
        assert_eq!(timeout(&env_of(&[])), Duration::from_secs(10));
        assert_eq!(
            timeout(&env_of(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")])),
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn without_a_tracer_nothing_is_stored_or_linked() {
        let span = tracing::info_span!("untraced");
        assert_eq!(traceparent(&span), None);
        assert_eq!(trace_id(&span), None);
        set_parent(
            &span,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        assert!(extract("garbage").is_none());
        assert!(extract("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
    }
}
