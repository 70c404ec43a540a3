//! Events out: what the conversation scripts append to each partition's event stream
//! (`handoff.requested`, `message.received` while a person has the conversation,
//! `message.failed`, `conversation.reset`) is POSTed to `events.webhook_url` (with tenants, that
//! of the number's tenant), signed, in order, at least once. The partition's owner delivers them
//! (one deliverer per partition across all replicas, by the lease), retrying with backoff while
//! the receiver is down; an event leaves the stream only once the receiver answered 2xx.
//! Format: docs/events.md.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{Client, StreamsInterface};
use secrecy::{ExposeSecret, SecretString};

use crate::config::EventSettings;
use crate::meta::webhook::signature::sign;
use crate::ops::monitoring;
use crate::pipeline::worker::LeaseGuard;
use crate::store::keys::Keys;
use crate::store::tenants::{Directory, Route};

/// Header carrying `sha256=<hex HMAC-SHA256 of the raw body>` under `events.secret`.
pub use crate::meta::webhook::WABOT_SIGNATURE_HEADER as SIGNATURE_HEADER;
const BATCH: u64 = 64;
const IDLE_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the events HTTP client could not be built")]
    Client(#[source] reqwest::Error),
}

/// Delivers the events of the partitions this replica owns.
#[derive(Clone)]
pub struct EventDispatcher {
    client: Client,
    keys: Keys,
    /// One client for every receiver; each request has its receiver's timeout.
    http: reqwest::Client,
    /// The deployment's own receiver (`None`: its events are off).
    own: Option<Destination>,
    /// With tenants, each event goes to the receiver of its number's tenant.
    tenants: Option<Arc<Directory>>,
    retry_max: Duration,
}

/// Where one event goes.
#[derive(Clone)]
struct Destination {
    url: String,
    secret: SecretString,
    timeout: Duration,
}

impl Destination {
    fn of(settings: &EventSettings) -> Option<Destination> {
        settings.enabled().then(|| Destination {
            url: settings.webhook_url.trim().to_string(),
            secret: settings.secret.clone(),
            timeout: Duration::from_millis(settings.timeout_ms.max(1)),
        })
    }
}

/// Why one delivery failed (logged, then retried).
#[derive(Debug)]
enum Refused {
    Transport(String),
    Status(u16),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Transport(error) => write!(f, "{error}"),
            Refused::Status(status) => write!(f, "the receiver answered {status}"),
        }
    }
}

impl EventDispatcher {
    /// `None` when events are off: for the deployment and, without `tenants`, for everyone.
    /// With `tenants`, each tenant's events go to its own `[events]` receiver (a tenant may turn
    /// them on while the deployment has them off), so the dispatcher runs whenever tenants
    /// may be declared.
    pub fn new(
        client: Client,
        keys: Keys,
        settings: &EventSettings,
        tenants: Option<Arc<Directory>>,
    ) -> Result<Option<EventDispatcher>, EventError> {
        let own = Destination::of(settings);
        if own.is_none() && tenants.is_none() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(EventError::Client)?;
        Ok(Some(EventDispatcher {
            client,
            keys,
            http,
            own,
            tenants,
            retry_max: Duration::from_millis(settings.retry_max_ms.max(100)),
        }))
    }

    /// The receiver of an event about `number`: its tenant's, else the deployment's; `None`
    /// when that one has events off (or the number is nobody's).
    fn destination(&self, number: Option<&str>) -> Option<Destination> {
        let (Some(directory), Some(number)) = (&self.tenants, number) else {
            return self.own.clone();
        };
        match directory.snapshot().route(number) {
            Route::Tenant(tenant) => Destination::of(&tenant.settings.events),
            Route::Default => self.own.clone(),
            Route::Unrouted => None,
        }
    }

