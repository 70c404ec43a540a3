//! One integration test binary (faster to link than one per file).

mod engine;
mod health;
mod helpers;
mod pipeline;
mod webhook_receive;
mod webhook_verification;
