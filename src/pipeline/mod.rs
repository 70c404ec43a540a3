//! Durable, ordered processing: partition leases, per-conversation FIFOs, retries and dead letters
//! (`worker`, with the events dispatcher inside it), outbound messages made inbox items, and
//! `pressure` (the workers making room for intake under a burst). Knows
//! nothing of what the bot answers (the `Handler` trait). May import store, meta, ops, config, domain.

pub mod outbound;
pub mod pressure;
pub mod worker;
