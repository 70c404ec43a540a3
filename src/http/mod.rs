//! The HTTP surface: the webhook, admin, health and metrics routes, the operator console and the
//! one mapping from errors to HTTP status. May import bot, pipeline, store, meta, ops, config, domain.

pub mod console;
pub mod error;
pub mod routes;
