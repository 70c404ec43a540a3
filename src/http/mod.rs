//! The HTTP surface: the webhook, admin, health and metrics routes, the operator console and the
//! one mapping from errors to HTTP status. May import bot, pipeline, store, meta, ops, config, domain.

pub mod console;
pub mod error;
pub mod routes;
pub mod secret;
pub mod state;

use actix_web::web;

/// Every route of the service: the API's and the console's.
pub fn configure(app: &mut web::ServiceConfig) {
    routes::configure(app);
    app.service(console::scope());
}
