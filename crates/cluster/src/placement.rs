//! Placement: which host an acquire goes to, and where next when that host answers `503`.
//!
//! Pure (no I/O, the random source is a parameter), so it is unit-tested here and reasoned about
//! in one place. The rule, after E2B's best-of-K and Daytona's "prefer the runner that has it":
//!
//! 1. Candidates: hosts that serve the shape and are not draining.
//! 2. **Warm first**: a host with a ready VM of the shape (as advertised, minus what this gateway
//!    placed there since that advertisement) hands out a warm VM in microseconds; a host without
//!    one makes the client wait for a fill. Warm hosts come before cold ones.
//! 3. **Best of K** within the warm hosts (the cold ones when none is warm): sample K at random and
//!    take the least loaded, where load is `(leases + placed since the record + 1) / cpus + ½ ·
//!    load1 / cpus` (E2B weighs used CPU by ½ the same way). Sampling rather than always taking
//!    the global best keeps gateways that see the same stale records from all piling onto the one
//!    host that looks emptiest.
//! 4. The rest follow by score, warm before cold: the retry order when a host answers `503`.
//!
//! Records are rate-limited, so between two records of a host a gateway counts its own placements
//! there ([`HostState::placed`]) and the counts start again from the next record.

use std::collections::BTreeMap;

use rand::Rng;
use rand::seq::SliceRandom;

use crate::record::HostRecord;

/// E2B's K.
pub const DEFAULT_K: usize = 3;

/// A host as one gateway sees it: its last record and what the gateway placed there since.
///
/// ```
/// use firepit_cluster::{HostRecord, HostState};
/// let mut state = HostState::new(HostRecord::new("a", "http://a:1", "r"));
/// state.note_placed("small");
/// assert_eq!(state.placed_total(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    /// The host's last record.
    pub record: HostRecord,
    /// Leases this gateway placed there since `record`, per shape.
    pub placed: BTreeMap<String, usize>,
}

impl HostState {
    /// A host seen through `record` alone.
    pub fn new(record: HostRecord) -> Self {
        Self { record, placed: BTreeMap::new() }
    }

    /// Counts one placement of `shape` on this host.
    pub fn note_placed(&mut self, shape: &str) {
        *self.placed.entry(shape.to_owned()).or_default() += 1;
    }

    /// Placements since the record, all shapes.
    pub fn placed_total(&self) -> usize {
        self.placed.values().sum()
    }

    /// Ready VMs of `shape` as far as this gateway knows.
    pub fn ready(&self, shape: &str) -> usize {
        self.record.ready(shape).saturating_sub(self.placed.get(shape).copied().unwrap_or(0))
    }

    /// The load score (lower is better, see the module docs).
    pub fn score(&self) -> f64 {
        let cpus = f64::from(self.record.cpus.max(1));
        (self.record.leases + self.placed_total() + 1) as f64 / cpus + 0.5 * self.record.load1 / cpus
    }

    /// Whether an acquire of `shape` may go there (`None`: any shape; the daemon decides).
    pub fn accepts(&self, shape: Option<&str>) -> bool {
        !self.record.draining && shape.is_none_or(|s| self.record.serves(s))
    }
}

/// The hosts to try for an acquire of `shape`, best first (see the module docs). Empty when no
/// host may take it. `shape` is `None` when the request names sizes instead of a shape: then
/// every host is a candidate and none is warm.
///
/// ```
/// use firepit_cluster::{HostRecord, HostState, ShapeCapacity, placement_order};
/// let host = |name: &str, ready| HostState::new(HostRecord {
///     shapes: vec![ShapeCapacity { name: "small".into(), ready, filling: 0, leased: 0, depth_high: 4 }],
///     ..HostRecord::new(name, "http://x:1", "r")
/// });
/// let hosts = [host("cold", 0), host("warm", 2)];
/// let order = placement_order(&hosts, Some("small"), 3, &mut rand::rng());
/// assert_eq!(order, ["warm", "cold"]);
/// ```
pub fn placement_order<'a>(
    hosts: &'a [HostState],
    shape: Option<&str>,
    k: usize,
    rng: &mut impl Rng,
) -> Vec<&'a str> {
    let candidates: Vec<&HostState> = hosts.iter().filter(|h| h.accepts(shape)).collect();
    let (mut warm, mut cold): (Vec<&HostState>, Vec<&HostState>) =
        candidates.into_iter().partition(|h| shape.is_some_and(|s| h.ready(s) > 0));
    // Shuffled first, so equal scores are ordered at random rather than by name.
    warm.shuffle(rng);
    cold.shuffle(rng);
    let by_score = |a: &&HostState, b: &&HostState| a.score().total_cmp(&b.score());
    let first_tier = if warm.is_empty() { &mut cold } else { &mut warm };
    let first = best_of_k(first_tier, k.max(1), rng);
    let mut order = Vec::with_capacity(hosts.len());
    if let Some(first) = first {
        order.push(first_tier.remove(first));
    }
    warm.sort_by(by_score);
    cold.sort_by(by_score);
    order.extend(warm);
    order.extend(cold);
    order.into_iter().map(|h| h.record.host.as_str()).collect()
}

