//! Each lease's samples: a bounded ring per lease, the counters a rate needs (the previous CPU
//! time), the OOM kills already reported, and a short memory of the leases that ended.
//!
//! Pure bookkeeping: a [`Probe`] (what was read) goes in, a [`UsageSample`] and the kills not yet
//! reported come out. No I/O, so every rule here is unit-tested.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use firepit_agent::{GuestUsage, OomKill};
use firepit_api::UsageSample;
use firepit_qemu::VmUsage;

/// Ended leases whose samples stay readable (the oldest is forgotten first).
pub const ENDED_KEPT: usize = 64;

/// One sample out of this many reads the PSS (costly: see `firepit_qemu::UsageDepth`).
pub const PSS_EVERY: u64 = 12;

/// What one probe of a lease read.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// When (wall clock, for the sample's time).
    pub at: Option<SystemTime>,
    /// When (monotonic, for rates).
    pub instant: Option<Instant>,
    /// The host's side (`None`: the backend cannot tell, e.g. the fake).
    pub host: Option<VmUsage>,
    /// The guest's side (`None`: not asked, or no answer in time).
    pub guest: Option<GuestUsage>,
}

/// The samples and counters of one lease.
#[derive(Debug)]
pub struct History {
    /// Its shape.
    pub shape: String,
    /// Its vCPUs.
    pub cpus: u32,
    samples: VecDeque<UsageSample>,
    capacity: usize,
    /// The previous CPU time and when it was read.
    last_cpu: Option<(Instant, Duration)>,
    /// The highest kill number reported so far.
    oom_seq: u64,
    /// Kills the guest counted (during the lease: each lease has a fresh VM).
    oom_kills: u64,
    /// When the next sample is due.
    pub next_due: Instant,
    /// Samples taken (the PSS is read in every [`PSS_EVERY`]th, starting with the first).
    taken: u64,
    /// A probe is under way.
    pub in_flight: bool,
}

impl History {
    /// An empty history, its first sample due at `now`.
    pub fn new(shape: String, cpus: u32, capacity: usize, now: Instant) -> Self {
        Self {
            shape,
            cpus,
            samples: VecDeque::with_capacity(capacity.min(64)),
            capacity: capacity.max(1),
            last_cpu: None,
            oom_seq: 0,
            oom_kills: 0,
            next_due: now,
            taken: 0,
            in_flight: false,
        }
    }

    /// Whether the next probe should read the PSS.
    pub fn wants_pss(&self) -> bool {
        self.taken.is_multiple_of(PSS_EVERY)
    }

    /// The kill number the next probe asks the guest to list kills after.
    pub fn oom_seq(&self) -> u64 {
        self.oom_seq
    }

