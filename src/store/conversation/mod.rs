//! Conversations: per `(phone_number_id, user)` a Redis hash (metadata, per-message markers, the
//! GCRA rate limit) and a list of turns beside it, both with the sliding TTL, written by scripts
//! that are idempotent per wamid and return typed results.
//!
//! Hash fields ([`field`]): `n` turns ever appended, `c`/`u` created/updated (ms), `name`,
//! `tat` (GCRA theoretical arrival time, ms), `nq` (no rate-limit notice before, ms), `lf` (last
//! failed reply), `lu` when the user last wrote (ms: the 24-hour window), `hu`/`hi` a person has
//! the conversation until (ms) / who and why (JSON), `ro` another app owns it (Meta's
//! conversation routing), `lg` the conversation's language (`es`; `es:u` when the user chose
//! it), `mo` the last menu the bot sent (JSON of `domain::menu::Menu`), and one marker
//! `w:<digest of id>` per inbound or outbound message: `<turn>` seen, `<turn>:<k>` k outbound
//! messages of its reply sent, `<turn>:r` answered (or never to be answered), `l` dropped by the
//! rate limit. Scripts: `lua/*.lua`.

mod admit;
pub use admit::EVENT_TEXT_MAX_CHARS;
mod args;
mod handoff;
mod record;
mod views;

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
use crate::domain::language::Language;
use crate::domain::menu::Menu;
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

/// A conversation script's source as it runs inside another script (the worker's
/// acknowledgement, `Queue::ack`): the shared functions, then the body.
pub(super) fn step_source(step: Step) -> String {
    let body = match step {
        Step::Record => include_str!("../lua/record.lua"),
        Step::Status => include_str!("../lua/status.lua"),
    };
    super::scripts::conversation_source(body)
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

/// Every field of the conversation hash, named once: Rust reads some of them, the scripts write
/// them all under the same names (a test checks the scripts use no other).
pub mod field {
    /// Turns ever appended.
    pub const TURNS: &str = "n";
    /// Created / updated (ms).
    pub const CREATED: &str = "c";
    pub const UPDATED: &str = "u";
    /// The user's profile name.
    pub const NAME: &str = "name";
    /// The last failed reply (JSON: wamid, code, title).
    pub const LAST_FAILURE: &str = "lf";
    /// When the user last wrote (ms): the 24-hour window.
    pub const LAST_USER: &str = "lu";
    /// The wamid of the user's newest message: what an operator's message can quote.
    pub const LAST_USER_MESSAGE: &str = "lw";
    /// A person has the conversation until (ms) / who and why (JSON).
    pub const HUMAN_UNTIL: &str = "hu";
    pub const HUMAN_INFO: &str = "hi";
    /// Another app owns it (Meta's conversation routing) / that notification's time (s).
    pub const OTHER_APP: &str = "ro";
    pub const ROUTED_AT: &str = "rt";
    /// The conversation's language (`es`; `es:u` when the user chose it).
    pub const LANGUAGE: &str = "lg";
    /// The last menu the bot sent (JSON of `domain::menu::Menu`).
    pub const MENU: &str = "mo";
    /// The rate limit's GCRA theoretical arrival time (ms).
    pub const RATE_TAT: &str = "tat";
    /// No rate-limit notice before (ms).
    pub const NOTICE_AFTER: &str = "nq";
    /// When `begin.lua` last refreshed the TTL (ms): it does so at most every few seconds.
    pub const TOUCHED: &str = "x";
    /// The turn counter of versions before `n`, read once and migrated.
    pub const LEGACY_SEQ: &str = "seq";
    /// Every field but the per-message markers.
    pub const ALL: [&str; 17] = [
        TURNS,
        CREATED,
        UPDATED,
        NAME,
        LAST_FAILURE,
        LAST_USER,
        LAST_USER_MESSAGE,
        HUMAN_UNTIL,
        HUMAN_INFO,
        OTHER_APP,
        ROUTED_AT,
        LANGUAGE,
        MENU,
        RATE_TAT,
        NOTICE_AFTER,
        TOUCHED,
        LEGACY_SEQ,
    ];
    /// A message's marker: `w:<digest of its id>`.
    pub const MARKER_PREFIX: &str = "w:";
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
    Answer {
        history: Vec<Turn>,
        remembered: Remembered,
    },
    /// Seen before but not fully answered (a retry, a redelivery): answer it, skipping the
    /// `parts_sent` outbound messages that already went out.
    Resume {
        parts_sent: u32,
        history: Vec<Turn>,
        remembered: Remembered,
    },
    /// Over the rate limit: recorded, not answered; `notice` once per window, in `language`
    /// (the conversation's, if it has one).
    Limited {
        notice: bool,
        language: Option<Language>,
    },
    /// Seen before and already answered.
    Done,
    /// Recorded in the history, not to be answered (a kind that is never answered, or a
    /// redelivery of a message the rate limit dropped).
    Recorded,
    /// Recorded while a person (or another app) has the conversation: not answered.
    WithPerson,
}

/// What a conversation remembers besides its turns, as admission found it (this message's
/// language claim applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remembered {
    /// The conversation's language (`None`: nothing gave it away yet).
    pub language: Option<Language>,
    /// The user chose it (`/idioma pt`): detection does not change it.
    pub chosen: bool,
    /// The last menu the bot sent, for a typed answer to it.
    pub menu: Option<Menu>,
}

