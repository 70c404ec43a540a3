//! Liveness (`/health`: the process answers) and readiness (`/ready`: Redis answers PING).

use actix_web::{web, HttpResponse};

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::connection::ping;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    ping(&state.redis).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}
