//! Prometheus metrics: one process-wide recorder, the names of every series in one place, and
//! `GET /metrics` rendering. Upkeep (histogram compaction) runs on each scrape.
//!
//! Every family is registered at 0 on start, so dashboards and `rate()`/`absent()` alerts work
//! before the first event. Label values that come from outside (status names, Meta error codes)
//! are mapped onto a fixed set: a hostile payload cannot create series.

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
pub const BUILD_INFO: &str = "wabot_build_info";
pub const HANDOFFS: &str = "wabot_handoffs_total";
pub const HANDOFFS_WAITING: &str = "wabot_handoffs_waiting";
pub const EVENTS: &str = "wabot_events_total";
pub const EVENTS_BACKLOG: &str = "wabot_events_backlog";
pub const DELIVERY_FAILURES: &str = "wabot_delivery_failures_total";
pub const OUTBOUND: &str = "wabot_outbound_total";
pub const WORKER_TASKS: &str = "wabot_worker_tasks";
pub const WEBHOOK_SECONDS: &str = "wabot_webhook_duration_seconds";
pub const WORKER_ALLOWED: &str = "wabot_worker_concurrency_allowed";
pub const BOUND_WAITS: &str = "wabot_tenant_bound_waits_total";
pub const UNROUTED: &str = "wabot_unrouted_total";
pub const TENANT_ITEMS: &str = "wabot_tenant_items_total";
pub const TENANTS: &str = "wabot_tenants";

/// Every family above, for the registration at start and its test.
pub const FAMILIES: &[&str] = &[
    WEBHOOK_DELIVERIES,
    MESSAGES_ACCEPTED,
    MESSAGES_DUPLICATE,
    STATUSES,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    PROCESSING_SECONDS,
    REPLIES,
    RATE_LIMITED,
    DEAD_LETTERS,
    RESPONDER_SECONDS,
    REDIS_ERRORS,
    PARTITIONS_OWNED,
    BUILD_INFO,
    HANDOFFS,
    HANDOFFS_WAITING,
    EVENTS,
    EVENTS_BACKLOG,
    DELIVERY_FAILURES,
    OUTBOUND,
    WORKER_TASKS,
    WEBHOOK_SECONDS,
    WORKER_ALLOWED,
    BOUND_WAITS,
    UNROUTED,
    TENANT_ITEMS,
    TENANTS,
];

/// `wabot_webhook_duration_seconds{outcome}`: stored (something new), duplicate (nothing new),
/// refused (any answer but 200).
pub const WEBHOOK_OUTCOMES: &[&str] = &["stored", "duplicate", "refused"];

/// Why a conversation went to a person (`wabot_handoffs_total{reason}`).
pub const HANDOFF_REASONS: &[&str] = &["requested", "operator", "echo", "routing"];

/// The delivery statuses Meta documents; anything else is counted as `other`.
const KNOWN_STATUSES: &[&str] = &["sent", "delivered", "read", "played", "failed"];

/// Meta error codes worth their own series (retryable ones and the common permanent ones);
/// the rest are counted as `other`.
const KNOWN_CODES: &[i64] = &[
    1, 2, 4, 100, 190, 368, 80007, 130429, 130472, 131000, 131005, 131008, 131009, 131016, 131021,
    131026, 131031, 131042, 131047, 131051, 131052, 131053, 131056, 131057, 132000, 132001, 132005,
    132007, 132012, 132015, 132016, 133004, 133010,
];

/// `wabot_statuses_total{status}` label for a status string from a webhook.
pub fn status_label(status: &str) -> &'static str {
    KNOWN_STATUSES
        .iter()
        .find(|known| **known == status)
        .copied()
        .unwrap_or("other")
}

/// `wabot_replies_total{code}` label for a Meta error code (`none` without one).
pub fn code_label(code: Option<i64>) -> String {
    match code {
        None => "none".into(),
        Some(code) if KNOWN_CODES.contains(&code) => code.to_string(),
        Some(_) => "other".into(),
    }
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the global recorder (once per process; later calls return the same handle). `None`
/// when another recorder was installed first (then /metrics answers empty).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            // The webhook answers in milliseconds: its buckets start far below the others'.
            let webhook = [
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(WEBHOOK_SECONDS.into()), &webhook)
                .ok()?
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            register_at_zero();
            Some(handle)
        })
        .clone()
}

