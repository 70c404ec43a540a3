//! Send pacing shared by every replica: one script call per outbound message reserves its slot
//! under the business number's throughput GCRA and the recipient's pair-rate GCRA (Meta: one
//! message per 6 s sustained, bursts of up to 45 borrowing from the future).

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
    /// GCRA interval and tolerance, ms: number, then pair.
    number: (u64, u64),
    pair: (u64, u64),
    script: Script,
}

impl RedisPacer {
    pub fn new(client: Client, keys: Keys, limits: PacingLimits) -> RedisPacer {
        // Rounded up: 80/s becomes one every 13 ms (77/s), never above Meta's rate.
        let number_interval = match limits.per_number_per_sec {
            0 => 0,
            rate => 1000u64.div_ceil(u64::from(rate)),
        };
        let pair_interval = limits.pair_interval.as_millis() as u64;
        let pair_tolerance = pair_interval * u64::from(limits.pair_burst.max(1) - 1);
        RedisPacer {
            client,
            keys,
            number: (number_interval, 0),
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
        Ok(Duration::from_millis(wait.max(0) as u64))
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
        let by = by.as_millis() as u64;
        let penalties = if pair { (0, by) } else { (by, 0) };
        if let Err(error) = self.call(number, recipient, penalties).await {
            tracing::debug!(%error, "could not slow the pacing down");
        }
    }
}
