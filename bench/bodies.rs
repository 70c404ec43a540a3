//! `--mode bodies`: what unauthenticated large bodies cost in memory. `--concurrency` clients
//! each POST a 2 MiB body with a wrong signature at once (refused with 401 once read, or 503
//! over `server.max_inflight_body_bytes` before being read); the
//! process's RSS is printed before, at its peak and two seconds after. Compare a run with
//! `MALLOC_MMAP_THRESHOLD_=131072` in the environment (what the image sets) with one without.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

const BODY_BYTES: usize = 2 * 1024 * 1024;

pub struct BodiesReport {
    pub before: u64,
    pub peak: u64,
    pub after: u64,
    /// 401: read, then refused for the signature.
    pub refused: usize,
    /// 503: over `server.max_inflight_body_bytes`, refused before being read.
    pub over_budget: usize,
    /// Anything else (errors, timeouts).
    pub other: usize,
}

pub async fn run(
    base: &str,
    concurrency: usize,
    rss: impl Fn() -> Option<u64> + Copy + Send + 'static,
) -> anyhow::Result<BodiesReport> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()?;
    // One buffer shared by every request, so the client does not hold 2 MiB per connection.
    let body = bytes::Bytes::from(vec![b'a'; BODY_BYTES]);
    let before = rss().unwrap_or(0);
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(now) = rss() {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let url = format!("{base}/webhook");
    let requests = (0..concurrency).map(|_| {
        let request = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
            .body(body.clone());
        async move { request.send().await.map(|r| r.status().as_u16()) }
    });
    let statuses = futures_util::future::join_all(requests).await;
    sampler.abort();
    let refused = statuses.iter().filter(|s| matches!(s, Ok(401))).count();
    let over_budget = statuses.iter().filter(|s| matches!(s, Ok(503))).count();
    let other = statuses.len() - refused - over_budget;
    drop(client);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss().context("reading VmRSS")?;
    Ok(BodiesReport {
        before,
        peak: peak.load(Ordering::Relaxed),
        after,
        refused,
        over_budget,
        other,
    })
}
