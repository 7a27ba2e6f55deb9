//! Small file-system helpers of the builder: atomic writes, the build lock, hashes and stamps.

use std::fs::{File, Metadata, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::ImageError;

const APT_LISTS: &str = "/var/lib/apt/lists";

/// Lowercase hex sha256 of the concatenated `parts`.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// `"<size> <mtime ns> <inode>"`: changes whenever the file is rewritten.
pub fn stamp(meta: &Metadata) -> String {
    format!("{} {}.{:09} {}", meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino())
}

/// Hash of the names and stamps of apt's package lists; `None` when unreadable. `apt-get update`
/// changes it, which makes the next build ask apt again.
pub fn apt_lists_stamp() -> Option<String> {
    let mut entries: Vec<String> = std::fs::read_dir(APT_LISTS)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            Some(format!("{} {}", entry.file_name().to_string_lossy(), stamp(&entry.metadata().ok()?)))
        })
        .collect();
    entries.sort();
    Some(sha256_hex(&[entries.join("\n").as_bytes()]))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(ImageError::io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(ImageError::io("renaming into place", path))
}

/// Holds an exclusive `flock` on `<dir>/.build.lock` until dropped (blocks while another build runs).
pub fn lock_dir(dir: &Path) -> Result<File, ImageError> {
    lock_file(&dir.join(".build.lock"))
}

/// Holds an exclusive `flock` on `path` (created if missing) until dropped.
pub fn lock_file(path: &Path) -> Result<File, ImageError> {
    let path = path.to_path_buf();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(ImageError::io("opening", &path))?;
    loop {
        // SAFETY: flock on a file descriptor we own; the lock is released when `file` is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(ImageError::io("locking", &path)(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_changes_when_a_file_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent");
        std::fs::write(&path, b"one").unwrap();
        let first = stamp(&std::fs::metadata(&path).unwrap());
        write_atomic(&path, b"two!").unwrap();
        assert_ne!(first, stamp(&std::fs::metadata(&path).unwrap()));
        assert_eq!(std::fs::read(&path).unwrap(), b"two!");
    }

    #[test]
    fn sha256_of_parts_is_sha256_of_their_concatenation() {
        assert_eq!(sha256_hex(&[b"ab", b"c"]), sha256_hex(&[b"abc"]));
        assert_eq!(sha256_hex(&[b"abc"]), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
