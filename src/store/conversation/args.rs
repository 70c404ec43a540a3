//! The conversation scripts' arguments by name and their answers by name: each `*Args::argv`
//! is the one place an argument order lives (the script's header lists the same order), and
//! each `code` module names what a script answers.

use super::LanguageClaim;
use crate::domain::language::Language;

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_string()
}

/// A language claim as the scripts take it: the code ('' none), then `chosen` or ''.
fn claim(language: Option<LanguageClaim>) -> [String; 2] {
    [
        language
            .map(|claim| claim.language.code())
            .unwrap_or_default()
            .to_string(),
        match language {
            Some(LanguageClaim { chosen: true, .. }) => "chosen",
            _ => "",
        }
        .to_string(),
    ]
}

/// `begin.lua`'s arguments.
pub(super) struct BeginArgs<'a> {
    pub wamid: &'a str,
    pub turn: String,
    pub limited_turn: String,
    pub ttl_secs: u64,
    pub max_history: usize,
    /// 0: not rate-limited.
    pub gcra_interval_ms: u64,
    pub gcra_tolerance_ms: u64,
    pub notice_window_ms: u64,
    pub profile_name: &'a str,
    pub want_history: bool,
    /// `answer`, `record`, `reset`, `edit`, `handoff`.
    pub mode: &'a str,
    pub edit_original: &'a str,
    pub edit_text: &'a str,
    /// Empty when the user did not write it (it opens the 24-hour window).
    pub user_wrote_ms: String,
    pub handoff_ms: u64,
    /// The message for events (JSON), empty without events.
    pub event_message: String,
    pub echo: bool,
    pub language: Option<LanguageClaim>,
}

impl BeginArgs<'_> {
    pub fn argv(self) -> Vec<String> {
        let mut argv = vec![
            self.wamid.to_string(),
            self.turn,
            self.limited_turn,
            self.ttl_secs.to_string(),
            self.max_history.to_string(),
            self.gcra_interval_ms.to_string(),
            self.gcra_tolerance_ms.to_string(),
            self.notice_window_ms.to_string(),
            self.profile_name.to_string(),
            flag(self.want_history),
            self.mode.to_string(),
            self.edit_original.to_string(),
            self.edit_text.to_string(),
            self.user_wrote_ms,
            self.handoff_ms.to_string(),
            self.event_message,
            if self.echo { "echo" } else { "" }.to_string(),
        ];
        argv.extend(claim(self.language));
        argv
    }
}

/// `begin.lua`'s result codes.
pub(super) mod begin_code {
    pub const ANSWER: i64 = 0;
    pub const LIMITED: i64 = 1;
    pub const RESUME: i64 = 2;
    pub const SEEN_LIMITED: i64 = 3;
    pub const DONE: i64 = 4;
    pub const RECORDED: i64 = 5;
    pub const WITH_PERSON: i64 = 6;
}

/// `heard.lua`'s arguments.
pub(super) struct HeardArgs<'a> {
    pub wamid: &'a str,
    /// The voice note's turn text with its transcript.
    pub text: String,
    pub language: Option<LanguageClaim>,
    /// A spoken request for a person: until when (ms), and the message for the event.
    pub handoff: Option<(i64, String)>,
    pub ttl_secs: u64,
}

impl HeardArgs<'_> {
    pub fn argv(self) -> Vec<String> {
        let (until, event) = match self.handoff {
            Some((until, event)) => (until.to_string(), event),
            None => (String::new(), String::new()),
        };
        let mut argv = vec![self.wamid.to_string(), self.text];
        argv.extend(claim(self.language));
        argv.extend([until, event, self.ttl_secs.to_string()]);
        argv
    }
}

/// `record.lua`'s arguments.
pub(super) struct RecordArgs<'a> {
    /// The inbound (or outbound) message's id.
    pub id: &'a str,
    pub ttl_secs: u64,
    pub max_history: usize,
    pub parts_sent: u32,
    /// The reply is complete (its turns follow); otherwise progress only.
    pub last: bool,
    /// The worker's clock (informational `u`).
    pub now_ms: i64,
    /// The menu the reply ends with (JSON); empty: the last one stays.
    pub menu: String,
    /// A language the user chose by answering the language menu.
    pub chosen_language: Option<Language>,
    pub turns: Vec<String>,
}

impl RecordArgs<'_> {
    pub fn argv(self) -> Vec<String> {
        let mut argv = Vec::with_capacity(8 + self.turns.len());
        argv.extend([
            self.id.to_string(),
            self.ttl_secs.to_string(),
            self.max_history.to_string(),
            self.parts_sent.to_string(),
            flag(self.last),
            self.now_ms.to_string(),
            self.menu,
            self.chosen_language
                .map(|l| l.code().to_string())
                .unwrap_or_default(),
        ]);
        argv.extend(self.turns);
        argv
    }
}

