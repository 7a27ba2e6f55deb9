//! The agent's tar unpacker on arbitrary bytes (what a client's `PUT /archive` body reaches in the
//! guest), with small limits so deep and numerous entries are reached quickly. No panic is
//! allowed; a refusal must leave the destination as it was. Property tests of the same code with
//! structured archives: `crates/agent/tests/unpack_props.rs`.
#![no_main]

use firepit_agent::{UnpackLimits, unpack_archive};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(root) = tempfile::tempdir() else { return };
    let dest = root.path().join("dest");
    if std::fs::create_dir(&dest).is_err() || std::fs::write(dest.join("keep"), "before").is_err() {
        return;
    }
    let limits = UnpackLimits { max_entries: 64, max_depth: 8, max_header_bytes: 64 * 1024 };
    if unpack_archive(data, &dest, &limits, &|| false).is_err() {
        let names: Vec<_> = std::fs::read_dir(&dest).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert_eq!(names, ["keep"], "a refused archive left something");
        assert_eq!(std::fs::read_to_string(dest.join("keep")).ok().as_deref(), Some("before"));
    }
    let outside: Vec<_> = std::fs::read_dir(root.path()).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert_eq!(outside, ["dest"], "something was written beside the destination");
});
