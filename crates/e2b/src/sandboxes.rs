//! The sandboxes this endpoint created: one firepit lease each, with what E2B says about a
//! sandbox and firepit's lease does not hold (template, metadata, environment, envd's access
//! token, the processes envd runs).
//!
//! The sandbox id *is* the lease id, so a request names its lease without a lookup. The record
//! lives in this process; a sandbox whose lease has ended (released, expired) is dropped from it
//! when its end time passes or firepit says the lease is gone. A sandbox that is paused, or that
//! pauses instead of ending when its time runs out (`autoPause`), outlives its end time: firepit's
//! lease view says whether it is still there ([`crate::sandbox_views::lease_view`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The timeout it was created with (what a resume without a timeout gives it again).
    pub timeout: Duration,
    /// Its timeout pauses it instead of killing it (E2B's `autoPause`, firepit's
    /// `on_expiry = pause`).
    pub auto_pause: bool,
    /// A call on it while it is paused resumes it (E2B's `autoResume`, firepit's `auto_resume`).
    pub auto_resume: bool,
    /// Last known to be paused (set by a pause through this endpoint, cleared by a resume; firepit's
    /// lease view is the truth).
    pub paused: AtomicBool,
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
            timeout,
            auto_pause: false,
            auto_resume: false,
            paused: AtomicBool::new(false),
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

    /// Whether it is gone because its end time has passed (a paused sandbox, or one whose timeout
    /// pauses it, is not: its lease view says).
    pub fn expired(&self) -> bool {
        !self.auto_pause && !self.is_paused() && self.end_at() <= SystemTime::now()
    }

    /// Whether it was last known to be paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Records that it is paused (or running).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    /// Whether it may be paused now: paused through this endpoint, or past its end time with a
    /// timeout that pauses it.
    pub fn may_be_paused(&self) -> bool {
        self.is_paused() || (self.auto_pause && self.end_at() <= SystemTime::now())
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
    fn paused_and_auto_pausing_sandboxes_outlive_their_end_time() {
        let registry = Registry::default();
        let paused = Sandbox::new("l-p".into(), "base".into(), Duration::ZERO);
        paused.set_paused(true);
        let auto = Sandbox { auto_pause: true, ..Sandbox::new("l-a".into(), "base".into(), Duration::ZERO) };
        assert!(auto.may_be_paused() && paused.may_be_paused());
        registry.insert(Arc::new(paused));
        registry.insert(Arc::new(auto));
        assert_eq!(registry.list().len(), 2);
        let running = Sandbox::new("l-r".into(), "base".into(), Duration::from_secs(60));
        assert!(!running.may_be_paused());
    }

    #[test]
    fn tokens_differ() {
        let a = Sandbox::new("a".into(), "t".into(), Duration::from_secs(1));
        let b = Sandbox::new("b".into(), "t".into(), Duration::from_secs(1));
        assert_ne!(a.access_token, b.access_token);
        assert_eq!(a.access_token.len(), 32);
    }
}
