//! `/admin/tenants`: the businesses this deployment serves. Tenants of files are listed and
//! read-only; tenants stored here are TOML documents (the format of a tenant file), checked as
//! every replica will build them, sealed under `tenants.key`, and picked up by every replica
//! within `tenants.reload_ms`; Embedded Signup onboards one. Secrets are never answered.

use actix_web::{web, HttpRequest, HttpResponse};

use secrecy::{ExposeSecret, SecretString};

use crate::config::tenants::{
    onboarded_document, valid_tenant_id, Onboarded, Tenant, DEFAULT_TENANT, STORED,
};
use crate::http::error::ApiError;
use crate::http::routes::admin::Caller;
use crate::http::state::AppState;
use crate::meta::cloud_api::{CloudApi, CloudApiError};
use crate::ops::telemetry::error_chain;

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
    sealer(&state)?;
    if !valid_tenant_id(&id) {
        return Err(ApiError::BadRequest(
            "a tenant id is 1-32 of a-z, 0-9, - and _ (and not `default`)".into(),
        ));
    }
    let document = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the document must be UTF-8 TOML".into()))?;
    let (tenant, created) = store_document(&state, &id, document, "tenant_saved").await?;
    let described = described(&tenant);
    Ok(if created {
        HttpResponse::Created().json(described)
    } else {
        HttpResponse::Ok().json(described)
    })
}