/// The help text of every counter.
const COUNTERS: &[(&str, &str)] = &[
    (WEBHOOK_DELIVERIES, "POST /webhook answers, by HTTP status"),
    (MESSAGES_ACCEPTED, "Inbound messages stored in the inbox"),
    (
        MESSAGES_DUPLICATE,
        "Inbound messages dropped as duplicates (same wamid)",
    ),
    (
        STATUSES,
        "Status webhooks, by status (sent, delivered, read, failed...)",
    ),
    (
        REPLIES,
        "Messages sent to the Graph API, by outcome and Meta error code",
    ),
    (
        RATE_LIMITED,
        "Inbound messages dropped by the per-user rate limit",
    ),
    (DEAD_LETTERS, "Messages moved to the dead-letter stream"),
    (REDIS_ERRORS, "Redis commands that failed, by operation"),
    (
        HANDOFFS,
        "Conversations handed to a person, by reason (requested, operator, echo, routing)",
    ),
    (
        EVENTS,
        "Event deliveries to events.webhook_url, by outcome (delivered, retried)",
    ),
    (
        DELIVERY_FAILURES,
        "Our messages Meta reported as failed, by error code",
    ),
    (
        OUTBOUND,
        "Operator messages and notifications, by outcome (sent, template, refused, failed)",
    ),
    (
        BOUND_WAITS,
        "Batches that waited for their tenant's share of the workers (tenants.max_concurrency)",
    ),
    (
        UNROUTED,
        "Items for a business number no tenant has: stored, not answered",
    ),
    (
        TENANT_ITEMS,
        "Items the workers handled, by tenant and kind (message, status, outbound, handover)",
    ),
];

/// The help text of every gauge without a unit.
const GAUGES: &[(&str, &str)] = &[
    (
        QUEUE_DEPTH,
        "Messages waiting or in flight, per partition owned by this replica",
    ),
    (PARTITIONS_OWNED, "Inbox partitions leased by this replica"),
    (
        WORKER_TASKS,
        "Tasks alive on the workers' runtime: conversations being processed (at most worker.concurrency) plus a few per partition",
    ),
    (
        WORKER_ALLOWED,
        "Conversations the workers may process at once now: worker.concurrency, less while the webhook answers slowly (worker.intake_target_ms)",
    ),
    (
        HANDOFFS_WAITING,
        "Conversations a person has (handoff), per partition owned",
    ),
    (
        EVENTS_BACKLOG,
        "Events waiting for delivery, per partition owned",
    ),
    (
        BUILD_INFO,
        "Always 1; the version label says which build runs",
    ),
    (
        TENANTS,
        "Tenants this replica's workers serve (the default one included)",
    ),
];

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    for (name, help) in COUNTERS {
        describe_counter!(*name, *help);
    }
    for (name, help) in GAUGES {
        describe_gauge!(*name, *help);
    }
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
    describe_histogram!(
        WEBHOOK_SECONDS,
        Unit::Seconds,
        "POST /webhook from the request to the answer, by outcome (stored, duplicate, refused)"
    );
    describe_histogram!(
        RESPONDER_SECONDS,
        Unit::Seconds,
        "Time the responder took, by kind"
    );
}

/// One series per family at 0 (counters and gauges) or empty (histograms), with the label set
/// the code uses most. Per-partition gauges start on partition 0, which its owner overwrites;
/// a 0 changes no sum.
fn register_at_zero() {
    use metrics::{counter, gauge, histogram};
    counter!(WEBHOOK_DELIVERIES, "outcome" => "200").absolute(0);
    counter!(MESSAGES_ACCEPTED).absolute(0);
    counter!(MESSAGES_DUPLICATE).absolute(0);
    for status in KNOWN_STATUSES.iter().chain(&["other"]) {
        counter!(STATUSES, "status" => *status).absolute(0);
    }
    gauge!(QUEUE_DEPTH, "partition" => "0").set(0.0);
    gauge!(QUEUE_OLDEST_AGE, "partition" => "0").set(0.0);
    let _ = histogram!(PROCESSING_SECONDS);
    for outcome in WEBHOOK_OUTCOMES {
        let _ = histogram!(WEBHOOK_SECONDS, "outcome" => *outcome);
    }
    counter!(REPLIES, "outcome" => "sent", "code" => "none").absolute(0);
    counter!(REPLIES, "outcome" => "failed", "code" => "none").absolute(0);
    counter!(RATE_LIMITED, "tenant" => "default").absolute(0);
    counter!(DEAD_LETTERS).absolute(0);
    for kind in ["rules", "echo", "openai"] {
        let _ = histogram!(RESPONDER_SECONDS, "tenant" => "default", "kind" => kind);
    }
    for op in ["accept", "read", "handle", "ack"] {
        counter!(REDIS_ERRORS, "op" => op).absolute(0);
    }
    gauge!(PARTITIONS_OWNED).set(0.0);
    gauge!(WORKER_TASKS).set(0.0);
    gauge!(WORKER_ALLOWED).set(0.0);
    counter!(BOUND_WAITS).absolute(0);
    counter!(UNROUTED).absolute(0);
    counter!(TENANT_ITEMS, "tenant" => "default", "kind" => "message").absolute(0);
    gauge!(TENANTS).set(0.0);
    for reason in HANDOFF_REASONS {
        counter!(HANDOFFS, "reason" => *reason).absolute(0);
    }
    for outcome in ["delivered", "retried", "dropped"] {
        counter!(EVENTS, "outcome" => outcome).absolute(0);
    }
    gauge!(EVENTS_BACKLOG, "partition" => "0").set(0.0);
    gauge!(HANDOFFS_WAITING, "partition" => "0").set(0.0);
    counter!(DELIVERY_FAILURES, "tenant" => "default", "code" => "none").absolute(0);
    for outcome in ["sent", "template", "refused", "failed"] {
        counter!(OUTBOUND, "tenant" => "default", "outcome" => outcome).absolute(0);
    }
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
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
