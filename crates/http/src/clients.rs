//! Counting the connections of each client, to bound them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Who a connection belongs to, for the bound on connections per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A TCP peer, by address (its ports are its connections).
    Ip(IpAddr),
    /// Anyone on a Unix socket: the listener's own bound.
    Local,
}

/// Open connections per client, at most `max` each.
#[derive(Debug)]
pub struct Clients {
    max: usize,
    open: Mutex<HashMap<ClientKey, usize>>,
}

impl Clients {
    /// Counts for a listener allowing `max` connections per client.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max, open: Mutex::default() })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ClientKey, usize>> {
        // Every critical section leaves the map consistent.
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A permit for one more connection of `key`, or `None` at the bound.
    pub fn admit(self: &Arc<Self>, key: ClientKey) -> Option<ClientPermit> {
        let mut open = self.lock();
        let count = open.entry(key).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientPermit { clients: self.clone(), key })
    }

    /// Connections `key` has open.
    pub fn open(&self, key: ClientKey) -> usize {
        self.lock().get(&key).copied().unwrap_or(0)
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ClientPermit {
    clients: Arc<Clients>,
    key: ClientKey,
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let mut open = self.clients.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_own_bound_and_a_dropped_permit_frees_its_place() {
        let clients = Clients::new(2);
        let a = ClientKey::Ip([127, 0, 0, 1].into());
        let b = ClientKey::Ip([127, 0, 0, 2].into());
        let first = clients.admit(a).unwrap();
        let _second = clients.admit(a).unwrap();
        assert!(clients.admit(a).is_none());
        let _other = clients.admit(b).unwrap();
        drop(first);
        assert_eq!(clients.open(a), 1);
        assert!(clients.admit(a).is_some());
    }
}
