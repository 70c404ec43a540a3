//! Conversations: one Redis hash per `(phone_number_id, user)` with a sliding TTL, appended to by
//! scripts that are idempotent per wamid, plus the per-user GCRA rate limit in the same call.
//!
//! Hash layout: `seq` (last turn number), `lo` (oldest kept turn), `m:<n>` (one JSON [`Turn`] per
//! field), `w:<hash of wamid>` (inbound message seen: its turn number, `<n>:r` once answered,
//! `l` when rate-limited), `name`, `created`, `updated` (ms), `notice_until` (ms; no second rate-limit
//! notice before). Few, short fields: the sent reply's wamid lives in the bot turn itself.

use std::collections::HashMap;

use fred::prelude::{Client, ClientLike, ClusterInterface, HashesInterface, KeysInterface};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};
use serde::{Deserialize, Serialize};

use super::keys::Keys;
use crate::domain::{InboundMessage, PhoneNumberId, UserId};

pub type Result<T> = std::result::Result<T, fred::error::Error>;

/// Marker field of an inbound wamid: a 64-bit hash keeps the field short (wamids are ~60 bytes).
const MARKER: &str = r#"
local function marker_of(wamid)
  return 'w:' .. string.sub(redis.sha1hex(wamid), 1, 16)
end
"#;

/// Drops turns beyond `max_history` (and their markers), then refreshes the sliding TTL.
/// Expects `conv`, `seq`, `lo` (oldest kept turn, as read), `max_history` and `ttl` locals.
const TRIM_AND_TOUCH: &str = r#"
local first = lo
while seq - lo + 1 > max_history do
  local old = redis.call('HGET', conv, 'm:' .. lo)
  if old then
    local ok, turn = pcall(cjson.decode, old)
    if ok and type(turn) == 'table' and turn.w then
      redis.call('HDEL', conv, marker_of(turn.w))
    end
    redis.call('HDEL', conv, 'm:' .. lo)
  end
  lo = lo + 1
end
if lo ~= first then redis.call('HSET', conv, 'lo', lo) end
redis.call('EXPIRE', conv, ttl)
"#;

