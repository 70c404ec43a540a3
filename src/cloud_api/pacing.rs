//! Client-side pacing: a throughput guard per business number (Meta's 80 messages/s default)
//! and a minimum spacing per recipient (the pair rate limit behind error 131056), so multi-part
//! replies do not trip Meta's limits. Per process: each replica paces its own sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone)]
pub struct Pacer {
    per_number: Duration,
    per_recipient: Duration,
    /// Next free send slot per number and per (number, recipient).
    slots: Arc<Mutex<Slots>>,
}

#[derive(Default)]
struct Slots {
    numbers: HashMap<String, Instant>,
    recipients: HashMap<(String, String), Instant>,
}

impl Pacer {
    pub fn new(per_second: u32, per_recipient: Duration) -> Pacer {
        Pacer {
            per_number: Duration::from_secs(1) / per_second.max(1),
            per_recipient,
            slots: Arc::new(Mutex::new(Slots::default())),
        }
    }

    /// Waits for this send's slot. Slots are reserved under the lock, so concurrent senders queue
    /// up instead of all waking at once.
    pub async fn wait(&self, number: &str, recipient: &str) {
        let at = {
            let Ok(mut slots) = self.slots.lock() else {
                return;
            };
            let now = Instant::now();
            let recipient_key = (number.to_string(), recipient.to_string());
            let recipient_slot = slots
                .recipients
                .get(&recipient_key)
                .copied()
                .unwrap_or(now)
                .max(now);
            let number_slot = slots.numbers.get(number).copied().unwrap_or(now).max(now);
            let at = recipient_slot.max(number_slot);
            slots
                .numbers
                .insert(number.to_string(), at + self.per_number);
            if !self.per_recipient.is_zero() {
                slots
                    .recipients
                    .insert(recipient_key, at + self.per_recipient);
            }
            // Forget recipients whose slot has passed, so the map does not grow without bound.
            if slots.recipients.len() > 10_000 {
                slots.recipients.retain(|_, slot| *slot > now);
            }
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn recipient_spacing_and_number_throughput() {
        let pacer = Pacer::new(10, Duration::from_secs(1));
        let start = Instant::now();
        pacer.wait("n", "a").await;
        pacer.wait("n", "a").await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Another recipient only waits for the number's throughput slot.
        let before = Instant::now();
        pacer.wait("n", "b").await;
        assert!(before.elapsed() <= Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn throughput_spreads_a_burst() {
        let pacer = Pacer::new(80, Duration::ZERO);
        let start = Instant::now();
        for i in 0..81 {
            pacer.wait("n", &i.to_string()).await;
        }
        // 81 sends at 80/s: the last one goes out one second after the first.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
