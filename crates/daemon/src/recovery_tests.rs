use std::process::{Child, Command};

use super::*;
use crate::backend::{OwnedProcess, OwnershipHook};
use crate::records::RecordError;

/// A `sleep 600` child killed when the test ends, even when it fails.
struct Sleeper(Child);

impl Sleeper {
    fn id(&self) -> u32 {
        self.0.id()
    }
    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
    fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.0.try_wait()
    }
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `sleep 600` child, returned once its exec is complete: `spawn` returns as soon as the
/// child's exec has begun, and for a moment after that its command line still reads empty.
fn sleeper() -> Sleeper {
    let child = Sleeper(Command::new("sleep").arg("600").spawn().expect("spawn sleep"));
    let cmdline = format!("/proc/{}/cmdline", child.id());
    for _ in 0..500 {
        if std::fs::read(&cmdline).is_ok_and(|line| line.starts_with(b"sleep")) {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    panic!("sleep's command line never appeared in {cmdline}");
}

#[test]
fn reap_kills_a_process_caught_in_its_exec() {
    // Recorded with its command line, reaped while it reads empty (as in the moment between a
    // spawn returning and the new image's arguments being mapped): same pid and start time, so
    // it is ours, and it is killed rather than waited for.
    let state = tempfile::tempdir().unwrap();
    let mut child = sleeper();
    {
        let store = RecordStore::open(state.path()).unwrap();
        store.record(&owned("vm-6", child.id(), Path::new("/nonexistent/a/b"))).unwrap();
    }
    let store = reopen(state.path());
    let record: Record = serde_json::from_slice(&std::fs::read(store.path_of("vm-6")).unwrap()).unwrap();
    let recorded = BASE64.decode(&record.cmdline).unwrap();
    assert!(recorded.starts_with(b"sleep"));
    let mut report = ReapReport::default();
    settle(&record, &recorded, Ok(Vec::new()), &mut report).unwrap();
    assert_eq!(report.killed, 1, "{report:?}");
    assert!(!child.wait().unwrap().success());
}

/// Reopens a state dir. Other tests of this process fork children, which hold a duplicate of the
/// lock file's descriptor until they exec (it is close-on-exec): retry briefly.
fn reopen(state: &Path) -> RecordStore {
    for _ in 0..100 {
        match RecordStore::open(state) {
            Err(RecordError::Locked(_)) => std::thread::sleep(std::time::Duration::from_millis(10)),
            other => return other.unwrap(),
        }
    }
    panic!("state dir still locked after 1 s");
}

fn owned(vm_id: &str, pid: u32, dir: &Path) -> OwnedProcess {
    OwnedProcess { vm_id: vm_id.into(), pid, runtime_dir: dir.to_owned() }
}

#[test]
fn reap_kills_recorded_process_and_removes_its_runtime_dir() {
    let state = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let vm_dir = runtime.path().join("vm-1");
    std::fs::create_dir(&vm_dir).unwrap();
    std::fs::write(vm_dir.join("qmp.sock"), b"").unwrap();
    let mut child = sleeper();
    {
        let store = RecordStore::open(state.path()).unwrap();
        store.spawned(&owned("vm-1", child.id(), &vm_dir));
        // The daemon "crashes": the store is dropped without forgetting.
    }
    let store = reopen(state.path());
    let report = reap_records(&store);
    assert_eq!(report.killed, 1, "{report:?}");
    assert_eq!(report.dirs_removed, 1);
    assert!(!vm_dir.exists());
    assert!(store.is_empty());
    let status = child.wait().unwrap();
    assert!(!status.success(), "sleep must have been killed");
}

#[test]
fn reap_leaves_a_pid_whose_cmdline_no_longer_matches() {
    let state = tempfile::tempdir().unwrap();
    let mut child = sleeper();
    {
        let store = RecordStore::open(state.path()).unwrap();
        store.record(&owned("vm-2", child.id(), Path::new("/nonexistent/a/b"))).unwrap();
        // Pretend the pid was reused by another program: rewrite the recorded cmdline.
        let path = store.path_of("vm-2");
        let mut record: Record = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        record.cmdline = BASE64.encode(b"qemu-system-x86_64\0-M\0microvm\0");
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    }
    let store = reopen(state.path());
    let report = reap_records(&store);
    assert_eq!((report.killed, report.mismatched), (0, 1), "{report:?}");
    assert!(child.try_wait().unwrap().is_none(), "the unrelated process must still run");
    assert!(store.is_empty(), "the stale record is dropped");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn reap_counts_a_process_that_is_already_gone() {
    let state = tempfile::tempdir().unwrap();
    let mut child = sleeper();
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    {
        let store = RecordStore::open(state.path()).unwrap();
        // Record by hand: the process is gone, so `record` could not read its cmdline.
        store.record(&owned("vm-3", pid, Path::new("/nonexistent/a/b"))).unwrap();
    }
    let report = reap_records(&reopen(state.path()));
    assert_eq!((report.killed, report.gone), (0, 1), "{report:?}");
}

#[test]
fn reap_refuses_to_remove_a_shallow_runtime_dir() {
    let state = tempfile::tempdir().unwrap();
    {
        let store = RecordStore::open(state.path()).unwrap();
        store.record(&owned("vm-4", u32::MAX - 1, Path::new("/tmp"))).unwrap();
    }
    let report = reap_records(&reopen(state.path()));
    assert_eq!(report.dirs_removed, 0);
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(matches!(&report.errors[0], ReapError::UnsafeRuntimeDir { dir } if dir == Path::new("/tmp")));
    assert!(Path::new("/tmp").exists());
}

#[test]
fn reap_kills_a_process_recorded_before_its_exec_by_start_time() {
    let state = tempfile::tempdir().unwrap();
    let mut child = sleeper();
    {
        let store = RecordStore::open(state.path()).unwrap();
        store.record(&owned("vm-5", child.id(), Path::new("/nonexistent/a/b"))).unwrap();
        // As if recorded between fork and exec: no command line, only the start time.
        let path = store.path_of("vm-5");
        let mut record: Record = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        record.cmdline = String::new();
        assert!(record.start_time.is_some());
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    }
    let report = reap_records(&reopen(state.path()));
    assert_eq!(report.killed, 1, "{report:?}");
    assert!(!child.wait().unwrap().success());
}

#[test]
fn reap_leaves_a_pid_whose_start_time_changed() {
    let state = tempfile::tempdir().unwrap();
    let mut child = sleeper();
    {
        let store = RecordStore::open(state.path()).unwrap();
        store.record(&owned("vm-6", child.id(), Path::new("/nonexistent/a/b"))).unwrap();
        let path = store.path_of("vm-6");
        let mut record: Record = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        record.start_time = record.start_time.map(|t| t + 1);
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    }
    let report = reap_records(&reopen(state.path()));
    assert_eq!((report.killed, report.mismatched), (0, 1), "{report:?}");
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn recover_reaps_records_then_sweeps_the_vms_of_booting_vms() {
    let state = tempfile::tempdir().unwrap();
    let vms = vms_dir(state.path());
    // A recorded VM whose runtime dir lies under `vms`, and one that was still booting.
    let recorded = vms.join("fp-1-1");
    let booting = vms.join("fp-1-2");
    std::fs::create_dir_all(&recorded).unwrap();
    std::fs::create_dir_all(&booting).unwrap();
    let mut child = sleeper();
    {
        let store = RecordStore::open(state.path()).unwrap();
        store.spawned(&owned("fp-1-1", child.id(), &recorded));
    }
    let store = Arc::new(reopen(state.path()));
    let recovery = recover(state.path(), Arc::clone(&store), &no_cgroups()).await.unwrap();
    assert_eq!((recovery.reaped.killed, recovery.reaped.dirs_removed), (1, 1), "{recovery:?}");
    assert_eq!(recovery.stale_vm_dirs, 1, "only the booting VM's dir was left for the sweep");
    assert!(!vms.exists() && store.is_empty());
    assert!(!child.wait().unwrap().success());
    let again = recover(state.path(), store, &no_cgroups()).await.unwrap();
    assert!(again.reaped.is_empty() && again.stale_vm_dirs == 0, "nothing left to recover: {again:?}");
}

fn no_cgroups() -> firepit_qemu::CgroupConfig {
    firepit_qemu::CgroupConfig { enabled: false, ..Default::default() }
}

#[tokio::test]
async fn recover_removes_the_cgroups_of_dead_firepit_processes_and_keeps_live_ones() {
    use firepit_cgroup::{Hierarchy, Limits, Parent};
    let parent_path = std::path::PathBuf::from(format!("firepit-recovery-test-{}", std::process::id()));
    let parent = match Hierarchy::detect().and_then(|h| Parent::open(&h, &parent_path)) {
        Ok(parent) => parent,
        Err(e) => return eprintln!("skipped: no writable cgroups here: {e}"),
    };
    let limits = Limits { cpus: 1, memory_bytes: 64 << 20, pids: 16 };
    // A crashed daemon's VM (pid above pid_max: never alive), one of a live process (us), and a
    // cgroup that is not a VM's.
    let crashed = parent.create("fp-1073741823-1", &limits).unwrap();
    let live = parent.create(&format!("fp-{}-7", std::process::id()), &limits).unwrap();
    let other = parent.create("not-a-vm", &limits).unwrap();
    let crashed_dirs: Vec<PathBuf> = crashed.paths().map(Path::to_path_buf).collect();
    std::mem::forget(crashed); // as a crash leaves it
    let state = tempfile::tempdir().unwrap();
    let store = Arc::new(RecordStore::open(state.path()).unwrap());
    let cgroups = firepit_qemu::CgroupConfig { parent: parent_path, ..Default::default() };
    let recovery = recover(state.path(), store, &cgroups).await.unwrap();
    assert_eq!(recovery.stale_cgroups, crashed_dirs.len(), "{recovery:?}");
    assert!(crashed_dirs.iter().all(|d| !d.exists()));
    assert!(live.paths().chain(other.paths()).all(Path::is_dir), "live and foreign cgroups stay");
    drop((live, other));
    parent.remove_if_empty();
}
