//! Conversations: per `(phone_number_id, user)` a Redis hash (metadata, per-message markers, the
//! GCRA rate limit) and a list of turns beside it, both with the sliding TTL, written by scripts
//! that are idempotent per wamid and return typed results.
//!
//! Hash fields ([`field`]): `n` turns ever appended, `c`/`u` created/updated (ms), `name`,
//! `tat` (GCRA theoretical arrival time, ms), `nq` (no rate-limit notice before, ms), `lf` (last
//! failed reply), `lu` when the user last wrote (ms: the 24-hour window), `hu`/`hi` a person has
//! the conversation until (ms) / who and why (JSON), `ro` another app owns it (Meta's
//! conversation routing), and one marker `w:<digest of id>` per inbound or outbound message:
//! `<turn>` seen, `<turn>:<k>` k outbound messages of its reply sent, `<turn>:r` answered (or
//! never to be answered), `l` dropped by the rate limit. Scripts: `lua/*.lua`.

use crate::domain::clock::unix_ms;
use crate::meta::window::WINDOW_MS;
use std::collections::HashMap;

use fred::prelude::{Client, ClientLike, ClusterInterface, HashesInterface, KeysInterface};
use fred::prelude::{ListInterface, SortedSetsInterface, Value};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, FromValue};
use serde::Serialize;

use super::error::{Result, StoreError};
use super::keys::Keys;
pub use super::turn::{marker_digest, DeliveryError, Role, Turn};
use crate::domain::{
    Handover, InboundMessage, Origin, OutboundMessage, OutboundSource, PhoneNumberId, UserId,
};

/// What a record is about: the conversation and the id of the inbound or outbound message.
pub struct Subject<'a> {
    pub pnid: &'a PhoneNumberId,
    pub user: &'a UserId,
    pub id: &'a str,
}

impl<'a> Subject<'a> {
    pub fn of(message: &'a InboundMessage) -> Subject<'a> {
        Subject {
            pnid: &message.phone_number_id,
            user: &message.user,
            id: message.id.as_str(),
        }
    }
}

const COMMON: &str = concat!(
    include_str!("lua/turns.lua"),
    "\n",
    include_str!("lua/expiry.lua"),
    "\n",
    include_str!("lua/conversation_common.lua")
);

/// A conversation script's source as it runs inside another script (the worker's
/// acknowledgement, `Queue::ack`): the shared functions, then the body.
pub(super) fn step_source(step: Step) -> String {
    let body = match step {
        Step::Record => include_str!("lua/record.lua"),
        Step::Status => include_str!("lua/status.lua"),
    };
    format!("{COMMON}\n{body}")
}

/// The conversation scripts a worker can leave for its acknowledgement to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `lua/record.lua`: what was sent for a message.
    Record,
    /// `lua/status.lua`: a delivery status.
    Status,
}

/// A conversation write prepared and not yet run. The worker runs it in the same Redis call
/// that acknowledges the inbox entry it belongs to (`Queue::ack`): one round trip and one
/// socket write less per message, and the record and the acknowledgement land together.
/// [`ConversationStore::apply`] runs it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a prepared write changes nothing until it is applied"]
pub struct ConversationWrite {
    pub(super) step: Step,
    pub(super) keys: Vec<String>,
    pub(super) args: Vec<String>,
}

/// Hash field names read by Rust (the scripts write the same names).
pub mod field {
    pub const TURNS: &str = "n";
    pub const CREATED: &str = "c";
    pub const UPDATED: &str = "u";
    pub const NAME: &str = "name";
    pub const LAST_FAILURE: &str = "lf";
    pub const LAST_USER: &str = "lu";
    pub const HUMAN_UNTIL: &str = "hu";
    pub const HUMAN_INFO: &str = "hi";
    pub const OTHER_APP: &str = "ro";
}

/// How long a quarantined (corrupt) conversation is kept for inspection.
const QUARANTINE_SECS: u64 = 7 * 24 * 3600;

