//! What a VM costs its host, seen from outside the guest ([`QemuVm::host_usage`]): CPU time and memory
//! of its cgroup, the QEMU process's resident (and, when asked, proportional) memory, its disk
//! overlay's size on the host and its network traffic.
//!
//! Cheap reads only, so that a daemon can sample hundreds of VMs every few seconds: the cgroup's
//! two counters, `/proc/PID/statm`, one `stat(2)` of the overlay, the network's atomic counters —
//! about 50 µs per VM. The one costly number is the PSS: `/proc/PID/smaps_rollup` walks every page
//! QEMU maps (≈0.8 ms for a cold-booted 128 MiB guest, measured under TCG), so it is read only when
//! asked ([`UsageDepth::WithPss`]) and callers ask for it now and then. What the guest alone knows
//! (its memory in use, its `/` file system) is the guest's to say: [`Guest::usage`](firepit_guest::Guest::usage).

use std::path::Path;
use std::time::Duration;

use firepit_net::NetStats;

use crate::vm::QemuVm;

/// How much [`QemuVm::host_usage`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageDepth {
    /// Everything cheap: no PSS.
    Cheap,
    /// Also the PSS (`/proc/PID/smaps_rollup`, ≈1 ms for a large VM).
    WithPss,
}

/// A VM's use of its host at one moment (counters since it started, sizes now).
///
/// ```no_run
/// # fn demo(vm: &firepit_qemu::QemuVm) {
/// use firepit_qemu::UsageDepth;
/// let usage = vm.host_usage(UsageDepth::WithPss);
/// println!("cpu {:?}, rss {} bytes, pss {:?}", usage.cpu_time, usage.rss_bytes, usage.pss_bytes);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmUsage {
    /// CPU time QEMU used since it started (all its threads: vCPUs, I/O, the NAT); from its cgroup,
    /// else from `/proc/PID/stat` (10 ms resolution). `None`: neither could be read (QEMU exited).
    pub cpu_time: Option<Duration>,
    /// Memory charged to its cgroup now, bytes (`None`: no cgroup).
    pub cgroup_memory_bytes: Option<u64>,
    /// QEMU's resident memory, bytes (0 once it exited).
    pub rss_bytes: u64,
    /// QEMU's proportional set size (shared pages split among their users), bytes; only with
    /// [`UsageDepth::WithPss`].
    pub pss_bytes: Option<u64>,
    /// Bytes the VM's disk overlay occupies on the host (`None`: the VM has no disk).
    pub overlay_bytes: Option<u64>,
    /// Its network traffic so far (`None`: its shape has no network).
    pub network: Option<NetStats>,
}

impl QemuVm {
    /// What the VM costs its host now (see [`VmUsage`]); reads a few small files, never blocks on
    /// the guest. The CPU time is a counter: two samples and the time between them give a rate.
    pub fn host_usage(&self, depth: UsageDepth) -> VmUsage {
        let pid = self.pid();
        let cgroup = self.cgroup().and_then(|cgroup| cgroup.usage().ok());
        VmUsage {
            cpu_time: cgroup.and_then(|usage| usage.cpu).or_else(|| process_cpu_time(pid)),
            cgroup_memory_bytes: cgroup.map(|usage| usage.memory_bytes),
            rss_bytes: resident_bytes(pid).unwrap_or(0),
            pss_bytes: (depth == UsageDepth::WithPss).then(|| proportional_bytes(pid)).flatten(),
            overlay_bytes: allocated_bytes(&self.runtime_dir().join(crate::disk::OVERLAY_FILE)),
            network: self.network.as_ref().map(firepit_net::VmNetwork::stats),
        }
    }
}

/// The kernel's page size (4 KiB on x86_64; asked once).
fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf only reads a constant of the running system.
    *PAGE.get_or_init(|| u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096))
}

/// Clock ticks per second of `/proc/PID/stat` (100 on Linux; asked once).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf only reads a constant of the running system.
    *TICKS.get_or_init(|| u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1))
}

fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    parse_statm_resident(&statm).map(|pages| pages * page_size())
}

/// The resident pages of a `/proc/PID/statm` line (`size resident shared ...`).
fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_cpu_ticks(&stat)?;
    Some(Duration::from_millis(ticks.saturating_mul(1000) / clock_ticks()))
}

/// `utime + stime` of a `/proc/PID/stat` line, in clock ticks (fields 14 and 15; the command name
/// may hold spaces, so they are counted from its closing parenthesis).
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn proportional_bytes(pid: u32) -> Option<u64> {
    crate::memory_charge::process_memory_kib(pid).ok().map(|(_, pss_kib)| pss_kib * 1024)
}

/// Blocks a file occupies (sparse and qcow2 files are smaller than their length).
fn allocated_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|meta| meta.blocks() * 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(parse_statm_resident("58000 12000 3000 700 0 40000 0\n"), Some(12000));
        let stat = "4242 (qemu system) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0 99 1 2 3";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn this_process_can_be_measured() {
        let pid = std::process::id();
        assert!(resident_bytes(pid).is_some_and(|bytes| bytes > 0));
        assert!(process_cpu_time(pid).is_some());
        assert!(proportional_bytes(pid).is_some_and(|bytes| bytes > 0));
        assert_eq!(allocated_bytes(Path::new("/nonexistent/disk.qcow2")), None);
        assert_eq!(resident_bytes(u32::MAX), None, "no such process");
    }
}
