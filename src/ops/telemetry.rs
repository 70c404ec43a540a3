//! Tracing set-up (pretty or JSON, level from `RUST_LOG`) and the request span, which records the
//! path but never the query string (it carries the verify token during the handshake) nor a full
//! phone number; and the rate limit on repeated log lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer, Registry};

use crate::config::LogFormat;

/// Installs the global subscriber once (level `info` unless `RUST_LOG` says otherwise), with
/// OpenTelemetry export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see [`crate::ops::otel`]); later
/// calls (tests) are ignored.
pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// Like [`init`] with another default level (the sandbox keeps the chat readable with `warn`).
pub fn init_with_default(format: LogFormat, default_level: &str) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // tracing-actix-web logs every error answer a second time (with its Debug form);
    // `ApiError::error_response` already logs each rejection once, rate-limited. The
    // OpenTelemetry crates' own chatter below warn is of no use to an operator.
    for quiet in ["tracing_actix_web=off", "opentelemetry=warn"] {
        if let Ok(quiet) = quiet.parse() {
            filter = filter.add_directive(quiet);
        }
    }
    // Per-layer filters: the log level must not decide which spans the exporter sees (the
    // pipeline's spans are debug-level, so that the log lines stay as they were).
    let logs = match format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => fmt::layer().compact().with_filter(filter).boxed(),
    };
    let (otel, otel_error) = match crate::ops::otel::layer() {
        Ok(layer) => (layer, None),
        Err(error) => (None, Some(error)),
    };
    let layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        std::iter::once(logs).chain(otel).collect();
    // Already installed (tests spawn many apps in one process): keep the first.
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_err()
    {
        return;
    }
    if let Some(error) = otel_error {
        // Tracing is an aid: a bad OTEL_* variable is reported loudly but does not stop the bot.
        tracing::error!(error = %crate::ops::telemetry::error_chain(&error), "OpenTelemetry tracing is off");
    } else if crate::ops::otel::is_on() {
        tracing::info!("OpenTelemetry tracing on (OTLP/HTTP)");
        for ignored in crate::ops::otel::ignored_variables() {
            tracing::warn!("{ignored}; spans are sent uncompressed");
        }
    }
}

/// The request path as logged: admin and console conversation paths carry a phone number,
/// which is masked like everywhere else.
pub fn loggable_path(path: &str) -> Cow<'_, str> {
    if let Some(rest) = path.strip_prefix("/console/c/") {
        // `/console/c/{pnid}/{user}[/{action}]`: the action stays readable.
        return match rest.split_once('/') {
            Some((pnid, tail)) if !tail.is_empty() => {
                let (user, action) = tail.split_once('/').unwrap_or((tail, ""));
                let sep = if action.is_empty() { "" } else { "/" };
                Cow::Owned(format!(
                    "/console/c/{pnid}/{}{sep}{action}",
                    crate::domain::mask_user(user)
                ))
            }
            _ => Cow::Borrowed(path),
        };
    }
    let Some(rest) = path.strip_prefix("/admin/conversations/") else {
        return Cow::Borrowed(path);
    };
    match rest.split_once('/') {
        Some((pnid, user)) if !user.is_empty() => Cow::Owned(format!(
            "/admin/conversations/{pnid}/{}",
            crate::domain::mask_user(user)
        )),
        _ => Cow::Borrowed(path),
    }
}

/// Lets through one line per kind and interval; the rest are counted and the count travels with
/// the next line let through. A Redis outage fails every request the same way: without this, ten
/// seconds of it wrote hundreds of identical lines.
pub struct LogLimiter {
    interval: Duration,
    windows: Mutex<HashMap<&'static str, Window>>,
}

