//! Where the daemon listens unless told otherwise: the one place the daemon, the CLI and the
//! client agree on.

use std::path::PathBuf;

/// `$XDG_RUNTIME_DIR/firepit`, else `/run/firepit` for root, else `<tmp>/firepit-<uid>`.
pub fn default_runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("firepit");
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if uid == 0 { PathBuf::from("/run/firepit") } else { std::env::temp_dir().join(format!("firepit-{uid}")) }
}

/// `<runtime dir>/firepit.sock`: where the daemon listens and the CLI connects by default.
pub fn default_socket_path() -> PathBuf {
    default_runtime_dir().join("firepit.sock")
}
