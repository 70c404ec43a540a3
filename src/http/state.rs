//! The state every handler shares: the admin API's stores and the console's sessions.

use std::sync::Arc;

use secrecy::SecretString;

use crate::http::client::TrustedProxies;
use crate::meta::webhook::SignatureVerifier;
use crate::pipeline::pressure::IntakePressure;
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
    pub console: Option<ConsoleState>,
    /// Where the webhook reports its answer times when workers share the process.
    pub pressure: Option<Arc<IntakePressure>>,
    /// Who a request comes from (`admin.trusted_proxies`), for the failure budgets.
    pub trusted_proxies: TrustedProxies,
    /// `admin.secure_cookies`.
    pub secure_cookies: bool,
    /// `admin.hsts_max_age_secs` (0: no header).
    pub hsts_max_age_secs: u64,
    /// The WhatsApp Flows endpoint, when a key is configured.
    pub flows: Option<Arc<crate::bot::flows::FlowsEndpoint>>,
    /// The tenants: who a tenant's API token is, which numbers are whose.
    pub tenants: Arc<crate::store::tenants::Directory>,
}
use crate::config::TemplateRef;
use crate::store::sessions::SessionStore;

/// What the console needs beyond the admin API's state.
#[derive(Clone)]
pub struct ConsoleState {
    pub sessions: SessionStore,
    /// Offered when the 24-hour window is closed (when configured).
    pub reengagement_template: TemplateRef,
}
