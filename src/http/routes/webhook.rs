//! `GET /webhook` (Meta's verification handshake) and `POST /webhook` (signed deliveries):
//! read the raw bytes, verify, parse, hand the messages to the sink, then answer 200.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, ContentType};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::{mask_user, DeliveryStatus, InboxItem, WebhookBatch};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::meta::webhook::{self as wh, SIGNATURE_HEADER};
use crate::ops::monitoring;

/// Answers the handshake: the challenge byte for byte when the mode is `subscribe` and the
/// token matches; 403 otherwise (also for a malformed query).
pub async fn verify(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<HashMap<String, String>>::from_query(request.query_string())
        .map_err(|_| ApiError::VerificationFailed)?;
    let mode = query.get("hub.mode").map(String::as_str);
    let token = query
        .get("hub.verify_token")
        .map(String::as_str)
        .unwrap_or("");
    let expected = state.verify_token.expose_secret().as_bytes();
    let token_ok: bool = token.as_bytes().ct_eq(expected).into();
    match (mode, query.get("hub.challenge")) {
        (Some("subscribe"), Some(challenge)) if token_ok => {
            tracing::info!("webhook verification handshake accepted");
            Ok(HttpResponse::Ok()
                .content_type(ContentType::plaintext())
                .body(challenge.clone()))
        }
        _ => Err(ApiError::VerificationFailed),
    }
}

/// Receives one delivery. 200 means every message in it is stored.
pub async fn receive(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let result = receive_checked(request, payload, state.clone()).await;
    let (status, outcome) = match &result {
        Ok((response, stored)) => (
            response.status().as_u16(),
            if *stored { "stored" } else { "duplicate" },
        ),
        Err(error) => (
            actix_web::ResponseError::status_code(error).as_u16(),
            "refused",
        ),
    };
    let elapsed = started.elapsed();
    metrics::histogram!(monitoring::WEBHOOK_SECONDS, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
    if let Some(pressure) = &state.pressure {
        pressure.record(elapsed);
    }
    metrics::counter!(monitoring::WEBHOOK_DELIVERIES, "outcome" => status.to_string()).increment(1);
    result.map(|(response, _)| response)
}

/// The answer, and whether the delivery brought anything new (`false`: only duplicates).
async fn receive_checked(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<(HttpResponse, bool), ApiError> {
    let (body, _budget) = read_body(&request, payload, state.max_body_bytes).await?;
    let signature = request
        .headers()
        .get(SIGNATURE_HEADER)
        .map(|v| v.as_bytes());
    let verified = state.verifier.verify(signature, body)?;
    let batch = wh::parse(&verified)?;
    report(&batch);
    // Statuses go through the inbox too, in order with their conversation's messages.
    let items: Vec<InboxItem> = batch
        .messages
        .into_iter()
        .map(InboxItem::Message)
        .chain(
            batch
                .statuses
                .into_iter()
                .filter(|s| s.conversation().is_some())
                .map(InboxItem::Status),
        )
        .chain(batch.handovers.into_iter().map(InboxItem::Handover))
        .collect();
    let mut stored = true;
    if !items.is_empty() {
        let accepted = state.sink.accept(&items).await.inspect_err(|_| {
            metrics::counter!(monitoring::REDIS_ERRORS, "op" => "accept").increment(1);
        })?;
        metrics::counter!(monitoring::MESSAGES_ACCEPTED).increment(accepted.new as u64);
        metrics::counter!(monitoring::MESSAGES_DUPLICATE).increment(accepted.duplicates as u64);
        stored = accepted.new > 0;
        // Debug, not info: at thousands of deliveries a second the line alone cost a seventh
        // of the receiver's CPU; the counters above say the same.
        tracing::debug!(
            accepted = accepted.new,
            duplicates = accepted.duplicates,
            "webhook items stored"
        );
    }
    Ok((HttpResponse::Ok().finish(), stored))
}

/// Bounds on reading bodies before they are authenticated, shared by every HTTP worker: a
/// process-wide budget of body bytes in memory (permits are KiB) and the time a body may take.
#[derive(Clone)]
pub struct BodyLimits {
    budget: Arc<Semaphore>,
    timeout: Duration,
}

/// Budget held for a body until the request that read it is finished with it.
pub struct BodyPermit(Option<OwnedSemaphorePermit>);

impl BodyLimits {
    pub fn new(max_inflight_bytes: usize, timeout: Duration) -> BodyLimits {
        let permits = kib(max_inflight_bytes).min(Semaphore::MAX_PERMITS as u64) as usize;
        BodyLimits {
            budget: Arc::new(Semaphore::new(permits)),
            timeout,
        }
    }

    /// Grows `permit` to cover `bytes`, without waiting: a full budget means "come back later"
    /// (Meta retries a 503), never buffering more.
    fn cover(&self, permit: &mut BodyPermit, bytes: usize) -> Result<(), ApiError> {
        let held = permit.0.as_ref().map_or(0, |p| p.num_permits() as u64);
        let needed = kib(bytes);
        if needed <= held {
            return Ok(());
        }
        let more = u32::try_from(needed - held).map_err(|_| ApiError::BodyBudgetExhausted)?;
        let extra = Arc::clone(&self.budget)
            .try_acquire_many_owned(more)
            .map_err(|_| ApiError::BodyBudgetExhausted)?;
        match &mut permit.0 {
            Some(held) => held.merge(extra),
            None => permit.0 = Some(extra),
        }
        Ok(())
    }
}

fn kib(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(1024)
}

/// Reads the raw body, refusing more than `limit` bytes without buffering them, a body slower
/// than the request timeout (408), and bodies beyond the in-flight budget (503). The permit
/// keeps the bytes counted until the caller drops it.
async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<(Bytes, BodyPermit), ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let limits = request.app_data::<web::Data<BodyLimits>>().cloned();
    let mut permit = BodyPermit(None);
    if let (Some(limits), Some(len)) = (&limits, declared) {
        // Reserved up front, so a burst of large declared bodies is refused before any is read.
        limits.cover(&mut permit, len)?;
    }
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(ApiError::BodyRead)?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::TooLarge { limit });
            }
            if let Some(limits) = &limits {
                limits.cover(&mut permit, body.len() + chunk.len())?;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let body = match &limits {
        Some(limits) => tokio::time::timeout(limits.timeout, read)
            .await
            .map_err(|_| ApiError::Timeout {
                secs: limits.timeout.as_secs(),
            })??,
        None => read.await?,
    };
    Ok((body, permit))
}

