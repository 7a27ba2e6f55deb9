//! Reading a process's CPU use from /proc (for benchmarks). Its memory comes from
//! [`firepit::qemu::process_memory_kib`], the reader the provider prices snapshot clones with.

use std::io;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_parse_survives_spaces_in_the_command_name() {
        let stat = "42 (qemu system x86) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(12));
    }

    #[test]
    fn own_process_has_memory_and_cpu() {
        let pid = std::process::id();
        let (rss, pss) = firepit::qemu::process_memory_kib(pid).unwrap();
        assert!(rss > 0 && pss > 0 && pss <= rss, "rss {rss} pss {pss}");
        assert!(cpu_ticks(pid).is_ok());
    }
}
