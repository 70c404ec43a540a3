//! HTTP handlers (docs/DESIGN.md §4) and the route table.

pub mod admin;
pub mod flows;
pub mod health;
pub mod metrics;
pub mod tenants;
pub mod webhook;

use actix_web::web;

/// The webhook.
pub fn configure_public(app: &mut web::ServiceConfig) {
    app.route("/webhook", web::get().to(webhook::verify))
        .route("/webhook", web::post().to(webhook::receive))
        .route("/flows", web::post().to(flows::exchange));
}

/// `/health` and `/ready`.
pub fn configure_probes(app: &mut web::ServiceConfig) {
    app.route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready));
}

/// `/metrics` and the admin API (the console mounts its own scope).
pub fn configure_private(app: &mut web::ServiceConfig) {
    app.route("/metrics", web::get().to(metrics::metrics))
        .service(
            web::scope("/admin")
                .wrap(actix_web::middleware::from_fn(admin::guard))
                .route("/conversations", web::get().to(admin::list_conversations))
                .route(
                    "/conversations/{phone_number_id}/{user}",
                    web::get().to(admin::show_conversation),
                )
                .route(
                    "/conversations/{phone_number_id}/{user}",
                    web::delete().to(admin::delete_conversation),
                )
                .route(
                    "/conversations/{phone_number_id}/{user}/handoff",
                    web::post().to(admin::take_over),
                )
                .route(
                    "/conversations/{phone_number_id}/{user}/resume",
                    web::post().to(admin::give_back),
                )
                .route(
                    "/conversations/{phone_number_id}/{user}/messages",
                    web::post().to(admin::send_operator_message),
                )
                .route("/messages", web::post().to(admin::send_notification))
                .route("/operators", web::get().to(admin::list_operators))
                .route("/operators/{name}", web::put().to(admin::put_operator))
                .route(
                    "/operators/{name}",
                    web::delete().to(admin::delete_operator),
                )
                .route("/tenants", web::get().to(tenants::list))
                .route("/tenants/{id}", web::get().to(tenants::show))
                .route("/tenants/{id}", web::put().to(tenants::put))
                .route("/tenants/{id}/signup", web::post().to(tenants::signup))
                .route("/tenants/{id}", web::delete().to(tenants::delete))
                .route("/audit", web::get().to(admin::audit))
                .route("/dead-letters", web::get().to(admin::list_dead_letters))
                .route(
                    "/dead-letters/{id}/replay",
                    web::post().to(admin::replay_dead_letter),
                ),
        );
}
