//! Builds the fred client from settings: URL schemes for single node, TLS, Cluster and Sentinel,
//! a reconnect policy that never gives up, and command timeouts so no request hangs on Redis.

use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};
use secrecy::ExposeSecret;

use crate::config::RedisSettings;

pub use fred::prelude::Client;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    #[error("Redis command failed: {0}")]
    Command(#[from] fred::error::Error),
}

/// Creates a client and starts connecting in the background. It does not wait for Redis: a
/// process that starts while Redis is down reports not-ready and catches up once Redis answers.
pub fn connect(settings: &RedisSettings) -> Result<Client, RedisError> {
    let mut config =
        Config::from_url(&settings.url).map_err(|e| RedisError::Config(e.to_string()))?;
    let password = settings.password.expose_secret();
    if config.password.is_none() && !password.is_empty() {
        config.password = Some(password.to_string());
    }
    if !settings.tls_ca_file.is_empty() {
        if config.tls.is_none() {
            return Err(RedisError::Config(
                "redis.tls_ca_file is set but redis.url does not use TLS (rediss://)".into(),
            ));
        }
        config.tls = Some(private_ca_tls(&settings.tls_ca_file)?.into());
    }
    // Retry the first connection like any later one instead of failing start-up.
    config.fail_fast = false;
    let command_timeout = Duration::from_millis(settings.command_timeout_ms);
    let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = connect_timeout;
            c.internal_command_timeout = command_timeout;
            c.max_command_attempts = 2;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = command_timeout;
        })
        // Exponential from 100 ms up to 5 s, forever (max_attempts 0).
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .build()
        .map_err(|e| RedisError::Config(e.to_string()))?;
    client.connect();
    Ok(client)
}

/// PINGs Redis within the command timeout: the readiness probe.
pub async fn ping(client: &Client) -> Result<(), RedisError> {
    let _: String = client.ping(None).await?;
    Ok(())
}

/// A rustls client that trusts the CAs of `ca_file` (PEM) besides nothing else: a self-hosted
/// Redis with its own CA.
fn private_ca_tls(ca_file: &str) -> Result<fred::types::config::TlsConnector, RedisError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let invalid =
        |reason: String| RedisError::Config(format!("redis.tls_ca_file {ca_file}: {reason}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| invalid(e.to_string()))? {
        roots
            .add(cert.map_err(|e| invalid(e.to_string()))?)
            .map_err(|e| invalid(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(invalid("no certificate in the file".into()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config.into())
}