/// The index of the least loaded of `k` hosts sampled at random.
fn best_of_k(hosts: &[&HostState], k: usize, rng: &mut impl Rng) -> Option<usize> {
    let sample = rand::seq::index::sample(rng, hosts.len(), k.min(hosts.len()));
    sample.into_iter().min_by(|&a, &b| hosts[a].score().total_cmp(&hosts[b].score()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ShapeCapacity;
    use rand::SeedableRng;

    fn host(name: &str, ready: usize, leases: usize) -> HostState {
        HostState::new(HostRecord {
            shapes: vec![ShapeCapacity {
                name: "small".into(),
                ready,
                filling: 0,
                leased: leases,
                depth_high: 8,
            }],
            leases,
            cpus: 2,
            ..HostRecord::new(name, &format!("http://{name}:1"), "r")
        })
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn draining_hosts_and_hosts_without_the_shape_get_nothing() {
        let mut draining = host("d", 5, 0);
        draining.record.draining = true;
        let mut other = host("o", 5, 0);
        other.record.shapes[0].name = "big".into();
        let hosts = [draining, other, host("a", 0, 9)];
        assert_eq!(placement_order(&hosts, Some("small"), 3, &mut rng()), ["a"]);
        assert!(placement_order(&hosts[..2], Some("small"), 3, &mut rng()).is_empty());
    }

    #[test]
    fn warm_hosts_come_first_even_when_busier() {
        let hosts = [host("cold-idle", 0, 0), host("warm-busy", 1, 20)];
        assert_eq!(placement_order(&hosts, Some("small"), 3, &mut rng()), ["warm-busy", "cold-idle"]);
    }

    #[test]
    fn a_host_emptied_by_this_gateway_is_cold() {
        let mut a = host("a", 1, 0);
        a.note_placed("small");
        let hosts = [a, host("b", 1, 5)];
        assert_eq!(placement_order(&hosts, Some("small"), 3, &mut rng())[0], "b");
    }

    #[test]
    fn the_least_loaded_of_the_sample_goes_first_and_the_rest_follow_by_score() {
        let hosts = [host("a", 2, 6), host("b", 2, 2), host("c", 2, 4)];
        assert_eq!(placement_order(&hosts, Some("small"), 3, &mut rng()), ["b", "c", "a"]);
    }

    #[test]
    fn without_a_shape_every_host_is_a_cold_candidate() {
        let mut draining = host("d", 0, 0);
        draining.record.draining = true;
        let hosts = [host("a", 2, 3), host("b", 0, 1), draining];
        assert_eq!(placement_order(&hosts, None, 3, &mut rng()), ["b", "a"]);
    }

    #[test]
    fn placements_counted_locally_spread_evenly() {
        // Records never refresh here: the gateway's own counts alone must spread 60 acquires.
        let mut hosts = vec![host("a", 100, 0), host("b", 100, 0), host("c", 100, 0)];
        let mut rng = rng();
        for _ in 0..60 {
            let first = placement_order(&hosts, Some("small"), DEFAULT_K, &mut rng)[0].to_owned();
            if let Some(h) = hosts.iter_mut().find(|h| h.record.host == first) {
                h.note_placed("small");
            }
        }
        let counts: Vec<usize> = hosts.iter().map(HostState::placed_total).collect();
        assert_eq!(counts, [20, 20, 20]);
    }

    #[test]
    fn best_of_k_below_the_host_count_still_balances() {
        let mut hosts: Vec<HostState> = (0..10).map(|i| host(&format!("h{i}"), 100, 0)).collect();
        let mut rng = rng();
        for _ in 0..300 {
            let first = placement_order(&hosts, Some("small"), 2, &mut rng)[0].to_owned();
            if let Some(h) = hosts.iter_mut().find(|h| h.record.host == first) {
                h.note_placed("small");
            }
        }
        let counts: Vec<usize> = hosts.iter().map(HostState::placed_total).collect();
        let (min, max) = (counts.iter().min().copied(), counts.iter().max().copied());
        assert!(max.zip(min).is_some_and(|(max, min)| max as f64 / min as f64 <= 1.5), "{counts:?}");
    }
}
