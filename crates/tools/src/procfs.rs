//! What the tools read from /proc: a process's CPU time and peak RSS, and the one scan that finds
//! our QEMU processes (by a directory their command line names: a daemon's state dir, a pool's
//! runtime dir). A process's memory (RSS, PSS) comes from [`firepit::qemu::process_memory_kib`],
//! the reader the provider prices snapshot clones with.

use std::io;
use std::path::Path;

/// User + system CPU time of `pid` in clock ticks, from `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse /proc/{pid}/stat")))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces: count fields after its closing parenthesis.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of the whole line are 12 and 13 after the command name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 when unknown).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The whole host's CPU time so far, from the `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostCpu {
    /// Ticks spent running anything (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// All ticks, idle and iowait included (summed over every CPU).
    pub total: u64,
}

impl HostCpu {
    /// Reads `/proc/stat` now.
    pub fn now() -> io::Result<Self> {
        let text = std::fs::read_to_string("/proc/stat")?;
        parse_host_cpu(&text).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "cannot parse the cpu line of /proc/stat")
        })
    }

    /// Busy share of the whole host since `earlier`, in percent (100 = every CPU busy).
    ///
    /// ```
    /// use firepit_tools::procfs::HostCpu;
    /// let (a, b) = (HostCpu { busy: 10, total: 100 }, HostCpu { busy: 30, total: 300 });
    /// assert_eq!(b.percent_since(a), 10.0);
    /// ```
    pub fn percent_since(self, earlier: Self) -> f64 {
        let busy = self.busy.saturating_sub(earlier.busy) as f64;
        let total = self.total.saturating_sub(earlier.total) as f64;
        if total > 0.0 { busy / total * 100.0 } else { 0.0 }
    }
}

fn parse_host_cpu(stat: &str) -> Option<HostCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some(HostCpu { busy: total.saturating_sub(idle), total })
}

/// CPUs the host has (`cpuN` lines of `/proc/stat`; 1 when unreadable): a whole-host percentage
/// times this is a percentage of one core.
pub fn host_cpus() -> usize {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let n = text.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count();
    n.max(1)
}

/// CPU time (clock ticks) of each process in `pids`; `None` for one that is gone (or whose pid now
/// belongs to another process). [`cpu_ticks_delta`] compares two such readings.
pub fn cpu_ticks_of(pids: &[QemuProcess]) -> Vec<Option<u64>> {
    pids.iter().map(|p| if still_running(*p) { cpu_ticks(p.pid).ok() } else { None }).collect()
}

/// Ticks used between two readings of [`cpu_ticks_of`] over the same processes, summed over those
/// readable both times, and how many those were.
pub fn cpu_ticks_delta(before: &[Option<u64>], after: &[Option<u64>]) -> (u64, usize) {
    before.iter().zip(after).fold((0, 0), |(sum, n), pair| match pair {
        (Some(b), Some(a)) => (sum + a.saturating_sub(*b), n + 1),
        _ => (sum, n),
    })
}

/// A QEMU process seen in /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QemuProcess {
    /// Its pid.
    pub pid: u32,
    /// Its start time (clock ticks since boot), which tells a reused pid apart.
    pub start_time: u64,
}

/// QEMU processes (not zombies, any parent) whose command line mentions `dir`: a daemon's VMs keep
/// their sockets under its state dir, a pool's under its runtime dir.
pub fn qemu_under(dir: &Path) -> Vec<QemuProcess> {
    let marker = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let ours = is_qemu(&cmdline) && cmdline.windows(marker.len()).any(|w| w == marker);
            let (state, start_time) = stat_state(pid)?;
            (ours && state != 'Z').then_some(QemuProcess { pid, start_time })
        })
        .collect()
}

/// Whether a command line's program (argv\[0\], by its file name: `qemu-system-x86_64` or
/// `/usr/bin/qemu-system-x86_64`) is QEMU.
fn is_qemu(cmdline: &[u8]) -> bool {
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let name = argv0.rsplit(|b| *b == b'/').next().unwrap_or_default();
    name.starts_with(b"qemu-system")
}

/// State letter and start time of a process, from `/proc/<pid>/stat`.
fn stat_state(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some((fields.first()?.chars().next()?, fields.get(19)?.parse().ok()?))
}

/// Whether this exact process (pid and start time) is still alive and not a zombie.
pub fn still_running(process: QemuProcess) -> bool {
    stat_state(process.pid).is_some_and(|(state, start)| state != 'Z' && start == process.start_time)
}

/// Peak resident set size of `pid` in KiB (`VmHWM` in `/proc/<pid>/status`), 0 when unreadable.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_is_recognised_by_program_name_with_or_without_a_path() {
        assert!(is_qemu(b"qemu-system-x86_64\0-M\0microvm\0"));
        assert!(is_qemu(b"/usr/bin/qemu-system-x86_64\0-M\0"));
        assert!(!is_qemu(b"/bin/sh\0/tmp/qemu-system-wrapper\0"));
        assert!(!is_qemu(b""));
    }

    #[test]
    fn cpu_ticks_parse_survives_spaces_in_the_command_name() {
        let stat = "42 (qemu system x86) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(12));
    }

    #[test]
    fn host_cpu_counts_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\nintr 1\n";
        assert_eq!(parse_host_cpu(stat), Some(HostCpu { busy: 160, total: 1000 }));
        assert_eq!(parse_host_cpu("intr 1\n"), None);
        let now = HostCpu::now().unwrap();
        assert!(now.total >= now.busy && now.total > 0);
        assert!(host_cpus() >= 1);
    }

    #[test]
    fn tick_deltas_skip_processes_gone_at_either_end() {
        let before = [Some(10), None, Some(5)];
        let after = [Some(15), Some(7), None];
        assert_eq!(cpu_ticks_delta(&before, &after), (5, 1));
        let me =
            QemuProcess { pid: std::process::id(), start_time: stat_state(std::process::id()).unwrap().1 };
        assert!(cpu_ticks_of(&[me])[0].is_some());
    }

    #[test]
    fn own_process_has_memory_and_cpu() {
        let pid = std::process::id();
        let (rss, pss) = firepit::qemu::process_memory_kib(pid).unwrap();
        assert!(rss > 0 && pss > 0 && pss <= rss, "rss {rss} pss {pss}");
        assert!(cpu_ticks(pid).is_ok());
    }
}