/// How `admit` treats a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitMode<'a> {
    /// A message to answer: rate-limited, recorded, history returned.
    Answer,
    /// Recorded in the history, never answered, not rate-limited (echoes, standby copies,
    /// revokes, reactions).
    Record,
    /// `/reset`: rate-limited like any message; the history starts over.
    Reset,
    /// The user edited `original`: its turn gets `text` while kept; never answered.
    Edit { original: &'a str, text: &'a str },
    /// The user asks for a person: rate-limited, recorded, answered (with the handoff text);
    /// the conversation goes to a person for `handoff_ms` and `handoff.requested` is emitted.
    Handoff,
}

/// What `admit` decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// New and within the rate limit: answer it. `history` ends with this message (empty when
    /// the history was not asked for).
    Answer { history: Vec<Turn> },
    /// Seen before but not fully answered (a retry, a redelivery): answer it, skipping the
    /// `parts_sent` outbound messages that already went out.
    Resume { parts_sent: u32, history: Vec<Turn> },
    /// Over the rate limit: recorded, not answered; `notice` once per window.
    Limited { notice: bool },
    /// Seen before and already answered.
    Done,
    /// Recorded in the history, not to be answered (a kind that is never answered, or a
    /// redelivery of a message the rate limit dropped).
    Recorded,
    /// Recorded while a person (or another app) has the conversation: not answered.
    WithPerson,
}

/// Who answers a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    Bot,
    /// A person of the business, until the handoff ends.
    Human,
    /// Another app, by Meta's conversation routing.
    OtherApp,
}

impl Owner {
    /// From the hash: another app owns it (`ro`), else a person until a future `hu`.
    fn of(other_app: bool, with_person: bool) -> Owner {
        if other_app {
            Owner::OtherApp
        } else if with_person {
            Owner::Human
        } else {
            Owner::Bot
        }
    }

    fn parse(raw: &str) -> Owner {
        match raw {
            "human" => Owner::Human,
            "other_app" => Owner::OtherApp,
            _ => Owner::Bot,
        }
    }
}

/// What `begin_outbound` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundStart {
    /// To send, after the `parts_sent` already sent (a retry).
    Send {
        parts_sent: u32,
        /// When the user last wrote (ms), if ever.
        last_user_ms: Option<i64>,
        owner: Owner,
    },
    /// Sent before.
    Done,
}

/// Whose conversation it is now, for operators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandoffView {
    pub owner: Owner,
    /// While a person has it: until when (ms).
    pub until_ms: Option<i64>,
    /// Who took it and why (`reason`: requested, operator, echo; `by`, `note`, `since`).
    pub info: Option<serde_json::Value>,
}

/// A delivery status applied to its turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusApplied {
    /// The turn was found in the kept history.
    pub found: bool,
    /// Its kind (`text`, `template`...).
    pub kind: String,
    /// The re-engagement template went out for it already (see `mark_reengaged`).
    pub reengaged: bool,
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
    /// The last reply Meta reported as failed: `{"wamid": ..., "code": 131047, "title": ...}`.
    pub last_failure: Option<serde_json::Value>,
    pub handoff: HandoffView,
    /// When the user last wrote (ms).
    pub last_user_ms: Option<i64>,
    /// Free-form messages may be sent until then (ms); `None`: the user never wrote.
    pub window_open_until_ms: Option<i64>,
    pub window_open: bool,
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

/// A conversation a person has, for the console's waiting list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub conversation: ConversationRef,
    /// Until when the person has it (ms).
    pub until_ms: i64,
}

/// What a list shows of a conversation, without its history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationSummary {
    pub phone_number_id: String,
    pub user: String,
    pub profile_name: Option<String>,
    pub owner: Owner,
    /// While a person has it: until when (ms).
    pub until_ms: Option<i64>,
    /// While a person has it: since when (ms) and why (`requested`, `operator`, `echo`).
    pub since_ms: Option<i64>,
    pub reason: Option<String>,
    pub updated_ms: Option<i64>,
    pub last_user_ms: Option<i64>,
}

/// Limits a conversation store applies.
#[derive(Debug, Clone)]
pub struct ConversationLimits {
    pub session_ttl_secs: u64,
    pub max_history: usize,
    pub rate_messages: u32,
    pub rate_window_ms: u64,
    /// How long a person keeps a conversation after a handoff.
    pub handoff_ms: u64,
    /// Whether events are kept for `events.webhook_url`.
    pub events: bool,
}

