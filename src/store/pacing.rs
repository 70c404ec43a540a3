//! Send pacing shared by every replica: one script call per outbound message reserves its slot
//! under the business number's throughput GCRA (microsecond resolution, a burst of a
//! twentieth of the rate: Meta counts per second) and the recipient's pair-rate GCRA (Meta: one message per
//! 6 s sustained, bursts of up to 45 borrowing from the future).

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::Client;
use fred::types::scripts::Script;

use super::keys::Keys;
use crate::meta::cloud_api::SendPacer;

/// Limits of [`RedisPacer`]. An interval of 0 switches that limiter off.
#[derive(Debug, Clone, Copy)]
pub struct PacingLimits {
    /// Messages per second per business number.
    pub per_number_per_sec: u32,
    /// Sustained spacing of messages to one recipient.
    pub pair_interval: Duration,
    /// Messages to one recipient that may go out at once before the spacing applies.
    pub pair_burst: u32,
}

#[derive(Clone)]
pub struct RedisPacer {
    client: Client,
    keys: Keys,
    /// GCRA interval and tolerance, µs: number, then pair.
    number: (u64, u64),
    pair: (u64, u64),
    script: Script,
}

impl RedisPacer {
    pub fn new(client: Client, keys: Keys, limits: PacingLimits) -> RedisPacer {
        let (number_interval, number_tolerance) = number_gcra(limits.per_number_per_sec);
        let pair_interval = u64::try_from(limits.pair_interval.as_micros()).unwrap_or(u64::MAX);
        let pair_tolerance = pair_interval.saturating_mul(u64::from(limits.pair_burst.max(1) - 1));
        RedisPacer {
            client,
            keys,
            number: (number_interval, number_tolerance),
            pair: (pair_interval, pair_tolerance),
            script: super::scripts::alone(include_str!("lua/pace.lua")),
        }
    }

    /// Whether any limiter is on (benchmarks switch both off).
    pub fn enabled(&self) -> bool {
        self.number.0 > 0 || self.pair.0 > 0
    }

    async fn call(
        &self,
        number: &str,
        recipient: &str,
        penalties: (u64, u64),
    ) -> Result<Duration, super::StoreError> {
        let wait: i64 = self
            .script
            .evalsha_with_reload(
                &self.client,
                self.keys.pacing(number, recipient).to_vec(),
                vec![
                    self.number.0.to_string(),
                    self.number.1.to_string(),
                    self.pair.0.to_string(),
                    self.pair.1.to_string(),
                    penalties.0.to_string(),
                    penalties.1.to_string(),
                ],
            )
            .await?;
        Ok(Duration::from_micros(wait.max(0) as u64))
    }

    /// Reserves the next slot; how long to wait before sending.
    pub async fn reserve(
        &self,
        number: &str,
        recipient: &str,
    ) -> Result<Duration, super::StoreError> {
        self.call(number, recipient, (0, 0)).await
    }
}

/// A number's GCRA for `rate` messages per second, in µs: the interval rounded up (never above
/// the rate), and a burst of a twentieth of the rate at once (at least one). Meta tolerates a
/// tenth over the rate in a second; half of that is left for the jitter between the slot and
/// the moment the request reaches Meta (measured: a tenth gave 332 in the busiest second at
/// 300/s). 0: off.
fn number_gcra(rate: u32) -> (u64, u64) {
    if rate == 0 {
        return (0, 0);
    }
    let interval = 1_000_000u64.div_ceil(u64::from(rate));
    let burst = u64::from((rate / 20).max(1));
    (interval, interval * (burst - 1))
}

#[async_trait]
impl SendPacer for RedisPacer {
    async fn wait(&self, number: &str, recipient: &str) {
        if !self.enabled() {
            return;
        }
        match self.reserve(number, recipient).await {
            Ok(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
            Ok(_) => {}
            // Without Redis the send itself cannot be recorded either: do not add a wait.
            Err(error) => tracing::debug!(%error, "pacing unavailable; sending without it"),
        }
    }

    async fn slow_down(&self, number: &str, recipient: &str, pair: bool, by: Duration) {
        let by = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        let penalties = if pair { (0, by) } else { (by, 0) };
        if let Err(error) = self.call(number, recipient, penalties).await {
            tracing::debug!(%error, "could not slow the pacing down");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::number_gcra;

    #[test]
    fn the_number_rate_is_kept_to_the_microsecond_with_a_twentieth_as_burst() {
        assert_eq!(number_gcra(0), (0, 0));
        assert_eq!(number_gcra(80), (12_500, 12_500 * 3));
        assert_eq!(number_gcra(300), (3_334, 3_334 * 14));
        // Above 1,000/s, where whole milliseconds stopped.
        assert_eq!(number_gcra(4_000), (250, 250 * 199));
        assert_eq!(number_gcra(5), (200_000, 0));
    }
}
