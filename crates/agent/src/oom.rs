//! The guest kernel's OOM kills, as the agent sees them: which process was killed, and whether a
//! command the agent ran was hit.
//!
//! # Why the kernel log, and the counter too
//! The kernel offers two views. `/proc/vmstat`'s `oom_kill` counter is raised before the victim
//! is even signalled, so it is the truth about *whether* a kill happened — but not *whom* it hit.
//! The kernel log says whom: every kill prints `Out of memory: Killed process PID (comm) ...`
//! (not rate-limited, unlike the report around it). So one thread blocks in `read(2)` on
//! `/dev/kmsg` (no polling: it costs nothing while nothing happens), parses those lines, and looks
//! up the victim's process group in `/proc/PID/stat` at once — commands the agent starts lead their
//! own group, so the group names the command a kill belongs to, grandchildren included, as long
//! as the victim has not been reaped yet (the thread runs at a raised priority to win that race;
//! a victim the agent started itself is matched by its pid whatever happens).
//!
//! When a command ends, [`killed`] compares the counter with the kills the thread has parsed and
//! waits (briefly) for it to catch up, so a kill is never missed because the thread was a little
//! late. Kills are kept in a short ring for [`GuestUsage`](firepit_agent::GuestUsage), from which
//! the host makes its `process.oom_killed` events.
//!
//! # The agent itself
//! [`watch_kernel_log`] also sets the agent's own `oom_score_adj` to -1000: a guest that runs out
//! of memory must not lose the agent (the host would lose the VM). Its children start at 0 again
//! ([`unprotect_child`]): the protection is not inherited by what users run.
//!
//! Only a guest's agent does this (the binary's `main`); an agent running in-process on a host
//! (tests, the daemon's fake backend) neither reads the host's log nor changes its OOM score.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use firepit_agent::{GuestUsage, MAX_OOM_KILLS_LISTED, OomKill};

/// Kills remembered for [`GuestUsage::recent_oom_kills`] and for attribution.
const KEPT: usize = 64;
/// Longest wait for the log reader to catch up with the kernel's counter.
const CATCH_UP: Duration = Duration::from_millis(500);
/// Slack on "since the command started": the log reader stamps a kill when it reads it.
const SLACK: Duration = Duration::from_millis(50);

static WATCH: OnceLock<Watch> = OnceLock::new();
/// Whether the agent protected itself (its children then reset their score).
static PROTECTED: AtomicBool = AtomicBool::new(false);

struct Watch {
    state: Mutex<State>,
    parsed: Condvar,
}

#[derive(Default)]
struct State {
    /// The kernel's counter when the watch started.
    baseline: u64,
    /// Kills parsed since.
    seen: u64,
    kills: VecDeque<(Instant, OomKill)>,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Protects the agent from the OOM killer and starts reading the kernel log for kills (once; later
/// calls do nothing). Errors say what could not be done; the agent serves either way.
pub fn watch_kernel_log() -> std::io::Result<()> {
    if WATCH.get().is_some() {
        return Ok(());
    }
    match std::fs::write("/proc/self/oom_score_adj", "-1000") {
        Ok(()) => PROTECTED.store(true, Ordering::SeqCst),
        Err(error) => eprintln!("firepit-agent: cannot protect itself from the OOM killer: {error}"),
    }
    let mut log = std::fs::File::open("/dev/kmsg")?;
    // Only what is logged from now on: the kills before the agent started are not its business.
    // SAFETY: lseek on a descriptor we own; /dev/kmsg moves its reader to the end on SEEK_END.
    if unsafe { libc::lseek(std::os::fd::AsRawFd::as_raw_fd(&log), 0, libc::SEEK_END) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let baseline = kernel_count().unwrap_or(0);
    let watch = WATCH.get_or_init(|| Watch {
        state: Mutex::new(State { baseline, ..State::default() }),
        parsed: Condvar::new(),
    });
    std::thread::Builder::new().name("oom-watch".into()).spawn(move || {
        raise_priority();
        read_log(&mut log, watch);
    })?;
    Ok(())
}

fn read_log(log: &mut std::fs::File, watch: &Watch) {
    // One record per read; records are at most 8 KiB minus a little.
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match log.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            // EPIPE: records were overwritten before we read them (the next read goes on).
            Err(error) if matches!(error.raw_os_error(), Some(libc::EPIPE) | Some(libc::EINTR)) => continue,
            Err(error) => {
                eprintln!("firepit-agent: reading /dev/kmsg failed, OOM kills are no longer seen: {error}");
                return;
            }
        };
        let Some((pid, comm, anon_rss_kb)) = parse_kill(&String::from_utf8_lossy(&buf[..n])) else {
            continue;
        };
        let process_group = process_group(pid);
        let mut state = watch.lock();
        state.seen += 1;
        let kill = OomKill { seq: state.seen, pid, comm, process_group, anon_rss_kb, unix_ms: unix_ms() };
        if state.kills.len() == KEPT {
            state.kills.pop_front();
        }
        state.kills.push_back((Instant::now(), kill));
        drop(state);
        watch.parsed.notify_all();
    }
}

/// A kill's pid, command name and anonymous memory (KiB) from one `/dev/kmsg` record
/// (`PRIO,SEQ,USEC,FLAGS;Out of memory: Killed process 42 (tail) total-vm:...kB, anon-rss:...kB, ...`).
fn parse_kill(record: &str) -> Option<(u32, String, u64)> {
    let message = record.split_once(';').map_or(record, |(_, message)| message);
    let rest = message.split_once("Killed process ")?.1;
    let (pid, rest) = rest.split_once(" (")?;
    let pid = pid.trim().parse().ok()?;
    // The name may hold spaces and parentheses: it ends at the last ") " before the sizes.
    let end = rest.find(") total-vm").or_else(|| rest.rfind(')'))?;
    let comm = rest[..end].to_owned();
    let anon_rss_kb = rest
        .split_once("anon-rss:")
        .and_then(|(_, sizes)| sizes.split_once("kB"))
        .and_then(|(kb, _)| kb.trim().parse().ok())
        .unwrap_or(0);
    Some((pid, comm, anon_rss_kb))
}

/// The process group of `pid` from `/proc/PID/stat` (`None`: gone already).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; the name may hold anything, so fields count from the last ')'.
    let fields = stat.rsplit_once(')')?.1;
    fields.split_whitespace().nth(2)?.parse().ok()
}

