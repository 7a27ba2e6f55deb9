use std::process::{Child, Command};

use super::*;

fn sleeper() -> Child {
    Command::new("sleep").arg("600").spawn().expect("spawn sleep")
}

fn owned(vm_id: &str, pid: u32, dir: &Path) -> OwnedProcess {
    OwnedProcess { vm_id: vm_id.into(), pid, runtime_dir: dir.to_owned() }
}

#[test]
fn record_then_forget_leaves_no_record() {
    let state = tempfile::tempdir().unwrap();
    let store = RecordStore::open(state.path()).unwrap();
    store.record(&owned("vm/1", std::process::id(), Path::new("/nonexistent/x/y"))).unwrap();
    assert_eq!(store.len(), 1);
    store.forget("vm/1").unwrap();
    assert!(store.is_empty());
    store.forget("vm/1").unwrap(); // idempotent
}

#[test]
fn second_store_on_same_state_dir_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let _first = RecordStore::open(state.path()).unwrap();
    assert!(matches!(RecordStore::open(state.path()), Err(RecordError::Locked(_))));
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
    let store = RecordStore::open(state.path()).unwrap();
    let report = store.reap_previous();
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
    let store = RecordStore::open(state.path()).unwrap();
    let report = store.reap_previous();
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
    let report = RecordStore::open(state.path()).unwrap().reap_previous();
    assert_eq!((report.killed, report.gone), (0, 1), "{report:?}");
}

#[test]
fn reap_refuses_to_remove_a_shallow_runtime_dir() {
    let state = tempfile::tempdir().unwrap();
    {
        let store = RecordStore::open(state.path()).unwrap();
        store.record(&owned("vm-4", u32::MAX - 1, Path::new("/tmp"))).unwrap();
    }
    let report = RecordStore::open(state.path()).unwrap().reap_previous();
    assert_eq!(report.dirs_removed, 0);
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(Path::new("/tmp").exists());
}
