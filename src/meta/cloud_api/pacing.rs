//! Client-side pacing: before each send the client asks its [`SendPacer`] for the slot under
//! Meta's per-number throughput and per-recipient pair limit. The production pacer keeps that
//! state in Redis, shared by every replica (`store::pacing`); without one nothing waits.

use std::time::Duration;

use async_trait::async_trait;

#[async_trait]
pub trait SendPacer: Send + Sync + 'static {
    /// Waits until a message from `number` to `recipient` may go out.
    async fn wait(&self, number: &str, recipient: &str);
    /// Meta answered 130429 (`pair = false`: the number's throughput) or 131056 (`pair = true`):
    /// hold that limiter back for `by`.
    async fn slow_down(&self, number: &str, recipient: &str, pair: bool, by: Duration);
}

/// No pacing (tools that send one message, tests of the client itself).
pub struct NoPacing;

#[async_trait]
impl SendPacer for NoPacing {
    async fn wait(&self, _number: &str, _recipient: &str) {}
    async fn slow_down(&self, _number: &str, _recipient: &str, _pair: bool, _by: Duration) {}
}