/// The kernel's `oom_kill` counter (`/proc/vmstat`, Linux 4.13+).
fn kernel_count() -> Option<u64> {
    let vmstat = std::fs::read_to_string("/proc/vmstat").ok()?;
    vmstat.lines().find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// Whether the OOM killer killed the process `pid` or a process of the group it leads since
/// `since`. Waits up to half a second when the kernel counted a kill the log reader has not parsed
/// yet. Always false without [`watch_kernel_log`].
pub fn killed(pid: u32, since: Instant) -> bool {
    let Some(watch) = WATCH.get() else { return false };
    let mut state = watch.lock();
    if let Some(count) = kernel_count() {
        let deadline = Instant::now() + CATCH_UP;
        while state.baseline + state.seen < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Records were lost (overwritten before they were read): stop waiting for them.
                state.baseline = count - state.seen;
                break;
            }
            state = watch.parsed.wait_timeout(state, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
    }
    let since = since.checked_sub(SLACK).unwrap_or(since);
    state.kills.iter().any(|(at, kill)| *at >= since && (kill.pid == pid || kill.process_group == Some(pid)))
}

/// Fills in the OOM part of `usage`: the kills seen so far and the latest after `after`.
pub fn report(usage: &mut GuestUsage, after: u64) {
    let Some(watch) = WATCH.get() else { return };
    let state = watch.lock();
    usage.oom_watched = true;
    usage.oom_kills = state.seen;
    let newer: Vec<&OomKill> = state.kills.iter().map(|(_, kill)| kill).filter(|k| k.seq > after).collect();
    let skip = newer.len().saturating_sub(MAX_OOM_KILLS_LISTED);
    usage.recent_oom_kills = newer.into_iter().skip(skip).cloned().collect();
}

/// Makes `command`'s child start with an OOM score adjustment of 0 when the agent protected
/// itself (the adjustment is inherited across fork and exec).
pub fn unprotect_child(command: &mut Command) {
    if !PROTECTED.load(Ordering::SeqCst) {
        return;
    }
    // SAFETY: the closure only calls open(2), write(2) and close(2) on a constant path, all
    // async-signal-safe, in the forked child; it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                // Raising one's own score needs no privilege; a failure leaves it protected.
                libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
            Ok(())
        });
    }
}

/// Lets the log reader run before the processes it reads about (nice -10; best effort).
fn raise_priority() {
    // SAFETY: plain syscalls on the calling thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -10);
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_record_gives_pid_name_and_memory() {
        let record = "3,812,4519234,-;Out of memory: Killed process 231 (tail) total-vm:301012kB, \
                      anon-rss:297864kB, file-rss:4kB, shmem-rss:0kB, UID:0 pgtables:628kB oom_score_adj:0\n";
        assert_eq!(parse_kill(record), Some((231, "tail".to_owned(), 297_864)));
        let memcg = "3,9,1,-;Memory cgroup out of memory: Killed process 7 (my (odd) prog) total-vm:1kB, anon-rss:2kB";
        assert_eq!(parse_kill(memcg), Some((7, "my (odd) prog".to_owned(), 2)));
    }

    #[test]
    fn other_records_are_not_kills() {
        assert_eq!(parse_kill("6,1,1,-;virtio_net virtio0 eth0: renamed"), None);
        assert_eq!(parse_kill("4,2,2,-;tail invoked oom-killer: gfp_mask=0x140dca"), None);
        assert_eq!(parse_kill("3,3,3,-;Out of memory: Killed process x (y)"), None);
    }

    #[test]
    fn the_process_group_is_read_past_the_name() {
        let own = std::process::id();
        // SAFETY: plain syscall.
        let group = unsafe { libc::getpgid(0) } as u32;
        assert_eq!(process_group(own), Some(group));
        assert_eq!(process_group(u32::MAX), None);
    }

    #[test]
    fn without_a_watch_nothing_was_killed_and_nothing_is_reported() {
        assert!(!killed(std::process::id(), Instant::now()));
        let mut usage = GuestUsage::default();
        report(&mut usage, 0);
        assert!(!usage.oom_watched && usage.recent_oom_kills.is_empty());
    }
}