#[derive(Clone)]
pub struct ConversationStore {
    client: Client,
    keys: Keys,
    limits: ConversationLimits,
    begin: Script,
    record: Script,
    mark_answered: Script,
    status: Script,
    outbound: Script,
    handoff: Script,
    routing: Script,
    quarantine: Script,
}

fn with_common(body: &str) -> Script {
    Script::from_lua(format!("{COMMON}\n{body}"))
}

impl ConversationStore {
    pub fn new(client: Client, keys: Keys, limits: ConversationLimits) -> ConversationStore {
        ConversationStore {
            client,
            keys,
            limits,
            begin: with_common(include_str!("lua/begin.lua")),
            record: with_common(include_str!("lua/record.lua")),
            mark_answered: with_common(include_str!("lua/mark_answered.lua")),
            status: with_common(include_str!("lua/status.lua")),
            outbound: with_common(include_str!("lua/outbound.lua")),
            handoff: with_common(include_str!("lua/handoff.lua")),
            routing: with_common(include_str!("lua/routing.lua")),
            quarantine: Script::from_lua(include_str!("lua/quarantine.lua")),
        }
    }

    /// The hash and the list of a conversation.
    fn keys_of(&self, pnid: &PhoneNumberId, user: &UserId) -> Vec<String> {
        let partition = self.keys.partition(pnid, user);
        vec![
            self.keys.conversation(partition, pnid, user),
            self.keys.history(partition, pnid, user),
        ]
    }

    /// What the conversation scripts are given (`lua/conversation_common.lua`): the hash, the
    /// list, the partition's set of conversations with a person, and its event stream when
    /// events are on.
    fn script_keys(&self, pnid: &PhoneNumberId, user: &UserId) -> Vec<String> {
        let partition = self.keys.partition(pnid, user);
        let mut keys = self.keys_of(pnid, user);
        keys.push(self.keys.with_person(partition));
        if self.limits.events {
            keys.push(self.keys.events(partition));
        }
        keys
    }

    /// Runs one of the conversation scripts over the keys of `user`'s conversation.
    async fn run<R: FromValue>(
        &self,
        script: &Script,
        pnid: &PhoneNumberId,
        user: &UserId,
        args: Vec<String>,
    ) -> Result<R> {
        Ok(script
            .evalsha_with_reload(&self.client, self.script_keys(pnid, user), args)
            .await?)
    }

    /// Deduplicates, rate-limits and records an inbound message in one script call.
    /// `want_history`: return the kept turns (a responder that reads them).
    pub async fn admit(
        &self,
        message: &InboundMessage,
        turn: &Turn,
        mode: AdmitMode<'_>,
        want_history: bool,
    ) -> Result<Admission> {
        let limited_turn = Turn {
            rate_limited: true,
            ..turn.clone()
        };
        let rated = matches!(
            mode,
            AdmitMode::Answer | AdmitMode::Reset | AdmitMode::Handoff
        );
        // GCRA: `messages` per window as a burst, refilled at one per window/messages.
        let burst = u64::from(self.limits.rate_messages.max(1));
        let interval = (self.limits.rate_window_ms / burst).max(1);
        let tolerance = interval * (burst - 1);
        let (mode_name, original, new_text) = match mode {
            AdmitMode::Answer => ("answer", "", ""),
            AdmitMode::Record => ("record", "", ""),
            AdmitMode::Reset => ("reset", "", ""),
            AdmitMode::Edit { original, text } => ("edit", original, text),
            AdmitMode::Handoff => ("handoff", "", ""),
        };
        let wrote = if message.origin == Origin::User {
            (message.timestamp.max(0) * 1000).to_string()
        } else {
            String::new()
        };
        let for_events = if self.limits.events {
            serde_json::json!({
                "id": message.id.as_str(),
                "kind": message.content.kind(),
                "text": turn.text,
                "profile_name": message.sender.profile_name,
            })
            .to_string()
        } else {
            String::new()
        };
        let reply: Vec<Value> = self
            .run(
                &self.begin,
                &message.phone_number_id,
                &message.user,
                vec![
                    message.id.as_str().to_string(),
                    turn.encode(),
                    limited_turn.encode(),
                    self.limits.session_ttl_secs.to_string(),
                    self.limits.max_history.to_string(),
                    if rated { interval } else { 0 }.to_string(),
                    tolerance.to_string(),
                    self.limits.rate_window_ms.to_string(),
                    message.sender.profile_name.clone().unwrap_or_default(),
                    if want_history { "1" } else { "0" }.to_string(),
                    mode_name.to_string(),
                    original.to_string(),
                    new_text.to_string(),
                    wrote,
                    self.limits.handoff_ms.to_string(),
                    for_events,
                    if message.origin == Origin::BusinessEcho {
                        "echo"
                    } else {
                        ""
                    }
                    .to_string(),
                ],
            )
            .await?;
        parse_admission(reply)
    }

