//! Answers [`UsageRequest`]: `/proc/meminfo`, `statfs("/")` and the OOM kills seen ([`crate::oom`]).
//!
//! Cheap on purpose (the host asks every few seconds per VM): one small file read and one
//! system call, answered on the reader thread without spawning anything. A part that cannot be
//! read stays 0; the host shows what it got.

use firepit_agent::{GuestUsage, UsageRequest};

/// The guest's usage now.
pub fn read(request: &UsageRequest) -> GuestUsage {
    let mut usage = GuestUsage::default();
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        let kib = |key: &str| meminfo_kib(&meminfo, key).unwrap_or(0).saturating_mul(1024);
        usage.memory_total_bytes = kib("MemTotal");
        usage.memory_available_bytes = kib("MemAvailable");
        usage.memory_cache_bytes = kib("Cached");
    }
    if let Some((total, used)) = root_fs() {
        usage.disk_total_bytes = total;
        usage.disk_used_bytes = used;
    }
    crate::oom::report(&mut usage, request.oom_kills_after);
    usage
}

/// `Key:   123 kB` of `/proc/meminfo`, in KiB.
fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Size and use of the file system at `/`, bytes.
fn root_fs() -> Option<(u64, u64)> {
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer of the right type that the call fills on success.
    if unsafe { libc::statvfs(c"/".as_ptr(), stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    let fragment = stat.f_frsize;
    let total = stat.f_blocks.saturating_mul(fragment);
    let free = stat.f_bfree.saturating_mul(fragment);
    Some((total, total.saturating_sub(free)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_values_are_read_by_key() {
        let meminfo = "MemTotal:         250000 kB\nMemFree:  1000 kB\nMemAvailable:     200000 kB\nCached: 5 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemTotal"), Some(250_000));
        assert_eq!(meminfo_kib(meminfo, "MemAvailable"), Some(200_000));
        assert_eq!(meminfo_kib(meminfo, "Mem"), None, "a key is matched whole");
        assert_eq!(meminfo_kib(meminfo, "SwapTotal"), None);
    }

    #[test]
    fn this_machine_reports_memory_and_a_root_file_system() {
        let usage = read(&UsageRequest::default());
        assert!(usage.memory_total_bytes > 0 && usage.memory_available_bytes <= usage.memory_total_bytes);
        assert!(usage.disk_used_bytes <= usage.disk_total_bytes, "{usage:?}");
        assert!(!usage.oom_watched, "no watch outside a guest");
    }
}
