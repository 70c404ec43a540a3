//! Prometheus metrics: one process-wide recorder, the names of every series in one place, and
//! `GET /metrics` rendering. Upkeep (histogram compaction) runs on each scrape.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const WEBHOOK_DELIVERIES: &str = "wabot_webhook_deliveries_total";
pub const MESSAGES_ACCEPTED: &str = "wabot_messages_accepted_total";
pub const MESSAGES_DUPLICATE: &str = "wabot_messages_duplicate_total";
pub const STATUSES: &str = "wabot_statuses_total";
pub const QUEUE_DEPTH: &str = "wabot_queue_depth";
pub const QUEUE_OLDEST_AGE: &str = "wabot_queue_oldest_age_seconds";
pub const PROCESSING_SECONDS: &str = "wabot_processing_seconds";
pub const REPLIES: &str = "wabot_replies_total";
pub const RATE_LIMITED: &str = "wabot_rate_limited_total";
pub const DEAD_LETTERS: &str = "wabot_dead_letters_total";
pub const RESPONDER_SECONDS: &str = "wabot_responder_seconds";
pub const REDIS_ERRORS: &str = "wabot_redis_errors_total";
pub const PARTITIONS_OWNED: &str = "wabot_partitions_owned";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the global recorder (once per process; later calls return the same handle). `None`
/// when another recorder was installed first (then /metrics answers empty).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(WEBHOOK_DELIVERIES, "POST /webhook answers, by HTTP status");
    describe_counter!(MESSAGES_ACCEPTED, "Inbound messages stored in the inbox");
    describe_counter!(
        MESSAGES_DUPLICATE,
        "Inbound messages dropped as duplicates (same wamid)"
    );
    describe_counter!(
        STATUSES,
        "Status webhooks, by status (sent, delivered, read, failed...)"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Messages waiting or in flight, per partition owned by this replica"
    );
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest waiting message, per partition"
    );
    describe_histogram!(
        PROCESSING_SECONDS,
        Unit::Seconds,
        "From reading a message to acknowledging it"
    );
    describe_counter!(
        REPLIES,
        "Messages sent to the Graph API, by outcome and Meta error code"
    );
    describe_counter!(
        RATE_LIMITED,
        "Inbound messages dropped by the per-user rate limit"
    );
    describe_counter!(DEAD_LETTERS, "Messages moved to the dead-letter stream");
    describe_histogram!(
        RESPONDER_SECONDS,
        Unit::Seconds,
        "Time the responder took, by kind"
    );
    describe_counter!(REDIS_ERRORS, "Redis commands that failed, by operation");
    describe_gauge!(PARTITIONS_OWNED, "Inbox partitions leased by this replica");
}

/// The Prometheus text exposition of every series.
pub fn render() -> String {
    match install() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}