/// Turns `first..=last`, oldest first.
const HISTORY: &str = r#"
local function history(conv, first, last)
  local fields = {}
  for i = first, last do fields[#fields + 1] = 'm:' .. i end
  if #fields == 0 then return {} end
  return redis.call('HMGET', conv, unpack(fields))
end
"#;

/// KEYS: conversation, rate limit. ARGV: wamid, turn JSON, turn JSON marked rate-limited, ttl s,
/// max history, GCRA emission interval ms, GCRA tolerance ms, notice window ms, profile name.
/// Returns {state, notice, history...} with state `dup:<marker>`, `limited` or `ok`.
const BEGIN_BODY: &str = r#"
local conv, rl = KEYS[1], KEYS[2]
local wamid = ARGV[1]
local ttl, max_history = tonumber(ARGV[4]), tonumber(ARGV[5])
local state = redis.call('HMGET', conv, marker_of(wamid), 'seq', 'lo', 'created')
local marker = state[1]
local lo = tonumber(state[3] or '1')
if marker then
  local out = {'dup:' .. marker, 0}
  for _, turn in ipairs(history(conv, lo, tonumber(state[2] or '0'))) do out[#out + 1] = turn end
  return out
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, tolerance = tonumber(ARGV[6]), tonumber(ARGV[7])
local tat = tonumber(redis.call('GET', rl) or '0')
if tat < now then tat = now end
local limited = (tat - now) > tolerance
local notice = 0
if limited then
  local quiet_until = tonumber(redis.call('HGET', conv, 'notice_until') or '0')
  if now >= quiet_until then
    notice = 1
    redis.call('HSET', conv, 'notice_until', now + tonumber(ARGV[8]))
  end
else
  local next_tat = tat + interval
  redis.call('SET', rl, next_tat, 'PX', next_tat - now + 1000)
end
local seq = redis.call('HINCRBY', conv, 'seq', 1)
local turn = ARGV[2]
local mark = seq
if limited then turn = ARGV[3]; mark = 'l' end
local fields = {'m:' .. seq, turn, marker_of(wamid), mark, 'updated', now}
if not state[4] then fields[#fields + 1] = 'created'; fields[#fields + 1] = now end
if ARGV[9] ~= '' then fields[#fields + 1] = 'name'; fields[#fields + 1] = ARGV[9] end
redis.call('HSET', conv, unpack(fields))
"#;

const BEGIN_TAIL: &str = r#"
local result = 'ok'
if limited then result = 'limited' end
local out = {result, notice}
for _, h in ipairs(history(conv, lo, seq)) do out[#out + 1] = h end
return out
"#;

/// KEYS: conversation. ARGV: inbound wamid, bot turn JSON, ttl s, max history.
/// Returns 0 when a reply to that wamid was already recorded.
const RECORD_REPLY_BODY: &str = r#"
local conv = KEYS[1]
local wamid = ARGV[1]
local ttl, max_history = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', conv, marker_of(wamid), 'lo')
local marker = state[1]
if marker and string.sub(marker, -2) == ':r' then return 0 end
local lo = tonumber(state[2] or '1')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('HINCRBY', conv, 'seq', 1)
redis.call('HSET', conv, 'm:' .. seq, ARGV[2], marker_of(wamid), (marker or '0') .. ':r', 'updated', now)
"#;

/// KEYS: conversation. ARGV: inbound wamid. Marks a message answered by a reply recorded for a
/// later message of the same burst.
const MARK_ANSWERED_BODY: &str = r#"
local field = marker_of(ARGV[1])
local marker = redis.call('HGET', KEYS[1], field)
if marker and string.sub(marker, -2) ~= ':r' then
  redis.call('HSET', KEYS[1], field, marker .. ':r')
end
return 1
"#;

/// KEYS: conversation. ARGV: failure JSON. Only touches an existing conversation (no TTL change).
const MARK_FAILED: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_failure', ARGV[1])
return 1
"#;

/// Who spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    #[serde(rename = "u")]
    User,
    #[serde(rename = "b")]
    Bot,
}

/// One turn as stored (short keys: a conversation holds up to `max_history` of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    #[serde(rename = "r")]
    pub role: Role,
    #[serde(rename = "t")]
    pub text: String,
    /// The inbound message's wamid (user turns).
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub wamid: Option<String>,
    /// The wamid Meta gave our reply (bot turns).
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub sent_wamid: Option<String>,
    /// Unix seconds.
    #[serde(rename = "ts")]
    pub at: i64,
    /// Message type (`text`, `image`, `interactive`...); `text` is not stored.
    #[serde(
        rename = "k",
        default = "text_kind",
        skip_serializing_if = "is_text_kind"
    )]
    pub kind: String,
    #[serde(rename = "rl", default, skip_serializing_if = "std::ops::Not::not")]
    pub rate_limited: bool,
}

/// What `begin` decided for an inbound message.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// New message, within the rate limit: answer it. `history` ends with this message.
    Accepted { history: Vec<Turn> },
    /// Over the rate limit: recorded, not answered; `notice` once per window.
    Limited { notice: bool },
    /// Seen before (a redelivery or a retry). `replied`: a reply was already sent.
    /// `rate_limited`: it was dropped by the rate limit the first time.
    Seen {
        replied: bool,
        rate_limited: bool,
        history: Vec<Turn>,
    },
}

/// A conversation for operators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationView {
    pub phone_number_id: String,
    pub user: String,
    pub profile_name: Option<String>,
    pub turns: Vec<Turn>,
    /// Total turns ever appended (kept ones are the last `turns.len()`).
    pub count: u64,
    /// Seconds until it expires without activity.
    pub ttl_secs: i64,
    pub created_ms: Option<i64>,
    pub updated_ms: Option<i64>,
    /// The last reply Meta reported as failed: `{"wamid": ..., "code": 131047}`.
    pub last_failure: Option<serde_json::Value>,
}

/// A page of `list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationPage {
    pub conversations: Vec<ConversationRef>,
    /// Pass back to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationRef {
    pub phone_number_id: String,
    pub user: String,
}

/// Limits a conversation store applies.
#[derive(Debug, Clone)]
pub struct ConversationLimits {
    pub session_ttl_secs: u64,
    pub max_history: usize,
    pub rate_messages: u32,
    pub rate_window_ms: u64,
}

#[derive(Clone)]
pub struct ConversationStore {
    client: Client,
    keys: Keys,
    limits: ConversationLimits,
    begin: Script,
    record_reply: Script,
    mark_answered: Script,
    mark_failed: Script,
}

impl ConversationStore {
    pub fn new(client: Client, keys: Keys, limits: ConversationLimits) -> ConversationStore {
        let begin = format!("{MARKER}{HISTORY}{BEGIN_BODY}{TRIM_AND_TOUCH}{BEGIN_TAIL}");
        let record = format!("{MARKER}{RECORD_REPLY_BODY}{TRIM_AND_TOUCH}return 1\n");
        ConversationStore {
            client,
            keys,
            limits,
            begin: Script::from_lua(begin),
            record_reply: Script::from_lua(record),
            mark_answered: Script::from_lua(format!("{MARKER}{MARK_ANSWERED_BODY}")),
            mark_failed: Script::from_lua(MARK_FAILED),
        }
    }

