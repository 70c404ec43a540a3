//! Admin API (Bearer `admin.token`, compared in constant time; off while the token is empty):
//! look into conversations and dead letters, delete a conversation, replay a dead letter, hand
//! a conversation to a person and back, and queue operator messages and notifications.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use fred::prelude::ClientLike;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::domain::{OutboundSource, PhoneNumberId, UserId};
use crate::http::client::{FAILURE_WINDOW_SECS, MAX_FAILURES};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::ops::telemetry::{rejections, LogVerdict};
use crate::pipeline::outbound;
use crate::store::audit::Action;
use crate::store::conversation::ConversationStore;
use crate::store::queue::{parse_dead_letter_id, DeadLetter, Queue};
use crate::store::tenants::Route;

use std::sync::Arc;

use crate::config::tenants::Tenant;

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
pub(crate) fn check_conversation_cursor(cursor: &str, clustered: bool) -> Result<(), ApiError> {
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
pub(crate) fn dead_letter_id<'a>(id: &'a str, queue: &Queue) -> Result<(u32, &'a str), ApiError> {
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

/// In front of every `/admin` route: 404 while the API is off (indistinguishable from a route
/// that does not exist), 401 for a wrong bearer token, 429 once the client used up the failure
/// budget it shares with the console's sign-in (then even the right token waits for the window
/// to end, so guessing in parallel gains nothing once it is spent), and the HSTS header when
/// configured.
pub async fn guard(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(request
            .error_response(ApiError::NotFound)
            .map_into_right_body());
    };
    match authorize(request.request(), &state).await {
        Ok(caller) => {
            actix_web::HttpMessage::extensions_mut(&request).insert(caller);
        }
        Err(error) => {
            let mut response = request.error_response(error);
            hsts(response.headers_mut(), &state);
            return Ok(response.map_into_right_body());
        }
    }
    let mut response = next.call(request).await?;
    hsts(response.headers_mut(), &state);
    Ok(response.map_into_left_body())
}

/// `Strict-Transport-Security` on an admin or console answer, when `admin.hsts_max_age_secs`.
pub fn hsts(headers: &mut actix_web::http::header::HeaderMap, state: &AppState) {
    if state.hsts_max_age_secs > 0 {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&format!(
            "max-age={}",
            state.hsts_max_age_secs
        )) {
            headers.insert(actix_web::http::header::STRICT_TRANSPORT_SECURITY, value);
        }
    }
}

/// Who an admin request acts for.
#[derive(Debug, Clone)]
pub enum Caller {
    /// `admin.token`: everything.
    Admin,
    /// A tenant's `api_token`: that tenant's conversations, messages and dead letters only.
    Tenant(Arc<Tenant>),
}

impl Caller {
    /// The caller the guard let in (a route outside the guard acts for nobody).
    pub fn of(request: &HttpRequest) -> Result<Caller, ApiError> {
        actix_web::HttpMessage::extensions(request)
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }

    /// Whether it may see and act on the conversations of business number `number`.
    pub fn sees(&self, number: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Tenant(tenant) => tenant.numbers.iter().any(|n| n == number),
        }
    }

    /// Who acts, as the audit records it: `api` (the admin token) or `api:<tenant>`.
    pub fn who(&self) -> String {
        match self {
            Caller::Admin => "api".into(),
            Caller::Tenant(tenant) => format!("api:{}", tenant.id),
        }
    }

    /// Deployment-wide routes (operators, tenants) are the admin token's.
    pub fn admin_only(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Tenant(_) => Err(ApiError::Forbidden(
                "a tenant's token reaches only its own conversations, messages and dead letters"
                    .into(),
            )),
        }
    }
}

