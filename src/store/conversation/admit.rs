//! Admission of an inbound message (`begin.lua`): dedup, the rate limit, the user's turn, the
//! history, and what the conversation remembers (its language, the last menu).

use super::args::{begin_code as code, BeginArgs, HeardArgs};
use super::*;

/// Characters of a message's text an event carries (the history keeps it whole): with the
/// stream's cap of ~100,000 events per partition, a partition's events stay under ~0.5 GB even
/// when every message is this long and the receiver is down.
pub const EVENT_TEXT_MAX_CHARS: usize = 4096;

impl ConversationStore {
    /// Deduplicates, rate-limits and records an inbound message in one script call.
    /// `want_history`: return the kept turns (a responder that reads them). `language`: what
    /// the message says about the conversation's language, kept with it.
    pub async fn admit(
        &self,
        message: &InboundMessage,
        turn: &Turn,
        mode: AdmitMode<'_>,
        want_history: bool,
        language: Option<LanguageClaim>,
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
            let mut event = serde_json::json!({
                "id": message.id.as_str(),
                "kind": message.content.kind(),
                "text": turn.text,
                "profile_name": message.sender.profile_name,
            });
            // Each event is bounded, so the stream's size is too (its length is capped).
            if turn.text.chars().count() > EVENT_TEXT_MAX_CHARS {
                event["text"] = turn
                    .text
                    .chars()
                    .take(EVENT_TEXT_MAX_CHARS)
                    .collect::<String>()
                    .into();
                event["text_truncated"] = true.into();
            }
            event.to_string()
        } else {
            String::new()
        };
        let args = BeginArgs {
            wamid: message.id.as_str(),
            turn: turn.encode(),
            limited_turn: limited_turn.encode(),
            ttl_secs: self.limits.session_ttl_secs,
            max_history: self.limits.max_history,
            gcra_interval_ms: if rated { interval } else { 0 },
            gcra_tolerance_ms: tolerance,
            notice_window_ms: self.limits.rate_window_ms,
            profile_name: message.sender.profile_name.as_deref().unwrap_or_default(),
            want_history,
            mode: mode_name,
            edit_original: original,
            edit_text: new_text,
            user_wrote_ms: wrote,
            handoff_ms: self.limits.handoff_ms,
            event_message: for_events,
            echo: message.origin == Origin::BusinessEcho,
            language,
        };
        let reply: Vec<Value> = self
            .run(
                &self.begin,
                &message.phone_number_id,
                &message.user,
                args.argv(),
            )
            .await?;
        parse_admission(reply)
    }
}

impl ConversationStore {
    /// What an admitted voice note said (see `lua/heard.lua`): its turn gets `text`, `language`
    /// is claimed, and with `handoff_event` (the message for `handoff.requested`) a person gets
    /// the conversation for `handoff.timeout_secs`. Returns the conversation's language.
    pub async fn heard(
        &self,
        message: &InboundMessage,
        text: &str,
        language: Option<LanguageClaim>,
        handoff_event: Option<serde_json::Value>,
    ) -> Result<Option<Language>> {
        let until =
            unix_ms().saturating_add(i64::try_from(self.limits.handoff_ms).unwrap_or(i64::MAX));
        let args = HeardArgs {
            wamid: message.id.as_str(),
            text: text.to_string(),
            language,
            handoff: handoff_event.map(|event| (until, event.to_string())),
            ttl_secs: self.limits.session_ttl_secs,
        };
        let stored: String = self
            .run(
                &self.heard,
                &message.phone_number_id,
                &message.user,
                args.argv(),
            )
            .await?;
        Ok(stored_language(&stored).0)
    }

    /// The kept turn of `message`, if the history still has it (a voice note's transcript on a
    /// retry).
    pub async fn kept_turn(&self, message: &InboundMessage) -> Result<Option<Turn>> {
        let keys = self.keys_of(&message.phone_number_id, &message.user);
        let raws: Vec<String> = self.client.lrange(&keys[1], 0, -1).await?;
        let id = marker_digest(message.id.as_str());
        Ok(raws
            .iter()
            .rev()
            .filter_map(|raw| Turn::decode(raw).ok())
            .find(|turn| turn.id.as_deref() == Some(id.as_str())))
    }
}

/// The script's `{code, notice, parts_sent, language, menu, history...}` as an [`Admission`].
pub(super) fn parse_admission(reply: Vec<Value>) -> Result<Admission> {
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
    let mut text = || {
        values
            .next()
            .and_then(|v| v.into_string())
            .unwrap_or_default()
    };
    let (language, chosen) = stored_language(&text());
    let remembered = Remembered {
        language,
        chosen,
        menu: Menu::decode(&text()),
    };
    let history = values
        .map(|v| {
            let raw = v
                .as_string()
                .ok_or_else(|| StoreError::Corrupt("a turn is not a string".into()))?;
            decode_turn(&raw)
        })
        .collect::<Result<Vec<Turn>>>()?;
    Ok(match code {
        code::ANSWER => Admission::Answer {
            history,
            remembered,
        },
        code::LIMITED => Admission::Limited {
            notice,
            language: remembered.language,
        },
        code::RESUME => Admission::Resume {
            parts_sent,
            history,
            remembered,
        },
        code::DONE => Admission::Done,
        code::SEEN_LIMITED | code::RECORDED => Admission::Recorded,
        code::WITH_PERSON => Admission::WithPerson,
        other => {
            return Err(StoreError::Corrupt(format!(
                "the admit script answered code {other}"
            )))
        }
    })
}
