//! Tenants as every replica sees them: those of files and those stored through the admin API
//! (one hash `prefix:{tenants}`, a field per id holding the document sealed under
//! `tenants.key`, and a version bumped in the same transaction by every change), by id and by
//! number. A [`Directory`] looks at the version every `tenants.reload_ms` and reloads when it
//! moved, so a change reaches every replica within seconds, without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use fred::prelude::{Client, HashesInterface, KeysInterface, TransactionInterface};
use secrecy::ExposeSecret;

use super::error::Result;
use super::keys::Keys;
use crate::config::tenants::{Sealer, Tenant, DEFAULT_TENANT, STORED};
use crate::config::{ConfigError, Settings};

/// The sealed documents in Redis.
#[derive(Clone)]
pub struct TenantStore {
    client: Client,
    keys: Keys,
}

impl TenantStore {
    pub fn new(client: Client, keys: Keys) -> TenantStore {
        TenantStore { client, keys }
    }

    pub async fn version(&self) -> Result<i64> {
        let version: Option<i64> = self.client.get(self.keys.tenants_version()).await?;
        Ok(version.unwrap_or(0))
    }

    /// Every stored tenant: id → sealed document.
    pub async fn all(&self) -> Result<HashMap<String, String>> {
        Ok(self.client.hgetall(self.keys.tenants()).await?)
    }

    /// One stored tenant's sealed document.
    pub async fn get(&self, id: &str) -> Result<Option<String>> {
        Ok(self.client.hget(self.keys.tenants(), id).await?)
    }

    /// Stores (or replaces) a sealed document and moves the version, atomically.
    pub async fn put(&self, id: &str, sealed: &str) -> Result<()> {
        let transaction = self.client.multi();
        let _: fred::types::Value = transaction.hset(self.keys.tenants(), (id, sealed)).await?;
        let _: fred::types::Value = transaction.incr(self.keys.tenants_version()).await?;
        let _: (i64, i64) = transaction.exec(true).await?;
        Ok(())
    }

    /// Whether there was such a tenant.
    pub async fn remove(&self, id: &str) -> Result<bool> {
        let transaction = self.client.multi();
        let _: fred::types::Value = transaction.hdel(self.keys.tenants(), id).await?;
        let _: fred::types::Value = transaction.incr(self.keys.tenants_version()).await?;
        let (removed, _): (i64, i64) = transaction.exec(true).await?;
        Ok(removed > 0)
    }
}

/// Where a number's messages go.
#[derive(Debug, Clone)]
pub enum Route {
    Tenant(Arc<Tenant>),
    /// The deployment's own settings.
    Default,
    /// Tenants are declared and none has this number: stored, counted, not answered.
    Unrouted,
}

/// The tenants at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// By id.
    pub tenants: Vec<Arc<Tenant>>,
    by_number: HashMap<String, Arc<Tenant>>,
    default_numbers: Vec<String>,
    /// The stored version these were read at.
    pub version: i64,
    /// Stored tenants left out, with why (they no longer build, or their numbers are taken).
    pub problems: Vec<(String, String)>,
}

impl Snapshot {
    pub fn route(&self, number: &str) -> Route {
        if let Some(tenant) = self.by_number.get(number) {
            return Route::Tenant(tenant.clone());
        }
        if self.tenants.is_empty() || self.default_numbers.iter().any(|n| n == number) {
            Route::Default
        } else {
            Route::Unrouted
        }
    }

    /// Whose number it is: a tenant's id, `default` (the deployment's own), or `None` for a
    /// number no one has.
    pub fn owner(&self, number: &str) -> Option<&str> {
        match self.by_number.get(number) {
            Some(tenant) => Some(tenant.id.as_str()),
            None if self.tenants.is_empty() || self.default_numbers.iter().any(|n| n == number) => {
                Some(DEFAULT_TENANT)
            }
            None => None,
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.tenants.iter().find(|tenant| tenant.id == id)
    }

    /// Who already has one of `numbers`, other than `id`: `default` or a tenant's id.
    pub fn claimed(&self, id: &str, numbers: &[String]) -> Option<(String, String)> {
        numbers.iter().find_map(|number| {
            if let Some(owner) = self.by_number.get(number).filter(|t| t.id != id) {
                return Some((number.clone(), owner.id.clone()));
            }
            self.default_numbers
                .contains(number)
                .then(|| (number.clone(), DEFAULT_TENANT.to_string()))
        })
    }

    fn build(
        tenants: Vec<Arc<Tenant>>,
        default_numbers: Vec<String>,
        version: i64,
    ) -> (Snapshot, Vec<(String, String)>) {
        let mut snapshot = Snapshot {
            default_numbers,
            version,
            ..Snapshot::default()
        };
        let mut refused = Vec::new();
        for tenant in tenants {
            if let Some((number, owner)) = snapshot.claimed(&tenant.id, &tenant.numbers) {
                refused.push((
                    tenant.id.clone(),
                    format!("number {number} is already {owner}'s"),
                ));
                continue;
            }
            for number in &tenant.numbers {
                snapshot.by_number.insert(number.clone(), tenant.clone());
            }
            snapshot.tenants.push(tenant);
        }
        snapshot.tenants.sort_by(|a, b| a.id.cmp(&b.id));
        (snapshot, refused)
    }
}

/// Whose conversations a person may see: everyone's, or those of some tenants (`default`: the
/// deployment's own numbers; a number no one has is seen only with `All`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    All,
    Tenants(Vec<String>),
}