    /// Records a probe: the sample it makes (also kept, the oldest dropped beyond the capacity)
    /// and the OOM kills it brought that were not reported before, oldest first.
    pub fn record(&mut self, probe: Probe) -> (UsageSample, Vec<OomKill>) {
        self.taken += 1;
        let at = probe.at.unwrap_or_else(SystemTime::now);
        let instant = probe.instant.unwrap_or_else(Instant::now);
        let host = probe.host.unwrap_or_default();
        let cpu_time = probe.host.and_then(|h| h.cpu_time);
        let cpu_percent = match (self.last_cpu, cpu_time) {
            (Some((then, before)), Some(now)) => {
                percent(now.saturating_sub(before), instant - then, self.cpus)
            }
            _ => None,
        };
        if let Some(now) = cpu_time {
            self.last_cpu = Some((instant, now));
        }
        let mut new_kills = Vec::new();
        if let Some(guest) = &probe.guest {
            self.oom_kills = self.oom_kills.max(guest.oom_kills);
            for kill in &guest.recent_oom_kills {
                if kill.seq > self.oom_seq {
                    self.oom_seq = kill.seq;
                    new_kills.push(kill.clone());
                }
            }
        }
        let guest = probe.guest.as_ref();
        let sample = UsageSample {
            at: humantime::format_rfc3339_millis(at).to_string(),
            at_unix_ms: firepit_api::unix_ms(at),
            cpus: self.cpus,
            cpu_percent,
            memory_used_bytes: guest.map(GuestUsage::memory_used_bytes),
            memory_total_bytes: guest.map(|g| g.memory_total_bytes),
            memory_cache_bytes: guest.map(|g| g.memory_cache_bytes),
            host_rss_bytes: probe.host.map(|_| host.rss_bytes),
            host_pss_bytes: host.pss_bytes,
            disk_used_bytes: guest.map(|g| g.disk_used_bytes),
            disk_total_bytes: guest.map(|g| g.disk_total_bytes),
            disk_overlay_bytes: host.overlay_bytes,
            net_rx_bytes: host.network.map(|n| n.bytes_in),
            net_tx_bytes: host.network.map(|n| n.bytes_out),
            oom_kills: self.oom_kills,
        };
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample.clone());
        (sample, new_kills)
    }

    /// The samples taken after `since_unix_ms` (all without it), oldest first.
    pub fn samples_since(&self, since_unix_ms: Option<u64>) -> Vec<UsageSample> {
        let since = since_unix_ms.unwrap_or(0);
        self.samples.iter().filter(|s| since_unix_ms.is_none() || s.at_unix_ms > since).cloned().collect()
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<&UsageSample> {
        self.samples.back()
    }

    /// Most samples kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// CPU time `used` over `elapsed` on `cpus` vCPUs, in percent of all of them (two decimals).
fn percent(used: Duration, elapsed: Duration, cpus: u32) -> Option<f64> {
    let capacity = elapsed.as_secs_f64() * f64::from(cpus.max(1));
    (capacity > 0.0).then(|| (used.as_secs_f64() * 100.0 / capacity * 100.0).round() / 100.0)
}

/// The histories of the live leases and of the last [`ENDED_KEPT`] that ended.
#[derive(Debug, Default)]
pub struct Histories {
    /// Live leases by id.
    pub live: HashMap<String, History>,
    /// Ended leases, newest first.
    pub ended: VecDeque<(String, History)>,
}

impl Histories {
    /// Moves every live history whose lease is not in `running` to the ended ones.
    pub fn retire_missing(&mut self, running: &std::collections::HashSet<&str>) {
        let gone: Vec<String> =
            self.live.keys().filter(|id| !running.contains(id.as_str())).cloned().collect();
        for id in gone {
            if let Some(history) = self.live.remove(&id) {
                self.ended.push_front((id, history));
                self.ended.truncate(ENDED_KEPT);
            }
        }
    }

    /// A lease's history, live or ended, and whether it ended.
    pub fn get(&self, id: &str) -> Option<(&History, bool)> {
        if let Some(history) = self.live.get(id) {
            return Some((history, false));
        }
        self.ended.iter().find(|(ended, _)| ended == id).map(|(_, history)| (history, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(cpu_ms: u64) -> VmUsage {
        VmUsage { cpu_time: Some(Duration::from_millis(cpu_ms)), rss_bytes: 100, ..VmUsage::default() }
    }

    fn kill(seq: u64) -> OomKill {
        OomKill { seq, pid: 40 + seq as u32, comm: "hog".into(), ..OomKill::default() }
    }

    #[test]
    fn cpu_percent_is_the_time_used_between_two_samples_over_all_vcpus() {
        let start = Instant::now();
        let mut history = History::new("small".into(), 2, 10, start);
        let first = Probe { instant: Some(start), host: Some(host(1000)), ..Probe::default() };
        assert_eq!(history.record(first).0.cpu_percent, None, "no rate from one sample");
        let second = Probe {
            instant: Some(start + Duration::from_secs(5)),
            host: Some(host(6000)),
            ..Probe::default()
        };
        let (sample, _) = history.record(second);
        assert_eq!(sample.cpu_percent, Some(50.0), "5 s of CPU in 5 s on 2 vCPUs");
        assert_eq!(sample.host_rss_bytes, Some(100));
        assert_eq!(sample.memory_used_bytes, None, "no guest part without an answer");
    }

    #[test]
    fn the_ring_keeps_the_newest_samples_and_since_filters_them() {
        let start = Instant::now();
        let mut history = History::new("small".into(), 1, 3, start);
        for i in 0..5u64 {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(100 + i);
            history.record(Probe { at: Some(at), ..Probe::default() });
        }
        let all = history.samples_since(None);
        assert_eq!(all.iter().map(|s| s.at_unix_ms / 1000).collect::<Vec<_>>(), [102, 103, 104]);
        assert_eq!(history.samples_since(Some(103_000)).len(), 1);
        assert_eq!(history.latest().map(|s| s.at_unix_ms), Some(104_000));
    }

    #[test]
    fn each_oom_kill_is_reported_once_and_counted() {
        let mut history = History::new("small".into(), 1, 10, Instant::now());
        let guest = |kills: Vec<OomKill>, count| GuestUsage {
            recent_oom_kills: kills,
            oom_kills: count,
            memory_total_bytes: 100,
            memory_available_bytes: 40,
            ..GuestUsage::default()
        };
        let (sample, new) =
            history.record(Probe { guest: Some(guest(vec![kill(1)], 1)), ..Probe::default() });
        assert_eq!((new.len(), sample.oom_kills, sample.memory_used_bytes), (1, 1, Some(60)));
        assert_eq!(history.oom_seq(), 1);
        let (sample, new) = history
            .record(Probe { guest: Some(guest(vec![kill(1), kill(2), kill(3)], 3)), ..Probe::default() });
        assert_eq!(new.iter().map(|k| k.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(sample.oom_kills, 3);
        let (sample, new) = history.record(Probe::default());
        assert!(new.is_empty());
        assert_eq!(sample.oom_kills, 3, "the count stays when the guest does not answer");
    }

    #[test]
    fn the_pss_is_asked_for_in_the_first_sample_and_every_twelfth() {
        let mut history = History::new("small".into(), 1, 100, Instant::now());
        let mut asked = Vec::new();
        for i in 0..25 {
            if history.wants_pss() {
                asked.push(i);
            }
            history.record(Probe::default());
        }
        assert_eq!(asked, [0, 12, 24]);
    }

    #[test]
    fn ended_histories_are_remembered_newest_first_and_bounded() {
        let now = Instant::now();
        let mut histories = Histories::default();
        for i in 0..(ENDED_KEPT + 2) {
            histories.live.insert(format!("l-{i}"), History::new("small".into(), 1, 4, now));
        }
        histories.retire_missing(&["l-0"].into_iter().collect());
        assert_eq!(histories.live.len(), 1);
        assert_eq!(histories.ended.len(), ENDED_KEPT);
        assert!(matches!(histories.get("l-0"), Some((_, false))));
        let remembered = histories.ended.iter().filter(|(id, _)| histories.get(id).is_some_and(|(_, e)| e));
        assert_eq!(remembered.count(), ENDED_KEPT);
    }
}
