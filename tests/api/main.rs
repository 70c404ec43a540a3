//! One integration test binary (faster to link than one per file).

mod cloud_api;
mod engine;
mod health;
mod helpers;
mod operations;
mod pipeline;
mod webhook_receive;
mod webhook_verification;
