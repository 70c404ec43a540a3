//! wabot: a WhatsApp Cloud API bot worker. See `docs/ARCHITECTURE.md` for the module map.

pub mod cli;
pub mod cloud_api;
pub mod configuration;
pub mod console;
pub mod doctor;
pub mod domain;
pub mod engine;
pub mod error;
pub mod events;
pub mod handoff;
pub mod i18n;
pub mod monitoring;
pub mod otel;
pub mod outbound;
pub mod reply;
pub mod responder;
pub mod routes;
pub mod sandbox;
pub mod sink;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod transcription;
pub mod webhook;
pub mod window;
pub mod worker;
