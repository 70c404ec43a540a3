//! The workers of one replica: a coordinator that heartbeats, leases its share of the partitions
//! (`ceil(P / live replicas)`), renews them while working, gives extras back, takes over the
//! partitions of replicas that died, and runs one partition runner per lease.

pub mod events;
pub mod handler;
mod partition;
pub mod runtime;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::WorkerSettings;
use crate::domain::clock::unix_ms;
use crate::ops::monitoring;
use crate::pipeline::pressure::{Governor, IntakePressure};
use crate::pipeline::worker::events::EventDispatcher;
use crate::store::queue::Queue;
use crate::store::Client;
pub use handler::{HandleError, Handled, Handler, LeaseGuard};
use partition::PartitionContext;
pub use runtime::WorkerRuntime;

/// A running set of workers.
pub struct Workers {
    replica: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// Set when the workers run on a runtime of their own, with a Redis client connected there.
    own: Option<(WorkerRuntime, Client)>,
}

struct Runner {
    stop: CancellationToken,
    abort: AbortHandle,
    lease: LeaseGuard,
}

impl Workers {
    /// Starts the coordinator. `replica` must be unique per process (it is the lease token).
    pub fn spawn(
        queue: Queue,
        handler: Arc<dyn Handler>,
        settings: WorkerSettings,
        merge_window: Duration,
        shutdown_timeout: Duration,
        events: Option<Arc<EventDispatcher>>,
        pressure: Option<Arc<IntakePressure>>,
    ) -> Workers {
        let replica = uuid::Uuid::new_v4().to_string();
        let stop = CancellationToken::new();
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        metrics::gauge!(monitoring::WORKER_ALLOWED).set(settings.concurrency as f64);
        if let Some(pressure) = pressure {
            let governor = Governor::new(pressure, permits.clone(), settings.concurrency);
            tokio::spawn(governor.run(stop.clone()));
        }
        let coordinator = Coordinator {
            queue,
            handler,
            permits,
            settings,
            replica: replica.clone(),
            merge_window,
            shutdown_timeout,
            events,
        };
        let task = tokio::spawn(coordinator.run(stop.clone()));
        Workers {
            replica,
            stop,
            task,
            own: None,
        }
    }

    /// These workers were spawned on `runtime` with `client`: both end with them.
    pub fn running_on(mut self, runtime: WorkerRuntime, client: Client) -> Workers {
        self.own = Some((runtime, client));
        self
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The runtime of their own the workers run on (`None`: they share the caller's).
    pub fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.own
            .as_ref()
            .map(|(runtime, _)| runtime.handle().clone())
    }

    /// Graceful stop: no new reads, in-flight messages finish (bounded by the shutdown timeout),
    /// leases are released so other replicas take over at once.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
        if let Some((runtime, client)) = self.own {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                fred::prelude::ClientLike::quit(&client),
            )
            .await;
            drop(runtime);
        }
    }

    /// Aborting it is a crash-like stop: nothing is released or acknowledged (`KillSwitch`).
    pub fn abort_handle(&self) -> tokio::task::AbortHandle {
        self.task.abort_handle()
    }
}

struct Coordinator {
    queue: Queue,
    handler: Arc<dyn Handler>,
    permits: Arc<Semaphore>,
    settings: WorkerSettings,
    replica: String,
    merge_window: Duration,
    shutdown_timeout: Duration,
    /// Delivers each owned partition's events (none when events are off).
    events: Option<Arc<EventDispatcher>>,
}

impl Coordinator {
    /// How long a confirmed lease counts as held here: a quarter of the TTL short of what Redis
    /// grants, so a runner stops sending before another replica can take the partition over.
    fn lease_validity(&self) -> Duration {
        let ttl = self.settings.lease_ttl_ms;
        Duration::from_millis(ttl - ttl / 4)
    }

