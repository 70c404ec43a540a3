//! HTTP handlers (docs/DESIGN.md §4) and the state they share.

pub mod admin;
pub mod health;
pub mod metrics;
pub mod webhook;

use std::sync::Arc;

use secrecy::SecretString;

use crate::sink::EventSink;
use crate::store::connection::Client;
use crate::store::conversation::ConversationStore;
use crate::store::queue::Queue;
use crate::webhook::SignatureVerifier;

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
    pub console: Option<crate::console::ConsoleState>,
}