/// `record.lua`'s answer (0: the reply was recorded before, nothing changed).
pub(super) mod record_code {
    pub const RECORDED: i64 = 1;
}

/// `status.lua`'s arguments.
pub(super) struct StatusArgs<'a> {
    /// The wamid Meta gave our message.
    pub sent_wamid: &'a str,
    /// `sent`, `delivered`, `read`, `played`, `failed`, or [`StatusArgs::REENGAGED`].
    pub status: &'a str,
    /// The error JSON, empty without one.
    pub error: String,
}

impl StatusArgs<'_> {
    /// Not a status of Meta's: the re-engagement template went out for this failed message.
    pub const REENGAGED: &'static str = "reengaged";

    pub fn argv(self) -> Vec<String> {
        vec![
            self.sent_wamid.to_string(),
            self.status.to_string(),
            self.error,
        ]
    }
}

/// `outbound.lua`'s arguments.
pub(super) struct OutboundArgs<'a> {
    pub id: &'a str,
    /// `operator` or `notification`.
    pub source: &'a str,
    pub ttl_secs: u64,
    /// How long an operator keeps the conversation after answering.
    pub handoff_ms: u64,
    /// Who sends it (empty: nobody named).
    pub by: &'a str,
}

impl OutboundArgs<'_> {
    pub fn argv(self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.source.to_string(),
            self.ttl_secs.to_string(),
            self.handoff_ms.to_string(),
            self.by.to_string(),
        ]
    }
}

/// `outbound.lua`'s result codes.
pub(super) mod outbound_code {
    pub const NEW: i64 = 0;
    pub const STARTED: i64 = 2;
    pub const DONE: i64 = 4;
}

/// `handoff.lua`'s arguments: what happens, and the TTL.
pub(super) enum HandoffArgs<'a> {
    /// A person takes the conversation until `until_ms`; `event`: `handoff.requested`'s body.
    Take {
        until_ms: i64,
        info: &'a serde_json::Value,
        event: Option<&'a serde_json::Value>,
        ttl_secs: u64,
    },
    /// The bot has it again.
    Resume { ttl_secs: u64 },
}

impl HandoffArgs<'_> {
    pub fn argv(self) -> Vec<String> {
        match self {
            HandoffArgs::Take {
                until_ms,
                info,
                event,
                ttl_secs,
            } => vec![
                "take".to_string(),
                until_ms.to_string(),
                info.to_string(),
                ttl_secs.to_string(),
                event.map(|e| e.to_string()).unwrap_or_default(),
            ],
            HandoffArgs::Resume { ttl_secs } => vec![
                "resume".to_string(),
                String::new(),
                String::new(),
                ttl_secs.to_string(),
                String::new(),
            ],
        }
    }
}

/// `routing.lua`'s arguments.
pub(super) struct RoutingArgs {
    /// Meta routes the conversation to us.
    pub owned: bool,
    /// The notification's time (s).
    pub at_secs: i64,
    pub ttl_secs: u64,
}

impl RoutingArgs {
    pub fn argv(self) -> Vec<String> {
        vec![
            flag(self.owned),
            self.at_secs.to_string(),
            self.ttl_secs.to_string(),
        ]
    }
}

/// The 1/0 answer of `handoff.lua` (the conversation exists), `routing.lua` (applied: no
/// newer one was), `status.lua`'s first value (the turn was found) and `mark_answered.lua`.
pub(super) const YES: i64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    /// The script headers list the same order: a changed order shows up here first.
    #[test]
    fn arguments_go_in_the_order_the_headers_give() {
        let record = RecordArgs {
            id: "wamid.1",
            ttl_secs: 3600,
            max_history: 20,
            parts_sent: 2,
            last: true,
            now_ms: 5,
            menu: "{}".into(),
            chosen_language: Some(Language::Pt),
            turns: vec!["t1".into(), "t2".into()],
        };
        assert_eq!(
            record.argv(),
            ["wamid.1", "3600", "20", "2", "1", "5", "{}", "pt", "t1", "t2"]
        );
        let info = serde_json::json!({"by": "ana"});
        assert_eq!(
            HandoffArgs::Take {
                until_ms: 9,
                info: &info,
                event: None,
                ttl_secs: 60
            }
            .argv(),
            ["take", "9", r#"{"by":"ana"}"#, "60", ""]
        );
        assert_eq!(
            HandoffArgs::Resume { ttl_secs: 60 }.argv(),
            ["resume", "", "", "60", ""]
        );
        assert_eq!(
            RoutingArgs {
                owned: false,
                at_secs: 7,
                ttl_secs: 60
            }
            .argv(),
            ["0", "7", "60"]
        );
        assert_eq!(
            OutboundArgs {
                id: "out.1",
                source: "operator",
                ttl_secs: 60,
                handoff_ms: 1000,
                by: "ana"
            }
            .argv(),
            ["out.1", "operator", "60", "1000", "ana"]
        );
    }
}