    async fn run(self, stop: CancellationToken) {
        let partitions = self.queue.keys().partitions();
        let ttl = self.settings.lease_ttl_ms;
        let tick = Duration::from_millis((ttl / 4).max(100));
        // Dropping this JoinSet (a killed coordinator) aborts every runner and their tasks.
        let mut runners: JoinSet<u32> = JoinSet::new();
        let mut owned: HashMap<u32, Runner> = HashMap::new();
        // Partitions being handed back: their runner finishes (its lease still renewed) before
        // the lease is released.
        let mut releasing: HashMap<u32, Runner> = HashMap::new();
        let offset = stable_offset(&self.replica, partitions);
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut live = 1;
        tracing::info!(replica = %self.replica, partitions, "workers started");

        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(joined) = runners.join_next(), if !runners.is_empty() => {
                    if let Ok(partition) = joined {
                        self.runner_ended(partition, &mut owned, &mut releasing).await;
                    }
                    continue;
                }
                _ = interval.tick() => {}
            }

            // A failed heartbeat must not stop the renewals: the leases would expire under
            // running work while another replica takes the partitions over.
            match self.queue.heartbeat(&self.replica, unix_ms()).await {
                Ok(count) => live = count,
                Err(error) => {
                    tracing::warn!(error = %error, "heartbeat failed; renewing the current leases anyway");
                }
            }
            let target = partitions.div_ceil(live) as usize;
            self.renew_all(&mut owned, &mut releasing).await;

            // Give extras back, highest partitions first, after their runner finished.
            while owned.len() > target {
                let Some(partition) = owned.keys().copied().max() else {
                    break;
                };
                if let Some(runner) = owned.remove(&partition) {
                    runner.stop.cancel();
                    releasing.insert(partition, runner);
                }
            }

            self.report_backlog(&owned).await;

