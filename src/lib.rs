//! wabot: a WhatsApp Cloud API bot worker. The folders are layers, listed here bottom to top; a
//! module imports only from its own layer and the layers below it (checked by
//! `tests/api/layering.rs`). `docs/ARCHITECTURE.md` walks one message through them.

/// The domain types and the one model of what the bot sends.
pub mod domain;

/// Typed, layered settings.
pub mod config;

/// Logs, traces, metrics.
pub mod ops;

/// Meta's protocol: webhook in, Cloud API out, the 24-hour window.
pub mod meta;

/// Redis: keys, scripts, the inbox.
pub mod store;

/// Durable ordered processing: workers, events, outbound messages.
pub mod pipeline;

/// What the bot answers: engine, responders, texts.
pub mod bot;

/// Routes, console, HTTP errors.
pub mod http;

/// Command line, start-up, sandbox, doctor.
pub mod app;