    /// Notes that `parts_sent` outbound messages of the reply to `inbound` went out, so that a
    /// retry continues after them instead of sending them again.
    pub async fn record_progress(&self, inbound: &InboundMessage, parts_sent: u32) -> Result<()> {
        self.record_sent(&Subject::of(inbound), parts_sent, false, &[])
            .await?;
        Ok(())
    }

    /// Records the reply to `inbound` (its turns, possibly none) and marks it answered.
    /// Idempotent: returns `false` when a reply was already recorded.
    pub async fn record_reply(&self, inbound: &InboundMessage, turns: &[Turn]) -> Result<bool> {
        self.record_sent(&Subject::of(inbound), 0, true, turns)
            .await
    }

    /// The write [`record_reply`](Self::record_reply) makes, prepared: the worker runs it with
    /// the entry's acknowledgement.
    pub fn reply_write(&self, inbound: &InboundMessage, turns: &[Turn]) -> ConversationWrite {
        self.sent_write(&Subject::of(inbound), 0, true, turns)
    }

    /// [`record_progress`](Self::record_progress) and [`record_reply`](Self::record_reply) for
    /// what was sent for `subject` (an outbound message, a re-engagement).
    pub async fn record_sent(
        &self,
        subject: &Subject<'_>,
        parts_sent: u32,
        last: bool,
        turns: &[Turn],
    ) -> Result<bool> {
        let recorded: i64 = self
            .run_write(self.sent_write(subject, parts_sent, last, turns))
            .await?;
        Ok(recorded == 1)
    }

    fn sent_write(
        &self,
        subject: &Subject<'_>,
        parts_sent: u32,
        last: bool,
        turns: &[Turn],
    ) -> ConversationWrite {
        let mut args = Vec::with_capacity(6 + turns.len());
        args.extend([
            subject.id.to_string(),
            self.limits.session_ttl_secs.to_string(),
            self.limits.max_history.to_string(),
            parts_sent.to_string(),
            if last { "1" } else { "0" }.to_string(),
            unix_ms().to_string(),
        ]);
        args.extend(turns.iter().map(Turn::encode));
        ConversationWrite {
            step: Step::Record,
            keys: self.script_keys(subject.pnid, subject.user),
            args,
        }
    }

    /// Runs a prepared write on its own.
    pub async fn apply(&self, write: ConversationWrite) -> Result<()> {
        let _: Value = self.run_write(write).await?;
        Ok(())
    }

    async fn run_write<R: FromValue>(&self, write: ConversationWrite) -> Result<R> {
        let script = match write.step {
            Step::Record => &self.record,
            Step::Status => &self.status,
        };
        Ok(script
            .evalsha_with_reload(&self.client, write.keys, write.args)
            .await?)
    }

