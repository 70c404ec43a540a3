//! The one place where errors become HTTP answers; the cause chain is logged here, once.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::meta::webhook::{ParseError, SignatureError};
use crate::ops::telemetry::{error_chain, LogVerdict};
use crate::store::sink::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body could not be read")]
    BodyRead(#[source] actix_web::error::PayloadError),
    #[error("the request did not arrive within {secs} s")]
    Timeout { secs: u64 },
    #[error("too many request bodies are being received at once, retry later")]
    BodyBudgetExhausted,
    #[error("{0}")]
    BadRequest(String),
    #[error("webhook verification failed")]
    VerificationFailed,
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("too many wrong tokens from this client; retry later")]
    TooManyFailures { retry_after_secs: u64 },
    /// Flows: Meta's signature does not match (Meta's protocol answers 432).
    #[error("the Flows request's signature does not match")]
    FlowsSignature,
    /// Flows: sealed for another key, or tampered with (421: Meta re-fetches the public key).
    #[error("the Flows request cannot be decrypted")]
    FlowsDecrypt,
    #[error(transparent)]
    FlowsBackend(#[from] crate::bot::flows::FlowError),
    #[error("not found")]
    NotFound,
    /// The caller is known but may not do this (a tenant's token on a deployment-wide route).
    #[error("{0}")]
    Forbidden(String),
    /// The request contradicts what is there (a number another tenant has).
    #[error("{0}")]
    Conflict(String),
    /// A resource the caller named does not exist; the message says which kind.
    #[error("{0}")]
    Missing(String),
    #[error("the message store is unavailable, retry later")]
    Unavailable(#[from] SinkError),
    /// A call this request made to Meta (or another service) failed.
    #[error("{0}")]
    Upstream(String),
    #[error("Redis is unavailable, retry later")]
    Redis(#[from] crate::store::RedisError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Signature(_) | ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Parse(_) | ApiError::BodyRead(_) | ApiError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::FlowsSignature => {
                StatusCode::from_u16(432).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            ApiError::FlowsDecrypt => StatusCode::from_u16(421).unwrap_or(StatusCode::BAD_REQUEST),
            ApiError::FlowsBackend(_) | ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::VerificationFailed => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) | ApiError::Redis(_) | ApiError::BodyBudgetExhausted => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Store(error) if error.is_outage() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let chain = error_chain(self);
        let kind = self.kind();
        // The only line for a rejected request (the middleware's own is filtered out), and at
        // most one per kind and second: an outage fails every request the same way.
        match crate::ops::telemetry::rejections().check(kind) {
            LogVerdict::Log { suppressed } if self.is_outage() => {
                tracing::error!(status = status.as_u16(), kind, suppressed, error = %chain, "request failed");
            }
            LogVerdict::Log { suppressed } => {
                tracing::warn!(status = status.as_u16(), kind, suppressed, error = %chain, "request rejected");
            }
            LogVerdict::Suppress => {
                tracing::debug!(status = status.as_u16(), kind, error = %chain, "request rejected");
            }
        }
        let mut response = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "5"));
        }
        if let ApiError::TooManyFailures { retry_after_secs } = self {
            response.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}

impl ApiError {
    /// Stable name of the error's kind, for logs and the log rate limit.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Signature(_) => "signature",
            ApiError::Parse(_) => "parse",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::BodyRead(_) => "body_read",
            ApiError::Timeout { .. } => "timeout",
            ApiError::BodyBudgetExhausted => "body_budget",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::VerificationFailed => "verification",
            ApiError::Unauthorized => "unauthorized",
            ApiError::TooManyFailures { .. } => "too_many_failures",
            ApiError::FlowsSignature => "flows_signature",
            ApiError::FlowsDecrypt => "flows_decrypt",
            ApiError::FlowsBackend(_) => "flows_backend",
            ApiError::NotFound | ApiError::Missing(_) => "not_found",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Conflict(_) => "conflict",
            ApiError::Upstream(_) => "upstream",
            ApiError::Unavailable(_) => "sink_unavailable",
            ApiError::Redis(_) => "redis",
            ApiError::Store(error) if error.is_outage() => "redis",
            ApiError::Store(_) => "stored_data",
        }
    }

    /// Our side is broken (Redis down), as opposed to a request we refuse or shed.
    fn is_outage(&self) -> bool {
        match self {
            ApiError::Unavailable(_) | ApiError::Redis(_) => true,
            ApiError::Store(error) => error.is_outage(),
            _ => false,
        }
    }

    pub fn redis(error: crate::store::StoreError) -> ApiError {
        ApiError::Store(error)
    }
}