/// The caller a presented token names: the admin token, else a tenant's API token (each
/// compared in constant time).
fn caller_of(presented: &str, state: &AppState) -> Option<Caller> {
    if crate::http::secret::tokens_match(presented, state.admin_token.expose_secret()) {
        return Some(Caller::Admin);
    }
    let snapshot = state.tenants.snapshot();
    let mut found = None;
    // Every tenant's token is compared, so the time does not tell which one matched.
    for tenant in &snapshot.tenants {
        if let Some(token) = &tenant.api_token {
            if crate::http::secret::tokens_match(presented, token.expose_secret()) {
                found = Some(Caller::Tenant(tenant.clone()));
            }
        }
    }
    found
}

async fn authorize(request: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    if state.admin_token.expose_secret().is_empty() {
        return Err(ApiError::NotFound);
    }
    let presented = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let caller = caller_of(presented, state);
    let matches = caller.is_some();
    // The console's session store keeps the budget; it exists whenever the token is set.
    let Some(sessions) = state.console.as_ref().map(|console| &console.sessions) else {
        return caller.ok_or(ApiError::Unauthorized);
    };
    let client = state.trusted_proxies.client_key(request);
    let attempts = if matches {
        sessions.sign_in_attempts(&client).await
    } else {
        sessions
            .count_sign_in_attempt(&client, FAILURE_WINDOW_SECS)
            .await
    };
    let attempts = match attempts {
        Ok(attempts) => attempts,
        // Redis is down: the budget cannot be read or spent. The right token still works (the
        // handler answers 503 where it needs Redis, input errors stay 400); a wrong one is
        // refused as always, uncounted: with 16 characters or more, an outage's worth of
        // guesses is no risk.
        Err(error) => {
            tracing::debug!(error = %error, "the admin failure budget is unavailable");
            return caller.ok_or(ApiError::Unauthorized);
        }
    };
    // A wrong token was counted before this check, the right one is not: after the budget's
    // last failure both are refused, as at the console's sign-in.
    let spent = if matches {
        attempts >= MAX_FAILURES
    } else {
        attempts > MAX_FAILURES
    };
    if spent {
        if !matches {
            if let LogVerdict::Log { suppressed } = rejections().check("admin_budget") {
                tracing::warn!(%client, attempts, suppressed, "admin API: too many wrong tokens; refusing the client until its window ends");
            }
        }
        return Err(ApiError::TooManyFailures {
            retry_after_secs: FAILURE_WINDOW_SECS,
        });
    }
    caller.ok_or(ApiError::Unauthorized)
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

/// A request about one conversation, named by its path: `/admin/conversations/{pnid}/{user}`.
type ConversationRequest = (
    HttpRequest,
    web::Data<AppState>,
    web::Path<(String, String)>,
);

/// The conversation store and the conversation the path names, when the caller may see it
/// (another tenant's is "no such conversation", like one that does not exist).
fn conversation<'a>(
    request: &HttpRequest,
    state: &'a AppState,
    path: &(String, String),
) -> Result<(&'a ConversationStore, PhoneNumberId, UserId), ApiError> {
    let (pnid, user) = visible(request, path)?;
    Ok((&state.conversations, pnid, user))
}

/// The conversation the ids name, when the caller may see it.
fn visible(
    request: &HttpRequest,
    ids: &(String, String),
) -> Result<(PhoneNumberId, UserId), ApiError> {
    let (pnid, user) = conversation_ids(ids)?;
    if !Caller::of(request)?.sees(pnid.as_str()) {
        return Err(ApiError::Missing("no such conversation".into()));
    }
    Ok((pnid, user))
}

pub async fn list_conversations(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let store = &state.conversations;
    let page: Page = query(&request)?;
    if let Some(cursor) = &page.cursor {
        check_conversation_cursor(cursor, state.redis.is_clustered())?;
    }
    let count = match page.count {
        Some(0) => return Err(ApiError::BadRequest("count must be at least 1".into())),
        Some(count) => count.min(1000),
        None => 100,
    };
    let mut page = store
        .list(page.cursor.as_deref(), count)
        .await
        .map_err(ApiError::redis)?;
    // A tenant's page holds its own conversations only (so it may hold fewer than `count`).
    let caller = Caller::of(&request)?;
    page.conversations
        .retain(|conversation| caller.sees(&conversation.phone_number_id));
    Ok(HttpResponse::Ok().json(page))
}

