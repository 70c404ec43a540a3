//! Who did what, per tenant: one capped Redis stream per tenant (`prefix:audit:<tenant>`) of
//! the actions people take (takeovers, replies, give-backs, assignments, replays, deletions,
//! accounts and tenants changed), read newest first in pages.

use std::collections::HashMap;

use fred::prelude::{Client, StreamsInterface};
use serde::Serialize;

use super::error::Result;
use super::keys::Keys;

/// Entries kept per tenant (`XADD MAXLEN ~`): a busy team's year of actions, not unbounded.
pub const AUDIT_MAX_PER_TENANT: u64 = 100_000;

/// One action as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// The stream id: also the cursor of the page that follows it.
    pub id: String,
    pub at_ms: i64,
    /// Who: an operator's name, `console` (the admin token at the console), `api` (the admin
    /// token), `api:<tenant>` (a tenant's token) or `cli`.
    pub by: String,
    /// `take_over`, `give_back`, `assign`, `reply`, `template`, `replay`, `delete`,
    /// `tenant_saved`, `tenant_removed`, `operator_saved`, `operator_removed`.
    pub action: String,
    /// The conversation acted on, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What else there is to say (whom it was assigned to, which dead letter); never message text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What is recorded (the stream gives the id).
#[derive(Debug, Clone, Default)]
pub struct Action<'a> {
    pub by: &'a str,
    pub action: &'a str,
    pub conversation: Option<(&'a str, &'a str)>,
    pub detail: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass it back for the older entries; `None`: this was the last page.
    pub next_cursor: Option<String>,
}

/// Whether `cursor` is a stream id as pages hand them out (`<ms>-<seq>`).
pub fn valid_cursor(cursor: &str) -> bool {
    cursor.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty()
            && !seq.is_empty()
            && ms.len() <= 20
            && seq.len() <= 20
            && ms.bytes().all(|b| b.is_ascii_digit())
            && seq.bytes().all(|b| b.is_ascii_digit())
    })
}

#[derive(Clone)]
pub struct AuditLog {
    client: Client,
    keys: Keys,
}

impl AuditLog {
    pub fn new(client: Client, keys: Keys) -> AuditLog {
        AuditLog { client, keys }
    }

    /// Appends `action` to `tenant`'s stream.
    pub async fn record(&self, tenant: &str, action: &Action<'_>) -> Result<()> {
        let (number, user) = action.conversation.unwrap_or(("", ""));
        let at = crate::domain::clock::unix_ms().to_string();
        let _: String = self
            .client
            .xadd(
                self.keys.audit(tenant),
                false,
                ("MAXLEN", "~", AUDIT_MAX_PER_TENANT as i64),
                "*",
                vec![
                    ("t", at.as_str()),
                    ("by", action.by),
                    ("a", action.action),
                    ("n", number),
                    ("u", user),
                    ("d", action.detail),
                ],
            )
            .await?;
        Ok(())
    }

    /// Up to `limit` entries of `tenant`, newest first, older than `cursor` when given.
    pub async fn page(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<AuditPage> {
        let end = cursor.map_or_else(|| "+".to_string(), |c| format!("({c}"));
        let wanted = limit.max(1);
        let entries: Vec<(String, HashMap<String, String>)> = self
            .client
            .xrevrange(self.keys.audit(tenant), end, "-", Some(wanted as u64 + 1))
            .await?;
        let more = entries.len() > wanted;
        let entries: Vec<AuditEntry> = entries
            .into_iter()
            .take(wanted)
            .map(|(id, mut fields)| {
                let mut take = |name: &str| fields.remove(name).unwrap_or_default();
                let number = take("n");
                let user = take("u");
                AuditEntry {
                    at_ms: take("t").parse().unwrap_or(0),
                    by: take("by"),
                    action: take("a"),
                    detail: take("d"),
                    phone_number_id: (!number.is_empty()).then_some(number),
                    user: (!user.is_empty()).then_some(user),
                    id,
                }
            })
            .collect();
        let next_cursor = if more {
            entries.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok(AuditPage {
            entries,
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_stream_ids() {
        for fine in ["1700000000000-0", "1-12"] {
            assert!(valid_cursor(fine), "{fine}");
        }
        for bad in ["", "-", "1-", "-1", "+", "(1-0", "1-0 2", "a-0"] {
            assert!(!valid_cursor(bad), "{bad:?}");
        }
    }
}