    /// Starts an outbound message: see `lua/outbound.lua`.
    pub async fn begin_outbound(&self, out: &OutboundMessage, by: &str) -> Result<OutboundStart> {
        let source = match out.source {
            OutboundSource::Operator => "operator",
            OutboundSource::Notification => "notification",
        };
        let reply: Vec<Value> = self
            .run(
                &self.outbound,
                &out.phone_number_id,
                &out.to,
                vec![
                    out.id.clone(),
                    source.to_string(),
                    self.limits.session_ttl_secs.to_string(),
                    self.limits.handoff_ms.to_string(),
                    by.to_string(),
                ],
            )
            .await?;
        let shape = || StoreError::Corrupt("the outbound script answered out of shape".into());
        let code = reply.first().and_then(Value::as_i64).ok_or_else(shape)?;
        if code == 4 {
            return Ok(OutboundStart::Done);
        }
        let parts_sent = reply.get(1).and_then(Value::as_i64).ok_or_else(shape)?;
        let last_user_ms = reply
            .get(2)
            .and_then(Value::as_string)
            .and_then(|s| s.parse().ok());
        let owner = reply
            .get(3)
            .and_then(Value::as_string)
            .map(|s| Owner::parse(&s))
            .unwrap_or(Owner::Bot);
        Ok(OutboundStart::Send {
            parts_sent: u32::try_from(parts_sent).unwrap_or(0),
            last_user_ms,
            owner,
        })
    }

    /// Applies a delivery status to the turn of the message it is about.
    pub async fn apply_status(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        sent_wamid: &str,
        status: &str,
        error: Option<&DeliveryError>,
    ) -> Result<StatusApplied> {
        let reply: Vec<Value> = self
            .run_write(self.status_write(pnid, user, sent_wamid, status, error)?)
            .await?;
        Ok(StatusApplied {
            found: reply.first().and_then(Value::as_i64) == Some(1),
            kind: reply
                .get(1)
                .and_then(Value::as_string)
                .unwrap_or_default()
                .to_string(),
            reengaged: reply.get(2).and_then(Value::as_i64) == Some(1),
        })
    }

    /// The write [`apply_status`](Self::apply_status) makes, prepared (for a status whose
    /// answer is not needed: the worker runs it with the entry's acknowledgement).
    pub fn status_write(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        sent_wamid: &str,
        status: &str,
        error: Option<&DeliveryError>,
    ) -> Result<ConversationWrite> {
        let error = match error {
            Some(error) => serde_json::to_string(error)?,
            None => String::new(),
        };
        Ok(ConversationWrite {
            step: Step::Status,
            keys: self.script_keys(pnid, user),
            args: vec![sent_wamid.to_string(), status.to_string(), error],
        })
    }

    /// Marks our failed message `sent_wamid` as answered by the re-engagement template (the
    /// console shows it; a later copy of its failure status sends none). `false` when the turn
    /// is no longer in the kept history.
    pub async fn mark_reengaged(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        sent_wamid: &str,
    ) -> Result<bool> {
        let reply: Vec<Value> = self
            .run(
                &self.status,
                pnid,
                user,
                vec![
                    sent_wamid.to_string(),
                    "reengaged".to_string(),
                    String::new(),
                ],
            )
            .await?;
        Ok(reply.first().and_then(Value::as_i64) == Some(1))
    }

