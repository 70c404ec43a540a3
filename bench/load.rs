//! The load: one task per simulated user, each posting its signed text messages to `/webhook`
//! strictly one after another (the next only after the previous got its 2xx), with re-sent
//! duplicates (same wamid) and an optional global fixed request rate. Different users run
//! concurrently, bounded by a semaphore of in-flight POSTs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;

/// Attempts per delivery before it is counted as rejected (a real Meta retries for days).
const MAX_ATTEMPTS: u32 = 5;

/// The business number every delivery is addressed to without `--tenants`.
pub const PHONE_NUMBER_ID: &str = "106540352242922";

/// What every user task shares.
pub struct Shared {
    pub client: reqwest::Client,
    pub webhook_url: String,
    pub app_secret: String,
    pub run_id: String,
    pub permits: Semaphore,
    /// Requests per second for the whole run; 0 = as fast as possible.
    pub rate: f64,
    pub start: Instant,
    pub tickets: AtomicU64,
    pub duplicate_fraction: f64,
    pub seed: u64,
    /// Deliveries answered with 2xx so far (progress display).
    pub acked: AtomicU64,
    /// The business numbers the users write to: user `u` to `numbers[u % len]`.
    pub numbers: Vec<String>,
}

/// The phone number (wa_id) of user `user`: digits only, like Meta sends.
pub fn user_phone(user: usize) -> String {
    format!("1555{user:07}")
}

/// The text of message `seq` of user `user`; the echo reply is `echo: <this>`.
pub fn message_text(user: usize, seq: usize) -> String {
    format!("u{user} s{seq}")
}

/// Reads `echo: u<user> s<seq>` back.
pub fn parse_reply(text: &str) -> Option<(usize, usize)> {
    let rest = text.strip_prefix("echo: u")?;
    let (user, seq) = rest.split_once(" s")?;
    Some((user.parse().ok()?, seq.parse().ok()?))
}

/// What one user's task observed.
#[derive(Debug, Default)]
pub struct UserOutcome {
    pub user: usize,
    /// Per message: when its first POST was sent, if it was eventually acknowledged.
    pub sent_at: Vec<Option<Instant>>,
    /// Ack latency of every acknowledged delivery (originals and duplicates), µs.
    pub ack_us: Vec<u64>,
    pub deliveries: u64,
    pub duplicates: u64,
    /// Deliveries still refused after `MAX_ATTEMPTS` (non-2xx or transport error).
    pub rejected: u64,
    /// Attempts that failed and were retried or gave up.
    pub failed_attempts: u64,
    pub last_error: Option<String>,
    pub first_send: Option<Instant>,
    pub last_ack: Option<Instant>,
}

struct Delivery {
    body: Bytes,
    signature: String,
}

fn delivery(shared: &Shared, user: usize, seq: usize) -> Delivery {
    let wa_id = user_phone(user);
    let number = shared
        .numbers
        .get(user % shared.numbers.len().max(1))
        .map_or(PHONE_NUMBER_ID, String::as_str);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": number},
            "contacts": [{"profile": {"name": format!("Bench user {user}")}, "wa_id": wa_id}],
            "messages": [{
                "from": wa_id,
                "id": format!("wamid.bench.{}.{user}.{seq}", shared.run_id),
                "timestamp": timestamp,
                "type": "text",
                "text": {"body": message_text(user, seq)}
            }]
        }}]}]
    })
    .to_string();
    let body = Bytes::from(body);
    let signature = wabot::meta::webhook::sign(&shared.app_secret, &body);
    Delivery { body, signature }
}

/// When a delivery was sent and acknowledged.
struct Acked {
    /// Start of the first attempt.
    sent: Instant,
    /// Where its ack latency is measured from: the scheduled time with `--rate` (so a server that
    /// falls behind is not hidden by the client waiting for it), else the send time.
    origin: Instant,
    acked: Instant,
}

/// Posts one delivery, retrying a refused one a few times.
async fn post(shared: &Shared, delivery: &Delivery, outcome: &mut UserOutcome) -> Option<Acked> {
    let scheduled = if shared.rate > 0.0 {
        let ticket = shared.tickets.fetch_add(1, Ordering::Relaxed);
        let at = shared.start + Duration::from_secs_f64(ticket as f64 / shared.rate);
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        Some(at)
    } else {
        None
    };
    let _permit = shared.permits.acquire().await.ok()?;
    let sent = Instant::now();
    outcome.first_send.get_or_insert(sent);
    let origin = scheduled.unwrap_or(sent);
    for attempt in 1..=MAX_ATTEMPTS {
        let result = shared
            .client
            .post(&shared.webhook_url)
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", &delivery.signature)
            .body(delivery.body.clone())
            .send()
            .await;
        let error = match result {
            Ok(response) if response.status().is_success() => {
                // Drain the (empty) body so the connection goes back to the pool.
                let _ = response.bytes().await;
                let acked = Instant::now();
                shared.acked.fetch_add(1, Ordering::Relaxed);
                return Some(Acked {
                    sent,
                    origin,
                    acked,
                });
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                format!(
                    "HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                )
            }
            Err(error) => format!("{error}"),
        };
        outcome.failed_attempts += 1;
        outcome.last_error = Some(error);
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
        }
    }
    outcome.rejected += 1;
    None
}

fn record(outcome: &mut UserOutcome, acked: &Acked) {
    let micros = acked
        .acked
        .saturating_duration_since(acked.origin)
        .as_micros();
    outcome
        .ack_us
        .push(u64::try_from(micros).unwrap_or(u64::MAX));
    outcome.last_ack = Some(outcome.last_ack.map_or(acked.acked, |t| t.max(acked.acked)));
}

/// Sends the `count` messages of `user` in order. A message picked as duplicate is re-sent with
/// the same wamid right after the user's *next* message was acknowledged (like a late retry by
/// Meta), or at the end for the last one.
pub async fn run_user(shared: Arc<Shared>, user: usize, count: usize) -> UserOutcome {
    let mut rng = StdRng::seed_from_u64(shared.seed ^ (user as u64).wrapping_mul(0x9E37_79B9));
    let mut outcome = UserOutcome {
        user,
        sent_at: vec![None; count],
        ..UserOutcome::default()
    };
    let mut pending_duplicate: Option<Delivery> = None;
    for seq in 0..count {
        let original = delivery(&shared, user, seq);
        outcome.deliveries += 1;
        if let Some(acked) = post(&shared, &original, &mut outcome).await {
            record(&mut outcome, &acked);
            outcome.sent_at[seq] = Some(acked.sent);
        }
        if let Some(duplicate) = pending_duplicate.take() {
            send_duplicate(&shared, &duplicate, &mut outcome).await;
        }
        if rng.random_bool(shared.duplicate_fraction) {
            pending_duplicate = Some(original);
        }
    }
    if let Some(duplicate) = pending_duplicate.take() {
        send_duplicate(&shared, &duplicate, &mut outcome).await;
    }
    outcome
}

async fn send_duplicate(shared: &Shared, duplicate: &Delivery, outcome: &mut UserOutcome) {
    outcome.deliveries += 1;
    outcome.duplicates += 1;
    if let Some(acked) = post(shared, duplicate, outcome).await {
        record(outcome, &acked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_text_round_trips() {
        let text = format!("echo: {}", message_text(17, 42));
        assert_eq!(parse_reply(&text), Some((17, 42)));
        assert_eq!(parse_reply("echo: hello"), None);
        assert_eq!(user_phone(3), "15550000003");
    }
}
