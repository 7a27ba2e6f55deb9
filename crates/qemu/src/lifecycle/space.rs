//! Room for a saved VM: what saving it may take, and what the file system has free.
//!
//! The estimate is an upper bound, so a save that passes the check does not run out of room half
//! way (one that does anyway, because something else filled the disk meanwhile, fails the same
//! way and leaves the VM running): the stream holds at most the guest pages that are not zero,
//! which are either in QEMU's resident memory or, for a snapshot clone, in its template's memory
//! file; never more than the guest's RAM. Disk layers are copied whole.

use std::path::Path;

use crate::argv::GuestMemory;
use crate::lifecycle_error::LifecycleError;

/// Device state and headers beside the RAM pages (measured: ≈60 KiB; generous).
const STATE_MARGIN: u64 = 4 << 20;

/// What saving a VM of `memory_mb` MiB, QEMU process `pid`, RAM in `memory`, with `disk_bytes` of
/// disk layers may take.
pub(crate) fn estimate(pid: u32, memory_mb: u64, memory: &GuestMemory, disk_bytes: u64) -> u64 {
    let resident =
        crate::memory_charge::process_memory_kib(pid).map(|(rss, _)| rss * 1024).unwrap_or(u64::MAX);
    let template = match memory {
        GuestMemory::File { path, shared: false, .. } => allocated_bytes(path),
        _ => 0,
    };
    let ram = resident.saturating_add(template).min(memory_mb << 20);
    ram + STATE_MARGIN + disk_bytes
}

/// Bytes the file at `path` occupies (its allocated blocks: a sparse file's holes are free).
pub(crate) fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|meta| meta.blocks() * 512).unwrap_or(0)
}

/// Bytes an unprivileged writer may still write on the file system of `dir`.
pub(crate) fn available_bytes(dir: &Path) -> Result<u64, LifecycleError> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| LifecycleError::io(format!("checking free space in {}", dir.display()), e.into()))?;
    // SAFETY: an all-zero statvfs is a valid value for statvfs to overwrite.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        let error = std::io::Error::last_os_error();
        return Err(LifecycleError::io(format!("checking free space in {}", dir.display()), error));
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Fails with [`LifecycleError::InsufficientStorage`] unless `dir` has room for `needed` bytes.
pub(crate) fn check(dir: &Path, needed: u64) -> Result<(), LifecycleError> {
    let available = available_bytes(dir)?;
    if available < needed {
        return Err(LifecycleError::InsufficientStorage {
            dir: dir.to_path_buf(),
            needed_bytes: needed,
            available_bytes: available,
        });
    }
    Ok(())
}

/// Whether `error` (or what caused it) is a file system that ran full.
pub(crate) fn ran_full(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(libc::EDQUOT))
        {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_little_room_is_refused_with_both_numbers_and_a_full_disk_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).unwrap();
        assert!(free > 0);
        check(dir.path(), 1).unwrap();
        let err = check(dir.path(), free.saturating_mul(4).max(1 << 50)).unwrap_err();
        let LifecycleError::InsufficientStorage { needed_bytes, available_bytes, .. } = &err else {
            panic!("{err}")
        };
        assert!(needed_bytes > available_bytes);
        let full =
            LifecycleError::io("writing state.bin", std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(ran_full(&full));
        assert!(!ran_full(&LifecycleError::NoForks));
    }

    #[test]
    fn the_estimate_is_bounded_by_the_guest_ram_plus_the_disk() {
        let me = std::process::id();
        let estimate = estimate(me, 64, &GuestMemory::Anonymous, 10);
        assert!(estimate <= (64 << 20) + STATE_MARGIN + 10, "{estimate}");
        assert!(estimate > STATE_MARGIN + 10, "this process has resident memory");
    }
}
