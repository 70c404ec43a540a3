//! The Graph API client: everything that talks to `graph.facebook.com` lives here.

mod account;
mod client;
mod error;
pub mod message;
pub mod multipart;
pub mod pacing;
pub mod split;
pub mod wire;

pub use account::{AppInfo, PhoneNumberInfo, TemplateInfo, Throughput};
pub(crate) use client::read_limited;
pub use client::{CloudApi, MediaFile, Recipient, SentMessage};
pub use error::{CloudApiError, ErrorClass};
pub use message::NotSendable;
pub use pacing::{NoPacing, SendPacer};