    /// Delivers the partition's events while the lease is valid, until the task is aborted
    /// (the partition runner aborts it when it stops). What was being delivered stays in the stream
    /// and is delivered again by whoever owns the partition next.
    pub async fn run(&self, partition: u32, lease: LeaseGuard) {
        let key = self.keys.events(partition);
        let mut backoff = Duration::from_millis(100);
        loop {
            if !lease.is_valid() {
                // Not confirmed yet, or about to be lost: deliver nothing meanwhile.
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            let entries: Vec<(String, Vec<(String, String)>)> = match self
                .client
                .xrange(&key, "-", "+", Some(BATCH))
                .await
            {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(partition, error = %error, "reading events failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.retry_max);
                    continue;
                }
            };
            // A full batch may hide more behind it: then the stream's length says how many.
            let backlog = if entries.len() as u64 == BATCH {
                self.client.xlen(&key).await.unwrap_or(BATCH)
            } else {
                entries.len() as u64
            };
            metrics::gauge!(monitoring::EVENTS_BACKLOG, "partition" => partition.to_string())
                .set(backlog as f64);
            if entries.is_empty() {
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            'entries: for (id, fields) in entries {
                let event = event_body(partition, &id, &fields);
                let Some(destination) =
                    self.destination(event.get("phone_number_id").and_then(|n| n.as_str()))
                else {
                    // Kept while events were on for its number; nobody to send it to now.
                    metrics::counter!(monitoring::EVENTS, "outcome" => "dropped").increment(1);
                    if let Err(error) = self.delete(&key, &id).await {
                        tracing::warn!(partition, error = %error, "an event could not be removed");
                    }
                    continue;
                };
                let body = serde_json::Value::Object(event).to_string();
                // In order: the next event waits until this one is delivered.
                loop {
                    if !lease.is_valid() {
                        break 'entries;
                    }
                    match self.post(&destination, &body).await {
                        Ok(()) => {
                            metrics::counter!(monitoring::EVENTS, "outcome" => "delivered")
                                .increment(1);
                            backoff = Duration::from_millis(100);
                            break;
                        }
                        Err(refused) => {
                            metrics::counter!(monitoring::EVENTS, "outcome" => "retried")
                                .increment(1);
                            tracing::warn!(partition, error = %refused, retry_in_ms = backoff.as_millis() as u64, "event not delivered; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(self.retry_max);
                        }
                    }
                }
                if let Err(error) = self.delete(&key, &id).await {
                    // Delivered again later: receivers deduplicate by `id`.
                    tracing::warn!(partition, error = %error, "a delivered event could not be removed");
                }
            }
        }
    }

    async fn post(&self, to: &Destination, body: &str) -> Result<(), Refused> {
        let signature = sign(to.secret.expose_secret(), body.as_bytes());
        let response = self
            .http
            .post(&to.url)
            .timeout(to.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| Refused::Transport(crate::ops::telemetry::error_chain(&e)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Refused::Status(response.status().as_u16()))
        }
    }

    async fn delete(&self, key: &str, id: &str) -> Result<(), fred::error::Error> {
        let _: i64 = self.client.xdel(key, id).await?;
        Ok(())
    }
}

/// The JSON POSTed for one stream entry: the stored event with its `id` (partition and entry
/// id: unique, and the same on every redelivery).
fn event_body(
    partition: u32,
    entry_id: &str,
    fields: &[(String, String)],
) -> serde_json::Map<String, serde_json::Value> {
    let stored = fields
        .iter()
        .find(|(name, _)| name == "e")
        .map(|(_, value)| value.as_str())
        .unwrap_or("{}");
    let mut event = match serde_json::from_str::<serde_json::Value>(stored) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    event.insert(
        "id".into(),
        serde_json::Value::String(format!("evt_{partition}_{entry_id}")),
    );
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_id_names_partition_and_entry() {
        let body = event_body(
            3,
            "1700000000000-0",
            &[(
                "e".into(),
                r#"{"type":"handoff.requested","user":"1"}"#.into(),
            )],
        );
        let value = serde_json::Value::Object(body);
        assert_eq!(value["id"], "evt_3_1700000000000-0");
        assert_eq!(value["type"], "handoff.requested");
    }
}
