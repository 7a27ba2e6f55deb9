//! What `GET /v1/leases` and `GET /v1/leases/{id}` show: a view of each live lease, and a bounded
//! memory of the leases that ended, with why, so a client (or the dashboard) can still find out
//! what happened to a lease after its VM is gone.
//!
//! The memory is a ring of the last [`ENDED_KEPT`] ended leases: bounded whatever the churn, and
//! lost on a restart (the ownership records, not this, are what a restart recovers from).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use firepit_api::{EndReason, LeaseListQuery, LeaseState, LeaseView};

/// How many ended leases are remembered (the oldest is forgotten first).
pub const ENDED_KEPT: usize = 1024;

/// The times and identity of a lease, from which its views are made.
#[derive(Debug, Clone)]
pub struct LeaseFacts<'a> {
    /// Lease id.
    pub id: &'a str,
    /// Its VM's id.
    pub vm_id: &'a str,
    /// Its shape.
    pub shape: &'a str,
    /// When the VM was handed out.
    pub created: SystemTime,
    /// When it expires (or would have).
    pub expires: SystemTime,
}

impl LeaseFacts<'_> {
    /// The view of the lease while it runs.
    pub fn running(&self) -> LeaseView {
        LeaseView {
            id: self.id.to_owned(),
            vm_id: self.vm_id.to_owned(),
            shape: self.shape.to_owned(),
            state: LeaseState::Running,
            created_at: rfc3339(self.created),
            created_at_unix_ms: unix_ms(self.created),
            expires_at: rfc3339(self.expires),
            expires_at_unix_ms: unix_ms(self.expires),
            ended_at: None,
            ended_at_unix_ms: None,
            end_reason: None,
        }
    }

    /// The view of the lease once it ended at `at` for `reason`.
    pub fn ended(&self, reason: EndReason, at: SystemTime) -> LeaseView {
        LeaseView {
            state: LeaseState::Ended,
            ended_at: Some(rfc3339(at)),
            ended_at_unix_ms: Some(unix_ms(at)),
            end_reason: Some(reason),
            ..self.running()
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH).unwrap_or(std::time::Duration::ZERO).as_millis() as u64
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Whether `view` passes every filter of `query`.
///
/// ```
/// use firepit_api::{LeaseListQuery, LeaseState};
/// use firepit_daemon::lease_views::{LeaseFacts, matches};
/// let now = std::time::SystemTime::now();
/// let facts = LeaseFacts { id: "l-1", vm_id: "vm-1", shape: "small", created: now, expires: now };
/// let view = facts.running();
/// assert!(matches(&view, &LeaseListQuery::default()));
/// assert!(matches(&view, &LeaseListQuery { state: Some(LeaseState::Running), shape: Some("small".into()) }));
/// assert!(!matches(&view, &LeaseListQuery { state: Some(LeaseState::Ended), shape: None }));
/// assert!(!matches(&view, &LeaseListQuery { state: None, shape: Some("big".into()) }));
/// ```
pub fn matches(view: &LeaseView, query: &LeaseListQuery) -> bool {
    query.state.is_none_or(|state| state == view.state)
        && query.shape.as_deref().is_none_or(|shape| shape == view.shape)
}

/// The most recent ended leases, newest first.
#[derive(Debug, Default)]
pub struct EndedLeases {
    views: Mutex<VecDeque<LeaseView>>,
}

impl EndedLeases {
    /// Remembers an ended lease (forgetting the oldest beyond [`ENDED_KEPT`]).
    pub fn record(&self, view: LeaseView) {
        let mut views = lock(&self.views);
        views.push_front(view);
        views.truncate(ENDED_KEPT);
    }

    /// The ended lease with this id, if it is still remembered.
    pub fn get(&self, id: &str) -> Option<LeaseView> {
        lock(&self.views).iter().find(|view| view.id == id).cloned()
    }

    /// The remembered ended leases that match `query`, newest first.
    pub fn matching(&self, query: &LeaseListQuery) -> Vec<LeaseView> {
        lock(&self.views).iter().filter(|view| matches(view, query)).cloned().collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(id: &str) -> LeaseFacts<'_> {
        let now = SystemTime::now();
        LeaseFacts { id, vm_id: "vm", shape: "small", created: now, expires: now }
    }

    #[test]
    fn ended_leases_are_kept_newest_first_and_bounded() {
        let ended = EndedLeases::default();
        let ids: Vec<String> = (0..ENDED_KEPT + 5).map(|i| format!("l-{i}")).collect();
        for id in &ids {
            ended.record(facts(id).ended(EndReason::Released, SystemTime::now()));
        }
        let all = ended.matching(&LeaseListQuery::default());
        assert_eq!(all.len(), ENDED_KEPT);
        assert_eq!(all[0].id, format!("l-{}", ENDED_KEPT + 4));
        assert!(ended.get("l-0").is_none(), "the oldest are forgotten");
        let last = ended.get(&format!("l-{}", ENDED_KEPT + 4)).expect("the newest is kept");
        assert_eq!((last.state, last.end_reason), (LeaseState::Ended, Some(EndReason::Released)));
        assert!(last.ended_at_unix_ms.is_some());
    }
}
