//! The HTTP surface: the webhook, admin, health and metrics routes, the operator console and the
//! one mapping from errors to HTTP status. May import bot, pipeline, store, meta, ops, config, domain.

pub mod client;
pub mod console;
pub mod error;
pub mod routes;
pub mod secret;
pub mod state;

use actix_web::web;

/// Every route of the service on one port: the API's and the console's.
pub fn configure(app: &mut web::ServiceConfig) {
    routes::configure_public(app);
    routes::configure_probes(app);
    routes::configure_private(app);
    app.service(console::scope());
}

/// The public port when `admin.listen` is set: the webhook and the probes only.
pub fn configure_public(app: &mut web::ServiceConfig) {
    routes::configure_public(app);
    routes::configure_probes(app);
}

/// The `admin.listen` port: the admin API, the console, `/metrics` and the probes.
pub fn configure_private(app: &mut web::ServiceConfig) {
    routes::configure_private(app);
    routes::configure_probes(app);
    app.service(console::scope());
}
