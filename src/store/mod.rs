//! Everything that knows Redis: the connection, key formats and scripts. Nothing outside this
//! module builds a key.

pub mod connection;
pub mod conversation;
pub mod inbox;
pub mod keys;
pub mod queue;

pub use connection::{connect, Client, RedisError};
pub use inbox::RedisInbox;
pub use keys::Keys;
