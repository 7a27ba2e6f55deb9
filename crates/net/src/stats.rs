//! Traffic counters: one set per VM, and one per shape that outlives its VMs (for metrics).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Traffic of one VM, or of every VM a shape has had, since it started.
///
/// ```
/// let stats = firepit_net::NetStats::default();
/// assert_eq!(stats.bytes_out + stats.bytes_in, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetStats {
    /// Bytes of Ethernet frames the guest sent that went out (passed the policy).
    pub bytes_out: u64,
    /// Bytes of Ethernet frames the guest received (from the NAT, answers of firepit's DNS and
    /// refusals included).
    pub bytes_in: u64,
    /// Frames counted in `bytes_out`.
    pub frames_out: u64,
    /// Frames counted in `bytes_in`.
    pub frames_in: u64,
    /// Connections, datagrams and pings the policy refused.
    pub denied: u64,
    /// DNS queries answered (with addresses, empty, or "no such name").
    pub dns_queries: u64,
    /// Frames dropped: not IPv4/ARP, fragments, or a full queue (the guest sent faster than the
    /// NAT took them).
    pub dropped: u64,
}

/// Traffic counters that only grow, shared by everything that adds to them: one set per VM, and
/// one per shape that every VM of the shape also adds to (and that outlives them, for metrics).
///
/// ```
/// let shape = std::sync::Arc::new(firepit_net::NetCounters::default());
/// assert_eq!(shape.snapshot(), firepit_net::NetStats::default());
/// ```
#[derive(Debug, Default)]
pub struct NetCounters {
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
    frames_out: AtomicU64,
    frames_in: AtomicU64,
    denied: AtomicU64,
    dns_queries: AtomicU64,
    dropped: AtomicU64,
}

impl NetCounters {
    /// The counts so far.
    pub fn snapshot(&self) -> NetStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        NetStats {
            bytes_out: get(&self.bytes_out),
            bytes_in: get(&self.bytes_in),
            frames_out: get(&self.frames_out),
            frames_in: get(&self.frames_in),
            denied: get(&self.denied),
            dns_queries: get(&self.dns_queries),
            dropped: get(&self.dropped),
        }
    }
}

/// What one event adds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    Out { frames: usize, bytes: usize },
    In { frames: usize, bytes: usize },
    Denied(usize),
    Dns,
    Dropped(usize),
}

/// The VM's counters and its shape's, updated together.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    pub vm: Arc<NetCounters>,
    pub shape: Arc<NetCounters>,
}

impl Counters {
    pub(crate) fn add(&self, event: Event) {
        for counters in [&self.vm, &self.shape] {
            let add = |counter: &AtomicU64, n: usize| {
                counter.fetch_add(n as u64, Ordering::Relaxed);
            };
            match event {
                Event::Out { frames, bytes } => {
                    add(&counters.bytes_out, bytes);
                    add(&counters.frames_out, frames);
                }
                Event::In { frames, bytes } => {
                    add(&counters.bytes_in, bytes);
                    add(&counters.frames_in, frames);
                }
                Event::Denied(n) => add(&counters.denied, n),
                Event::Dns => add(&counters.dns_queries, 1),
                Event::Dropped(n) => add(&counters.dropped, n),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_count_for_the_vm_and_its_shape() {
        let shape = Arc::new(NetCounters::default());
        let one = Counters { vm: Arc::new(NetCounters::default()), shape: shape.clone() };
        let two = Counters { vm: Arc::new(NetCounters::default()), shape: shape.clone() };
        one.add(Event::Out { frames: 1, bytes: 100 });
        two.add(Event::In { frames: 1, bytes: 40 });
        two.add(Event::Denied(1));
        assert_eq!(one.vm.snapshot().bytes_out, 100);
        assert_eq!(two.vm.snapshot().bytes_out, 0);
        let total = shape.snapshot();
        assert_eq!((total.bytes_out, total.bytes_in, total.frames_in, total.denied), (100, 40, 1, 1));
    }
}
