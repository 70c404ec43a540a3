//! `/admin/tenants`: the businesses this deployment serves. Tenants of files are listed and
//! read-only; tenants stored here are TOML documents (the format of a tenant file), checked as
//! every replica will build them, sealed under `tenants.key`, and picked up by every replica
//! within `tenants.reload_ms`. Secrets are never answered.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::tenants::{valid_tenant_id, Tenant, DEFAULT_TENANT, STORED};
use crate::http::error::ApiError;
use crate::http::routes::admin::Caller;
use crate::http::state::AppState;

/// What the API says of a tenant: never its token or secrets.
fn described(tenant: &Tenant) -> serde_json::Value {
    let settings = &tenant.settings;
    serde_json::json!({
        "id": tenant.id,
        "name": tenant.name,
        "numbers": tenant.numbers,
        "source": tenant.source,
        "max_concurrency": tenant.max_concurrency,
        "api_token": tenant.api_token.is_some(),
        "responder": settings.responder.kind.as_str(),
        "language": settings.conversation.language,
        "throughput_per_sec": settings.whatsapp.throughput_per_sec,
    })
}

/// `GET /admin/tenants`: every tenant, the default one's numbers, and the stored tenants left out.
pub async fn list(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::of(&request)?.admin_only()?;
    // This replica's view may be up to `tenants.reload_ms` old; an operator reads the current one.
    state.tenants.refresh().await.map_err(ApiError::Store)?;
    let snapshot = state.tenants.snapshot();
    let settings = state.tenants.settings();
    let problems: Vec<serde_json::Value> = snapshot
        .problems
        .iter()
        .map(|(id, reason)| serde_json::json!({"id": id, "reason": reason}))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "tenants": snapshot.tenants.iter().map(|t| described(t)).collect::<Vec<_>>(),
        "default": {
            "id": DEFAULT_TENANT,
            "numbers": settings.default_numbers(),
            "every_other_number": snapshot.tenants.is_empty(),
        },
        "problems": problems,
    })))
}

/// `GET /admin/tenants/{id}`.
pub async fn show(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Caller::of(&request)?.admin_only()?;
    state.tenants.refresh().await.map_err(ApiError::Store)?;
    match state.tenants.snapshot().get(&id) {
        Some(tenant) => Ok(HttpResponse::Ok().json(described(tenant))),
        None => Err(ApiError::Missing(format!("no tenant {:?}", id.as_str()))),
    }
}

/// `PUT /admin/tenants/{id}` with the tenant's TOML document: creates or replaces it. 400 for a
/// document that does not build (named), 409 for an id a file has, a number another tenant
/// has, or no `tenants.key`.
pub async fn put(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    Caller::of(&request)?.admin_only()?;
    let directory = &state.tenants;
    let Some(sealer) = directory.sealer() else {
        return Err(ApiError::Conflict(
            "set tenants.key (WABOT_TENANTS__KEY) to store tenants: their secrets are sealed under it".into(),
        ));
    };
    if !valid_tenant_id(&id) {
        return Err(ApiError::BadRequest(
            "a tenant id is 1-32 of a-z, 0-9, - and _ (and not `default`)".into(),
        ));
    }
    let document = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the document must be UTF-8 TOML".into()))?;
    let tenant = directory
        .settings()
        .tenant(&id, document, STORED)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    directory.refresh().await.map_err(ApiError::Store)?;
    let snapshot = directory.snapshot();
    if snapshot
        .get(&id)
        .is_some_and(|existing| !existing.is_stored())
    {
        return Err(ApiError::Conflict(format!(
            "tenant {:?} is declared in a file; change the file",
            id.as_str()
        )));
    }
    if let Some((number, owner)) = snapshot.claimed(&id, &tenant.numbers) {
        return Err(ApiError::Conflict(format!(
            "number {number} is already {owner}'s"
        )));
    }
    // What every replica will build: a rules file that does not load, a bad token list... are
    // refused here rather than left for the workers to log.
    let shared = crate::bot::tenants::Shared {
        redis: state.redis.clone(),
        keys: state.queue.keys().clone(),
    };
    crate::bot::tenants::engine(&tenant.settings, &tenant.id, &shared, false)
        .map_err(|e| ApiError::BadRequest(format!("tenant `{id}`: {e}")))?;
    let created = snapshot.get(&id).is_none();
    directory
        .store()
        .put(&id, &sealer.seal(&id, document))
        .await
        .map_err(ApiError::Store)?;
    directory.refresh().await.map_err(ApiError::Store)?;
    tracing::info!(tenant = %tenant.id, numbers = tenant.numbers.len(), created, "tenant stored");
    state
        .audit_in(
            &tenant.id,
            crate::store::audit::Action {
                by: "api",
                action: "tenant_saved",
                detail: &format!("numbers {}", tenant.numbers.join(", ")),
                ..Default::default()
            },
        )
        .await;
    let described = described(&tenant);
    Ok(if created {
        HttpResponse::Created().json(described)
    } else {
        HttpResponse::Ok().json(described)
    })
}

/// `DELETE /admin/tenants/{id}`: 204; 404 when there is none; 409 for a tenant of a file. Its
/// conversations stay (under its numbers, now nobody's: recorded, not answered).
pub async fn delete(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Caller::of(&request)?.admin_only()?;
    let directory = &state.tenants;
    directory.refresh().await.map_err(ApiError::Store)?;
    if let Some(tenant) = directory.snapshot().get(&id).filter(|t| !t.is_stored()) {
        return Err(ApiError::Conflict(format!(
            "tenant {:?} is declared in {}; remove the file",
            id.as_str(),
            tenant.source
        )));
    }
    if directory
        .store()
        .remove(&id)
        .await
        .map_err(ApiError::Store)?
    {
        directory.refresh().await.map_err(ApiError::Store)?;
        tracing::info!(tenant = %id.as_str(), "tenant removed");
        state
            .audit_in(
                &id,
                crate::store::audit::Action {
                    by: "api",
                    action: "tenant_removed",
                    ..Default::default()
                },
            )
            .await;
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::Missing(format!("no tenant {:?}", id.as_str())))
    }
}
