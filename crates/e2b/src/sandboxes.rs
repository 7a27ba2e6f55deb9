//! The sandboxes this endpoint created: one firepit lease each, with what E2B says about a
//! sandbox and firepit's lease does not hold (template, metadata, environment, envd's access
//! token, the processes envd runs).
//!
//! The sandbox id *is* the lease id, so a request names its lease without a lookup. The record
//! lives in this process; a sandbox whose lease has ended (released, expired) is dropped from it
//! when its end time passes or firepit says the lease is gone.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::OnceCell;

use crate::processes::ProcessTable;
use crate::sync::lock;
use crate::users::Users;
use crate::watchers::Watchers;

/// One sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// Its id (the firepit lease id).
    pub id: String,
    /// The template it was created from (a firepit shape name).
    pub template_id: String,
    /// When it was created.
    pub started_at: SystemTime,
    /// When it expires (moved by timeouts and refreshes).
    pub end_at: Mutex<SystemTime>,
    /// The client's metadata.
    pub metadata: BTreeMap<String, String>,
    /// Environment variables every command gets (a command's own win).
    pub env_vars: BTreeMap<String, String>,
    /// envd's access token: `X-Access-Token` of every envd request, key of signed file URLs.
    pub access_token: String,
    /// What the client said about internet access (`None`: not said).
    pub allow_internet_access: Option<bool>,
    /// The processes envd started in it.
    pub processes: Arc<ProcessTable>,
    /// Its directory watchers.
    pub watchers: Watchers,
    /// The guest's users, read on first need.
    pub users: OnceCell<Users>,
    /// CPU count and memory in MiB, read from the guest on first need.
    pub resources: OnceCell<(u32, u64)>,
}

impl Sandbox {
    /// A new record, expiring `timeout` from now.
    pub fn new(id: String, template_id: String, timeout: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            id,
            template_id,
            started_at: now,
            end_at: Mutex::new(now + timeout),
            metadata: BTreeMap::new(),
            env_vars: BTreeMap::new(),
            access_token: new_token(),
            allow_internet_access: None,
            processes: Arc::default(),
            watchers: Watchers::default(),
            users: OnceCell::new(),
            resources: OnceCell::new(),
        }
    }

    /// When it expires.
    pub fn end_at(&self) -> SystemTime {
        *lock(&self.end_at)
    }

    /// Moves the expiry.
    pub fn set_end_at(&self, at: SystemTime) {
        *lock(&self.end_at) = at;
    }

    /// Whether its end time has passed.
    pub fn expired(&self) -> bool {
        self.end_at() <= SystemTime::now()
    }
}

/// A random token (32 hex digits).
fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Every live sandbox of this endpoint, by id.
#[derive(Debug, Default)]
pub struct Registry {
    sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
}

impl Registry {
    /// Keeps `sandbox`.
    pub fn insert(&self, sandbox: Arc<Sandbox>) {
        lock(&self.sandboxes).insert(sandbox.id.clone(), sandbox);
    }

    /// The live sandbox `id` (an expired one is forgotten and `None`).
    pub fn get(&self, id: &str) -> Option<Arc<Sandbox>> {
        let mut sandboxes = lock(&self.sandboxes);
        let sandbox = sandboxes.get(id)?.clone();
        if sandbox.expired() {
            sandboxes.remove(id);
            return None;
        }
        Some(sandbox)
    }

    /// Forgets `id`; the record if it was there.
    pub fn remove(&self, id: &str) -> Option<Arc<Sandbox>> {
        lock(&self.sandboxes).remove(id)
    }

    /// Every live sandbox, oldest first.
    pub fn list(&self) -> Vec<Arc<Sandbox>> {
        let mut sandboxes = lock(&self.sandboxes);
        sandboxes.retain(|_, sandbox| !sandbox.expired());
        let mut all: Vec<_> = sandboxes.values().cloned().collect();
        all.sort_by_key(|sandbox| (sandbox.started_at, sandbox.id.clone()));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_sandboxes_are_forgotten() {
        let registry = Registry::default();
        registry.insert(Arc::new(Sandbox::new("l-1".into(), "base".into(), Duration::from_secs(60))));
        registry.insert(Arc::new(Sandbox::new("l-2".into(), "base".into(), Duration::ZERO)));
        assert!(registry.get("l-1").is_some());
        assert!(registry.get("l-2").is_none());
        assert_eq!(registry.list().len(), 1);
        assert!(registry.remove("l-1").is_some());
        assert!(registry.list().is_empty());
    }

    #[test]
    fn tokens_differ() {
        let a = Sandbox::new("a".into(), "t".into(), Duration::from_secs(1));
        let b = Sandbox::new("b".into(), "t".into(), Duration::from_secs(1));
        assert_ne!(a.access_token, b.access_token);
        assert_eq!(a.access_token.len(), 32);
    }
}
