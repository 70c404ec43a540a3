//! Admin API (Bearer `admin.token`, compared in constant time; off while the token is empty):
//! look into conversations and dead letters, delete a conversation, replay a dead letter.

use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::domain::{PhoneNumberId, UserId};
use crate::error::ApiError;
use crate::store::conversation::ConversationStore;
use crate::store::queue::{parse_dead_letter_id, Queue};

#[derive(Debug, Deserialize)]
pub struct Page {
    cursor: Option<String>,
    count: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct Limit {
    limit: Option<usize>,
}

fn authorize(request: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let token = state.admin_token.expose_secret().as_bytes();
    if token.is_empty() {
        // Disabled: indistinguishable from a route that does not exist.
        return Err(ApiError::NotFound);
    }
    let presented = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(token)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The conversation store, for an authorized caller.
fn conversations<'a>(
    request: &HttpRequest,
    state: &'a AppState,
) -> Result<&'a ConversationStore, ApiError> {
    authorize(request, state)?;
    state.conversations.as_ref().ok_or(ApiError::NotFound)
}

/// The dead-letter queue, for an authorized caller.
fn dead_letters<'a>(request: &HttpRequest, state: &'a AppState) -> Result<&'a Queue, ApiError> {
    authorize(request, state)?;
    state.queue.as_ref().ok_or(ApiError::NotFound)
}

fn conversation_ids(path: &(String, String)) -> Result<(PhoneNumberId, UserId), ApiError> {
    match (PhoneNumberId::parse(&path.0), UserId::parse(&path.1)) {
        (Some(pnid), Some(user)) => Ok((pnid, user)),
        _ => Err(ApiError::NotFound),
    }
}

pub async fn list_conversations(
    request: HttpRequest,
    state: web::Data<AppState>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let store = conversations(&request, &state)?;
    let page = store
        .list(page.cursor.as_deref(), page.count.unwrap_or(100).min(1000))
        .await
        .map_err(ApiError::redis)?;
    Ok(HttpResponse::Ok().json(page))
}

pub async fn show_conversation(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let store = conversations(&request, &state)?;
    let (pnid, user) = conversation_ids(&path)?;
    match store.get(&pnid, &user).await.map_err(ApiError::redis)? {
        Some(view) => Ok(HttpResponse::Ok().json(view)),
        None => Err(ApiError::NotFound),
    }
}

pub async fn delete_conversation(
    request: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let store = conversations(&request, &state)?;
    let (pnid, user) = conversation_ids(&path)?;
    if store.delete(&pnid, &user).await.map_err(ApiError::redis)? {
        tracing::info!(user = %user, "conversation deleted by an operator");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

pub async fn list_dead_letters(
    request: HttpRequest,
    state: web::Data<AppState>,
    limit: web::Query<Limit>,
) -> Result<HttpResponse, ApiError> {
    let queue = dead_letters(&request, &state)?;
    let letters = queue
        .dead_letters(limit.limit.unwrap_or(100).min(1000))
        .await
        .map_err(ApiError::redis)?;
    let body: Vec<serde_json::Value> = letters
        .iter()
        .map(|d| {
            serde_json::json!({
                "id": d.public_id(),
                "error": d.error,
                "attempts": d.attempts,
                "failed_at_ms": d.failed_at_ms,
                "message": serde_json::from_str::<serde_json::Value>(&d.message_json).unwrap_or_default(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(body))
}

pub async fn replay_dead_letter(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let queue = dead_letters(&request, &state)?;
    let (partition, stream_id) = parse_dead_letter_id(&id).ok_or(ApiError::NotFound)?;
    if queue
        .replay_dead_letter(partition, stream_id)
        .await
        .map_err(ApiError::redis)?
    {
        tracing::info!(id = %id, "dead letter replayed by an operator");
        Ok(HttpResponse::Accepted().json(serde_json::json!({ "replayed": id.as_str() })))
    } else {
        Err(ApiError::NotFound)
    }
}