struct Window {
    started: tokio::time::Instant,
    suppressed: u64,
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogVerdict {
    /// Log it, with how many lines of its kind were held back since the last one.
    Log { suppressed: u64 },
    /// Held back (log at debug at most).
    Suppress,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, kind: &'static str) -> LogVerdict {
        // tokio's clock, so tests can pause and advance it; outside a runtime it is the system's.
        let now = tokio::time::Instant::now();
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match windows.get_mut(kind) {
            Some(window) if now.duration_since(window.started) < self.interval => {
                window.suppressed += 1;
                LogVerdict::Suppress
            }
            Some(window) => {
                let suppressed = window.suppressed;
                *window = Window {
                    started: now,
                    suppressed: 0,
                };
                LogVerdict::Log { suppressed }
            }
            None => {
                windows.insert(
                    kind,
                    Window {
                        started: now,
                        suppressed: 0,
                    },
                );
                LogVerdict::Log { suppressed: 0 }
            }
        }
    }
}

/// The limiter of rejected-request lines (one per second per error kind).
pub fn rejections() -> &'static LogLimiter {
    static REJECTIONS: LazyLock<LogLimiter> =
        LazyLock::new(|| LogLimiter::new(Duration::from_secs(1)));
    &REJECTIONS
}

/// Request span without the query string.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "http",
            method = %request.method(),
            path = %loggable_path(request.path()),
            request_id = %request_id,
            status = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if crate::ops::otel::is_on() {
            // A proxy in front may have started the trace already.
            if let Some(parent) = request
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
            {
                crate::ops::otel::set_parent(&span, parent);
            }
            // The route pattern, never the path: admin paths carry phone numbers.
            let route = request
                .match_pattern()
                .unwrap_or_else(|| "unmatched".into());
            span.record("otel.name", format!("{} {route}", request.method()));
            span.record("otel.kind", "server");
            if let Some(trace_id) = crate::ops::otel::trace_id(&span) {
                span.record("trace_id", trace_id);
            }
        }
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        if let Ok(response) = outcome {
            span.record("status", response.status().as_u16());
        }
        // Also sets `otel.status_code` (ERROR for 5xx answers).
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// `error: cause: cause` on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_kind_and_interval_with_the_count_of_the_rest() {
        let limiter = LogLimiter::new(Duration::from_secs(1));
        assert_eq!(limiter.check("redis"), LogVerdict::Log { suppressed: 0 });
        for _ in 0..447 {
            assert_eq!(limiter.check("redis"), LogVerdict::Suppress);
        }
        // Another kind has a window of its own.
        assert_eq!(
            limiter.check("signature"),
            LogVerdict::Log { suppressed: 0 }
        );
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(limiter.check("redis"), LogVerdict::Suppress);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(limiter.check("redis"), LogVerdict::Log { suppressed: 448 });
        assert_eq!(limiter.check("redis"), LogVerdict::Suppress);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(limiter.check("redis"), LogVerdict::Log { suppressed: 1 });
        assert_eq!(
            limiter.check("signature"),
            LogVerdict::Log { suppressed: 0 }
        );
    }

    #[test]
    fn admin_paths_are_logged_without_the_phone_number() {
        let logged = loggable_path("/admin/conversations/123456/4915123456789");
        assert!(!logged.contains("4915123456789"), "{logged}");
        assert!(
            logged.starts_with("/admin/conversations/123456/"),
            "{logged}"
        );
        assert_eq!(loggable_path("/webhook"), "/webhook");
        assert_eq!(
            loggable_path("/admin/conversations"),
            "/admin/conversations"
        );
        assert_eq!(
            loggable_path("/admin/dead-letters/3:1-0/replay"),
            "/admin/dead-letters/3:1-0/replay"
        );
    }

    #[test]
    fn console_paths_are_logged_without_the_phone_number() {
        let logged = loggable_path("/console/c/123456/4915123456789/take-over");
        assert!(!logged.contains("4915123456789"), "{logged}");
        assert!(logged.starts_with("/console/c/123456/"), "{logged}");
        assert!(logged.ends_with("/take-over"), "{logged}");
        let page = loggable_path("/console/c/123456/4915123456789");
        assert!(
            !page.contains("4915123456789") && !page.ends_with('/'),
            "{page}"
        );
        assert_eq!(
            loggable_path("/console/conversations"),
            "/console/conversations"
        );
    }
}
