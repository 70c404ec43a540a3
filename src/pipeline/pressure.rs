//! Intake first under a burst: the receiver reports how fast it answers Meta, and while too many
//! answers are slow the workers of the same process take fewer conversations at once (halved per
//! tick, down to a floor), growing back by a sixty-fourth per tick once the answers are fast
//! again (from the floor to the full 256 in about 3 s: faster, and it overshoots into the next
//! slow tick). The
//! backlog is durable in Redis, so working it off later loses nothing; a slow answer to Meta
//! costs retries and, past its deadline, deliveries.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How often the workers' concurrency is reconsidered.
const TICK: Duration = Duration::from_millis(50);

/// More than this share of a tick's answers over the target is "slow".
const SLOW_SHARE: f64 = 0.02;

/// What the receiver reports: answers in the current tick, and how many took longer than the
/// target.
#[derive(Debug)]
pub struct IntakePressure {
    target: Duration,
    answers: AtomicU64,
    slow: AtomicU64,
}

impl IntakePressure {
    /// `target`: the answer time the workers make room for.
    pub fn new(target: Duration) -> Arc<IntakePressure> {
        Arc::new(IntakePressure {
            target,
            answers: AtomicU64::new(0),
            slow: AtomicU64::new(0),
        })
    }

    /// One webhook answered after `elapsed`.
    pub fn record(&self, elapsed: Duration) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        if elapsed > self.target {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The tick's (answers, slow), starting the next tick.
    fn take(&self) -> (u64, u64) {
        (
            self.answers.swap(0, Ordering::Relaxed),
            self.slow.swap(0, Ordering::Relaxed),
        )
    }
}

/// Holds back some of the workers' permits while intake is under pressure.
pub struct Governor {
    pressure: Arc<IntakePressure>,
    permits: Arc<Semaphore>,
    /// Conversations at once when intake is calm (`worker.concurrency`).
    full: usize,
    floor: usize,
    /// What the last tick decided.
    target: usize,
    withheld: Option<OwnedSemaphorePermit>,
}

impl Governor {
    pub fn new(pressure: Arc<IntakePressure>, permits: Arc<Semaphore>, full: usize) -> Governor {
        Governor {
            pressure,
            permits,
            full,
            // 256 → 8: what kept the answers within the target here (docs/benchmarks.md).
            floor: (full / 32).max(1),
            target: full,
            withheld: None,
        }
    }

    /// Conversations the workers may take at once now.
    pub fn allowed(&self) -> usize {
        self.full - self.withheld.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Adjusts until `stop`; every permit held back is returned when it ends.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Permits are taken in the semaphore's queue like the partitions' (a fair semaphore
        // never hands a freed permit to a mere `try_acquire` while others wait): the request
        // stays queued across ticks until it is served or no longer wanted.
        let mut taking: Option<Pin<Box<Taking>>> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    let (answers, slow) = self.pressure.take();
                    self.decide(answers, slow);
                    self.give_back();
                    let short = self.allowed().saturating_sub(self.target);
                    match &taking {
                        _ if short == 0 => taking = None,
                        None => {
                            let n = u32::try_from(short).unwrap_or(u32::MAX);
                            taking = Some(Box::pin(self.permits.clone().acquire_many_owned(n)));
                        }
                        Some(_) => {}
                    }
                    metrics::gauge!(crate::ops::monitoring::WORKER_ALLOWED).set(self.allowed() as f64);
                }
                taken = async { taking.as_mut().expect("guarded").await }, if taking.is_some() => {
                    taking = None;
                    if let Ok(permit) = taken {
                        self.hold(permit);
                        self.give_back();
                    }
                }
            }
        }
    }

    /// Multiplicative decrease while answers are slow, additive increase otherwise.
    fn decide(&mut self, answers: u64, slow: u64) {
        let pressed = answers > 0 && slow as f64 > SLOW_SHARE * answers as f64;
        self.target = if pressed {
            (self.target.min(self.allowed()) / 2).max(self.floor)
        } else {
            (self.target + (self.full / 64).max(1)).min(self.full)
        };
    }

    fn hold(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.withheld {
            Some(withheld) => withheld.merge(permit),
            None => self.withheld = Some(permit),
        }
    }

    /// Returns what is held beyond the target.
    fn give_back(&mut self) {
        let over = self.target.saturating_sub(self.allowed());
        if over == 0 {
            return;
        }
        if let Some(withheld) = &mut self.withheld {
            if withheld.num_permits() <= over {
                self.withheld = None;
            } else {
                drop(withheld.split(over));
            }
        }
    }
}

type Taking = dyn std::future::Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>>
    + Send;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_answers_halve_the_target_down_to_a_floor_and_fast_ones_grow_it_back() {
        let pressure = IntakePressure::new(Duration::from_millis(5));
        let permits = Arc::new(Semaphore::new(256));
        let mut governor = Governor::new(pressure.clone(), permits.clone(), 256);
        for _ in 0..90 {
            pressure.record(Duration::from_millis(1));
        }
        for _ in 0..10 {
            pressure.record(Duration::from_millis(40));
        }
        let (answers, slow) = pressure.take();
        assert_eq!((answers, slow), (100, 10));
        governor.decide(answers, slow);
        assert_eq!(governor.target, 128);
        for _ in 0..10 {
            governor.decide(100, 50);
        }
        assert_eq!(governor.target, 8, "the floor");
        // Calm (or no traffic at all): back up a sixty-fourth per tick.
        governor.decide(100, 0);
        assert_eq!(governor.target, 12);
        governor.decide(0, 0);
        assert_eq!(governor.target, 16);
        for _ in 0..70 {
            governor.decide(0, 0);
        }
        assert_eq!(governor.target, 256);
    }

    #[tokio::test]
    async fn permits_are_taken_in_turn_with_busy_workers_and_returned_when_calm() {
        let pressure = IntakePressure::new(Duration::from_millis(5));
        let permits = Arc::new(Semaphore::new(16));
        let stop = CancellationToken::new();
        // Every permit busy, and a worker queued for one more.
        let busy = permits
            .clone()
            .acquire_many_owned(16)
            .await
            .expect("permits");
        let governor = Governor::new(pressure.clone(), permits.clone(), 16);
        let running = tokio::spawn(governor.run(stop.clone()));
        let waiting = tokio::spawn({
            let permits = permits.clone();
            async move { permits.acquire_owned().await }
        });
        // Slow answers until told otherwise.
        let pressing = CancellationToken::new();
        let slow = tokio::spawn({
            let (pressure, pressing) = (pressure.clone(), pressing.clone());
            async move {
                while !pressing.is_cancelled() {
                    pressure.record(Duration::from_millis(50));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        tokio::time::sleep(TICK * 2).await;
        // The 16 come back: the worker queued first gets its one, the governor (queued too,
        // where a `try_acquire` would get nothing) holds back all but the floor of the rest.
        drop(busy);
        let one = waiting.await.expect("task").expect("permit");
        tokio::time::sleep(TICK * 3).await;
        assert_eq!(permits.available_permits(), 0, "held back while pressed");
        pressing.cancel();
        slow.await.expect("task");
        drop(one);
        // Calm from now on: given back within a few ticks.
        let back = tokio::time::timeout(TICK * 40, async {
            while permits.available_permits() < 16 {
                tokio::time::sleep(TICK).await;
            }
        })
        .await;
        assert!(back.is_ok(), "{} available", permits.available_permits());
        stop.cancel();
        running.await.expect("governor");
    }
}
