//! HTTP handlers (DESIGN.md §4) and the state they share.

pub mod health;
pub mod webhook;

use std::sync::Arc;

use secrecy::SecretString;

use crate::sink::EventSink;
use crate::store::connection::Client;
use crate::webhook::SignatureVerifier;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub verifier: SignatureVerifier,
    pub verify_token: SecretString,
    pub sink: Arc<dyn EventSink>,
    pub redis: Client,
    pub max_body_bytes: usize,
}
