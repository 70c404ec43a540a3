//! Running it in production: logs and traces (telemetry, OpenTelemetry) and the Prometheus series.
//! May import config and domain.

pub mod monitoring;
pub mod otel;
pub mod telemetry;
