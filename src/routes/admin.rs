//! Admin API (Bearer `admin.token`, compared in constant time; off while the token is empty):
//! look into conversations and dead letters, delete a conversation, replay a dead letter.

use actix_web::{web, HttpRequest, HttpResponse};
use fred::prelude::ClientLike;
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
pub struct DeadLetterQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The query string as `T`; a malformed one is the caller's mistake (400 with the reason), not
/// actix's plain-text default.
fn query<T: serde::de::DeserializeOwned>(request: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))
}

/// A cursor `list` handed out: SCAN's number, on a Cluster `<node>:<number>`. Anything else
/// would reach Redis as a command error and look like an outage.
fn check_conversation_cursor(cursor: &str, clustered: bool) -> Result<(), ApiError> {
    let number = |s: &str| !s.is_empty() && s.parse::<u64>().is_ok();
    let valid = match cursor.split_once(':') {
        Some((node, scan)) => clustered && number(node) && number(scan),
        None => !clustered && number(cursor),
    };
    if valid {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "invalid cursor: pass the next_cursor of the previous page".into(),
        ))
    }
}

/// A dead-letter id (`<partition>:<ms>-<seq>`) that names a partition of this deployment.
fn dead_letter_id<'a>(id: &'a str, queue: &Queue) -> Result<(u32, &'a str), ApiError> {
    let (partition, stream_id) = parse_dead_letter_id(id)
        .filter(|(_, stream_id)| {
            // Digits alone may still overflow Redis' 64-bit id parts.
            stream_id
                .split_once('-')
                .is_some_and(|(ms, seq)| ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok())
        })
        .ok_or_else(|| {
            ApiError::BadRequest(
                "invalid dead-letter id: expected <partition>:<ms>-<seq>, e.g. 3:1717000000000-0"
                    .into(),
            )
        })?;
    let partitions = queue.keys().partitions();
    if partition >= partitions {
        return Err(ApiError::BadRequest(format!(
            "invalid dead-letter id: partition {partition} is out of range (0..{partitions})"
        )));
    }
    Ok((partition, stream_id))
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
        _ => Err(ApiError::BadRequest(
            "invalid conversation: expected /admin/conversations/<phone number id>/<user id>"
                .into(),
        )),
    }
}

pub async fn list_conversations(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let store = conversations(&request, &state)?;
    let page: Page = query(&request)?;
    if let Some(cursor) = &page.cursor {
        check_conversation_cursor(cursor, state.redis.is_clustered())?;
    }
    let count = match page.count {
        Some(0) => return Err(ApiError::BadRequest("count must be at least 1".into())),
        Some(count) => count.min(1000),
        None => 100,
    };
    let page = store
        .list(page.cursor.as_deref(), count)
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
        None => Err(ApiError::Missing("no such conversation".into())),
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
        Err(ApiError::Missing("no such conversation".into()))
    }
}

pub async fn list_dead_letters(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let queue = dead_letters(&request, &state)?;
    let params: DeadLetterQuery = query(&request)?;
    let cursor = match &params.cursor {
        Some(cursor) => Some(dead_letter_id(cursor, queue).map_err(|_| {
            ApiError::BadRequest("invalid cursor: pass the next_cursor of the previous page".into())
        })?),
        None => None,
    };
    let limit = match params.limit {
        Some(0) => return Err(ApiError::BadRequest("limit must be at least 1".into())),
        Some(limit) => limit.min(1000),
        None => 100,
    };
    let page = queue
        .dead_letters_page(limit, cursor)
        .await
        .map_err(ApiError::redis)?;
    let letters: Vec<serde_json::Value> = page
        .letters
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
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "dead_letters": letters,
        "next_cursor": page.next_cursor,
    })))
}

pub async fn replay_dead_letter(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let queue = dead_letters(&request, &state)?;
    let (partition, stream_id) = dead_letter_id(&id, queue)?;
    if queue
        .replay_dead_letter(partition, stream_id)
        .await
        .map_err(ApiError::redis)?
    {
        tracing::info!(id = %id, "dead letter replayed by an operator");
        Ok(HttpResponse::Accepted().json(serde_json::json!({ "replayed": id.as_str() })))
    } else {
        Err(ApiError::Missing(format!(
            "no dead letter {id} (already replayed, or never existed)"
        )))
    }
}
