//! The crate on this host's real cgroups (v1 or v2, whatever is mounted): a child joins its
//! cgroup before exec, is limited and measured there, and every directory goes away after it.
//! Skipped (with a line saying so) where cgroups are not writable: a non-root run, a container.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use firepit_cgroup::{Cgroup, Hierarchy, Limits, Parent, Version};

/// A parent of this test process's own (below its own cgroup), or `None` when cgroups cannot be
/// written here.
fn parent(label: &str) -> Option<Parent> {
    let hierarchy = match Hierarchy::detect() {
        Ok(hierarchy) => hierarchy,
        Err(e) => {
            eprintln!("skipped: {e}");
            return None;
        }
    };
    match Parent::open(&hierarchy, Path::new(&format!("firepit-test-{}-{label}", std::process::id()))) {
        Ok(parent) => Some(parent),
        Err(e) if e.is_not_permitted() => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn spawn_in(cgroup: &Cgroup, script: &str) -> std::process::Child {
    let joiner = cgroup.joiner().unwrap();
    let mut command = std::process::Command::new("sh");
    command.args(["-c", script]);
    // SAFETY: `join_self` only writes to descriptors opened before the fork.
    unsafe { command.pre_exec(move || joiner.join_self()) };
    command.spawn().unwrap()
}

fn cgroup_lines(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap()
}

#[test]
fn a_child_joins_before_exec_is_measured_limited_and_its_cgroup_removed_after_it() {
    let Some(parent) = parent("join") else { return };
    let limits = Limits { cpus: 1, memory_bytes: 64 << 20, pids: 16 };
    let cgroup = parent.create("vm-1", &limits).unwrap();
    let mut child = spawn_in(&cgroup, "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 0.2");
    let lines = cgroup_lines(child.id());
    for path in cgroup.paths() {
        let relative = path.components().rev().take(2).collect::<Vec<_>>();
        let tail: PathBuf = relative.into_iter().rev().collect();
        assert!(lines.contains(&*tail.to_string_lossy()), "{} not in\n{lines}", tail.display());
    }
    assert!(child.wait().unwrap().success());
    let usage = cgroup.usage().unwrap();
    if let Some(cpu) = usage.cpu {
        assert!(cpu > Duration::from_millis(10), "the loop's CPU time is the cgroup's: {usage:?}");
    }
    let memory_limit = match cgroup.version() {
        Version::V1 => "memory.limit_in_bytes",
        Version::V2 => "memory.max",
    };
    let limit_set = cgroup.paths().any(|p| {
        std::fs::read_to_string(p.join(memory_limit)).is_ok_and(|v| v.trim() == (64u64 << 20).to_string())
    });
    assert!(limit_set, "the memory limit is written");
    assert!(cgroup.memory_peak().unwrap().unwrap_or(1) > 0);
    let dirs: Vec<PathBuf> = cgroup.paths().map(Path::to_path_buf).collect();
    drop(cgroup);
    assert!(dirs.iter().all(|d| !d.exists()), "removed with its handle once the child is gone");
    parent.remove_if_empty();
    assert!(parent.paths().all(|p| !p.exists()), "an empty parent is removed");
}

#[test]
fn the_pids_limit_holds_and_a_busy_cgroup_survives_the_sweep() {
    let Some(parent) = parent("pids") else { return };
    let cgroup = parent.create("vm-2", &Limits { cpus: 1, memory_bytes: 64 << 20, pids: 3 }).unwrap();
    // sh, a sleep, and the third fork refused: `sleep` of the last subshell never starts.
    let mut child = spawn_in(&cgroup, "sleep 5 & sleep 5 & (sleep 5) 2>/dev/null & wait");
    std::thread::sleep(Duration::from_millis(300));
    let sweep = parent.remove_stale(|name| name == "vm-2");
    assert_eq!(sweep.removed, 0, "a cgroup with processes is never removed");
    assert!(!sweep.busy.is_empty());
    let procs: usize = cgroup
        .paths()
        .map(|p| std::fs::read_to_string(p.join("cgroup.procs")).unwrap().lines().count())
        .max()
        .unwrap();
    assert!(procs <= 3, "{procs} processes in a cgroup of at most 3");
    child.kill().unwrap();
    child.wait().unwrap();
    // The sleeps it started die on their own; wait for them to leave.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cgroup.remove().is_err() {
        assert!(std::time::Instant::now() < deadline, "the sleeps left the cgroup");
        std::thread::sleep(Duration::from_millis(100));
    }
    parent.remove_if_empty();
}

#[test]
fn a_leftover_of_a_dead_owner_is_swept_and_creating_it_costs_little() {
    let Some(parent) = parent("sweep") else { return };
    let limits = Limits { cpus: 2, memory_bytes: 128 << 20, pids: 32 };
    let started = std::time::Instant::now();
    let cgroups: Vec<Cgroup> = (0..20).map(|i| parent.create(&format!("vm-{i}"), &limits).unwrap()).collect();
    let per_cgroup = started.elapsed() / 20;
    eprintln!("create + limits: {per_cgroup:?} per cgroup ({:?})", parent.version());
    // As a crash leaves them: the handles gone without removing.
    cgroups.into_iter().for_each(std::mem::forget);
    let sweep = parent.remove_stale(|name| name.starts_with("vm-"));
    assert_eq!(sweep.removed, 20 * parent.paths().count(), "{sweep:?}");
    parent.remove_if_empty();
    assert!(parent.paths().all(|p| !p.exists()));
}
