//! `POST /flows`: WhatsApp Flows' data-exchange endpoint. Meta's signature first, on the raw
//! bytes (432), then the envelope (400), its decryption (421), and the answer sealed as
//! `text/plain` (200, or 427 when the flow token is no longer valid).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::bot::flows::FlowAnswer;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::meta::flows::{open, Envelope, FlowCryptoError};
use crate::meta::webhook::SIGNATURE_HEADER;

pub async fn exchange(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(endpoint) = state.flows.as_ref() else {
        return Err(ApiError::NotFound);
    };
    let signature = request
        .headers()
        .get(SIGNATURE_HEADER)
        .map(|v| v.as_bytes());
    state
        .verifier
        .verify(signature, body.clone())
        .map_err(|_| ApiError::FlowsSignature)?;
    let envelope: Envelope = serde_json::from_slice(&body)
        .map_err(|_| ApiError::BadRequest("not a Flows request: expected encrypted_flow_data, encrypted_aes_key and initial_vector".into()))?;
    let opened = open(endpoint.key(), &envelope).map_err(|error| match error {
        FlowCryptoError::Malformed(reason) => ApiError::BadRequest(reason.into()),
        _ => ApiError::FlowsDecrypt,
    })?;
    let (status, answer) = match endpoint.answer(&opened).await? {
        FlowAnswer::Screen(answer) => (StatusCode::OK, answer),
        FlowAnswer::TokenInvalid(answer) => (
            StatusCode::from_u16(427).unwrap_or(StatusCode::GONE),
            answer,
        ),
    };
    Ok(HttpResponse::build(status)
        .content_type("text/plain")
        .body(opened.seal(&answer)))
}
