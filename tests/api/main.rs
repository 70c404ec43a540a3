//! One integration test binary (faster to link than one per file).

mod admin_input;
mod cloud_api;
mod cluster;
mod console;
mod console_browser;
mod conversation_control;
mod doctor;
mod edge;
mod engine;
mod examples;
mod foundations;
mod health;
mod helpers;
mod metrics_start;
mod operations;
mod outbound;
mod pipeline;
mod redis_urls;
mod responders;
mod sandbox;
mod store_scripts;
mod tools;
mod traces;
mod voice;
mod webhook_receive;
mod webhook_verification;