pub async fn show_conversation(
    (request, state, path): ConversationRequest,
) -> Result<HttpResponse, ApiError> {
    let (store, pnid, user) = conversation(&request, &state, &path)?;
    show(store, &pnid, &user).await
}

pub async fn delete_conversation(
    (request, state, path): ConversationRequest,
) -> Result<HttpResponse, ApiError> {
    let (store, pnid, user) = conversation(&request, &state, &path)?;
    if store.delete(&pnid, &user).await.map_err(ApiError::redis)? {
        tracing::info!(user = %user, "conversation deleted by an operator");
        state
            .audit(Action {
                by: &Caller::of(&request)?.who(),
                action: "delete",
                conversation: Some((pnid.as_str(), user.as_str())),
                ..Action::default()
            })
            .await;
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::Missing("no such conversation".into()))
    }
}

/// The accounts the console signs in with (there whenever the admin API is).
fn operators(state: &AppState) -> Result<&crate::store::operators::OperatorStore, ApiError> {
    state
        .console
        .as_ref()
        .map(|console| console.sessions.operators())
        .ok_or(ApiError::NotFound)
}

/// `GET /admin/operators`: the console's named operators (never their password hashes).
pub async fn list_operators(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::of(&request)?.admin_only()?;
    let accounts = operators(&state)?.list().await.map_err(ApiError::redis)?;
    let listed: Vec<serde_json::Value> = accounts
        .iter()
        .map(|a| {
            serde_json::json!({
                "name": a.name,
                "role": a.role,
                "tenants": a.tenants,
                "created_at": a.created_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "operators": listed })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorBody {
    role: crate::store::operators::OperatorRole,
    password: String,
    /// The tenants whose conversations it sees; absent or empty: every conversation.
    #[serde(default)]
    tenants: Vec<String>,
}

/// `PUT /admin/operators/{name}` `{"role", "password", "tenants"}`: creates the account or
/// replaces its password, role and tenants (its sessions end). Each tenant must exist now
/// (`default`: the deployment's own numbers), so a typo does not make an account that sees
/// nothing.
pub async fn put_operator(
    request: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    Caller::of(&request)?.admin_only()?;
    let body: OperatorBody = json_body(&body)?;
    let name = name.into_inner();
    let role = body.role;
    if let Err(error) = state.tenants.refresh().await {
        tracing::debug!(error = %error, "tenants not re-read before saving an operator");
    }
    let snapshot = state.tenants.snapshot();
    if let Some(unknown) = body
        .tenants
        .iter()
        .find(|id| *id != crate::config::tenants::DEFAULT_TENANT && snapshot.get(id).is_none())
    {
        return Err(ApiError::BadRequest(format!("no tenant {unknown:?}")));
    }
    let account = web::block(move || {
        crate::store::operators::Operator::new(&name, role, &body.password, &body.tenants)
    })
    .await
    .map_err(|_| ApiError::BadRequest("the password could not be hashed".into()))?
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    operators(&state)?
        .put(&account)
        .await
        .map_err(ApiError::redis)?;
    tracing::info!(operator = %account.name, role = account.role.as_str(), "operator account saved");
    state
        .audit(Action {
            by: "api",
            action: "operator_saved",
            detail: &account.summary(),
            ..Action::default()
        })
        .await;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "name": account.name,
        "role": account.role,
        "tenants": account.tenants,
    })))
}

/// `DELETE /admin/operators/{name}`: 204, or 404 when there is none.
pub async fn delete_operator(
    request: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Caller::of(&request)?.admin_only()?;
    if operators(&state)?
        .remove(&name)
        .await
        .map_err(ApiError::redis)?
    {
        tracing::info!(operator = %name.as_str(), "operator account removed");
        state
            .audit(Action {
                by: "api",
                action: "operator_removed",
                detail: name.as_str(),
                ..Action::default()
            })
            .await;
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::Missing(format!(
            "no operator {:?}",
            name.as_str()
        )))
    }
}

