//! The Graph API client: everything that talks to `graph.facebook.com` lives here.

mod client;
mod error;
pub mod message;
mod pacing;
pub mod split;
pub mod wire;

pub(crate) use client::read_limited;
pub use client::{CloudApi, MediaFile, Recipient, SentMessage};
pub use error::{CloudApiError, ErrorClass};
pub use message::{ListRow, ListSection, MediaSource, Outgoing, OutgoingMedia};