/// Logs what the delivery carried besides messages: statuses (failed ones with their code) and
/// value-level errors. Nothing here is queued.
fn report(batch: &WebhookBatch) {
    for status in &batch.statuses {
        let label = monitoring::status_label(status.status.as_str());
        metrics::counter!(monitoring::STATUSES, "status" => label).increment(1);
        let recipient = status
            .recipient
            .as_deref()
            .map(mask_user)
            .unwrap_or_default();
        if status.status == DeliveryStatus::Failed {
            let code = status.errors.first().map(|e| e.code).unwrap_or(0);
            let title = status
                .errors
                .first()
                .and_then(|e| e.title.clone())
                .unwrap_or_default();
            tracing::warn!(wamid = %status.message_id, %recipient, code, title, "outbound message failed");
        } else {
            tracing::debug!(wamid = %status.message_id, %recipient, status = status.status.as_str(), "status update");
        }
    }
    for error in &batch.errors {
        tracing::warn!(
            code = error.code,
            title = error.title.as_deref().unwrap_or(""),
            "webhook reported an error"
        );
    }
    if batch.dropped_messages > 0 {
        tracing::warn!(
            count = batch.dropped_messages,
            "message entries without id or sender ignored"
        );
    }
    if batch.ignored_changes > 0 {
        tracing::debug!(
            count = batch.ignored_changes,
            "non-message webhook changes ignored"
        );
    }
}