            // Take free partitions up to our share.
            if owned.len() < target {
                for i in 0..partitions {
                    if owned.len() >= target {
                        break;
                    }
                    let partition = (offset + i) % partitions;
                    if owned.contains_key(&partition) || releasing.contains_key(&partition) {
                        continue;
                    }
                    let sent_at = tokio::time::Instant::now();
                    match self.queue.acquire(partition, &self.replica).await {
                        Ok(true) => {
                            let runner = self.start(&mut runners, partition);
                            runner.lease.confirmed(sent_at, self.lease_validity());
                            owned.insert(partition, runner);
                        }
                        Ok(false) => {}
                        Err(error) => {
                            tracing::warn!(partition, error = %error, "lease acquisition failed");
                            break;
                        }
                    }
                }
            }
        }

        // Graceful stop: finish in-flight work while still renewing its leases, then hand
        // everything back.
        tracing::info!(replica = %self.replica, "workers stopping");
        for (partition, runner) in owned.drain() {
            runner.stop.cancel();
            releasing.insert(partition, runner);
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        while !runners.is_empty() {
            tokio::select! {
                Some(joined) = runners.join_next() => {
                    if let Ok(partition) = joined {
                        self.runner_ended(partition, &mut owned, &mut releasing).await;
                    }
                }
                _ = interval.tick() => self.renew_all(&mut owned, &mut releasing).await,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        "shutdown timeout reached; unfinished messages will be replayed by another replica"
                    );
                    runners.shutdown().await;
                    break;
                }
            }
        }
        for partition in releasing.keys() {
            self.release(*partition).await;
        }
        if let Err(error) = self.queue.deregister(&self.replica).await {
            tracing::warn!(error = %error, "could not deregister the replica");
        }
        tracing::info!(replica = %self.replica, "workers stopped");
    }

    /// A runner finished: a handed-back partition is released now; one that ended on its own
    /// (lease lost) may be re-acquired on the next tick.
    async fn runner_ended(
        &self,
        partition: u32,
        owned: &mut HashMap<u32, Runner>,
        releasing: &mut HashMap<u32, Runner>,
    ) {
        if releasing.remove(&partition).is_some() {
            self.release(partition).await;
        } else if owned.remove(&partition).is_some() {
            tracing::info!(partition, "partition runner ended");
        }
    }

    /// Renews every lease whose runner still runs (owned or being handed back) and confirms its
    /// guard; a lease that is no longer ours stops its runner at once.
    async fn renew_all(
        &self,
        owned: &mut HashMap<u32, Runner>,
        releasing: &mut HashMap<u32, Runner>,
    ) {
        let sent_at = tokio::time::Instant::now();
        let partitions: Vec<u32> = owned.keys().chain(releasing.keys()).copied().collect();
        let renewals = futures_util::future::join_all(
            partitions
                .iter()
                .map(|p| self.queue.renew(*p, &self.replica)),
        )
        .await;
        for (partition, renewed) in partitions.into_iter().zip(renewals) {
            match renewed {
                Ok(true) => {
                    if let Some(runner) = owned.get(&partition).or(releasing.get(&partition)) {
                        runner.lease.confirmed(sent_at, self.lease_validity());
                    }
                }
                Ok(false) => {
                    tracing::warn!(partition, "lease taken over by another replica");
                    for runner in [owned.remove(&partition), releasing.remove(&partition)]
                        .into_iter()
                        .flatten()
                    {
                        runner.lease.revoke();
                        runner.abort.abort();
                    }
                }
                Err(error) => {
                    // The guard runs out by itself if this goes on.
                    tracing::warn!(partition, error = %error, "lease renewal failed");
                }
            }
        }
    }

    fn start(&self, runners: &mut JoinSet<u32>, partition: u32) -> Runner {
        let stop = CancellationToken::new();
        let lease = LeaseGuard::new(Duration::ZERO);
        let ctx = Arc::new(PartitionContext {
            queue: self.queue.clone(),
            handler: self.handler.clone(),
            partition,
            token: self.replica.clone(),
            lease: lease.clone(),
            permits: self.permits.clone(),
            settings: self.settings.clone(),
            merge_window: self.merge_window,
            events: self.events.clone(),
        });
        let runner_stop = stop.clone();
        let abort = runners.spawn(async move {
            partition::run(ctx, runner_stop).await;
            partition
        });
        Runner { stop, abort, lease }
    }

    /// Queue depth and oldest age of the partitions we own, and the tasks alive, for /metrics.
    async fn report_backlog(&self, owned: &HashMap<u32, Runner>) {
        metrics::gauge!(monitoring::PARTITIONS_OWNED).set(owned.len() as f64);
        // A batch's task exists only while it holds a permit, so this stays near
        // worker.concurrency however long the backlog: memory follows it, not the backlog.
        metrics::gauge!(monitoring::WORKER_TASKS).set(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as f64,
        );
        let partitions: Vec<u32> = owned.keys().copied().collect();
        let backlogs =
            futures_util::future::join_all(partitions.iter().map(|p| self.queue.backlog(*p))).await;
        let waiting =
            futures_util::future::join_all(partitions.iter().map(|p| self.queue.with_person(*p)))
                .await;
        for (partition, waiting) in partitions.iter().zip(waiting) {
            if let Ok(waiting) = waiting {
                metrics::gauge!(monitoring::HANDOFFS_WAITING, "partition" => partition.to_string())
                    .set(waiting as f64);
            }
        }
        for (partition, backlog) in partitions.into_iter().zip(backlogs) {
            if let Ok((depth, oldest_ms)) = backlog {
                let label = partition.to_string();
                metrics::gauge!(monitoring::QUEUE_DEPTH, "partition" => label.clone())
                    .set(depth as f64);
                metrics::gauge!(monitoring::QUEUE_OLDEST_AGE, "partition" => label)
                    .set(oldest_ms as f64 / 1000.0);
            }
        }
    }

    async fn release(&self, partition: u32) {
        if let Err(error) = self.queue.release(partition, &self.replica).await {
            tracing::warn!(partition, error = %error, "could not release the lease; it expires by itself");
        }
    }
}

/// Where a replica starts looking for free partitions, so replicas starting together do not all
/// race for partition 0.
fn stable_offset(replica: &str, partitions: u32) -> u32 {
    let hash = replica.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(partitions.max(1))) as u32
}
