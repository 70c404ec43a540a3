//! The worker side of the inbox: partition leases, replica heartbeats, reading a partition's
//! stream through the consumer group, and lease-checked acknowledgement and dead-lettering.

use crate::domain::clock::unix_ms;
use std::collections::HashMap;

use fred::prelude::{
    Client, ClientLike, Expiration, KeysInterface, SetOptions, SortedSetsInterface,
    StreamsInterface,
};
use fred::types::scripts::Script;
use fred::types::streams::XReadResponse;

use super::conversation::{step_source, ConversationWrite, Step};
use super::keys::{Keys, GROUP};
use super::scripts;
use crate::domain::InboxItem;

pub use super::error::{Result, StoreError};

/// A raw stream entry: id and fields.
type StreamEntry = (String, HashMap<String, String>);

/// One stored item read from a partition.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stream id, e.g. `1717000000000-0`.
    pub id: String,
    /// `None` when the stored JSON does not decode (corrupt, or a format change): it is
    /// dead-lettered.
    pub item: Option<InboxItem>,
    pub raw: String,
    /// The W3C `traceparent` of the webhook that stored it (only while tracing was on).
    pub traceparent: Option<String>,
    /// Read again from the pending list (a take-over, a restart, a sweep), not new: its
    /// starts are counted in Redis (`Queue::count_starts`).
    pub replayed: bool,
}

/// A dead letter, for operators. Its public id is `<partition>:<stream id>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub partition: u32,
    pub id: String,
    pub message_json: String,
    pub error: String,
    pub attempts: u32,
    pub failed_at_ms: i64,
}

/// A page of dead letters and the cursor of the next one (`None`: this was the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterPage {
    pub letters: Vec<DeadLetter>,
    pub next_cursor: Option<String>,
}

/// Dead letters kept per partition (`XADD MAXLEN ~`): a Graph API outage that fails everything
/// must not fill Redis (which then refuses new messages). Trimming is approximate (whole radix
/// nodes), so a stream can briefly hold a little more; the oldest are dropped first.
pub const DEAD_LETTERS_MAX_PER_PARTITION: u64 = 100_000;

/// Redis operations of the workers.
#[derive(Clone)]
pub struct Queue {
    client: Client,
    keys: Keys,
    lease_ttl_ms: u64,
    renew: Script,
    release: Script,
    starts: Script,
    finish: Script,
    /// `finish` after a conversation step in the same call: [`Step::Record`], [`Step::Status`].
    finish_after_record: Script,
    finish_after_status: Script,
    replay: Script,
}

/// Acknowledges (or dead-letters) entries; run behind the lease check.
const FINISH: &str = include_str!("lua/finish.lua");

/// A conversation step and `finish.lua` as one script. The step comes first and is not undone
/// when the lease turns out lost: what was sent is recorded whoever finishes the entry.
fn finish_after(step: Step) -> Script {
    scripts::chained(&step_source(step), &scripts::leased_source(FINISH))
}

