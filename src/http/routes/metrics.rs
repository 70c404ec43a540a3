//! `GET /metrics`: Prometheus text exposition.

use actix_web::HttpResponse;

pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::ops::monitoring::render())
}
