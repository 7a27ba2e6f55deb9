//! Running QEMU as an unprivileged user (`ProviderConfig::run_as`).
//!
//! The provider (usually the daemon, as root) keeps its own rights; only the QEMU children drop to
//! the configured user. For that user to reach its sockets, the runtime directory is 0711 (pass
//! through, no listing), each VM directory is owned by that user (0700), and the console and QMP
//! sockets we bind are given to it. Every directory above the runtime directory must be searchable
//! by it, which is checked once, here, rather than discovered at the first boot.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config_error::ConfigError;
use crate::process::Credentials;

/// Resolves `spec` (a user name, or `uid[:gid]`) and checks that this process may switch to it.
pub(crate) fn resolve(spec: &str) -> Result<Credentials, ConfigError> {
    let spec = spec.trim();
    let credentials = match spec.split_once(':') {
        _ if spec.is_empty() => return Err(invalid(spec, "is empty")),
        Some((uid, gid)) => Credentials { uid: number(spec, uid)?, gid: number(spec, gid)? },
        None if spec.bytes().all(|b| b.is_ascii_digit()) => {
            let uid = number(spec, spec)?;
            Credentials { uid, gid: uid }
        }
        None => lookup_user(spec)?,
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(ConfigError::RunAsNeedsRoot { spec: spec.to_string() });
    }
    if credentials.uid == 0 {
        return Err(ConfigError::RunAsRoot { spec: spec.to_string() });
    }
    Ok(credentials)
}

/// Makes every existing directory above `runtime_dir` searchable by `user`: a directory this
/// process owns gets the search bit for others (`o+x`: pass through, never list); one owned by
/// someone else that `user` cannot search is an error naming it.
pub(crate) fn make_reachable(runtime_dir: &Path, user: Credentials) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for ancestor in runtime_dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else { continue };
        let searchable = if meta.uid() == user.uid {
            meta.mode() & 0o100 != 0
        } else if meta.gid() == user.gid {
            meta.mode() & 0o010 != 0
        } else {
            meta.mode() & 0o001 != 0
        };
        if searchable {
            continue;
        }
        if meta.uid() == me {
            let mode = (meta.mode() & 0o7777) | 0o001;
            tracing::info!(dir = %ancestor.display(), mode = format!("{mode:o}"), "run_as: letting QEMU's user pass through");
            std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(mode))
                .map_err(|source| ConfigError::RunAsChmod { dir: ancestor.to_path_buf(), source })?;
            continue;
        }
        return Err(ConfigError::RunAsUnreachable {
            uid: user.uid,
            runtime_dir: runtime_dir.to_path_buf(),
            blocking: ancestor.to_path_buf(),
            mode: meta.mode() & 0o777,
            owner: meta.uid(),
        });
    }
    Ok(())
}

fn number(spec: &str, text: &str) -> Result<u32, ConfigError> {
    text.parse().map_err(|_| invalid(spec, "must be a user name or uid[:gid]"))
}

fn invalid(spec: &str, problem: &'static str) -> ConfigError {
    ConfigError::RunAsInvalid { spec: spec.to_string(), problem }
}

/// The uid and primary gid of a user name, from the password database.
fn lookup_user(name: &str) -> Result<Credentials, ConfigError> {
    let c_name = CString::new(name).map_err(|_| invalid(name, "contains a NUL byte"))?;
    let mut buffer = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwnam_r fills it in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and the buffer length is its real length.
    let status = unsafe {
        libc::getpwnam_r(c_name.as_ptr(), &mut entry, buffer.as_mut_ptr().cast(), buffer.len(), &mut found)
    };
    if status != 0 || found.is_null() {
        return Err(ConfigError::RunAsUnknownUser { spec: name.to_string() });
    }
    Ok(Credentials { uid: entry.pw_uid, gid: entry.pw_gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn numbers_and_names_resolve_and_root_or_garbage_is_refused() {
        if !is_root() {
            assert!(resolve("65534").unwrap_err().to_string().contains("root"));
            return;
        }
        assert_eq!(resolve("65534").unwrap(), Credentials { uid: 65534, gid: 65534 });
        assert_eq!(resolve("1000:100").unwrap(), Credentials { uid: 1000, gid: 100 });
        assert_eq!(resolve("nobody").unwrap().uid, 65534);
        for (bad, why) in [("root", "is root"), ("0", "is root"), ("x:y", "uid[:gid]"), ("", "empty")] {
            let err = resolve(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(resolve("no-such-user-here").unwrap_err().to_string().contains("not a known user"));
    }

    #[test]
    fn parents_we_own_become_searchable_and_others_are_reported_by_name() {
        use std::os::unix::fs::PermissionsExt;
        if !is_root() {
            return; // run_as needs root; `resolve` refuses it earlier.
        }
        let root = tempfile::tempdir().unwrap();
        let ours = root.path().join("ours");
        std::fs::create_dir(&ours).unwrap();
        std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = Credentials { uid: 65534, gid: 65534 };
        make_reachable(&ours.join("vms"), nobody).unwrap();
        assert_eq!(std::fs::metadata(&ours).unwrap().permissions().mode() & 0o777, 0o701);
        // Owned by another user and closed to nobody: reported, not changed.
        let theirs = root.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(12345), Some(12345)).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = make_reachable(&theirs.join("vms"), nobody).unwrap_err().to_string();
        assert!(err.contains("theirs") && err.contains("not searchable"), "{err}");
        assert_eq!(std::fs::metadata(&theirs).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
