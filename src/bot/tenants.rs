//! Many businesses on one deployment: the workers' handler routes each item by its business
//! number to its tenant's engine (its responder, texts, token, limits), bounds each tenant's share
//! of the replica's workers, and builds a tenant's engine again when its document changed. A
//! number no tenant has is recorded and counted, never answered.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::bot::engine::{Engine, EngineOptions};
use crate::bot::handoff::HandoffDetector;
use crate::bot::i18n::{I18nError, Texts};
use crate::bot::responder::{self, ResponderError};
use crate::bot::transcription::Transcriber;
use crate::bot::uploads::MediaUploads;
use crate::config::tenants::{Tenant, DEFAULT_TENANT};
use crate::config::Settings;
use crate::domain::{InboundMessage, InboxItem};
use crate::meta::cloud_api::{CloudApi, CloudApiError};
use crate::ops::monitoring;
use crate::pipeline::worker::{HandleError, Handled, Handler, LeaseGuard};
use crate::store::conversation::{ConversationLimits, ConversationStore};
use crate::store::media_ids::MediaIds;
use crate::store::pacing::{PacingLimits, RedisPacer};
use crate::store::tenants::{Directory, Route};
use crate::store::{self, Keys};

/// Why an engine could not be built from a tenant's (or the deployment's) settings.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Responder(#[from] ResponderError),
    #[error(transparent)]
    CloudApi(#[from] CloudApiError),
    #[error(transparent)]
    Texts(#[from] I18nError),
    #[error("could not build the HTTP client of {0}")]
    Http(&'static str, #[source] reqwest::Error),
}

/// What every engine of a replica shares.
#[derive(Clone)]
pub struct Shared {
    pub redis: store::Client,
    pub keys: Keys,
}

/// The engine for `settings`: the responder, texts, Graph API token and pacing, limits and
/// handoff they name. `record_only`: it records messages and sends nothing.
pub fn engine(
    settings: &Settings,
    tenant: &str,
    shared: &Shared,
    record_only: bool,
) -> Result<Engine, BuildError> {
    let pacer = RedisPacer::new(
        shared.redis.clone(),
        shared.keys.clone(),
        PacingLimits {
            per_number_per_sec: settings.whatsapp.throughput_per_sec,
            pair_interval: Duration::from_millis(settings.whatsapp.recipient_interval_ms),
            pair_burst: settings.whatsapp.recipient_burst,
        },
    );
    // One retry budget: the workers retry whole messages (`worker.max_attempts`), so each
    // Graph API call is tried once here.
    let api = CloudApi::new(&settings.whatsapp)?
        .with_pacer(Arc::new(pacer))
        .with_attempts(1);
    let texts = Arc::new(Texts::from_settings(settings)?);
    let transcriber = match record_only {
        true => None,
        false => Transcriber::new(&settings.transcription)
            .map_err(|e| BuildError::Http("transcription", e))?,
    };
    let store = ConversationStore::new(
        shared.redis.clone(),
        shared.keys.clone(),
        ConversationLimits::of(settings),
    );
    Ok(Engine::new(
        store,
        responder::build(settings, texts.clone())?,
        api,
        EngineOptions {
            transcriber: transcriber.map(Arc::new),
            responder_kind: settings.responder.kind.as_str(),
            mark_as_read: settings.whatsapp.mark_as_read,
            typing_indicator: settings.whatsapp.typing_indicator,
            texts,
            max_turn_chars: settings.conversation.max_turn_chars,
            max_reply_parts: settings.conversation.max_reply_parts,
            handoff: HandoffDetector::new(&settings.handoff.keyword_list()),
            handoff_text: settings.handoff.requested_text.clone(),
            handoff_ms: settings.handoff.timeout_secs.saturating_mul(1000),
            handoff_mark_read: settings.handoff.mark_read,
            reengagement_template: settings.whatsapp.reengagement_template.clone(),
            uploads: Arc::new(
                MediaUploads::new(
                    MediaIds::new(shared.redis.clone(), shared.keys.clone()),
                    &settings.whatsapp,
                )
                .map_err(|e| BuildError::Http("media upload", e))?,
            ),
            tenant: tenant.to_string(),
            record_only,
        },
    ))
}

/// One tenant's engine and its share of the replica.
struct Routed {
    id: String,
    engine: Arc<Engine>,
    /// `None`: unbounded (the deployment alone, or a number nobody has).
    bound: Option<Arc<Semaphore>>,
    digest: [u8; 32],
}

impl Routed {
    /// A tenant's engine with a share of its own.
    fn of(tenant: &Tenant, shared: &Shared) -> Result<Routed, BuildError> {
        Ok(Routed {
            id: tenant.id.clone(),
            engine: Arc::new(engine(&tenant.settings, &tenant.id, shared, false)?),
            bound: Some(Arc::new(Semaphore::new(tenant.max_concurrency))),
            digest: tenant.digest,
        })
    }
}

/// The engines for one version of the directory.
struct Built {
    version: i64,
    tenants: HashMap<String, Arc<Routed>>,
    /// Tenants whose engine could not be built: their items are retried (then dead-lettered).
    broken: HashMap<String, String>,
    default: Arc<Routed>,
    unrouted: Arc<Routed>,
}

/// The workers' handler: an engine per tenant.
pub struct Router {
    directory: Arc<Directory>,
    shared: Shared,
    built: RwLock<Arc<Built>>,
    rebuilding: tokio::sync::Mutex<()>,
}

impl Router {
    /// Builds every tenant's engine now: a tenant file that does not build stops the start.
    pub fn new(directory: Arc<Directory>, shared: Shared) -> Result<Router, BuildError> {
        let settings = directory.settings();
        let snapshot = directory.snapshot();
        let bounded = !snapshot.tenants.is_empty();
        let default = Arc::new(Routed {
            id: DEFAULT_TENANT.into(),
            engine: Arc::new(engine(settings, DEFAULT_TENANT, &shared, false)?),
            bound: bounded
                .then(|| Arc::new(Semaphore::new(settings.tenants.max_concurrency.max(1)))),
            digest: [0; 32],
        });
        let unrouted = Arc::new(Routed {
            id: "unrouted".into(),
            engine: Arc::new(engine(settings, "unrouted", &shared, true)?),
            bound: None,
            digest: [0; 32],
        });
        let mut tenants = HashMap::new();
        for tenant in &snapshot.tenants {
            tenants.insert(tenant.id.clone(), Arc::new(Routed::of(tenant, &shared)?));
        }
        metrics::gauge!(monitoring::TENANTS).set((tenants.len() + 1) as f64);
        let built = Built {
            version: snapshot.version,
            tenants,
            broken: HashMap::new(),
            default,
            unrouted,
        };
        Ok(Router {
            directory,
            shared,
            built: RwLock::new(Arc::new(built)),
            rebuilding: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> Arc<Built> {
        match self.built.read() {
            Ok(built) => built.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The engines for the directory's current version, built once per change; unchanged
    /// tenants keep their engine (and what it holds: bound, connections).
    async fn engines(&self) -> Arc<Built> {
        let snapshot = self.directory.snapshot();
        let built = self.current();
        if built.version == snapshot.version {
            return built;
        }
        let _one_at_a_time = self.rebuilding.lock().await;
        let built = self.current();
        if built.version == snapshot.version {
            return built;
        }
        let mut tenants = HashMap::new();
        let mut broken = HashMap::new();
        for tenant in &snapshot.tenants {
            if let Some(same) = built
                .tenants
                .get(&tenant.id)
                .filter(|routed| routed.digest == tenant.digest)
            {
                tenants.insert(tenant.id.clone(), same.clone());
                continue;
            }
            match Routed::of(tenant, &self.shared) {
                Ok(routed) => {
                    tracing::info!(tenant = %tenant.id, "tenant ready");
                    tenants.insert(tenant.id.clone(), Arc::new(routed));
                }
                Err(error) => {
                    let reason = crate::ops::telemetry::error_chain(&error);
                    tracing::error!(tenant = %tenant.id, %reason, "the tenant's engine could not be built; its messages wait");
                    broken.insert(tenant.id.clone(), reason);
                }
            }
        }
        // The deployment alone is not bounded; beside tenants it has a share like theirs.
        let alone = snapshot.tenants.is_empty();
        let default = if built.default.bound.is_none() == alone {
            built.default.clone()
        } else {
            Arc::new(Routed {
                id: DEFAULT_TENANT.into(),
                engine: built.default.engine.clone(),
                bound: (!alone).then(|| {
                    Arc::new(Semaphore::new(
                        self.directory.settings().tenants.max_concurrency.max(1),
                    ))
                }),
                digest: [0; 32],
            })
        };
        metrics::gauge!(monitoring::TENANTS).set((tenants.len() + 1) as f64);
        let next = Arc::new(Built {
            version: snapshot.version,
            tenants,
            broken,
            default,
            unrouted: built.unrouted.clone(),
        });
        match self.built.write() {
            Ok(mut current) => *current = next.clone(),
            Err(poisoned) => *poisoned.into_inner() = next.clone(),
        }
        next
    }

    /// The engine of the item's number, in `built`.
    fn route(
        built: &Built,
        directory: &Directory,
        number: Option<&str>,
    ) -> Result<Arc<Routed>, HandleError> {
        let Some(number) = number else {
            return Ok(built.default.clone());
        };
        match directory.snapshot().route(number) {
            Route::Default => Ok(built.default.clone()),
            Route::Unrouted => Ok(built.unrouted.clone()),
            Route::Tenant(tenant) => match built.tenants.get(&tenant.id) {
                Some(routed) => Ok(routed.clone()),
                None => Err(HandleError::retryable(format!(
                    "tenant {}'s engine is not ready: {}",
                    tenant.id,
                    built
                        .broken
                        .get(&tenant.id)
                        .map(String::as_str)
                        .unwrap_or("being built")
                ))),
            },
        }
    }

    async fn routed(
        &self,
        number: Option<&str>,
        kind: &'static str,
    ) -> Result<Arc<Routed>, HandleError> {
        let mut built = self.engines().await;
        let mut routed = Router::route(&built, &self.directory, number)?;
        if Arc::ptr_eq(&routed, &built.unrouted) {
            // Rare, and maybe a tenant stored a moment ago that the periodic reload has not
            // seen yet: a stored tenant is seen by every message that arrives after its PUT.
            if let Err(error) = self.directory.refresh().await {
                return Err(HandleError::Unavailable(format!("tenants: {error}")));
            }
            built = self.engines().await;
            routed = Router::route(&built, &self.directory, number)?;
        }
        if Arc::ptr_eq(&routed, &built.unrouted) {
            metrics::counter!(monitoring::UNROUTED, "kind" => kind).increment(1);
        }
        metrics::counter!(monitoring::TENANT_ITEMS, "tenant" => routed.id.clone(), "kind" => kind)
            .increment(1);
        Ok(routed)
    }
}

#[async_trait]
impl Handler for Router {
    async fn handle(&self, item: &InboxItem, lease: &LeaseGuard) -> Result<Handled, HandleError> {
        let kind = match item {
            InboxItem::Message(_) => "message",
            InboxItem::Status(_) => "status",
            InboxItem::Outbound(_) => "outbound",
            InboxItem::Handover(_) => "handover",
        };
        let routed = self.routed(number_of(item), kind).await?;
        routed.engine.handle(item, lease).await
    }

    async fn handle_batch(
        &self,
        messages: &[InboundMessage],
        lease: &LeaseGuard,
    ) -> Result<Handled, HandleError> {
        let Some(first) = messages.first() else {
            return Ok(Handled::done());
        };
        // A batch is one conversation's: one number, one tenant.
        let routed = self
            .routed(Some(first.phone_number_id.as_str()), "message")
            .await?;
        routed.engine.handle_batch(messages, lease).await
    }

    async fn dead_lettered(&self, items: &[InboxItem], error: &HandleError) {
        let Some(first) = items.first() else {
            return;
        };
        let number = number_of(first);
        if let Ok(routed) = Router::route(&self.current(), &self.directory, number) {
            routed.engine.dead_lettered(items, error).await;
        }
    }

    fn bound(&self, item: &InboxItem) -> Option<Arc<Semaphore>> {
        Router::route(&self.current(), &self.directory, number_of(item))
            .ok()
            .and_then(|routed| routed.bound.clone())
    }
}

/// The business number an item belongs to.
fn number_of(item: &InboxItem) -> Option<&str> {
    item.phone_number_id().map(|number| number.as_str())
}