impl Queue {
    /// `lease_ttl_ms`: how long a lease lives without renewal (`worker.lease_ttl_ms`).
    pub fn new(client: Client, keys: Keys, lease_ttl_ms: u64) -> Queue {
        Queue {
            client,
            keys,
            lease_ttl_ms,
            renew: scripts::leased(include_str!("lua/renew.lua")),
            release: scripts::alone(include_str!("lua/release.lua")),
            starts: scripts::alone(include_str!("lua/starts.lua")),
            finish: scripts::leased(FINISH),
            finish_after_record: finish_after(Step::Record),
            finish_after_status: finish_after(Step::Status),
            replay: scripts::alone(include_str!("lua/replay.lua")),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Announces this replica as alive until `now + ttl`, drops replicas that stopped doing so,
    /// and returns how many are alive (at least 1: us).
    pub async fn heartbeat(&self, replica: &str, now_ms: i64) -> Result<u32> {
        let ttl_ms = self.lease_ttl_ms;
        let key = self.keys.replicas();
        let pipeline = self.client.pipeline();
        let _: () = pipeline
            .zadd(
                &key,
                None,
                None,
                false,
                false,
                ((now_ms + ttl_ms as i64) as f64, replica),
            )
            .await?;
        let _: () = pipeline
            .zremrangebyscore(&key, f64::NEG_INFINITY, now_ms as f64)
            .await?;
        let _: () = pipeline.zcard(&key).await?;
        let _: () = pipeline.pexpire(&key, (ttl_ms * 4) as i64, None).await?;
        let results: (i64, i64, i64, i64) = pipeline.all().await?;
        Ok(u32::try_from(results.2).unwrap_or(1).max(1))
    }

    /// Removes this replica from the live set (graceful shutdown).
    pub async fn deregister(&self, replica: &str) -> Result<()> {
        let _: i64 = self.client.zrem(self.keys.replicas(), replica).await?;
        Ok(())
    }

    /// Takes the lease of a free partition.
    pub async fn acquire(&self, partition: u32, token: &str) -> Result<bool> {
        let ttl_ms = self.lease_ttl_ms;
        let set: Option<String> = self
            .client
            .set(
                self.keys.lease(partition),
                token,
                Some(Expiration::PX(ttl_ms as i64)),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        Ok(set.is_some())
    }

    /// Extends our lease; `false` when it is no longer ours (expired, taken over).
    pub async fn renew(&self, partition: u32, token: &str) -> Result<bool> {
        let ttl_ms = self.lease_ttl_ms;
        let renewed: i64 = self
            .renew
            .evalsha_with_reload(
                &self.client,
                vec![self.keys.lease(partition)],
                vec![token.to_string(), ttl_ms.to_string()],
            )
            .await?;
        Ok(renewed == 1)
    }

    pub async fn release(&self, partition: u32, token: &str) -> Result<()> {
        let _: i64 = self
            .release
            .evalsha_with_reload(
                &self.client,
                vec![self.keys.lease(partition)],
                vec![token.to_string()],
            )
            .await?;
        Ok(())
    }

    /// Creates the consumer group of a partition if it does not exist yet.
    pub async fn ensure_group(&self, partition: u32) -> Result<()> {
        let result: std::result::Result<String, fred::error::Error> = self
            .client
            .xgroup_create(self.keys.inbox(partition), GROUP, "0", true)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.details().starts_with("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads up to `count` entries of a partition: `after = None` for new ones (`>`),
    /// `Some(id)` for our pending ones after `id` (replay after a take-over or restart).
    /// `block`: wait up to this long for new entries (only on a [`Queue::dedicated`] queue: a
    /// blocking command holds its connection).
    pub async fn read(
        &self,
        partition: u32,
        after: Option<&str>,
        count: u64,
        block: Option<std::time::Duration>,
    ) -> Result<Vec<Entry>> {
        let key = self.keys.inbox(partition);
        let consumer = format!("p{partition}");
        let id = after.unwrap_or(">").to_string();
        let block_ms = block.map(|b| b.as_millis() as u64);
        let response: std::result::Result<fred::types::Value, fred::error::Error> = self
            .client
            .xreadgroup(
                GROUP,
                consumer,
                Some(count),
                block_ms,
                false,
                key.clone(),
                id,
            )
            .await;
        let response = match response {
            Err(e) if e.details().starts_with("NOGROUP") => {
                // Redis lost the group (restarted without persistence): recreate, read next time.
                self.ensure_group(partition).await?;
                return Ok(Vec::new());
            }
            Ok(fred::types::Value::Null) => return Ok(Vec::new()),
            Ok(value) => value.into_xread_response::<String, String, String, String>()?,
            Err(e) => return Err(e.into()),
        };
        let response: XReadResponse<String, String, String, String> = response;
        Ok(response
            .into_values()
            .flatten()
            .map(|(id, mut fields)| {
                let raw = fields.remove("m").unwrap_or_default();
                Entry {
                    id,
                    item: InboxItem::from_json(&raw).ok(),
                    raw,
                    traceparent: fields.remove(crate::ops::otel::TRACEPARENT_FIELD),
                    replayed: after.is_some(),
                }
            })
            .collect())
    }

    /// Acknowledges processed entries, after running `write` (the conversation write their
    /// handling left) in the same call; `false` when the lease was lost (someone else replays
    /// them; `write` was applied all the same). With no entries, only applies `write`.
    pub async fn ack(
        &self,
        partition: u32,
        token: &str,
        entry_ids: &[&str],
        write: Option<&ConversationWrite>,
    ) -> Result<bool> {
        self.ack_counted(partition, token, entry_ids, write, false)
            .await
    }

    /// [`ack`](Self::ack), forgetting the entries' start counts too (`replayed`: some were
    /// read again from the pending list, so [`count_starts`](Self::count_starts) counted them).
    pub async fn ack_counted(
        &self,
        partition: u32,
        token: &str,
        entry_ids: &[&str],
        write: Option<&ConversationWrite>,
        replayed: bool,
    ) -> Result<bool> {
        let mut args = Vec::with_capacity(6 + entry_ids.len());
        let mut keys = Vec::with_capacity(7);
        let script = match write {
            None => &self.finish,
            Some(write) => {
                args.extend([write.keys.len().to_string(), write.args.len().to_string()]);
                args.extend(write.args.iter().cloned());
                keys.extend(write.keys.iter().cloned());
                match write.step {
                    Step::Record => &self.finish_after_record,
                    Step::Status => &self.finish_after_status,
                }
            }
        };
        args.extend(
            FinishArgs {
                token,
                lease_ttl_ms: self.lease_ttl_ms,
                then: Finish::Ack {
                    ids: entry_ids,
                    replayed,
                },
            }
            .argv(),
        );
        self.finish(partition, script, keys, args).await
    }

    /// Counts a start of processing of entries read again from the pending list; the highest
    /// count among them (see `lua/starts.lua`).
    pub async fn count_starts(&self, partition: u32, entry_ids: &[&str]) -> Result<u32> {
        let most: i64 = self
            .starts
            .evalsha_with_reload(
                &self.client,
                vec![self.keys.starts(partition)],
                entry_ids
                    .iter()
                    .map(|id| id.to_string())
                    .collect::<Vec<_>>(),
            )
            .await?;
        Ok(u32::try_from(most).unwrap_or(u32::MAX))
    }

    /// Moves an entry that keeps failing to the partition's dead-letter stream.
    pub async fn dead_letter(
        &self,
        partition: u32,
        token: &str,
        entry: &Entry,
        error: &str,
        attempts: u32,
    ) -> Result<bool> {
        let args = FinishArgs {
            token,
            lease_ttl_ms: self.lease_ttl_ms,
            then: Finish::Dead {
                entry,
                error,
                attempts,
            },
        }
        .argv();
        self.finish(partition, &self.finish, Vec::new(), args).await
    }

    /// Runs `script` with `keys` followed by the partition's lease, inbox and dead letters.
    async fn finish(
        &self,
        partition: u32,
        script: &Script,
        mut keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<bool> {
        keys.extend([
            self.keys.lease(partition),
            self.keys.inbox(partition),
            self.keys.dead_letters(partition),
            self.keys.starts(partition),
        ]);
        let done: i64 = script.evalsha_with_reload(&self.client, keys, args).await?;
        // 0: the lease is someone else's.
        Ok(done == 1)
    }

    /// Dead letters of every partition, oldest first per partition, at most `limit` in all.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        Ok(self.dead_letters_page(limit, None).await?.letters)
    }

    /// One page of dead letters, in partition order then stream order, starting after `cursor`
    /// (exclusive, `XRANGE (id`). A cursor's partition must be below `partitions()` (callers
    /// check it: [`parse_dead_letter_id`] only checks the form).
    /// One dead letter by its stream id.
    pub async fn find_dead_letter(&self, partition: u32, id: &str) -> Result<Option<DeadLetter>> {
        if partition >= self.keys.partitions() {
            return Ok(None);
        }
        let entries: Vec<StreamEntry> = self
            .client
            .xrange(self.keys.dead_letters(partition), id, id, Some(1))
            .await?;
        Ok(entries
            .into_iter()
            .next()
            .map(|(id, fields)| DeadLetter::of(partition, id, fields)))
    }

    pub async fn dead_letters_page(
        &self,
        limit: usize,
        cursor: Option<(u32, &str)>,
    ) -> Result<DeadLetterPage> {
        let mut letters = Vec::new();
        let first = cursor.map_or(0, |(partition, _)| partition);
        for partition in first..self.keys.partitions() {
            if letters.len() >= limit {
                break;
            }
            let start = match cursor {
                Some((p, id)) if p == partition => format!("({id}"),
                _ => "-".to_string(),
            };
            let entries: Vec<StreamEntry> = self
                .client
                .xrange(
                    self.keys.dead_letters(partition),
                    start,
                    "+",
                    Some((limit - letters.len()) as u64),
                )
                .await?;
            letters.extend(
                entries
                    .into_iter()
                    .map(|(id, fields)| DeadLetter::of(partition, id, fields)),
            );
        }
        // A full page may be followed by more; the page after the last one is empty.
        let next_cursor = (limit > 0 && letters.len() >= limit)
            .then(|| letters.last().map(DeadLetter::public_id))
            .flatten();
        Ok(DeadLetterPage {
            letters,
            next_cursor,
        })
    }

    /// Sends a dead letter back to its partition's inbox; `false` when there is no such entry.
    pub async fn replay_dead_letter(&self, partition: u32, id: &str) -> Result<bool> {
        if partition >= self.keys.partitions() {
            return Ok(false);
        }
        let moved: i64 = self
            .replay
            .evalsha_with_reload(
                &self.client,
                vec![
                    self.keys.dead_letters(partition),
                    self.keys.inbox(partition),
                ],
                vec![id.to_string()],
            )
            .await?;
        Ok(moved == 1)
    }

    /// A queue on a connection of its own, for blocking reads; the connection closes when it is
    /// dropped. Also returns the longest block that stays within the command timeout.
    pub fn dedicated(&self) -> (DedicatedQueue, std::time::Duration) {
        let client = self.client.clone_new();
        client.connect();
        let timeout = client.perf_config().default_command_timeout;
        let block = (timeout / 2).clamp(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(1),
        );
        let queue = Queue {
            client,
            ..self.clone()
        };
        (DedicatedQueue(queue), block)
    }

    /// Entries in a partition (waiting or in flight) and the age of the oldest, in ms.
    pub async fn backlog(&self, partition: u32) -> Result<(u64, i64)> {
        let key = self.keys.inbox(partition);
        let pipeline = self.client.pipeline();
        let _: () = pipeline.xlen(&key).await?;
        let _: () = pipeline.xrange(&key, "-", "+", Some(1)).await?;
        let (depth, first): (u64, Vec<StreamEntry>) = pipeline.all().await?;
        // Stream ids start with the insertion time in ms.
        let oldest = first
            .first()
            .and_then(|(id, _)| id.split('-').next()?.parse::<i64>().ok())
            .map(|ms| (unix_ms() - ms).max(0))
            .unwrap_or(0);
        Ok((depth, oldest))
    }

    /// Entries waiting in a partition (not yet acknowledged).
    /// Conversations of the partition a person has now; expired entries are dropped.
    pub async fn with_person(&self, partition: u32) -> Result<u64> {
        let key = self.keys.with_person(partition);
        let pipeline = self.client.pipeline();
        let _: () = pipeline
            .zremrangebyscore(&key, f64::NEG_INFINITY, unix_ms() as f64)
            .await?;
        let _: () = pipeline.zcard(&key).await?;
        let (_, waiting): (i64, u64) = pipeline.all().await?;
        Ok(waiting)
    }

    pub async fn depth(&self, partition: u32) -> Result<u64> {
        Ok(self.client.xlen(self.keys.inbox(partition)).await?)
    }
}

/// A [`Queue`] whose connection is closed when it is dropped (a partition that stops or is
/// aborted leaves no connection behind).
pub struct DedicatedQueue(Queue);

impl std::ops::Deref for DedicatedQueue {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        &self.0
    }
}

impl Drop for DedicatedQueue {
    fn drop(&mut self) {
        let client = self.0.client.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = fred::prelude::ClientLike::quit(&client).await;
            });
        }
    }
}

impl DeadLetter {
    /// The business number its message belongs to (`None`: it names none, or does not parse).
    pub fn phone_number_id(&self) -> Option<String> {
        crate::domain::InboxItem::from_json(&self.message_json)
            .ok()
            .and_then(|item| item.phone_number_id().map(|n| n.as_str().to_string()))
    }