pub async fn list_dead_letters(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let queue = &state.queue;
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
    let caller = Caller::of(&request)?;
    let letters: Vec<serde_json::Value> = page
        .letters
        .iter()
        .filter(|d| letter_visible(&caller, d))
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
    let queue = &state.queue;
    let (partition, stream_id) = dead_letter_id(&id, queue)?;
    let caller = Caller::of(&request)?;
    let letter = queue
        .find_dead_letter(partition, stream_id)
        .await
        .map_err(ApiError::redis)?;
    if !letter
        .as_ref()
        .is_some_and(|letter| letter_visible(&caller, letter))
    {
        return Err(ApiError::Missing(format!(
            "no dead letter {id} (already replayed, or never existed)"
        )));
    }
    let number = letter.and_then(|letter| letter.phone_number_id());
    if queue
        .replay_dead_letter(partition, stream_id)
        .await
        .map_err(ApiError::redis)?
    {
        tracing::info!(id = %id, "dead letter replayed by an operator");
        state
            .audit(Action {
                by: &caller.who(),
                action: "replay",
                conversation: number.as_deref().map(|n| (n, "")),
                detail: id.as_str(),
            })
            .await;
        Ok(HttpResponse::Accepted().json(serde_json::json!({ "replayed": id.as_str() })))
    } else {
        Err(ApiError::Missing(format!(
            "no dead letter {id} (already replayed, or never existed)"
        )))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditQuery {
    /// Whose audit: a tenant's id or `default` (the deployment's); a tenant's token reads its
    /// own whatever it names here, and another's is "not found".
    tenant: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /admin/audit?tenant=&cursor=&limit=`: who did what, newest first.
pub async fn audit(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params: AuditQuery = query(&request)?;
    let caller = Caller::of(&request)?;
    let tenant = match (&caller, params.tenant.as_deref()) {
        (Caller::Tenant(own), Some(named)) if named != own.id => {
            return Err(ApiError::Missing(format!("no tenant {named:?}")))
        }
        (Caller::Tenant(own), _) => own.id.clone(),
        (Caller::Admin, named) => named
            .unwrap_or(crate::config::tenants::DEFAULT_TENANT)
            .to_string(),
    };
    if tenant != crate::config::tenants::DEFAULT_TENANT
        && !crate::config::tenants::valid_tenant_id(&tenant)
    {
        return Err(ApiError::BadRequest(format!(
            "tenant {tenant:?} is not a tenant id"
        )));
    }
    let cursor = params.cursor.as_deref().filter(|c| !c.is_empty());
    if cursor.is_some_and(|c| !crate::store::audit::valid_cursor(c)) {
        return Err(ApiError::BadRequest(
            "invalid cursor: pass the next_cursor of the previous page".into(),
        ));
    }
    let limit = match params.limit {
        Some(0) => return Err(ApiError::BadRequest("limit must be at least 1".into())),
        Some(limit) => limit.min(1000),
        None => 100,
    };
    let page = state
        .audit
        .page(&tenant, cursor, limit)
        .await
        .map_err(ApiError::redis)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "tenant": tenant,
        "entries": page.entries,
        "next_cursor": page.next_cursor,
    })))
}

/// Whether the caller may see a dead letter: the admin always; a tenant, those of its numbers
/// (one that names no number is the deployment's).
fn letter_visible(caller: &Caller, letter: &DeadLetter) -> bool {
    match caller {
        Caller::Admin => true,
        Caller::Tenant(_) => letter
            .phone_number_id()
            .is_some_and(|number| caller.sees(&number)),
    }
}

/// What an operator or a notification says: free-form `text` or a `template`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundBody {
    /// Required by `POST /admin/messages`; taken from the path for a conversation's messages.
    phone_number_id: Option<String>,
    to: Option<String>,
    text: Option<String>,
    template: Option<TemplateBody>,
    /// Buttons, a list, media or a location, in the http responder's action schema.
    message: Option<crate::domain::action::WireAction>,
    /// A retried POST with the same key sends once.
    idempotency_key: Option<String>,
    /// Quote a message: its wamid, or `last` for the user's newest message.
    reply_to: Option<String>,
    /// An operator's message: who writes it (a name, kept on the turn and the takeover).
    by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    name: String,
    language: String,
    #[serde(default)]
    components: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffBody {
    /// How long the person keeps the conversation (default `handoff.timeout_secs`).
    minutes: Option<u64>,
    note: Option<String>,
    /// Who takes it (an operator's name or id), shown in the conversation.
    by: Option<String>,
}

/// A JSON body as `T`; malformed is a 400 naming the problem.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("a JSON body is required".into()));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Queues an outbound message in its conversation's order; 202 once stored.
async fn enqueue(
    state: &AppState,
    caller: &Caller,
    pnid: PhoneNumberId,
    to: UserId,
    source: OutboundSource,
    body: &OutboundBody,
) -> Result<HttpResponse, ApiError> {
    let invalid = |e: outbound::OutboundError| ApiError::BadRequest(e.to_string());
    if let Route::Unrouted = state.tenants.snapshot().route(pnid.as_str()) {
        return Err(ApiError::Missing(format!(
            "no tenant has business number {pnid}: nothing is sent from it"
        )));
    }
    let content = outbound::content(
        body.text.as_deref(),
        body.template.as_ref().map(|t| {
            (
                t.name.as_str(),
                t.language.as_str(),
                t.components.as_slice(),
            )
        }),
        body.message.as_ref(),
    )
    .map_err(invalid)?;
    // `last` is resolved now: the message the operator saw when they wrote.
    let last = match body.reply_to.as_deref().map(str::trim) {
        Some("last") => state
            .conversations
            .get(&pnid, &to)
            .await
            .map_err(ApiError::redis)?
            .and_then(|view| view.last_user_message),
        _ => None,
    };
    let mut message = outbound::request(
        pnid,
        to.clone(),
        source,
        content,
        body.idempotency_key.as_deref(),
    )
    .map_err(invalid)?;
    message.reply_to =
        outbound::quoting(body.reply_to.as_deref(), last.as_deref()).map_err(invalid)?;
    if let Some(by) = &body.by {
        if source != OutboundSource::Operator || !crate::store::operators::valid_name(by) {
            return Err(ApiError::BadRequest(
                "by names the operator of a conversation's message: 1 to 64 letters, digits, spaces and .-_'".into(),
            ));
        }
        message.by = Some(by.clone());
    }
    let id = message.id.clone();
    let by = message.by.clone();
    let number = message.phone_number_id.clone();
    let new = outbound::enqueue(state.sink.as_ref(), message).await?;
    tracing::info!(user = %to, duplicate = !new, ?source, "outbound message queued");
    if new {
        let detail = by.map(|by| format!("written by {by}")).unwrap_or_default();
        state
            .audit(Action {
                by: &caller.who(),
                action: match source {
                    OutboundSource::Notification => "notification",
                    _ => "message",
                },
                conversation: Some((number.as_str(), to.as_str())),
                detail: &detail,
            })
            .await;
    }
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "id": id,
        "status": if new { "queued" } else { "duplicate" },
    })))
}

/// `POST /admin/conversations/{pnid}/{user}/messages`: an operator answers the user.
pub async fn send_operator_message(
    (request, state, path): ConversationRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (pnid, user) = visible(&request, &path)?;
    let body: OutboundBody = json_body(&body)?;
    if body.phone_number_id.is_some() || body.to.is_some() {
        return Err(ApiError::BadRequest(
            "the conversation is named by the path; leave out phone_number_id and to".into(),
        ));
    }
    let caller = Caller::of(&request)?;
    enqueue(&state, &caller, pnid, user, OutboundSource::Operator, &body).await
}

/// `POST /admin/messages`: a notification (a template outside the window).
pub async fn send_notification(
    request: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: OutboundBody = json_body(&body)?;
    let (Some(pnid), Some(to)) = (&body.phone_number_id, &body.to) else {
        return Err(ApiError::BadRequest(
            "phone_number_id and to are required".into(),
        ));
    };
    let (pnid, to) = conversation_ids(&(pnid.clone(), to.clone()))?;
    let caller = Caller::of(&request)?;
    if !caller.sees(pnid.as_str()) {
        return Err(ApiError::Missing(format!("no business number {pnid}")));
    }
    enqueue(
        &state,
        &caller,
        pnid,
        to,
        OutboundSource::Notification,
        &body,
    )
    .await
}

/// `POST /admin/conversations/{pnid}/{user}/handoff`: a person takes the conversation.
pub async fn take_over(
    (request, state, path): ConversationRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (store, pnid, user) = conversation(&request, &state, &path)?;
    let body: HandoffBody = if body.iter().all(u8::is_ascii_whitespace) {
        HandoffBody {
            minutes: None,
            note: None,
            by: None,
        }
    } else {
        json_body(&body)?
    };
    let minutes = match body.minutes {
        Some(0) => return Err(ApiError::BadRequest("minutes must be at least 1".into())),
        Some(m) if m > 7 * 24 * 60 => {
            return Err(ApiError::BadRequest(
                "minutes must be at most a week".into(),
            ))
        }
        Some(m) => m,
        None => state.handoff_minutes,
    };
    let until = crate::domain::clock::unix_ms() + (minutes as i64) * 60_000;
    let mut info = serde_json::json!({ "reason": "operator" });
    if let Some(note) = body.note {
        info["note"] = serde_json::Value::String(note.chars().take(500).collect());
    }
    let named: Option<String> = body.by.map(|by| by.chars().take(100).collect());
    if let Some(by) = &named {
        info["by"] = serde_json::Value::String(by.clone());
    }
    store
        .take_over(&pnid, &user, until, &info, None)
        .await
        .map_err(ApiError::Store)?;
    metrics::counter!(crate::ops::monitoring::HANDOFFS, "reason" => "operator").increment(1);
    tracing::info!(user = %user, minutes, "an operator took the conversation over");
    let detail = match &named {
        Some(by) => format!("{minutes} min, for {by}"),
        None => format!("{minutes} min"),
    };
    state
        .audit(Action {
            by: &Caller::of(&request)?.who(),
            action: "take_over",
            conversation: Some((pnid.as_str(), user.as_str())),
            detail: &detail,
        })
        .await;
    show(store, &pnid, &user).await
}

/// `POST /admin/conversations/{pnid}/{user}/resume`: back to the bot.
pub async fn give_back(
    (request, state, path): ConversationRequest,
) -> Result<HttpResponse, ApiError> {
    let (store, pnid, user) = conversation(&request, &state, &path)?;
    if !store
        .give_back(&pnid, &user)
        .await
        .map_err(ApiError::Store)?
    {
        return Err(ApiError::Missing("no such conversation".into()));
    }
    tracing::info!(user = %user, "the conversation is back with the bot");
    state
        .audit(Action {
            by: &Caller::of(&request)?.who(),
            action: "give_back",
            conversation: Some((pnid.as_str(), user.as_str())),
            ..Action::default()
        })
        .await;
    show(store, &pnid, &user).await
}

async fn show(
    store: &ConversationStore,
    pnid: &PhoneNumberId,
    user: &UserId,
) -> Result<HttpResponse, ApiError> {
    match store.get(pnid, user).await.map_err(ApiError::Store)? {
        Some(view) => Ok(HttpResponse::Ok().json(view)),
        None => Err(ApiError::Missing("no such conversation".into())),
    }
}
