//! The host's own numbers a record carries: CPUs, load average and available memory, from
//! `/proc` (what `nproc`, `uptime` and `free` read).

/// CPUs this process may run on (at least 1).
pub fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// The one-minute load average, rounded to 0.1 (0 when `/proc/loadavg` is unreadable), so that
/// jitter alone does not rewrite a record.
pub fn load1() -> f64 {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = text.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    if load.is_finite() { (load * 10.0).round() / 10.0 } else { 0.0 }
}

/// `MemAvailable` in MiB rounded down to 64 MiB (0 when unreadable).
pub fn mem_available_mb() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    kib / 1024 / 64 * 64
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_host_has_numbers() {
        assert!(super::cpus() >= 1);
        assert!(super::mem_available_mb() > 0);
        assert!(super::load1() >= 0.0);
    }
}
