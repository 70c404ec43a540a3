//! What the bot says: the engine (one message's decisions), the responders, the reply's parts,
//! handoff requests, languages and texts, voice transcription. May import pipeline, store, meta,
//! ops, config, domain.

pub mod engine;
pub mod flow_screens;
pub mod flows;
pub mod handoff;
pub mod i18n;
pub mod menu;
pub mod reply;
pub mod responder;
pub mod tenants;
pub mod transcription;
pub mod uploads;