/// Checks `document` as every replica will build it, seals and stores it as tenant `id`, and
/// records `action` in its audit; the tenant and whether it is new. 400 for a document that does
/// not build, 409 for a file tenant's id or a number another tenant has.
async fn store_document(
    state: &AppState,
    id: &str,
    document: &str,
    action: &str,
) -> Result<(Tenant, bool), ApiError> {
    let directory = &state.tenants;
    let sealer = sealer(state)?;
    let tenant = directory
        .settings()
        .tenant(id, document, STORED)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    directory.refresh().await.map_err(ApiError::Store)?;
    let snapshot = directory.snapshot();
    if snapshot
        .get(id)
        .is_some_and(|existing| !existing.is_stored())
    {
        return Err(ApiError::Conflict(format!(
            "tenant {id:?} is declared in a file; change the file"
        )));
    }
    if let Some((number, owner)) = snapshot.claimed(id, &tenant.numbers) {
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
    let created = snapshot.get(id).is_none();
    directory
        .store()
        .put(id, &sealer.seal(id, document))
        .await
        .map_err(ApiError::Store)?;
    directory.refresh().await.map_err(ApiError::Store)?;
    tracing::info!(tenant = %tenant.id, numbers = tenant.numbers.len(), created, action, "tenant stored");
    state
        .audit_in(
            &tenant.id,
            crate::store::audit::Action {
                by: "api",
                action,
                detail: &format!("numbers {}", tenant.numbers.join(", ")),
                ..Default::default()
            },
        )
        .await;
    Ok((tenant, created))
}

fn sealer(state: &AppState) -> Result<&crate::config::tenants::Sealer, ApiError> {
    state.tenants.sealer().ok_or_else(|| {
        ApiError::Conflict(
            "set tenants.key (WABOT_TENANTS__KEY) to store tenants: their secrets are sealed under it".into(),
        )
    })
}

/// The body of `POST /admin/tenants/{id}/signup`: what Meta's Embedded Signup handed the
/// business's browser.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Signup {
    /// The code of `FB.login`; none to finish a signup whose token is already stored.
    #[serde(default)]
    code: Option<String>,
    waba_id: String,
    phone_number_id: String,
    /// The number's two-step verification PIN (6 digits), set by registering.
    pin: String,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /admin/tenants/{id}/signup`: onboards a business from Meta's Embedded Signup. The code
/// becomes the business's token (`GET /oauth/access_token`), stored at once in the tenant's
/// sealed document with the WABA and the number (a new stored tenant, or one stored before);
/// then the app is subscribed to the WABA's webhooks and the number registered. 201/200 when all
/// of it worked; 502 naming the step that did not, with the tenant stored: send the same body
/// again without `code` (it is good once) to finish.
pub async fn signup(
    request: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    Caller::of(&request)?.admin_only()?;
    sealer(&state)?;
    if !valid_tenant_id(&id) {
        return Err(ApiError::BadRequest(
            "a tenant id is 1-32 of a-z, 0-9, - and _ (and not `default`)".into(),
        ));
    }
    let signup: Signup = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"code\", \"waba_id\", \"phone_number_id\", \"pin\"}}: {e}"
        ))
    })?;
    let digits = |s: &str| (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(&signup.waba_id) {
        return Err(ApiError::BadRequest(
            "waba_id must be the WABA's id (digits)".into(),
        ));
    }
    let Some(number) = crate::domain::PhoneNumberId::parse(&signup.phone_number_id)
        .filter(|_| digits(&signup.phone_number_id))
    else {
        return Err(ApiError::BadRequest(
            "phone_number_id must be the number's id (digits), not the phone number".into(),
        ));
    };
    if signup.pin.len() != 6 || !signup.pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest("pin must be 6 digits".into()));
    }
    let pin = SecretString::from(signup.pin.as_str());

    // Refused before Meta is asked: a file tenant's id, a number another tenant has.
    let directory = &state.tenants;
    directory.refresh().await.map_err(ApiError::Store)?;
    let snapshot = directory.snapshot();
    if snapshot.get(&id).is_some_and(|t| !t.is_stored()) {
        return Err(ApiError::Conflict(format!(
            "tenant {:?} is declared in a file; put the token there",
            id.as_str()
        )));
    }
    if let Some((number, owner)) =
        snapshot.claimed(&id, std::slice::from_ref(&signup.phone_number_id))
    {
        return Err(ApiError::Conflict(format!(
            "number {number} is already {owner}'s"
        )));
    }
    let stored = match directory.store().get(&id).await.map_err(ApiError::Store)? {
        Some(sealed) => Some(sealer(&state)?.open(&id, &sealed).ok_or_else(|| {
            ApiError::Conflict(format!(
                "tenant {:?} is stored under another tenants.key",
                id.as_str()
            ))
        })?),
        None => None,
    };
    let settings = directory.settings();
    let api = CloudApi::new(&settings.whatsapp).map_err(|e| ApiError::Upstream(error_chain(&e)))?;
    let token = match signup
        .code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        Some(code) => {
            let app_id = settings.whatsapp.app_id.as_deref().ok_or_else(|| {
                ApiError::Conflict(
                    "set whatsapp.app_id (WABOT_WHATSAPP__APP_ID) to the Meta app's id: the code is exchanged with it".into(),
                )
            })?;
            exchange(&api, app_id, &settings.whatsapp.app_secrets(), code)
                .await
                .map_err(|e| match e {
                    CloudApiError::Api { status, .. } if (400..500).contains(&status) => {
                        ApiError::BadRequest(format!(
                            "Meta refused the code (it is good once, for minutes): {}",
                            error_chain(&e)
                        ))
                    }
                    e => {
                        ApiError::Upstream(format!("the code exchange failed: {}", error_chain(&e)))
                    }
                })?
        }
        None => stored
            .as_ref()
            .and_then(|document| stored_token(document.expose_secret()))
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "code is required: the tenant has no stored token to finish with".into(),
                )
            })?,
    };
    let document = onboarded_document(
        stored.as_ref().map(|d| d.expose_secret()),
        &Onboarded {
            name: signup.name.as_deref(),
            business_account_id: &signup.waba_id,
            number: &signup.phone_number_id,
            access_token: token.expose_secret(),
        },
    )
    .map_err(|reason| ApiError::Conflict(format!("tenant {:?}: {reason}", id.as_str())))?;
    // Stored before the steps below: the code cannot be spent twice, the token must not be lost.
    let (tenant, created) = store_document(&state, &id, &document, "tenant_signup").await?;

    let api = api.with_token(token);
    let subscribed = match api.subscribe_app(&signup.waba_id).await {
        Ok(true) => Ok(()),
        Ok(false) => Err("Meta answered success: false".to_string()),
        Err(e) => Err(error_chain(&e)),
    };
    let registered = match api.register_number(&number, &pin).await {
        Ok(true) => Ok(()),
        Ok(false) => Err("Meta answered success: false".to_string()),
        Err(e) => Err(error_chain(&e)),
    };
    let step = |result: &Result<(), String>| match result {
        Ok(()) => serde_json::json!({"ok": true}),
        Err(error) => serde_json::json!({"ok": false, "error": error}),
    };
    let mut answer = serde_json::json!({
        "tenant": described(&tenant),
        "steps": {
            "token": {"ok": true},
            "subscribed_apps": step(&subscribed),
            "register": step(&registered),
        },
    });
    tracing::info!(
        tenant = %tenant.id,
        subscribed = subscribed.is_ok(),
        registered = registered.is_ok(),
        "embedded signup"
    );
    if subscribed.is_err() || registered.is_err() {
        answer["error"] = serde_json::json!(
            "the tenant and its token are stored, but a step at Meta failed: send the same body again without `code` to finish"
        );
        return Ok(HttpResponse::BadGateway().json(answer));
    }
    Ok(if created {
        HttpResponse::Created().json(answer)
    } else {
        HttpResponse::Ok().json(answer)
    })
}

/// The business's token for `code`, trying each configured app secret while one is rotated:
/// Meta refuses a secret that is not the app's before it looks at the code.
async fn exchange(
    api: &CloudApi,
    app_id: &str,
    secrets: &[SecretString],
    code: &str,
) -> Result<SecretString, CloudApiError> {
    let mut last = CloudApiError::Decode("whatsapp.app_secret is not set".into());
    for secret in secrets {
        match api.exchange_code(app_id, secret, code).await {
            Err(error) if wrong_secret(&error) => last = error,
            result => return result,
        }
    }
    Err(last)
}

/// Meta's answer to a client secret that is not the app's (`OAuthException`, code 1 or 101).
fn wrong_secret(error: &CloudApiError) -> bool {
    match error {
        CloudApiError::Api { code, message, .. } => {
            matches!(code, 1 | 101) && message.to_ascii_lowercase().contains("client secret")
        }
        _ => false,
    }
}

/// `[whatsapp] access_token` of a stored document.
fn stored_token(document: &str) -> Option<SecretString> {
    let table: toml::Table = toml::from_str(document).ok()?;
    table
        .get("whatsapp")?
        .get("access_token")?
        .as_str()
        .filter(|t| !t.trim().is_empty())
        .map(|t| SecretString::from(t.trim()))
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