    fn key(&self, pnid: &PhoneNumberId, user: &UserId) -> String {
        self.keys
            .conversation(self.keys.partition(pnid, user), pnid, user)
    }

    /// Rate-limits and records an inbound message in one script call; returns the history to
    /// answer with.
    pub async fn begin(&self, message: &InboundMessage, turn: &Turn) -> Result<Begin> {
        let partition = self.keys.partition(&message.phone_number_id, &message.user);
        let limited_turn = Turn {
            rate_limited: true,
            ..turn.clone()
        };
        // GCRA: `messages` per window as a burst, refilled at one per window/messages.
        let interval =
            (self.limits.rate_window_ms / u64::from(self.limits.rate_messages.max(1))).max(1);
        let tolerance = interval * u64::from(self.limits.rate_messages.max(1) - 1);
        let reply: Vec<fred::types::Value> = self
            .begin
            .evalsha_with_reload(
                &self.client,
                vec![
                    self.keys
                        .conversation(partition, &message.phone_number_id, &message.user),
                    self.keys
                        .rate_limit(partition, &message.phone_number_id, &message.user),
                ],
                vec![
                    message.id.as_str().to_string(),
                    to_json(turn)?,
                    to_json(&limited_turn)?,
                    self.limits.session_ttl_secs.to_string(),
                    self.limits.max_history.to_string(),
                    interval.to_string(),
                    tolerance.to_string(),
                    self.limits.rate_window_ms.to_string(),
                    message.sender.profile_name.clone().unwrap_or_default(),
                ],
            )
            .await?;
        let mut values = reply.into_iter();
        let state = values
            .next()
            .and_then(|v| v.as_string())
            .unwrap_or_default();
        let notice = values.next().and_then(|v| v.as_i64()).unwrap_or(0) == 1;
        let history: Vec<Turn> = values
            .filter_map(|v| v.as_string())
            .filter_map(|s| serde_json::from_str(&s).ok())
            .collect();
        Ok(match state.as_str() {
            "ok" => Begin::Accepted { history },
            "limited" => Begin::Limited { notice },
            seen => Begin::Seen {
                replied: seen.ends_with(":r"),
                rate_limited: seen == "dup:l",
                history,
            },
        })
    }

    /// Records the bot's answer to `inbound` (idempotent: a second call for the same inbound
    /// wamid is ignored). Returns `false` when a reply was already recorded.
    pub async fn record_reply(&self, inbound: &InboundMessage, turn: &Turn) -> Result<bool> {
        let recorded: i64 = self
            .record_reply
            .evalsha_with_reload(
                &self.client,
                vec![self.key(&inbound.phone_number_id, &inbound.user)],
                vec![
                    inbound.id.as_str().to_string(),
                    to_json(turn)?,
                    self.limits.session_ttl_secs.to_string(),
                    self.limits.max_history.to_string(),
                ],
            )
            .await?;
        Ok(recorded == 1)
    }

    /// Marks `inbound` as answered without recording a turn (a merged burst's earlier messages).
    pub async fn mark_answered(&self, inbound: &InboundMessage) -> Result<()> {
        let _: i64 = self
            .mark_answered
            .evalsha_with_reload(
                &self.client,
                vec![self.key(&inbound.phone_number_id, &inbound.user)],
                vec![inbound.id.as_str().to_string()],
            )
            .await?;
        Ok(())
    }

    /// Notes that a reply we sent failed to deliver (from a `failed` status webhook). Does
    /// nothing when the conversation no longer exists.
    pub async fn mark_reply_failed(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        sent_wamid: &str,
        code: i64,
    ) -> Result<bool> {
        let failure = serde_json::json!({ "wamid": sent_wamid, "code": code }).to_string();
        let marked: i64 = self
            .mark_failed
            .evalsha_with_reload(&self.client, vec![self.key(pnid, user)], vec![failure])
            .await?;
        Ok(marked == 1)
    }

    /// The kept turns of a conversation, oldest first, with its TTL; `None` when it does not
    /// exist (never started, expired or deleted).
    pub async fn get(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
    ) -> Result<Option<ConversationView>> {
        let key = self.key(pnid, user);
        let pipeline = self.client.pipeline();
        let _: () = pipeline.hgetall(&key).await?;
        let _: () = pipeline.ttl(&key).await?;
        let (fields, ttl): (HashMap<String, String>, i64) = pipeline.all().await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let mut numbered: Vec<(u64, Turn)> = fields
            .iter()
            .filter_map(|(field, value)| {
                let n = field.strip_prefix("m:")?.parse().ok()?;
                Some((n, serde_json::from_str(value).ok()?))
            })
            .collect();
        numbered.sort_by_key(|(n, _)| *n);
        Ok(Some(ConversationView {
            phone_number_id: pnid.to_string(),
            user: user.as_str().to_string(),
            profile_name: fields.get("name").cloned(),
            turns: numbered.into_iter().map(|(_, t)| t).collect(),
            count: fields.get("seq").and_then(|s| s.parse().ok()).unwrap_or(0),
            ttl_secs: ttl,
            created_ms: fields.get("created").and_then(|s| s.parse().ok()),
            updated_ms: fields.get("updated").and_then(|s| s.parse().ok()),
            last_failure: fields
                .get("last_failure")
                .and_then(|s| serde_json::from_str(s).ok()),
        }))
    }