    /// A person takes the conversation until `until_ms` (`info`: who, why, a note); with
    /// `event`, `handoff.requested` is emitted in the same call (the bot asked for a person).
    pub async fn take_over(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        until_ms: i64,
        info: &serde_json::Value,
        event: Option<&serde_json::Value>,
    ) -> Result<()> {
        let _: i64 = self
            .run(
                &self.handoff,
                pnid,
                user,
                vec![
                    "take".to_string(),
                    until_ms.to_string(),
                    info.to_string(),
                    self.limits.session_ttl_secs.to_string(),
                    event.map(|e| e.to_string()).unwrap_or_default(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Gives the conversation back to the bot. Returns whether it exists.
    pub async fn give_back(&self, pnid: &PhoneNumberId, user: &UserId) -> Result<bool> {
        let done: i64 = self
            .run(
                &self.handoff,
                pnid,
                user,
                vec![
                    "resume".to_string(),
                    String::new(),
                    String::new(),
                    self.limits.session_ttl_secs.to_string(),
                    String::new(),
                ],
            )
            .await?;
        Ok(done == 1)
    }

    /// Applies a conversation-routing handover; `false` when a newer one was applied before.
    pub async fn set_routing(&self, handover: &Handover) -> Result<bool> {
        let applied: i64 = self
            .run(
                &self.routing,
                &handover.phone_number_id,
                &handover.user,
                vec![
                    if handover.owned { "1" } else { "0" }.to_string(),
                    handover.timestamp.to_string(),
                    self.limits.session_ttl_secs.to_string(),
                ],
            )
            .await?;
        Ok(applied == 1)
    }

    /// Whether the bot may still answer: nobody took the conversation over meanwhile (checked
    /// again just before a slow reply goes out).
    pub async fn bot_owns(&self, pnid: &PhoneNumberId, user: &UserId) -> Result<bool> {
        let keys = self.keys_of(pnid, user);
        let (until, other): (Option<i64>, Option<String>) = self
            .client
            .hmget(&keys[0], vec![field::HUMAN_UNTIL, field::OTHER_APP])
            .await?;
        let human = until.is_some_and(|until| until > unix_ms());
        Ok(!human && other.is_none_or(|o| o.is_empty()))
    }

    /// Sets when the user last wrote (operators' tools and tests of the 24-hour window).
    pub async fn set_last_user_ms(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
        at_ms: i64,
    ) -> Result<()> {
        let keys = self.keys_of(pnid, user);
        let _: () = self
            .client
            .hset(&keys[0], (field::LAST_USER, at_ms))
            .await?;
        Ok(())
    }

    /// Marks messages as answered without recording a turn (a merged burst's earlier messages).
    pub async fn mark_answered(&self, messages: &[&InboundMessage]) -> Result<()> {
        let Some(first) = messages.first() else {
            return Ok(());
        };
        let _: i64 = self
            .run(
                &self.mark_answered,
                &first.phone_number_id,
                &first.user,
                messages
                    .iter()
                    .map(|m| m.id.as_str().to_string())
                    .collect::<Vec<_>>(),
            )
            .await?;
        Ok(())
    }

    /// Moves a corrupt conversation aside (kept a week under `...:corrupt:...`) so the user's
    /// next message starts afresh. Returns whether anything was moved.
    pub async fn quarantine(&self, pnid: &PhoneNumberId, user: &UserId) -> Result<bool> {
        let partition = self.keys.partition(pnid, user);
        let mut keys = self.keys_of(pnid, user);
        keys.extend(self.keys.quarantined(partition, pnid, user));
        let moved: i64 = self
            .quarantine
            .evalsha_with_reload(&self.client, keys, vec![QUARANTINE_SECS.to_string()])
            .await?;
        Ok(moved > 0)
    }

    /// The kept turns of a conversation, oldest first, with its TTL; `None` when it does not
    /// exist (never started, expired or deleted).
    pub async fn get(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
    ) -> Result<Option<ConversationView>> {
        let keys = self.keys_of(pnid, user);
        let pipeline = self.client.pipeline();
        let _: () = pipeline.hgetall(&keys[0]).await?;
        let _: () = pipeline.lrange(&keys[1], 0, -1).await?;
        let _: () = pipeline.ttl(&keys[0]).await?;
        let (fields, turns, ttl): (HashMap<String, String>, Vec<String>, i64) =
            pipeline.all().await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let turns = turns
            .iter()
            .map(|raw| decode_turn(raw))
            .collect::<Result<Vec<Turn>>>()?;
        let number = |name: &str| fields.get(name).and_then(|s| s.parse::<i64>().ok());
        let now = unix_ms();
        let until = number(field::HUMAN_UNTIL).filter(|until| *until > now);
        let other = fields.get(field::OTHER_APP).is_some_and(|o| !o.is_empty());
        let last_user_ms = number(field::LAST_USER);
        let window_open_until_ms = last_user_ms.map(|at| at + WINDOW_MS);
        Ok(Some(ConversationView {
            phone_number_id: pnid.to_string(),
            user: user.as_str().to_string(),
            profile_name: fields.get(field::NAME).cloned(),
            turns,
            count: number(field::TURNS).unwrap_or(0).max(0) as u64,
            ttl_secs: ttl,
            created_ms: number(field::CREATED),
            updated_ms: number(field::UPDATED),
            last_failure: fields
                .get(field::LAST_FAILURE)
                .and_then(|s| serde_json::from_str(s).ok()),
            handoff: HandoffView {
                owner: Owner::of(other, until.is_some()),
                until_ms: until,
                info: until
                    .and(fields.get(field::HUMAN_INFO))
                    .and_then(|s| serde_json::from_str(s).ok()),
            },
            last_user_ms,
            window_open_until_ms,
            window_open: window_open_until_ms.is_some_and(|until| until > now),
        }))
    }

    /// Deletes a conversation (operators). Returns whether it existed.
    pub async fn delete(&self, pnid: &PhoneNumberId, user: &UserId) -> Result<bool> {
        let partition = self.keys.partition(pnid, user);
        let pipeline = self.client.pipeline();
        let _: () = pipeline.del(self.keys_of(pnid, user)).await?;
        let _: () = pipeline
            .zrem(
                self.keys.with_person(partition),
                format!("{pnid}:{}", user.as_str()),
            )
            .await?;
        let (deleted, _): (i64, i64) = pipeline.all().await?;
        Ok(deleted > 0)
    }

    /// Conversations a person has now, across all partitions, the longest-held first (the
    /// handoff that ends first). One sorted-set read per partition, concurrently: each partition
    /// is its own Cluster slot.
    pub async fn waiting(&self) -> Result<Vec<Waiting>> {
        let now = unix_ms() as f64;
        let reads = (0..self.keys.partitions()).map(|partition| {
            let key = self.keys.with_person(partition);
            async move {
                let members: Vec<(String, f64)> = self
                    .client
                    .zrangebyscore(key, now, f64::INFINITY, true, None)
                    .await?;
                Ok::<_, StoreError>(members)
            }
        });
        let mut waiting: Vec<Waiting> = Vec::new();
        for members in futures_util::future::join_all(reads).await {
            waiting.extend(members?.into_iter().filter_map(|(member, until)| {
                let (pnid, user) = member.split_once(':')?;
                Some(Waiting {
                    conversation: ConversationRef {
                        phone_number_id: pnid.to_string(),
                        user: user.to_string(),
                    },
                    until_ms: until as i64,
                })
            }));
        }
        waiting.sort_by(|a, b| {
            a.until_ms
                .cmp(&b.until_ms)
                .then_with(|| a.conversation.user.cmp(&b.conversation.user))
        });
        Ok(waiting)
    }

    /// The summaries of `conversations` (their hashes only), in the same order; conversations
    /// that no longer exist (expired, deleted) or have invalid ids are left out.
    pub async fn summaries(
        &self,
        conversations: &[ConversationRef],
    ) -> Result<Vec<ConversationSummary>> {
        let reads = conversations.iter().filter_map(|c| {
            let pnid = PhoneNumberId::parse(&c.phone_number_id)?;
            let user = UserId::parse(&c.user)?;
            let key = self.keys_of(&pnid, &user).swap_remove(0);
            Some(async move {
                let fields: Vec<Option<String>> = self
                    .client
                    .hmget(
                        key,
                        vec![
                            field::NAME,
                            field::HUMAN_UNTIL,
                            field::HUMAN_INFO,
                            field::OTHER_APP,
                            field::UPDATED,
                            field::LAST_USER,
                            field::CREATED,
                        ],
                    )
                    .await?;
                Ok::<_, StoreError>((pnid, user, fields))
            })
        });
        let now = unix_ms();
        let mut out = Vec::new();
        for read in futures_util::future::join_all(reads).await {
            let (pnid, user, fields) = read?;
            let get = |i: usize| fields.get(i).cloned().flatten().filter(|v| !v.is_empty());
            let number = |i: usize| get(i).and_then(|v| v.parse::<i64>().ok());
            if get(4).is_none() && get(6).is_none() {
                // Neither updated nor created: the hash is gone.
                continue;
            }
            let until = number(1).filter(|until| *until > now);
            let info: Option<serde_json::Value> = until
                .and(get(2))
                .and_then(|raw| serde_json::from_str(&raw).ok());
            out.push(ConversationSummary {
                phone_number_id: pnid.to_string(),
                user: user.as_str().to_string(),
                profile_name: get(0),
                owner: Owner::of(get(3).is_some(), until.is_some()),
                until_ms: until,
                since_ms: info
                    .as_ref()
                    .and_then(|i| i.get("since"))
                    .and_then(serde_json::Value::as_i64),
                reason: info
                    .as_ref()
                    .and_then(|i| i.get("reason"))
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string),
                updated_ms: number(4),
                last_user_ms: number(5),
            });
        }
        Ok(out)
    }

    /// One page of active conversations (SCAN, never KEYS). Start with `cursor = None`. On a
    /// Cluster the cursor also names the primary being scanned (`<node>:<cursor>`).
    pub async fn list(&self, cursor: Option<&str>, count: u32) -> Result<ConversationPage> {
        self.search(cursor, count, None).await
    }

    /// Like [`list`](Self::list), only conversations whose user id starts with `user_prefix`
    /// (a whole id matches exactly; ids hold no glob characters, [`UserId::parse`]).
    pub async fn search(
        &self,
        cursor: Option<&str>,
        count: u32,
        user_prefix: Option<&UserId>,
    ) -> Result<ConversationPage> {
        let pattern = match user_prefix {
            Some(user) => format!("{{{}:*}}:conv:*:{}*", self.keys.prefix(), user.as_str()),
            None => format!("{{{}:*}}:conv:*", self.keys.prefix()),
        };
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

/// The script's `{code, notice, parts_sent, history...}` as an [`Admission`].
fn decode_turn(raw: &str) -> Result<Turn> {
    Turn::decode(raw).map_err(|e| StoreError::Corrupt(format!("a turn does not decode: {e}")))
}

fn parse_admission(reply: Vec<Value>) -> Result<Admission> {
    let mut values = reply.into_iter();
    let mut number = || {
        values
            .next()
            .and_then(|v| v.as_i64())
            .ok_or_else(|| StoreError::Corrupt("the admit script answered out of shape".into()))
    };
    let code = number()?;
    let notice = number()? == 1;
    let parts_sent = u32::try_from(number()?).unwrap_or(0);
    let history = values
        .map(|v| {
            let raw = v
                .as_string()
                .ok_or_else(|| StoreError::Corrupt("a turn is not a string".into()))?;
            decode_turn(&raw)
        })
        .collect::<Result<Vec<Turn>>>()?;
    Ok(match code {
        0 => Admission::Answer { history },
        1 => Admission::Limited { notice },
        2 => Admission::Resume {
            parts_sent,
            history,
        },
        4 => Admission::Done,
        3 | 5 => Admission::Recorded,
        6 => Admission::WithPerson,
        other => {
            return Err(StoreError::Corrupt(format!(
                "the admit script answered code {other}"
            )))
        }
    })
}

/// A raw SCAN, so the cursor can travel through an HTTP API (fred's scan streams keep it).
async fn scan<C: ClientLike>(
    client: &C,
    cursor: &str,
    pattern: &str,
    count: u32,
) -> Result<(String, Vec<String>)> {
    let command = CustomCommand::new_static("SCAN", ClusterHash::Random, false);
    Ok(client
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
        .await?)
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
        assert_eq!(parse_conversation_key("{wabot:3}:hist:1139:4915"), None);
    }

    #[test]
    fn admissions_parse_from_the_script_reply() {
        let turn = r#"["u",1,"","hi"]"#;
        let reply = vec![
            Value::from(2),
            Value::from(0),
            Value::from(3),
            Value::from(turn),
        ];
        match parse_admission(reply).expect("parses") {
            Admission::Resume {
                parts_sent,
                history,
            } => {
                assert_eq!(parts_sent, 3);
                let turn = &history[..];
                assert!(
                    matches!(turn, [t] if t.role == Role::User && t.text == "hi" && t.at == 1),
                    "{turn:?}"
                );
            }
            other => panic!("not a resume: {other:?}"),
        }
        let corrupt = vec![
            Value::from(0),
            Value::from(0),
            Value::from(0),
            Value::from("{"),
        ];
        assert!(matches!(
            parse_admission(corrupt),
            Err(StoreError::Corrupt(_))
        ));
        assert!(parse_admission(vec![Value::from(9), Value::from(0), Value::from(0)]).is_err());
    }
}
