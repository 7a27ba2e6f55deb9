//! Where a file upload writes, so that an upload is visible only once complete.
//!
//! A regular file (or a new one) is written to a hidden temporary file in the same directory and
//! renamed over the path at the end ([`Temporary`]): readers see the old content or the new, never
//! a part, and an upload cut short leaves the old file as it was and no temporary file behind.
//! What cannot be replaced that way is written in place: devices, FIFOs, and files of the kernel's
//! own file systems (`/proc`, `/sys`, cgroups...), where a rename means nothing. An append goes to
//! the file in place and is cut back to the old length if it fails ([`Append`]).

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of the hidden names uploads are staged under (files and archive directories).
pub const STAGING_PREFIX: &str = ".firepit-upload-";

/// Most symbolic links followed to find what a path names (Linux's own limit).
const MAX_LINK_HOPS: usize = 40;

/// A fresh hidden name in `dir` for a staged upload (never an existing one: the caller creates it
/// exclusively).
pub fn staging_name(dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{STAGING_PREFIX}{}-{n}-{nanos:x}", std::process::id()))
}

/// What `path` names once its symbolic links are followed (a dangling link names its target,
/// which a write creates). The path itself when it is not a link.
pub fn follow_links(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINK_HOPS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current)?;
                current = match current.parent() {
                    Some(parent) => parent.join(target),
                    None => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// Whether `dir` is on one of the kernel's own file systems, whose files are interfaces (writing
/// `/proc/sys/...` sets a value), not data to replace.
pub fn is_kernel_fs(dir: &Path) -> bool {
    const KERNEL_FS: [libc::__fsword_t; 12] = [
        0x9fa0,     // proc
        0x6265_6572, // sysfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
        0x7363_6673, // securityfs
        0x6265_6570, // configfs
        0xcafe_4a11, // bpf
        0x1cd1,     // devpts
        0x6165_676c, // pstore
        0xde5e_81e4, // efivarfs
    ];
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else { return false };
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: statfs writes one struct statfs into the buffer we pass, valid for the call.
    if unsafe { libc::statfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statfs succeeded, so it filled the struct.
    let kind = unsafe { stat.assume_init() }.f_type;
    KERNEL_FS.contains(&kind)
}

/// A hidden file beside the one it will replace; removed unless [`commit`](Self::commit)ted.
pub struct Temporary {
    path: PathBuf,
    file: File,
    committed: bool,
}

impl Temporary {
    /// Creates a fresh hidden file in `dir` (mode 0600 until committed).
    pub fn create(dir: &Path) -> io::Result<Self> {
        loop {
            let path = staging_name(dir);
            match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(file) => return Ok(Self { path, file, committed: false }),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// The open file, to write into.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Gives the file `mode` and, if given, an owner, then renames it to `target`.
    pub fn commit(mut self, target: &Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
        if let Some((uid, gid)) = owner {
            // The agent runs as root in a guest; in-process (tests) it may not, and then the file
            // keeps its writer as owner, as a plain write would.
            match std::os::unix::fs::fchown(&self.file, Some(uid), Some(gid)) {
                Err(error) if error.kind() != io::ErrorKind::PermissionDenied => return Err(error),
                _ => {}
            }
        }
        // After the owner: chown clears set-id bits.
        self.file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        fs::rename(&self.path, target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if !self.committed
            && let Err(error) = fs::remove_file(&self.path)
            && error.kind() != io::ErrorKind::NotFound
        {
            eprintln!("firepit-agent: removing {}: {error}", self.path.display());
        }
    }
}

/// A file appended to in place; cut back to its old length unless [`keep`](Self::keep)t.
pub struct Append {
    file: File,
    old_len: u64,
    kept: bool,
}

impl Append {
    /// Opens (or creates, with `mode`) `path` for appending.
    pub fn open(path: &Path, mode: u32) -> io::Result<Self> {
        let file = OpenOptions::new().append(true).create(true).mode(mode & 0o7777).open(path)?;
        let old_len = file.metadata()?.len();
        Ok(Self { file, old_len, kept: false })
    }

    /// The open file, to write into.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The appended bytes stay.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Append {
    fn drop(&mut self) {
        if !self.kept
            && self.file.metadata().is_ok_and(|meta| meta.is_file())
            && let Err(error) = self.file.set_len(self.old_len)
        {
            eprintln!("firepit-agent: cutting a failed append back: {error}");
        }
    }
}

/// Mode and owner of an existing regular file, to keep them across a replacement.
pub fn kept_attributes(meta: &fs::Metadata) -> (u32, (u32, u32)) {
    (meta.mode() & 0o7777, (meta.uid(), meta.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn staged(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(STAGING_PREFIX))
            .collect()
    }

    #[test]
    fn a_dropped_temporary_leaves_nothing_and_a_committed_one_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        fs::write(&target, "old").unwrap();
        let mut temporary = Temporary::create(dir.path()).unwrap();
        temporary.file().write_all(b"half").unwrap();
        drop(temporary);
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        assert!(staged(dir.path()).is_empty());
        let mut temporary = Temporary::create(dir.path()).unwrap();
        temporary.file().write_all(b"new").unwrap();
        temporary.commit(&target, 0o640, None).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o640);
        assert!(staged(dir.path()).is_empty());
    }

    #[test]
    fn an_append_that_is_not_kept_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("log");
        fs::write(&target, "line 1\n").unwrap();
        let mut append = Append::open(&target, 0o644).unwrap();
        append.file().write_all(b"partial").unwrap();
        drop(append);
        assert_eq!(fs::read_to_string(&target).unwrap(), "line 1\n");
        let mut append = Append::open(&target, 0o644).unwrap();
        append.file().write_all(b"line 2\n").unwrap();
        append.keep();
        assert_eq!(fs::read_to_string(&target).unwrap(), "line 1\nline 2\n");
    }

    #[test]
    fn links_are_followed_to_what_they_name_even_when_dangling() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("link", dir.path().join("link2")).unwrap();
        assert_eq!(follow_links(&dir.path().join("link2")).unwrap(), dir.path().join("real"));
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        assert!(follow_links(&dir.path().join("loop")).is_err());
        assert!(is_kernel_fs(Path::new("/proc/sys")));
        assert!(!is_kernel_fs(dir.path()));
    }
}
