//! Named operator accounts of the console: one hash, `prefix:operators`, a field per name with
//! the account as JSON (its role, the tenants it may see and an Argon2id hash of its password,
//! never the password).

use fred::prelude::{Client, HashesInterface};
use serde::{Deserialize, Serialize};

use super::error::{Result, StoreError};
use super::keys::Keys;

/// What an account may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorRole {
    /// Everything, dead letters included.
    Admin,
    /// Conversations: read, take over, reply, give back, assign.
    Operator,
}

impl OperatorRole {
    pub fn parse(text: &str) -> Option<OperatorRole> {
        match text {
            "admin" => Some(OperatorRole::Admin),
            "operator" => Some(OperatorRole::Operator),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::Admin => "admin",
            OperatorRole::Operator => "operator",
        }
    }
}

/// One account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub name: String,
    pub role: OperatorRole,
    /// Argon2id, PHC string format (`$argon2id$v=19$...`).
    pub password_hash: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The tenants whose conversations it sees (`default`: the deployment's own numbers);
    /// empty: every conversation (accounts made before tenants existed keep seeing all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
}

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("a name is 1 to 64 letters, digits, spaces and .-_' (no space at either end)")]
    Name,
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
    #[error("the password could not be hashed")]
    Hash,
    #[error("tenant {0:?} is not a tenant id (a-z, 0-9, - and _, or `default`)")]
    Tenant(String),
}

impl Operator {
    /// A new account with `password` hashed (Argon2id, a fresh salt): CPU-heavy on purpose,
    /// run it off the async threads.
    pub fn new(
        name: &str,
        role: OperatorRole,
        password: &str,
        tenants: &[String],
    ) -> std::result::Result<Operator, AccountError> {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        if !valid_name(name) {
            return Err(AccountError::Name);
        }
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AccountError::ShortPassword);
        }
        if let Some(bad) = tenants.iter().find(|id| {
            *id != crate::config::tenants::DEFAULT_TENANT
                && !crate::config::tenants::valid_tenant_id(id)
        }) {
            return Err(AccountError::Tenant(bad.clone()));
        }
        let mut tenants = tenants.to_vec();
        tenants.sort();
        tenants.dedup();
        let salt = SaltString::generate(&mut OsRng);
        let password_hash = argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|_| AccountError::Hash)?
            .to_string();
        Ok(Operator {
            name: name.to_string(),
            role,
            password_hash,
            created_at: crate::domain::clock::unix_secs(),
            tenants,
        })
    }

    /// Its tenants as people read them: `all tenants`, or `tenants a, b`.
    pub fn tenant_list(&self) -> String {
        if self.tenants.is_empty() {
            "all tenants".into()
        } else {
            format!("tenants {}", self.tenants.join(", "))
        }
    }

    /// `Marta (operator; tenants clinic)`: the account as the audit records it.
    pub fn summary(&self) -> String {
        format!(
            "{} ({}; {})",
            self.name,
            self.role.as_str(),
            self.tenant_list()
        )
    }

    /// Whether `password` is this account's (constant time in the hash comparison; CPU-heavy).
    pub fn verify(&self, password: &str) -> bool {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(&self.password_hash).is_ok_and(|hash| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    }
}

/// A name as it may be shown and stored: 1 to 64 characters, letters, digits, spaces and
/// `.-_'`, not starting or ending with a space.
pub fn valid_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=64).contains(&count)
        && name.trim() == name
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_' | '\''))
}

#[derive(Clone)]
pub struct OperatorStore {
    client: Client,
    keys: Keys,
}

impl OperatorStore {
    pub fn new(client: Client, keys: Keys) -> OperatorStore {
        OperatorStore { client, keys }
    }

    pub async fn get(&self, name: &str) -> Result<Option<Operator>> {
        let raw: Option<String> = self.client.hget(self.keys.operators(), name).await?;
        raw.map(|raw| {
            serde_json::from_str(&raw)
                .map_err(|e| StoreError::Corrupt(format!("operator account: {e}")))
        })
        .transpose()
    }

    /// Every account, by name.
    pub async fn list(&self) -> Result<Vec<Operator>> {
        let all: std::collections::HashMap<String, String> =
            self.client.hgetall(self.keys.operators()).await?;
        let mut operators: Vec<Operator> = all
            .values()
            .filter_map(|raw| serde_json::from_str(raw).ok())
            .collect();
        operators.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(operators)
    }

    /// Creates or replaces the account of `operator.name`.
    pub async fn put(&self, operator: &Operator) -> Result<()> {
        let raw = serde_json::to_string(operator)
            .map_err(|e| StoreError::Corrupt(format!("operator account: {e}")))?;
        let _: i64 = self
            .client
            .hset(self.keys.operators(), (operator.name.as_str(), raw))
            .await?;
        Ok(())
    }

    /// Whether it existed.
    pub async fn remove(&self, name: &str) -> Result<bool> {
        let removed: i64 = self.client.hdel(self.keys.operators(), name).await?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_kept_only_as_its_hash_and_verifies() {
        let marta = Operator::new(
            "Marta",
            OperatorRole::Operator,
            "correct horse battery",
            &[],
        )
        .expect("made");
        assert!(marta.password_hash.starts_with("$argon2id$"));
        assert!(!marta.password_hash.contains("correct horse"));
        assert!(marta.verify("correct horse battery"));
        assert!(!marta.verify("correct horse batterY"));
        assert!(matches!(
            Operator::new("Marta", OperatorRole::Operator, "short", &[]),
            Err(AccountError::ShortPassword)
        ));
        assert!(matches!(
            Operator::new(" x", OperatorRole::Admin, "long enough password", &[]),
            Err(AccountError::Name)
        ));
        assert!(matches!(
            Operator::new(
                "x",
                OperatorRole::Admin,
                "long enough password",
                &["Bad!".into()]
            ),
            Err(AccountError::Tenant(_))
        ));
        let scoped = Operator::new(
            "Ana",
            OperatorRole::Operator,
            "long enough password",
            &["shop".into(), "default".into(), "shop".into()],
        )
        .expect("made");
        assert_eq!(scoped.tenants, ["default", "shop"]);
    }

    #[test]
    fn names_are_plain_and_bounded() {
        for fine in ["Marta", "Marta López", "o'brien", "ops-2"] {
            assert!(valid_name(fine), "{fine}");
        }
        for bad in ["", " Marta", "Marta ", "a<b", "x\ny", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
