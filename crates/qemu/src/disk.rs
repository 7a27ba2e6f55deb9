//! Root disks: the read-only base a VM boots from, and the private copy-on-write overlay each VM
//! writes to.
//!
//! # Why
//! A pool hands the same disk image to many VMs, one after another and side by side. Each VM must
//! see the base as it is and write only to itself: what one lease writes, the next must never see,
//! and the base must never change. So every VM gets a qcow2 overlay whose backing file is the base
//! (`qemu-img create -f qcow2 -b BASE -F raw|qcow2`), in the VM's private runtime directory: it is
//! removed with that directory when the VM is destroyed. QEMU opens a backing file read-only.
//!
//! # How it fits
//! A shape whose [`VmSpec`](crate::VmSpec) has a [`RootDisk`](crate::RootDisk) (see
//! [`ImagePaths::with_disk`](crate::ImagePaths::with_disk)) boots firepit's kernel and initramfs
//! with the overlay as `/dev/vda` (virtio-blk) and
//! `firepit.root=/dev/vda` on the kernel command line; the initramfs mounts it, starts the agent
//! inside it and hands over to the disk's init (see `firepit_image::initramfs`). For snapshot
//! fill, the template's own overlay is kept in the template directory when the template is saved
//! and becomes the read-only base of every clone's overlay (see `snapshot`), so a clone's disk is
//! the template's disk at save time, matching the guest memory it restores.

use std::path::Path;
use std::time::Duration;

use crate::process::Credentials;
use crate::root_disk::{DiskError, DiskFormat};

/// The overlay's file name in a VM's runtime directory (and the template's disk in a template
/// directory).
pub(crate) const OVERLAY_FILE: &str = "disk.qcow2";

/// How long `qemu-img create` may take (it writes a few KiB; the deadline catches a hung one).
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(30);

/// What identifies a base file's content cheaply: path, size, modification time and inode. A
/// snapshot template records it, so a base replaced or rewritten makes the template stale.
pub(crate) fn base_stamp(base: &Path) -> Result<String, DiskError> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(base).map_err(|source| DiskError::Base { base: base.to_path_buf(), source })?;
    Ok(format!("{} {} {}.{:09} {}", base.display(), meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()))
}

/// Creates `overlay`, a qcow2 whose backing file is `base` (in `format`), owned by `owner` when
/// QEMU runs as another user.
pub(crate) async fn create_overlay(
    qemu_img: &Path,
    base: &Path,
    format: DiskFormat,
    overlay: &Path,
    owner: Option<Credentials>,
) -> Result<(), DiskError> {
    let args = ["create".as_ref(), "-q".as_ref(), "-f".as_ref(), "qcow2".as_ref(), "-F".as_ref()];
    let args: Vec<&std::ffi::OsStr> = args
        .into_iter()
        .chain([format.as_str().as_ref(), "-b".as_ref(), base.as_os_str(), overlay.as_os_str()])
        .collect();
    if let Err((status, stderr)) = run_tool(qemu_img, &args, &[0], QEMU_IMG_TIMEOUT).await? {
        return Err(DiskError::Overlay {
            overlay: overlay.to_path_buf(),
            base: base.to_path_buf(),
            status,
            stderr,
        });
    }
    if let Some(owner) = owner {
        std::os::unix::fs::chown(overlay, Some(owner.uid), Some(owner.gid))
            .map_err(|source| DiskError::Run { binary: overlay.to_path_buf(), source })?;
    }
    Ok(())
}

/// Runs the tool `binary` with `args` (at most `timeout`): `Ok(Ok(stdout))` on an accepted exit code, `Ok(Err((status,
/// stderr)))` on another, `Err` when it cannot run (not installed: named with its package).
pub(crate) async fn run_tool(
    binary: &Path,
    args: &[&std::ffi::OsStr],
    accepted: &[i32],
    timeout: Duration,
) -> Result<Result<String, (String, String)>, DiskError> {
    let child = tokio::process::Command::new(binary)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound if binary.ends_with("qemu-img") => {
                DiskError::QemuImgNotFound { binary: binary.to_path_buf() }
            }
            std::io::ErrorKind::NotFound => DiskError::E2fsprogsNotFound { binary: binary.to_path_buf() },
            _ => DiskError::Run { binary: binary.to_path_buf(), source },
        })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(source)) => return Err(DiskError::Run { binary: binary.to_path_buf(), source }),
        Err(_) => return Ok(Err((format!("no answer within {timeout:?}"), String::new()))),
    };
    let tail = |bytes: &[u8]| crate::console::tail_lines(bytes, 5);
    match output.status.code() {
        Some(code) if accepted.contains(&code) => {
            Ok(Ok(String::from_utf8_lossy(&output.stdout).into_owned()))
        }
        _ => Ok(Err((output.status.to_string(), tail(&output.stderr)))),
    }
}

/// Makes `path` read-only (0400): a template's disk, once saved, is the base of its clones.
pub(crate) fn freeze(path: &Path) -> Result<(), DiskError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400))
        .map_err(|source| DiskError::Base { base: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_changes_when_the_base_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, b"one").unwrap();
        let first = base_stamp(&base).unwrap();
        std::fs::write(&base, b"two!").unwrap();
        assert_ne!(base_stamp(&base).unwrap(), first);
        let missing = base_stamp(&dir.path().join("absent")).unwrap_err().to_string();
        assert!(missing.contains("absent"), "{missing}");
    }

    #[tokio::test]
    async fn an_overlay_is_a_qcow2_backed_by_the_base_and_a_missing_base_fails() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
        let overlay = dir.path().join(OVERLAY_FILE);
        create_overlay(Path::new("qemu-img"), &base, DiskFormat::Raw, &overlay, None).await.unwrap();
        let header = std::fs::read(&overlay).unwrap();
        assert!(header.starts_with(b"QFI\xfb"));
        let named = base.to_string_lossy();
        assert!(header.windows(named.len()).any(|w| w == named.as_bytes()), "backing file recorded");
        let missing = dir.path().join("absent.img");
        let err =
            create_overlay(Path::new("qemu-img"), &missing, DiskFormat::Raw, &dir.path().join("o2"), None)
                .await
                .unwrap_err();
        assert!(matches!(err, DiskError::Overlay { .. }), "{err}");
        let err = create_overlay(Path::new("/nonexistent/qemu-img"), &base, DiskFormat::Raw, &overlay, None)
            .await
            .unwrap_err();
        assert!(matches!(err, DiskError::QemuImgNotFound { .. }), "{err}");
    }
}
