//! The usage request: what the guest itself can tell about its memory, its root file system and the
//! processes its kernel's OOM killer killed.
//!
//! The host samples each leased VM every few seconds; what only the guest knows (how much of its
//! RAM it uses, how full its `/` is) comes from one [`Request::Usage`](crate::Request::Usage),
//! answered inline by the agent without starting a thread or a process: a read of
//! `/proc/meminfo`, one `statfs(2)` and a look at the kills the agent has seen. Everything the host
//! can see from outside (CPU time, QEMU's memory, the disk overlay, network bytes) is measured
//! there, not here.

use serde::{Deserialize, Serialize};

/// Most kills one [`GuestUsage`] lists (the oldest beyond it are left out; the counter still
/// counts them).
pub const MAX_OOM_KILLS_LISTED: usize = 16;

/// Ask the guest for its usage; answered with [`Response::Usage`](crate::Response::Usage).
///
/// ```
/// let request = firepit_agent::UsageRequest { oom_kills_after: 3 };
/// assert_eq!(request, firepit_agent::UsageRequest { oom_kills_after: 3 });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRequest {
    /// List only the OOM kills with a larger [`OomKill::seq`] (the host passes the last it saw).
    pub oom_kills_after: u64,
}

/// What the guest reports about itself.
///
/// ```
/// let usage = firepit_agent::GuestUsage { memory_total_bytes: 256 << 20, memory_available_bytes: 200 << 20, ..Default::default() };
/// assert_eq!(usage.memory_used_bytes(), 56 << 20);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestUsage {
    /// `MemTotal` of `/proc/meminfo`: the RAM the guest kernel manages.
    pub memory_total_bytes: u64,
    /// `MemAvailable`: what could be allocated without swapping (free plus reclaimable cache).
    pub memory_available_bytes: u64,
    /// `Cached`: the page cache (files read and written, tmpfs included).
    pub memory_cache_bytes: u64,
    /// Size of the file system mounted at `/` (`statfs`), bytes; 0 for one without a size.
    pub disk_total_bytes: u64,
    /// What is used of it, bytes.
    pub disk_used_bytes: u64,
    /// OOM kills the agent has seen since it started (the guest kernel's log).
    pub oom_kills: u64,
    /// The latest of them after the request's `oom_kills_after`, oldest first (at most
    /// [`MAX_OOM_KILLS_LISTED`]).
    pub recent_oom_kills: Vec<OomKill>,
    /// Whether the agent watches the kernel's log for OOM kills (false: `oom_kills` stays 0 and no
    /// result says `oom_killed`; e.g. `/dev/kmsg` could not be opened).
    pub oom_watched: bool,
}

impl GuestUsage {
    /// Memory in use: total minus available.
    pub fn memory_used_bytes(&self) -> u64 {
        self.memory_total_bytes.saturating_sub(self.memory_available_bytes)
    }
}

/// One process the guest kernel's OOM killer killed.
///
/// ```
/// let kill = firepit_agent::OomKill { seq: 1, pid: 42, comm: "python3".into(), ..Default::default() };
/// assert_eq!(kill.process_group, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomKill {
    /// Its number among the kills the agent has seen (1, 2, ...).
    pub seq: u64,
    /// The killed process's id in the guest.
    pub pid: u32,
    /// Its command name (the kernel's `comm`, at most 15 bytes).
    pub comm: String,
    /// Its process group, when the agent could still read it (`None`: already gone). A command
    /// the agent started leads its own group, so this names the command a kill belongs to.
    pub process_group: Option<u32>,
    /// Its anonymous memory when killed, KiB (`anon-rss`).
    pub anon_rss_kb: u64,
    /// When the agent saw it, guest milliseconds since the Unix epoch.
    pub unix_ms: i64,
}
