//! Operator console sessions in Redis: one string per session (its CSRF token) under the SHA-256
//! of the session id, with a sliding TTL; and a count of failed sign-ins per client.

use fred::prelude::{Client, Expiration, KeysInterface};
use fred::types::ExpireOptions;
use sha2::{Digest, Sha256};

use super::error::Result;
use super::keys::Keys;

/// A signed-in operator's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Every form of the session carries it; compared in constant time.
    pub csrf: String,
}

#[derive(Clone)]
pub struct SessionStore {
    client: Client,
    keys: Keys,
    ttl_secs: u64,
}

impl SessionStore {
    /// `ttl_secs`: how long a session lives without being used (`admin.session_ttl_secs`).
    pub fn new(client: Client, keys: Keys, ttl_secs: u64) -> SessionStore {
        SessionStore {
            client,
            keys,
            ttl_secs: ttl_secs.max(1),
        }
    }

    fn key(&self, id: &str) -> String {
        self.keys
            .console_session(&hex::encode(Sha256::digest(id.as_bytes())))
    }

    pub async fn create(&self, id: &str, session: &Session) -> Result<()> {
        let _: () = self
            .client
            .set(
                self.key(id),
                session.csrf.as_str(),
                Some(Expiration::EX(self.ttl_secs as i64)),
                None,
                false,
            )
            .await?;
        Ok(())
    }

    /// The session, its TTL restarted; `None` when unknown, expired or signed out.
    pub async fn get(&self, id: &str) -> Result<Option<Session>> {
        let key = self.key(id);
        let pipeline = self.client.pipeline();
        let _: () = pipeline.get(&key).await?;
        let _: () = pipeline
            .expire(&key, self.ttl_secs as i64, Some(ExpireOptions::XX))
            .await?;
        let (csrf, _): (Option<String>, i64) = pipeline.all().await?;
        Ok(csrf.filter(|c| !c.is_empty()).map(|csrf| Session { csrf }))
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

    /// A successful sign-in starts `client`'s count over.
    pub async fn clear_sign_in_attempts(&self, client: &str) -> Result<()> {
        let _: i64 = self
            .client
            .del(self.keys.console_sign_in_failures(client))
            .await?;
        Ok(())
    }
}