impl Reach {
    /// An account's tenant list: empty is everyone's.
    pub fn of(tenants: &[String]) -> Reach {
        if tenants.is_empty() {
            Reach::All
        } else {
            Reach::Tenants(tenants.to_vec())
        }
    }

    /// Whether it covers tenant `id`'s conversations.
    pub fn covers(&self, id: &str) -> bool {
        match self {
            Reach::All => true,
            Reach::Tenants(ids) => ids.iter().any(|t| t == id),
        }
    }

    /// Whether it sees the conversations of business number `number`.
    pub fn sees(&self, snapshot: &Snapshot, number: &str) -> bool {
        match self {
            Reach::All => true,
            Reach::Tenants(_) => snapshot.owner(number).is_some_and(|id| self.covers(id)),
        }
    }
}

/// The tenants of files and of Redis, kept current.
pub struct Directory {
    settings: Settings,
    files: Vec<Arc<Tenant>>,
    store: TenantStore,
    sealer: Option<Sealer>,
    current: RwLock<Arc<Snapshot>>,
}

impl Directory {
    /// The deployment's tenant files, read now (an invalid one stops the start, naming it);
    /// stored tenants come with the first [`Directory::refresh`].
    pub fn new(
        settings: &Settings,
        store: TenantStore,
    ) -> std::result::Result<Directory, ConfigError> {
        let files: Vec<Arc<Tenant>> = settings.tenant_files()?.into_iter().map(Arc::new).collect();
        let (snapshot, refused) = Snapshot::build(files.clone(), settings.default_numbers(), 0);
        if let Some((id, reason)) = refused.into_iter().next() {
            return Err(ConfigError::Tenant { id, reason });
        }
        Ok(Directory {
            settings: settings.clone(),
            files,
            store,
            sealer: Sealer::from_settings(settings),
            current: RwLock::new(Arc::new(snapshot)),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn store(&self) -> &TenantStore {
        &self.store
    }

    /// Seals documents for the admin API; `None` without `tenants.key`.
    pub fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_ref()
    }

    /// Whether tenants can exist: tenant files, or `tenants.key` to store them under.
    pub fn may_have_tenants(&self) -> bool {
        !self.files.is_empty() || self.sealer.is_some()
    }

    /// The deployment's settings, which every tenant is built over.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Reloads the stored tenants when their version moved; whether it did.
    pub async fn refresh(&self) -> Result<bool> {
        let version = self.store.version().await?;
        if version == self.snapshot().version {
            return Ok(false);
        }
        let stored = self.store.all().await?;
        let previous = self.snapshot();
        let mut problems = Vec::new();
        let mut tenants = self.files.clone();
        let mut ids: Vec<&String> = stored.keys().collect();
        ids.sort();
        for id in ids {
            if self.files.iter().any(|t| &t.id == id) {
                problems.push((id.clone(), "a tenant file has this id".into()));
                continue;
            }
            let Some(sealer) = &self.sealer else {
                problems.push((id.clone(), "tenants.key is not set".into()));
                continue;
            };
            let Some(document) = sealer.open(id, &stored[id]) else {
                problems.push((id.clone(), "does not open with tenants.key".into()));
                continue;
            };
            let digest: [u8; 32] =
                <sha2::Sha256 as sha2::Digest>::digest(document.expose_secret().as_bytes()).into();
            // An unchanged document keeps its tenant (and the engine built for it).
            match previous.get(id).filter(|t| t.digest == digest) {
                Some(same) => tenants.push(same.clone()),
                None => match self.settings.tenant(id, document.expose_secret(), STORED) {
                    Ok(tenant) => tenants.push(Arc::new(tenant)),
                    Err(error) => problems.push((id.clone(), error.to_string())),
                },
            }
        }
        let (mut snapshot, refused) =
            Snapshot::build(tenants, self.settings.default_numbers(), version);
        problems.extend(refused);
        for (id, reason) in &problems {
            tracing::error!(tenant = %id, %reason, "a stored tenant is left out");
        }
        snapshot.problems = problems;
        let snapshot = Arc::new(snapshot);
        match self.current.write() {
            Ok(mut current) => *current = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
        Ok(true)
    }

    /// Refreshes every `tenants.reload_ms` for as long as the directory is in use.
    pub fn keep_current(self: &Arc<Directory>) {
        let every = Duration::from_millis(self.settings.tenants.reload_ms.max(100));
        let weak: Weak<Directory> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(directory) = weak.upgrade() else {
                    return;
                };
                if let Err(error) = directory.refresh().await {
                    tracing::debug!(error = %error, "tenants not refreshed; retrying");
                }
                drop(directory);
                tokio::time::sleep(every).await;
            }
        });
    }
}
