//! What `GET /v1/leases` and `GET /v1/leases/{id}` show: a view of each live lease, and a bounded
//! memory of the leases that ended, with why, so a client (or the dashboard) can still find out
//! what happened to a lease after its VM is gone.
//!
//! The memory keeps an ended lease for `leases.ended_retention_secs` and at most
//! `leases.ended_max` of them (the oldest go first); with a state dir it is also on disk
//! ([`crate::leases::store`]), so it survives a restart. A lease's record is its view too
//! (`Lease::persist`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use firepit_api::{LeaseListQuery, LeaseState, LeaseView, rfc3339_ms};

use crate::leases::lease::Lease;
use crate::leases::state::lock;
use crate::leases::store::{LeaseRecord, VERSION};

pub use firepit_api::unix_ms;

/// The API's view of a lease, as acquire and renew return it.
pub fn lease_response(lease: &Lease) -> firepit_api::LeaseResponse {
    let expires = lease.clock.expires_at();
    firepit_api::LeaseResponse {
        lease_id: lease.id.clone(),
        vm_id: lease.vm_id.clone(),
        shape: lease.shape.clone(),
        expires_at: firepit_api::rfc3339_ms(unix_ms(expires)),
        expires_at_unix_ms: unix_ms(expires),
    }
}

impl Lease {
    /// The lease as the API shows it now.
    pub fn view(&self) -> LeaseView {
        let status = self.status();
        let expires = self.clock.expires_at();
        let end = status.end.as_ref();
        let paused_at = status.paused_at.filter(|_| status.state == LeaseState::Paused);
        LeaseView {
            id: self.id.clone(),
            vm_id: self.vm_id.clone(),
            shape: self.shape.clone(),
            state: status.state,
            created_at: rfc3339(self.created),
            created_at_unix_ms: unix_ms(self.created),
            expires_at: rfc3339(expires),
            expires_at_unix_ms: unix_ms(expires),
            metadata: self.options.metadata.clone(),
            auto_resume: self.options.auto_resume,
            on_expiry: self.options.on_expiry,
            paused_at: paused_at.map(rfc3339),
            paused_at_unix_ms: paused_at.map(unix_ms),
            ttl_remaining_ms: match status.state {
                LeaseState::Paused => self.clock.remaining().map(|left| left.as_millis() as u64),
                _ => None,
            },
            ended_at: end.map(|end| rfc3339(end.at)),
            ended_at_unix_ms: end.map(|end| unix_ms(end.at)),
            end_reason: end.map(|end| end.reason),
            end_detail: end.and_then(|end| end.detail.clone()),
            pid: status.pid,
            cgroup: status.cgroup.clone(),
        }
    }

    /// Records the lease as it is now (with a paused lease's saved state).
    pub(crate) fn persist(&self) {
        if let Some(store) = &self.shared.store {
            let saved = self.status().saved.clone();
            store.save(&LeaseRecord { version: VERSION, view: self.view(), saved });
        }
    }
}

fn rfc3339(time: SystemTime) -> String {
    rfc3339_ms(unix_ms(time))
}

/// The most recent ended leases, newest first, bounded in number and age.
#[derive(Debug)]
pub struct EndedLeases {
    views: Mutex<VecDeque<LeaseView>>,
    retention: Duration,
    max: usize,
}

impl EndedLeases {
    /// A memory of at most `max` ended leases, each kept for `retention`.
    pub fn new(retention: Duration, max: usize) -> Self {
        Self { views: Mutex::default(), retention, max }
    }

    /// Remembers an ended lease (newest first); returns the ids it forgot to make room or because
    /// they are too old.
    pub fn record(&self, view: LeaseView) -> Vec<String> {
        let mut views = lock(&self.views);
        views.retain(|kept| kept.id != view.id);
        views.push_front(view);
        self.prune(&mut views)
    }

    /// Forgets what is too old or too many; returns the ids forgotten.
    pub fn expire(&self) -> Vec<String> {
        self.prune(&mut lock(&self.views))
    }

    fn prune(&self, views: &mut VecDeque<LeaseView>) -> Vec<String> {
        let oldest_kept = unix_ms(SystemTime::now()).saturating_sub(self.retention.as_millis() as u64);
        let mut forgotten = Vec::new();
        while let Some(last) = views.back() {
            let too_old = last.ended_at_unix_ms.unwrap_or(0) < oldest_kept;
            if views.len() <= self.max && !too_old {
                break;
            }
            forgotten.extend(views.pop_back().map(|view| view.id));
        }
        forgotten
    }

    /// The ended lease with this id, if it is still remembered.
    pub fn get(&self, id: &str) -> Option<LeaseView> {
        lock(&self.views).iter().find(|view| view.id == id).cloned()
    }

    /// The remembered ended leases that match `query`, newest first (at most `limit`).
    pub fn matching(&self, query: &LeaseListQuery, limit: usize) -> Vec<LeaseView> {
        lock(&self.views).iter().filter(|view| query.matches(view)).take(limit).cloned().collect()
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        lock(&self.views).len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_api::EndReason;

    fn ended(id: &str, ended_ms: u64) -> LeaseView {
        let json = serde_json::json!({
            "id": id, "vm_id": "vm", "shape": "small", "state": "ended",
            "created_at": "", "created_at_unix_ms": 0, "expires_at": "", "expires_at_unix_ms": 0,
            "ended_at": "", "ended_at_unix_ms": ended_ms, "end_reason": "released",
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn ended_leases_are_kept_newest_first_and_bounded_in_number() {
        let memory = EndedLeases::new(Duration::from_secs(3600), 4);
        let now = unix_ms(SystemTime::now());
        let mut forgotten = Vec::new();
        for i in 0..6 {
            forgotten.extend(memory.record(ended(&format!("l-{i}"), now)));
        }
        assert_eq!(forgotten, ["l-0", "l-1"]);
        let all = memory.matching(&LeaseListQuery::default(), usize::MAX);
        assert_eq!(all.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["l-5", "l-4", "l-3", "l-2"]);
        assert!(memory.get("l-0").is_none());
        let last = memory.get("l-5").unwrap();
        assert_eq!((last.state, last.end_reason), (LeaseState::Ended, Some(EndReason::Released)));
        assert_eq!(memory.matching(&LeaseListQuery::default(), 1).len(), 1);
    }

    #[test]
    fn ended_leases_older_than_the_retention_are_forgotten() {
        let memory = EndedLeases::new(Duration::from_secs(60), 100);
        let now = unix_ms(SystemTime::now());
        memory.record(ended("l-old", now - 61_000));
        memory.record(ended("l-new", now));
        assert_eq!(memory.expire(), Vec::<String>::new(), "l-old went when l-new was recorded");
        assert!(memory.get("l-old").is_none());
        assert!(memory.get("l-new").is_some());
    }
}
