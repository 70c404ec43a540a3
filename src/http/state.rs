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
    /// Who did what, per tenant.
    pub audit: crate::store::audit::AuditLog,
}

impl AppState {
    /// Records a person's action in the audit of the tenant whose conversation it concerns (the
    /// deployment's, `default`, for one of no tenant or none at all).
    pub async fn audit(&self, action: crate::store::audit::Action<'_>) {
        let tenant = action
            .conversation
            .and_then(|(number, _)| self.tenants.snapshot().owner(number).map(str::to_string))
            .unwrap_or_else(|| crate::config::tenants::DEFAULT_TENANT.to_string());
        self.audit_in(&tenant, action).await;
    }

    /// Records in `tenant`'s audit. The action is done by then: a failure to record it is
    /// logged at error level, not answered.
    pub async fn audit_in(&self, tenant: &str, action: crate::store::audit::Action<'_>) {
        if let Err(error) = self.audit.record(tenant, &action).await {
            tracing::error!(tenant, action = action.action, by = action.by, error = %error, "an action could not be recorded in the audit");
        }
    }
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