    fn of(partition: u32, id: String, mut f: HashMap<String, String>) -> DeadLetter {
        DeadLetter {
            partition,
            id,
            message_json: f.remove("m").unwrap_or_default(),
            error: f.remove("error").unwrap_or_default(),
            attempts: f.get("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
            failed_at_ms: f.get("failed_at").and_then(|a| a.parse().ok()).unwrap_or(0),
        }
    }

    /// `<partition>:<stream id>`, the id the admin API and CLI use.
    pub fn public_id(&self) -> String {
        format!("{}:{}", self.partition, self.id)
    }
}

/// Splits a public dead-letter id back into partition and stream id.
pub fn parse_dead_letter_id(id: &str) -> Option<(u32, &str)> {
    let (partition, stream_id) = id.split_once(':')?;
    let valid = stream_id.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty()
            && !seq.is_empty()
            && ms.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit())
    });
    valid.then_some((partition.parse().ok()?, stream_id))
}

/// `finish.lua`'s arguments (its header lists the same order).
struct FinishArgs<'a> {
    token: &'a str,
    lease_ttl_ms: u64,
    then: Finish<'a>,
}

/// What `finish.lua` does while we hold the lease.
enum Finish<'a> {
    /// Acknowledge and delete these entries (none: only check the lease); `replayed`: forget
    /// their start counts too.
    Ack { ids: &'a [&'a str], replayed: bool },
    /// Move the entry to the dead letters.
    Dead {
        entry: &'a Entry,
        error: &'a str,
        attempts: u32,
    },
}

impl FinishArgs<'_> {
    fn argv(self) -> Vec<String> {
        let mut argv = vec![
            self.token.to_string(),
            GROUP.to_string(),
            self.lease_ttl_ms.to_string(),
        ];
        match self.then {
            Finish::Ack { ids, replayed } => {
                argv.push(if replayed { "ack_replayed" } else { "ack" }.to_string());
                argv.extend(ids.iter().map(|id| id.to_string()));
            }
            Finish::Dead {
                entry,
                error,
                attempts,
            } => argv.extend([
                "dead".to_string(),
                entry.id.clone(),
                entry.raw.clone(),
                error.to_string(),
                attempts.to_string(),
                unix_ms().to_string(),
            ]),
        }
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finish_script_caps_dead_letters_at_the_documented_bound() {
        let cap = format!("'MAXLEN', '~', '{DEAD_LETTERS_MAX_PER_PARTITION}'");
        let finish = FINISH;
        assert!(finish.contains(&cap), "{finish}");
    }
}
