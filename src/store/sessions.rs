//! Operator console sessions in Redis: one string per session under the SHA-256 of the session
//! id (`v1 <created, unix s> <credential fingerprint> <csrf token>` for the admin token,
//! `v2 ... <csrf token> <operator name>` for a named operator), with a sliding TTL and an
//! absolute lifetime, bound to the credential it was made with (a rotated admin token or a
//! changed password ends those sessions, a removed account its own); and a count of sign-in
//! attempts per client.

use fred::prelude::{Client, Expiration, KeysInterface};
use fred::types::ExpireOptions;
use sha2::{Digest, Sha256};

use super::error::Result;
use super::keys::Keys;
use super::operators::{Operator, OperatorRole, OperatorStore};

/// A signed-in operator's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Every form of the session carries it; compared in constant time.
    pub csrf: String,
    /// The named operator signed in; `None`: the admin token (the bootstrap super-admin).
    pub operator: Option<SignedOperator>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOperator {
    pub name: String,
    pub role: OperatorRole,
    /// Whose conversations it sees, as the account says now (empty: everyone's).
    pub tenants: Vec<String>,
}

#[derive(Clone)]
pub struct SessionStore {
    client: Client,
    operators: OperatorStore,
    keys: Keys,
    ttl_secs: u64,
    max_secs: u64,
    /// Of the admin token sessions are made with now.
    fingerprint: String,
}

/// A short digest of the credential a session was made with (never the credential itself).
fn fingerprint(credential: &str) -> String {
    let digest = Sha256::digest(format!("wabot-console-session:{credential}").as_bytes());
    hex::encode(&digest[..8])
}

impl SessionStore {
    /// `ttl_secs`: how long a session lives without being used (`admin.session_ttl_secs`);
    /// `max_secs`: how long it lives at most, used or not (`admin.session_max_secs`);
    /// `credential`: the admin token operators sign in with.
    pub fn new(
        client: Client,
        keys: Keys,
        ttl_secs: u64,
        max_secs: u64,
        credential: &str,
    ) -> SessionStore {
        SessionStore {
            operators: OperatorStore::new(client.clone(), keys.clone()),
            client,
            keys,
            ttl_secs: ttl_secs.max(1),
            max_secs: max_secs.max(1),
            fingerprint: fingerprint(credential),
        }
    }

    fn key(&self, id: &str) -> String {
        self.keys
            .console_session(&hex::encode(Sha256::digest(id.as_bytes())))
    }

    pub fn operators(&self) -> &OperatorStore {
        &self.operators
    }

    /// A session for the admin token (`account: None`) or for a named operator's account.
    pub async fn create(&self, id: &str, csrf: &str, account: Option<&Operator>) -> Result<()> {
        let now = crate::domain::clock::unix_secs();
        let value = match account {
            None => format!("v1 {now} {} {csrf}", self.fingerprint),
            Some(account) => format!(
                "v2 {now} {} {csrf} {}",
                fingerprint(&account.password_hash),
                account.name
            ),
        };
        let _: () = self
            .client
            .set(
                self.key(id),
                value,
                Some(Expiration::EX(self.ttl_secs as i64)),
                None,
                false,
            )
            .await?;
        Ok(())
    }

    /// The session, its TTL restarted; `None` when unknown, expired, signed out, older than
    /// `max_secs`, or made with another admin token (then it is deleted).
    pub async fn get(&self, id: &str) -> Result<Option<Session>> {
        let key = self.key(id);
        let pipeline = self.client.pipeline();
        let _: () = pipeline.get(&key).await?;
        let _: () = pipeline
            .expire(&key, self.ttl_secs as i64, Some(ExpireOptions::XX))
            .await?;
        let (value, _): (Option<String>, i64) = pipeline.all().await?;
        let Some(value) = value else {
            return Ok(None);
        };
        let young = |created: &str| {
            let age =
                crate::domain::clock::unix_secs().saturating_sub(created.parse().unwrap_or(0));
            u64::try_from(age).unwrap_or(u64::MAX) <= self.max_secs
        };
        let mut fields = value.splitn(5, ' ');
        let valid = match (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) {
            (Some("v1"), Some(created), Some(fingerprint), Some(csrf), None)
                if !csrf.is_empty() =>
            {
                (fingerprint == self.fingerprint && young(created)).then(|| Session {
                    csrf: csrf.to_string(),
                    operator: None,
                })
            }
            (Some("v2"), Some(created), Some(print), Some(csrf), Some(name))
                if !csrf.is_empty() =>
            {
                // The account as it is now: removed or with a new password, the session ends.
                match self.operators.get(name).await? {
                    Some(account)
                        if fingerprint(&account.password_hash) == print && young(created) =>
                    {
                        Some(Session {
                            csrf: csrf.to_string(),
                            operator: Some(SignedOperator {
                                name: account.name,
                                role: account.role,
                                tenants: account.tenants,
                            }),
                        })
                    }
                    _ => None,
                }
            }
            // Sessions of an older version (a bare CSRF token) sign in again once.
            _ => None,
        };
        if valid.is_none() {
            let _: i64 = self.client.del(&key).await?;
        }
        Ok(valid)
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        let _: i64 = self.client.del(self.key(id)).await?;
        Ok(())
    }

    /// Counts a sign-in attempt of `client` before its token is compared, in one atomic step:
    /// parallel attempts each get their own number, so none slips past the limit. The window
    /// starts with the first attempt and lasts `window_secs`. Returns the attempts so far.
    pub async fn count_sign_in_attempt(&self, client: &str, window_secs: u64) -> Result<u64> {
        let key = self.keys.console_sign_in_failures(client);
        let pipeline = self.client.pipeline();
        let _: () = pipeline.incr(&key).await?;
        let _: () = pipeline
            .expire(&key, window_secs as i64, Some(ExpireOptions::NX))
            .await?;
        let (count, _): (u64, i64) = pipeline.all().await?;
        Ok(count)
    }

    /// `client`'s attempts in the current window, without counting one.
    pub async fn sign_in_attempts(&self, client: &str) -> Result<u64> {
        let count: Option<u64> = self
            .client
            .get(self.keys.console_sign_in_failures(client))
            .await?;
        Ok(count.unwrap_or(0))
    }

    /// A successful sign-in starts `client`'s count over.
    pub async fn clear_sign_in_attempts(&self, client: &str) -> Result<()> {
        let _: i64 = self
            .client
            .del(self.keys.console_sign_in_failures(client))
            .await?;
        Ok(())
    }
}