    /// Deletes a conversation (`/reset`, operators). Returns whether it existed.
    pub async fn delete(&self, pnid: &PhoneNumberId, user: &UserId) -> Result<bool> {
        let deleted: i64 = self.client.del(self.key(pnid, user)).await?;
        Ok(deleted > 0)
    }

    /// One page of active conversations (SCAN, never KEYS). Start with `cursor = None`. On a
    /// Cluster the cursor also names the primary being scanned (`<node>:<cursor>`).
    pub async fn list(&self, cursor: Option<&str>, count: u32) -> Result<ConversationPage> {
        let pattern = format!("{{{}:*}}:conv:*", self.keys.prefix());
        if !self.client.is_clustered() {
            let (next, keys) = scan(&self.client, cursor.unwrap_or("0"), &pattern, count).await?;
            return Ok(ConversationPage {
                conversations: keys
                    .iter()
                    .filter_map(|k| parse_conversation_key(k))
                    .collect(),
                next_cursor: (next != "0").then_some(next),
            });
        }
        let mut nodes = self
            .client
            .cached_cluster_state()
            .map(|state| state.unique_primary_nodes())
            .unwrap_or_default();
        nodes.sort_by_key(|n| n.to_string());
        let (mut node, mut node_cursor) = match cursor.and_then(|c| c.split_once(':')) {
            Some((n, c)) => (n.parse::<usize>().unwrap_or(usize::MAX), c.to_string()),
            None => (0, "0".to_string()),
        };
        let Some(server) = nodes.get(node) else {
            return Ok(ConversationPage {
                conversations: Vec::new(),
                next_cursor: None,
            });
        };
        let (next, keys) = scan(
            &self.client.with_cluster_node(server.clone()),
            &node_cursor,
            &pattern,
            count,
        )
        .await?;
        if next == "0" {
            node += 1;
            node_cursor = "0".into();
        } else {
            node_cursor = next;
        }
        Ok(ConversationPage {
            conversations: keys
                .iter()
                .filter_map(|k| parse_conversation_key(k))
                .collect(),
            next_cursor: (node < nodes.len()).then(|| format!("{node}:{node_cursor}")),
        })
    }
}

/// A raw SCAN, so the cursor can travel through an HTTP API (fred's scan streams keep it).
async fn scan<C: ClientLike>(
    client: &C,
    cursor: &str,
    pattern: &str,
    count: u32,
) -> Result<(String, Vec<String>)> {
    let command = CustomCommand::new_static("SCAN", ClusterHash::Random, false);
    client
        .custom(
            command,
            vec![
                cursor.to_string(),
                "MATCH".into(),
                pattern.to_string(),
                "COUNT".into(),
                count.max(1).to_string(),
            ],
        )
        .await
}

/// `{prefix:p}:conv:<pnid>:<user>` → its parts.
fn parse_conversation_key(key: &str) -> Option<ConversationRef> {
    let rest = key.split_once("}:conv:")?.1;
    let (pnid, user) = rest.split_once(':')?;
    Some(ConversationRef {
        phone_number_id: pnid.to_string(),
        user: user.to_string(),
    })
}

fn text_kind() -> String {
    "text".into()
}

fn is_text_kind(kind: &str) -> bool {
    kind == "text"
}

fn to_json(turn: &Turn) -> Result<String> {
    serde_json::to_string(turn).map_err(|e| {
        fred::error::Error::new(fred::error::ErrorKind::InvalidArgument, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_keys_parse_back() {
        assert_eq!(
            parse_conversation_key("{wabot:3}:conv:1139:US.123"),
            Some(ConversationRef {
                phone_number_id: "1139".into(),
                user: "US.123".into()
            })
        );
        assert_eq!(parse_conversation_key("{wabot:3}:in"), None);
    }

    #[test]
    fn turn_json_is_compact() {
        let turn = Turn {
            role: Role::User,
            text: "hi".into(),
            wamid: Some("wamid.X".into()),
            sent_wamid: None,
            at: 5,
            kind: "text".into(),
            rate_limited: false,
        };
        assert_eq!(
            serde_json::to_string(&turn).expect("json"),
            r#"{"r":"u","t":"hi","w":"wamid.X","ts":5}"#
        );
    }
}
