//! Key formats and partitioning. Every key carries a `{prefix:p}` hash tag so that all keys one
//! script touches live in one Redis Cluster slot.

use crate::domain::{PhoneNumberId, UserId};

/// Dedup markers are kept for Meta's retry horizon (7 days) plus a day of margin.
pub const SEEN_TTL_SECS: u64 = 8 * 24 * 3600;

/// Statuses are deduplicated for a day: a status applied twice later is harmless (delivery
/// states only move forward), and three per reply would otherwise fill Redis for a week.
pub const STATUS_SEEN_TTL_SECS: u64 = 24 * 3600;

/// Key builder for one deployment (one prefix, one partition count).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    partitions: u32,
}

impl Keys {
    pub fn new(prefix: &str, partitions: u32) -> Keys {
        Keys {
            prefix: prefix.to_string(),
            partitions: partitions.max(1),
        }
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The partition of a conversation: FNV-1a, stable across Rust versions and processes.
    pub fn partition(&self, phone_number_id: &PhoneNumberId, user: &UserId) -> u32 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in phone_number_id
            .as_str()
            .bytes()
            .chain(std::iter::once(b':'))
            .chain(user.as_str().bytes())
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        (hash % u64::from(self.partitions)) as u32
    }

    fn tag(&self, partition: u32) -> String {
        format!("{{{}:{}}}", self.prefix, partition)
    }

    /// Durable inbox stream of a partition (consumer group [`GROUP`]).
    pub fn inbox(&self, partition: u32) -> String {
        format!("{}:in", self.tag(partition))
    }

    /// Events waiting to be POSTed to `events.webhook_url`, per partition (written by the
    /// conversation scripts in the same call as the change they report).
    pub fn events(&self, partition: u32) -> String {
        format!("{}:events", self.tag(partition))
    }

    /// Conversations of a partition that a person has, scored by until when (ms): the console's
    /// "waiting for a person" list and `wabot_handoffs_waiting`.
    pub fn with_person(&self, partition: u32) -> String {
        format!("{}:human", self.tag(partition))
    }

    /// Which replica owns a partition.
    pub fn lease(&self, partition: u32) -> String {
        format!("{}:lease", self.tag(partition))
    }

    pub fn seen(&self, partition: u32, wamid: &str) -> String {
        format!("{}:seen:{wamid}", self.tag(partition))
    }

    /// A conversation's hash (metadata, markers, rate limit).
    pub fn conversation(
        &self,
        partition: u32,
        phone_number_id: &PhoneNumberId,
        user: &UserId,
    ) -> String {
        self.per_conversation(partition, "conv", phone_number_id, user)
    }

    /// The turns of a conversation (a list beside its hash, same hash tag and TTL).
    pub fn history(
        &self,
        partition: u32,
        phone_number_id: &PhoneNumberId,
        user: &UserId,
    ) -> String {
        self.per_conversation(partition, "hist", phone_number_id, user)
    }

    /// Where a corrupt conversation's hash and list are moved (kept for inspection).
    pub fn quarantined(
        &self,
        partition: u32,
        phone_number_id: &PhoneNumberId,
        user: &UserId,
    ) -> [String; 2] {
        [
            self.per_conversation(partition, "corrupt:conv", phone_number_id, user),
            self.per_conversation(partition, "corrupt:hist", phone_number_id, user),
        ]
    }

    fn per_conversation(
        &self,
        partition: u32,
        kind: &str,
        phone_number_id: &PhoneNumberId,
        user: &UserId,
    ) -> String {
        format!(
            "{}:{kind}:{phone_number_id}:{}",
            self.tag(partition),
            user.as_str()
        )
    }

    /// Send pacing of one business number: its throughput GCRA, and per recipient the pair
    /// limit. One hash tag per number, so one script checks both on a Cluster.
    pub fn pacing(&self, phone_number_id: &str, recipient: &str) -> [String; 2] {
        let tag = format!("{{{}:pace:{phone_number_id}}}", self.prefix);
        [format!("{tag}:number"), format!("{tag}:to:{recipient}")]
    }

    /// How often each entry read again from the pending list started processing
    /// (`starts.lua`): an entry that kills every worker that runs it is dead-lettered.
    pub fn starts(&self, partition: u32) -> String {
        format!("{}:starts", self.tag(partition))
    }

    pub fn dead_letters(&self, partition: u32) -> String {
        format!("{}:dead", self.tag(partition))
    }

    /// An operator console session, named by the SHA-256 of its id: what Redis holds cannot be
    /// presented as a cookie. Single-key commands only, so the slot does not matter.
    /// The media id Meta gave a file wabot uploaded for a number (`source`: the file's digest).
    pub fn media_id(&self, phone_number_id: &PhoneNumberId, source: &str) -> String {
        format!("{}:media:{phone_number_id}:{source}", self.prefix)
    }

    /// Tenants stored through the admin API (a hash by id; sealed documents). Hash-tagged with
    /// their version, which the same transaction moves.
    pub fn tenants(&self) -> String {
        format!("{}:{{tenants}}", self.prefix)
    }

    pub fn tenants_version(&self) -> String {
        format!("{}:{{tenants}}:version", self.prefix)
    }

    /// What people did on a tenant's conversations and settings (a capped stream).
    pub fn audit(&self, tenant: &str) -> String {
        format!("{}:audit:{tenant}", self.prefix)
    }

    /// The console's named operator accounts (a hash by name).
    pub fn operators(&self) -> String {
        format!("{}:operators", self.prefix)
    }

    pub fn console_session(&self, id_digest: &str) -> String {
        format!("{}:console:session:{id_digest}", self.prefix)
    }

    /// Failed console sign-ins of one client within the current window.
    pub fn console_sign_in_failures(&self, client: &str) -> String {
        format!("{}:console:signin:{client}", self.prefix)
    }

    /// Replica heartbeats (sorted set: replica id → expiry in ms). Not partitioned: it is only
    /// read and written by single-key commands.
    pub fn replicas(&self) -> String {
        format!("{}:replicas", self.prefix)
    }
}

/// The consumer group every inbox is read through.
pub const GROUP: &str = "workers";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_stable_and_in_range() {
        let keys = Keys::new("wabot", 64);
        let pnid = PhoneNumberId::parse("113948572261094").expect("valid");
        let user = UserId::parse("4915123456789").expect("valid");
        let p = keys.partition(&pnid, &user);
        assert!(p < 64);
        // Pinned: a change here re-routes every live conversation. The prefix plays no part.
        assert_eq!(p, 41);
        assert_eq!(Keys::new("x", 64).partition(&pnid, &user), 41);
        assert_eq!(keys.inbox(p), "{wabot:41}:in");
        assert_eq!(
            keys.conversation(p, &pnid, &user),
            "{wabot:41}:conv:113948572261094:4915123456789"
        );
    }
}
