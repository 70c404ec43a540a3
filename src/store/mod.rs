//! Everything that knows Redis: the connection, key formats and scripts (`lua/`). Nothing
//! outside this module builds a key. Owns the inbox's `sink` trait and script composition
//! (`scripts`); may import meta, ops, config, domain.

pub mod audit;
pub mod connection;
pub mod conversation;
pub mod error;
pub mod inbox;
pub mod keys;
pub mod media_ids;
pub mod operators;
pub mod pacing;
pub mod queue;
pub mod scripts;
pub mod sessions;
pub mod sink;
pub mod tenants;
pub mod turn;

pub use connection::{connect, Client, RedisError};
pub use error::StoreError;
pub use inbox::RedisInbox;
pub use keys::Keys;
