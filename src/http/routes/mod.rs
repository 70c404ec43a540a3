//! HTTP handlers (docs/DESIGN.md §4) and the state they share.

pub mod admin;
pub mod health;
pub mod metrics;
pub mod webhook;

use std::sync::Arc;

use actix_web::web;

use secrecy::SecretString;

use crate::meta::webhook::SignatureVerifier;
use crate::store::connection::Client;
use crate::store::conversation::ConversationStore;
use crate::store::queue::Queue;
use crate::store::sink::EventSink;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub verifier: SignatureVerifier,
    pub verify_token: SecretString,
    pub sink: Arc<dyn EventSink>,
    pub redis: Client,
    pub max_body_bytes: usize,
    /// The admin API's stores.
    pub conversations: ConversationStore,
    pub queue: Queue,
    /// Empty: the admin API is off.
    pub admin_token: SecretString,
    /// Default length of an operator's takeover (`handoff.timeout_secs`).
    pub handoff_minutes: u64,
    /// The operator console (production wiring with an admin token only).
    pub console: Option<crate::http::console::ConsoleState>,
}

/// Every route of the service, in one place.
pub fn configure(app: &mut web::ServiceConfig) {
    app.route("/webhook", web::get().to(webhook::verify))
        .route("/webhook", web::post().to(webhook::receive))
        .route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(metrics::metrics))
        .service(crate::http::console::scope())
        .service(
            web::scope("/admin")
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
                .route("/dead-letters", web::get().to(admin::list_dead_letters))
                .route(
                    "/dead-letters/{id}/replay",
                    web::post().to(admin::replay_dead_letter),
                ),
        );
}
