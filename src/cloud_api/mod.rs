//! The Graph API client: everything that talks to `graph.facebook.com` lives here.

mod client;
mod error;
pub mod split;
pub mod wire;

pub use client::{CloudApi, Recipient, SentMessage};
pub use error::{CloudApiError, ErrorClass};