/// What a reply's record makes the conversation remember.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remember {
    /// The reply's last buttons or list (`None`: the last menu stays).
    pub menu: Option<Menu>,
    /// A language the user chose by answering the language menu.
    pub chosen_language: Option<Language>,
}

/// The hash's `lg` (`es`, or `es:u` when the user chose it): the language and whether it was
/// chosen.
pub(super) fn stored_language(raw: &str) -> (Option<Language>, bool) {
    match raw.strip_suffix(":u") {
        Some(code) => (Language::parse(code), true),
        None => (Language::parse(raw), false),
    }
}

/// What a message says about the conversation's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanguageClaim {
    pub language: Language,
    /// The user chose it (a command or the language menu), rather than it being detected.
    pub chosen: bool,
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
        /// The conversation's language, if it has one.
        language: Option<Language>,
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
    /// The wamid of the user's newest message (an operator's message can quote it).
    pub last_user_message: Option<String>,
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

impl ConversationLimits {
    pub fn of(settings: &crate::config::Settings) -> ConversationLimits {
        ConversationLimits {
            session_ttl_secs: settings.conversation.session_expire_secs,
            max_history: settings.conversation.max_history,
            rate_messages: settings.rate_limit.messages,
            rate_window_ms: settings.rate_limit.window_secs * 1000,
            handoff_ms: settings.handoff.timeout_secs.saturating_mul(1000),
            events: settings.events.enabled(),
        }
    }
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
    heard: Script,
    reacted: Script,
}

impl ConversationStore {
    pub fn new(client: Client, keys: Keys, limits: ConversationLimits) -> ConversationStore {
        ConversationStore {
            client,
            keys,
            limits,
            begin: super::scripts::conversation(include_str!("../lua/begin.lua")),
            record: super::scripts::conversation(include_str!("../lua/record.lua")),
            mark_answered: super::scripts::conversation(include_str!("../lua/mark_answered.lua")),
            status: super::scripts::conversation(include_str!("../lua/status.lua")),
            outbound: super::scripts::conversation(include_str!("../lua/outbound.lua")),
            handoff: super::scripts::conversation(include_str!("../lua/handoff.lua")),
            routing: super::scripts::conversation(include_str!("../lua/routing.lua")),
            quarantine: super::scripts::alone(include_str!("../lua/quarantine.lua")),
            heard: super::scripts::conversation(include_str!("../lua/heard.lua")),
            reacted: super::scripts::conversation(include_str!("../lua/reacted.lua")),
        }
    }

