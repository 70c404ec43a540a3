//! Builds the running service from settings: Redis client, HTTP server (bound, port 0 in tests),
//! and owns its graceful shutdown.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};

use crate::http::client::TrustedProxies;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;

use crate::bot::i18n::I18nError;
use crate::bot::responder::ResponderError;
use crate::bot::tenants::{BuildError, Router, Shared};
use crate::config::Settings;
use crate::http::state::{AppState, ConsoleState};
use crate::meta::cloud_api::CloudApiError;
use crate::meta::webhook::SignatureVerifier;
use crate::ops::telemetry::RequestSpan;
use crate::pipeline::pressure::IntakePressure;
use crate::pipeline::worker::events::{EventDispatcher, EventError};
use crate::pipeline::worker::{Handler, WorkerRuntime, Workers};
use crate::store::conversation::{ConversationLimits, ConversationStore};
use crate::store::queue::Queue;
use crate::store::sessions::SessionStore;
use crate::store::sink::EventSink;
use crate::store::tenants::{Directory, TenantStore};
use crate::store::{self, Keys, RedisInbox};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Redis(#[from] store::RedisError),
    #[error(transparent)]
    CloudApi(#[from] CloudApiError),
    #[error(transparent)]
    Responder(#[from] ResponderError),
    #[error(transparent)]
    Events(#[from] EventError),
    #[error(transparent)]
    Texts(#[from] I18nError),
    #[error(transparent)]
    Engine(#[from] BuildError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("could not start the workers' runtime")]
    Runtime(#[source] std::io::Error),
    #[error("the Flows endpoint could not start: {0}")]
    Flows(String),
    #[error("could not listen on {address}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// A listener on `address`, with the port it got (port 0: a free one).
fn bind(address: &str) -> Result<(TcpListener, String, u16), StartupError> {
    let failed = |source| StartupError::Bind {
        address: address.to_string(),
        source,
    };
    let listener = TcpListener::bind(address).map_err(failed)?;
    let port = listener.local_addr().map_err(failed)?.port();
    Ok((listener, address.to_string(), port))
}

/// A built, bound, not yet running service.
pub struct Application {
    port: u16,
    server: Server,
    /// The `admin.listen` server, when the operators' routes have their own port.
    admin_server: Option<Server>,
    admin_port: Option<u16>,
    shutdown: CancellationToken,
    redis: store::Client,
    workers: Option<Workers>,
}

/// Stops an application abruptly, like `kill -9`: no graceful HTTP stop, no lease release.
#[derive(Clone)]
pub struct KillSwitch {
    server: ServerHandle,
    admin_server: Option<ServerHandle>,
    workers: Option<tokio::task::AbortHandle>,
}

impl KillSwitch {
    pub fn kill(&self) {
        if let Some(workers) = &self.workers {
            workers.abort();
        }
        // The command is sent when `stop` is called; awaiting only waits for completion.
        drop(self.server.stop(false));
        if let Some(admin) = &self.admin_server {
            drop(admin.stop(false));
        }
    }
}

/// What every entry point shares, built once from the settings: the Redis client and the stores
/// over it. `serve`, `worker`, the CLI, the sandbox, the benchmark and the tests all start here.
#[derive(Clone)]
pub struct Services {
    pub settings: Settings,
    pub redis: store::Client,
    pub keys: Keys,
    pub queue: Queue,
    pub conversations: ConversationStore,
    /// The durable hand-off of the webhook and of outbound requests.
    pub inbox: RedisInbox,
}

impl Services {
    /// A client for `redis.url` (it connects in the background and reconnects forever) and the
    /// stores over it.
    pub fn new(settings: &Settings) -> Result<Services, StartupError> {
        let redis = store::connect(&settings.redis)?;
        Ok(Services::with_client(settings, redis))
    }

    /// The stores over an existing client.
    pub fn with_client(settings: &Settings, redis: store::Client) -> Services {
        let keys = Keys::new(&settings.redis.key_prefix, settings.worker.partitions);
        let conversations = ConversationStore::new(
            redis.clone(),
            keys.clone(),
            ConversationLimits::of(settings),
        );
        let inbox = RedisInbox::new(redis.clone(), keys.clone()).with_echo_pause(
            settings
                .handoff
                .echo_pause_secs
                .min(settings.handoff.timeout_secs)
                .saturating_mul(1000),
            settings.conversation.session_expire_secs,
        );
        Services {
            settings: settings.clone(),
            queue: Queue::new(redis.clone(), keys.clone(), settings.worker.lease_ttl_ms),
            redis,
            keys,
            conversations,
            inbox,
        }
    }

    /// The tenants of files and of Redis over this client (not yet refreshed from Redis).
    pub fn directory(&self) -> Result<Directory, StartupError> {
        Ok(Directory::new(
            &self.settings,
            TenantStore::new(self.redis.clone(), self.keys.clone()),
        )?)
    }

    /// Waits until Redis answers (the CLI's commands, which have nothing to do without it).
    pub async fn connected(self) -> Result<Services, store::RedisError> {
        fred::prelude::ClientLike::wait_for_connect(&self.redis).await?;
        Ok(self)
    }

    /// The worker side on a runtime of its own (`worker.threads`, `worker.nice`), with its own
    /// Redis connection: a process that also receives webhooks keeps its receiver's threads and
    /// connection for intake; `pressure` is how the receiver's answers make the workers yield.
    pub fn spawn_workers(
        &self,
        pressure: Option<Arc<IntakePressure>>,
    ) -> Result<Workers, StartupError> {
        let settings = &self.settings;
        let runtime = WorkerRuntime::start(settings.worker.threads, settings.worker.nice)
            .map_err(StartupError::Runtime)?;
        let (workers, client) = {
            let _entered = runtime.enter();
            let services = Services::new(settings)?;
            (services.spawn_workers_here(pressure)?, services.redis)
        };
        Ok(workers.running_on(runtime, client))
    }

    /// The worker side on the current runtime: the conversation engine over these stores as the
    /// queue's handler.
    pub fn spawn_workers_here(
        &self,
        pressure: Option<Arc<IntakePressure>>,
    ) -> Result<Workers, StartupError> {
        let settings = &self.settings;
        let directory = Arc::new(self.directory()?);
        directory.keep_current();
        // Tenants may send their events elsewhere only if there can be tenants: files, or a key
        // to store them under.
        let tenants_events = directory.may_have_tenants().then(|| directory.clone());
        let handler: Arc<dyn Handler> = Arc::new(Router::new(
            directory,
            Shared {
                redis: self.redis.clone(),
                keys: self.keys.clone(),
            },
        )?);
        let events = EventDispatcher::new(
            self.redis.clone(),
            self.keys.clone(),
            &settings.events,
            tenants_events,
        )?
        .map(Arc::new);
        Ok(Workers::spawn(
            self.queue.clone(),
            handler,
            settings.worker.clone(),
            Duration::from_millis(settings.conversation.merge_window_ms),
            Duration::from_secs(settings.server.shutdown_timeout_secs),
            events,
            pressure,
        ))
    }
}

impl Application {
    /// The production wiring: messages go to the Redis inbox, and (when `worker.enabled`) this
    /// process also runs workers.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let services = Services::new(&settings)?;
        let sink = Arc::new(services.inbox.clone());
        let pressure = (settings.worker.enabled && settings.worker.intake_target_ms > 0)
            .then(|| IntakePressure::new(Duration::from_millis(settings.worker.intake_target_ms)));
        let mut app = Application::build_with(&services, sink, pressure.clone())?;
        if settings.worker.enabled {
            app.workers = Some(services.spawn_workers(pressure)?);
        }
        Ok(app)
    }

    /// Wiring with a caller-chosen sink (tests of the receiver on its own); no workers.
    pub async fn build_with_sink(
        settings: Settings,
        sink: Arc<dyn EventSink>,
    ) -> Result<Application, StartupError> {
        Application::build_with(&Services::new(&settings)?, sink, None)
    }

    fn build_with(
        services: &Services,
        sink: Arc<dyn EventSink>,
        pressure: Option<Arc<IntakePressure>>,
    ) -> Result<Application, StartupError> {
        let settings = &services.settings;
        let redis = services.redis.clone();
        crate::ops::monitoring::install();
        let (listener, address, port) = bind(&format!(
            "{}:{}",
            settings.server.host, settings.server.port
        ))?;
        let console = settings.admin_enabled().then(|| ConsoleState {
            sessions: SessionStore::new(
                redis.clone(),
                services.keys.clone(),
                settings.admin.session_ttl_secs,
                settings.admin.session_max_secs,
                secrecy::ExposeSecret::expose_secret(&settings.admin.token),
            ),
            reengagement_template: settings.whatsapp.reengagement_template.clone(),
        });
        let tenants = Arc::new(services.directory()?);
        tenants.keep_current();
        let state = AppState {
            audit: crate::store::audit::AuditLog::new(redis.clone(), services.keys.clone()),
            tenants,
            verifier: SignatureVerifier::new(settings.whatsapp.app_secrets()),
            verify_token: settings.whatsapp.verify_token.clone(),
            sink,
            redis: redis.clone(),
            max_body_bytes: settings.server.max_body_bytes,
            conversations: services.conversations.clone(),
            queue: services.queue.clone(),
            admin_token: settings.admin.token.clone(),
            handoff_minutes: settings.handoff.timeout_secs.div_ceil(60).max(1),
            console,
            pressure,
            // Validated with the settings.
            trusted_proxies: TrustedProxies::parse(&settings.admin.trusted_proxies)
                .unwrap_or_default(),
            secure_cookies: settings.admin.secure_cookies,
            hsts_max_age_secs: settings.admin.hsts_max_age_secs,
            flows: crate::bot::flows::FlowsEndpoint::from_settings(settings)
                .map_err(|e| StartupError::Flows(e.to_string()))?
                .map(Arc::new),
        };
        let state = web::Data::new(state);
        let request_timeout = Duration::from_secs(settings.server.request_timeout_secs);
        // One budget for the whole process: every HTTP worker's bodies count against it.
        let body_limits = web::Data::new(crate::http::routes::webhook::BodyLimits::new(
            settings.server.max_inflight_body_bytes,
            request_timeout,
        ));
        let shutdown_timeout = settings
            .server
            .request_timeout_secs
            .min(settings.server.shutdown_timeout_secs);
        let private = match settings.admin.listen.trim() {
            "" => None,
            address => Some(bind(address)?),
        };
        let routes: fn(&mut web::ServiceConfig) = if private.is_some() {
            crate::http::configure_public
        } else {
            crate::http::configure
        };
        let (server_state, server_limits) = (state.clone(), body_limits.clone());
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(server_state.clone())
                .app_data(server_limits.clone())
                .configure(routes)
        })
        .listen(listener)
        .map_err(|source| StartupError::Bind { address, source })?
        .disable_signals()
        .workers(settings.server.http_workers.max(1))
        // A client that stalls in its headers is cut off like one that stalls in its body.
        .client_request_timeout(request_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        // No request legitimately outlives the request timeout, so neither does the HTTP drain;
        // the workers' drain runs at the same time (`run_until_stopped`).
        .shutdown_timeout(shutdown_timeout)
        .run();
        // The operators' port: its own small server, so the public one carries no admin route.
        let (admin_server, admin_port) = match private {
            None => (None, None),
            Some((listener, address, port)) => {
                let server = HttpServer::new(move || {
                    App::new()
                        .wrap(TracingLogger::<RequestSpan>::new())
                        .app_data(state.clone())
                        .app_data(body_limits.clone())
                        .configure(crate::http::configure_private)
                })
                .listen(listener)
                .map_err(|source| StartupError::Bind { address, source })?
                .disable_signals()
                .workers(1)
                .client_request_timeout(request_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                .shutdown_timeout(shutdown_timeout)
                .run();
                (Some(server), Some(port))
            }
        };
        Ok(Application {
            port,
            server,
            admin_server,
            admin_port,
            shutdown: CancellationToken::new(),
            redis,
            workers: None,
        })
    }

    /// The port of `admin.listen`, when set (the admin API, the console and `/metrics`).
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cancelling this token stops the service gracefully (what SIGTERM does).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The workers' own runtime, when this process runs workers.
    pub fn worker_runtime(&self) -> Option<tokio::runtime::Handle> {
        self.workers.as_ref().and_then(Workers::runtime)
    }

    pub fn kill_switch(&self) -> KillSwitch {
        KillSwitch {
            server: self.server.handle(),
            admin_server: self.admin_server.as_ref().map(Server::handle),
            workers: self.workers.as_ref().map(Workers::abort_handle),
        }
    }

    /// Runs until the shutdown token is cancelled, then stops taking requests, lets in-flight
    /// requests and conversations finish, releases leases and closes Redis.
    ///
    /// The HTTP drain and the workers' drain start at the same moment: one stalled client must
    /// not hold up the workers or eat their share of the orchestrator's grace period.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            admin_server,
            shutdown,
            redis,
            workers,
            ..
        } = self;
        let handle = server.handle();
        let admin_handle = admin_server.as_ref().map(Server::handle);
        let token = shutdown.clone();
        let stopper = tokio::spawn(async move {
            token.cancelled().await;
            tracing::info!("shutting down: no new requests, finishing in-flight ones");
            if let Some(admin) = admin_handle {
                admin.stop(true).await;
            }
            handle.stop(true).await;
        });
        // The operators' server runs beside the public one and stops with it.
        if let Some(admin) = admin_server {
            tokio::spawn(async move {
                if let Err(error) = admin.await {
                    tracing::error!(%error, "the admin server stopped");
                }
            });
        }
        // Also ends the workers when the server stops on its own (bind failure, kill switch).
        let server_done = CancellationToken::new();
        let http = async {
            let result = server.await;
            server_done.cancel();
            result
        };
        let work = async {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = server_done.cancelled() => {}
            }
            if let Some(workers) = workers {
                workers.shutdown().await;
            }
        };
        let (result, ()) = tokio::join!(http, work);
        stopper.abort();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            fred::prelude::ClientLike::quit(&redis),
        )
        .await;
        tracing::info!("stopped");
        result
    }
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            ) {
                Ok(term) => term,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops gracefully");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        token.cancel();
    });
}
