use super::*;

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