    /// The hash and the list of a conversation.
    pub(super) fn keys_of(&self, pnid: &PhoneNumberId, user: &UserId) -> Vec<String> {
        let partition = self.keys.partition(pnid, user);
        vec![
            self.keys.conversation(partition, pnid, user),
            self.keys.history(partition, pnid, user),
        ]
    }

    /// What the conversation scripts are given (`lua/conversation_common.lua`): the hash, the
    /// list, the partition's set of conversations with a person, and its event stream when
    /// events are on.
    pub(super) fn script_keys(&self, pnid: &PhoneNumberId, user: &UserId) -> Vec<String> {
        let partition = self.keys.partition(pnid, user);
        let mut keys = self.keys_of(pnid, user);
        keys.push(self.keys.with_person(partition));
        if self.limits.events {
            keys.push(self.keys.events(partition));
        }
        keys
    }

    /// Runs one of the conversation scripts over the keys of `user`'s conversation.
    pub(super) async fn run<R: FromValue>(
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
}

/// A stored turn, or the data error that says it is not one.
fn decode_turn(raw: &str) -> Result<Turn> {
    Turn::decode(raw).map_err(|e| StoreError::Corrupt(format!("a turn does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::admit::parse_admission;
    use super::views::parse_conversation_key;
    use super::*;

    /// A field a script writes under a name Rust does not know is a field nobody documents,
    /// clears on `/reset` by accident or reads under another name.
    #[test]
    fn the_scripts_use_only_the_named_hash_fields() {
        let scripts = [
            include_str!("../lua/begin.lua"),
            include_str!("../lua/record.lua"),
            include_str!("../lua/status.lua"),
            include_str!("../lua/outbound.lua"),
            include_str!("../lua/handoff.lua"),
            include_str!("../lua/routing.lua"),
            include_str!("../lua/mark_answered.lua"),
            include_str!("../lua/conversation_common.lua"),
            include_str!("../lua/accept.lua"),
            include_str!("../lua/heard.lua"),
            include_str!("../lua/reacted.lua"),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for line in scripts.iter().flat_map(|s| s.lines()) {
            let code = line.split("--").next().unwrap_or_default();
            // `accept.lua` reaches the hash as KEYS[3].
            let hash_call = code.contains("redis.call('H")
                && (code.contains("conv") || code.contains("KEYS[3]"));
            let field_list =
                code.contains("fields[#fields + 1] = '") || code.contains("fields = {");
            if !(hash_call || field_list) {
                continue;
            }
            for literal in code.split('\'').skip(1).step_by(2) {
                let name_like = !literal.is_empty()
                    && literal
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == ':' || c == '_')
                    && !literal.starts_with(':');
                if !name_like {
                    continue; // the command, a marker's value, a pattern
                }
                seen.insert(literal.to_string());
            }
        }
        let unknown: Vec<_> = seen
            .iter()
            .filter(|f| !field::ALL.contains(&f.as_str()) && f.as_str() != field::MARKER_PREFIX)
            .collect();
        assert!(
            unknown.is_empty(),
            "fields no `field` constant names: {unknown:?}"
        );
        // The scan found the fields at all (it would pass vacuously otherwise).
        for expected in ["tat", "nq", "x", "rt", "lg", "mo", "hu"] {
            assert!(seen.contains(expected), "{expected} not found in {seen:?}");
        }
    }

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
            Value::from("pt:u"),
            Value::from(r#"{"l":"pt","o":[{"i":"a","t":"A"}]}"#),
            Value::from(turn),
        ];
        match parse_admission(reply).expect("parses") {
            Admission::Resume {
                parts_sent,
                history,
                remembered,
            } => {
                assert_eq!(parts_sent, 3);
                assert_eq!(remembered.language, Some(Language::Pt));
                assert!(remembered.chosen);
                assert_eq!(remembered.menu.map(|m| m.options.len()), Some(1));
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
            Value::from(""),
            Value::from(""),
            Value::from("{"),
        ];
        assert!(matches!(
            parse_admission(corrupt),
            Err(StoreError::Corrupt(_))
        ));
        assert!(parse_admission(vec![Value::from(9), Value::from(0), Value::from(0)]).is_err());
    }
}
