//! Saving a running VM: pause (its QEMU exits after) and snapshot (it runs on after), and the
//! first step of a fork.
//!
//! In order, each step undone if a later one fails, so the VM keeps running and nothing
//! half-written is left under a name anyone loads:
//! 1. the VM's disk chain is read and the room the state may take is checked
//!    ([`LifecycleError::InsufficientStorage`]; nothing is written, the VM never stops);
//! 2. the vCPUs stop; the migration stream goes to `state.bin` in a private scratch directory
//!    beside the target (`firepit-<pid>-s<n>`, swept as a dead process's leftover by
//!    [`SavedVm::sweep`](crate::SavedVm::sweep)); the disk layers are copied next to it while
//!    QEMU holds them flushed and idle; the manifest is written last;
//! 3. the scratch directory is renamed to the target in one step;
//! 4. QEMU exits (pause) or the vCPUs run again (snapshot, fork: stopped only while the state was
//!    written).
//!
//! Durability: files are not `fsync`ed. A killed daemon loses nothing (the kernel has the data);
//! after a crash of the host itself a saved VM may be damaged, and its checksums then refuse it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::layers::{self, ChainImage};
use super::manifest::{self, FileSum, SavedKind, SavedManifest, SavedSpec};
use super::{space, stream};
use crate::error::QemuError;
use crate::launch::Launcher;
use crate::lifecycle_error::LifecycleError;
use crate::vm::QemuVm;

static NEXT_SCRATCH: AtomicU64 = AtomicU64::new(1);

/// What the VM does once its state is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterSave {
    /// Its QEMU exits (a pause).
    Exit,
    /// Its vCPUs run again (a snapshot, a fork).
    Run,
}

/// Saves `vm` into `target` (a directory that must not exist; its parent is created), then exits
/// or runs on as `after` says. Returns the manifest written.
pub(crate) async fn save(
    launcher: &Launcher,
    vm: &QemuVm,
    target: &Path,
    kind: SavedKind,
    after: AfterSave,
) -> Result<SavedManifest, QemuError> {
    let entered = tokio::time::Instant::now();
    if vm.exit_info().is_some() {
        return Err(LifecycleError::NotRunning { vm: vm.id().to_owned() }.into());
    }
    vm.awake().await?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    private_dir(parent)?;
    if target.exists() {
        let error = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
        return Err(LifecycleError::io(format!("saving a VM into {}", target.display()), error).into());
    }
    let layers = disk_layers(launcher, vm).await?;
    let disk_bytes = layers.iter().map(|layer| space::allocated_bytes(&layer.filename)).sum();
    space::check(parent, space::estimate(vm.pid(), vm.spec.memory_mb, &vm.memory, disk_bytes))?;
    let scratch = parent.join(format!(
        "firepit-{}-s{}",
        std::process::id(),
        NEXT_SCRATCH.fetch_add(1, Ordering::Relaxed)
    ));
    private_dir(&scratch)?;
    let started = tokio::time::Instant::now();
    tracing::debug!(vm = %vm.id(), checked = ?entered.elapsed(), "saving the VM");
    vm.qmp.stop().await?;
    match write(launcher, vm, &layers, &scratch, kind)
        .await
        .and_then(|manifest| publish(&scratch, target).map(|()| manifest))
    {
        Ok(manifest) => {
            tracing::info!(vm = %vm.id(), dir = %target.display(), ?kind, written = ?started.elapsed(),
                state_mib = manifest.state.bytes >> 20, disk_layers = manifest.disk.len(), "VM saved");
            match after {
                AfterSave::Exit => {
                    let exiting = tokio::time::Instant::now();
                    exit(vm).await;
                    tracing::debug!(vm = %vm.id(), took = ?exiting.elapsed(), "saved VM's QEMU exited");
                }
                AfterSave::Run => {
                    if let Err(e) = vm.qmp.cont().await {
                        tracing::warn!(vm = %vm.id(), error = %e, "the VM did not run again after its snapshot");
                    }
                }
            }
            Ok(manifest)
        }
        Err(error) => {
            remove_dir(&scratch);
            if let Err(e) = vm.qmp.cont().await {
                tracing::warn!(vm = %vm.id(), error = %e, "the VM did not run again after a failed save");
            }
            tracing::warn!(vm = %vm.id(), dir = %target.display(), error = %error, "saving the VM failed; it runs on");
            if space::ran_full(&error) {
                let needed = space::estimate(vm.pid(), vm.spec.memory_mb, &vm.memory, disk_bytes);
                let available = space::available_bytes(parent).unwrap_or(0);
                let dir = parent.to_path_buf();
                return Err(LifecycleError::InsufficientStorage {
                    dir,
                    needed_bytes: needed,
                    available_bytes: available,
                }
                .into());
            }
            Err(error)
        }
    }
}

/// The layers of `vm`'s disk above its image's base, top first (none without a root disk).
pub(crate) async fn disk_layers(launcher: &Launcher, vm: &QemuVm) -> Result<Vec<ChainImage>, QemuError> {
    let Some(base) = &vm.spec.image.disk else { return Ok(Vec::new()) };
    let top = vm.runtime_dir().join(crate::disk::OVERLAY_FILE);
    let chain = layers::chain(&launcher.config.qemu_img_binary, &top).await?;
    Ok(layers::above_base(&chain, &base.base).to_vec())
}

/// Writes the stopped `vm`'s stream, disk layers and manifest into `scratch`.
async fn write(
    launcher: &Launcher,
    vm: &QemuVm,
    layers: &[ChainImage],
    scratch: &Path,
    kind: SavedKind,
) -> Result<SavedManifest, QemuError> {
    let deadline = stream::deadline(vm.spec.memory_mb);
    let started = tokio::time::Instant::now();
    let (bytes, sha256) = stream::save(&vm.qmp, &scratch.join(manifest::STATE_FILE), deadline).await?;
    tracing::debug!(vm = %vm.id(), took = ?started.elapsed(), mib = bytes >> 20, "stream written");
    let state = FileSum { file: manifest::STATE_FILE.into(), bytes, sha256 };
    let (disk, base_stamp) = match &vm.spec.image.disk {
        Some(base) => {
            let sums = layers::save(&launcher.config.qemu_img_binary, layers, base, scratch).await?;
            (sums, Some(crate::disk::base_stamp(&base.base)?))
        }
        None => (Vec::new(), None),
    };
    let spec = saved_spec(vm);
    let ram_block = vm.memory.block();
    let manifest = SavedManifest {
        format: manifest::FORMAT,
        kind,
        vm_id: vm.id().to_owned(),
        cmdline_sha256: super::relaunch::cmdline_sha256(launcher, &spec, ram_block).await?,
        spec,
        ram_block,
        qemu_version: launcher.caps.version.clone(),
        state,
        disk,
        base_stamp,
        network: vm.network.as_ref().map(firepit_net::VmNetwork::state),
        created_unix: manifest::now_unix(),
    };
    manifest::write(scratch, &manifest)?;
    Ok(manifest)
}

/// What `vm` is made of, as a saved VM records it.
pub(crate) fn saved_spec(vm: &QemuVm) -> SavedSpec {
    SavedSpec {
        key: vm.shape().to_string(),
        shape: vm.spec.shape.clone(),
        image_id: vm.spec.image_id.clone(),
        image: vm.spec.image.clone(),
        console: vm.spec.console,
    }
}

/// Renames the finished `scratch` to `target`, never over an existing one.
fn publish(scratch: &Path, target: &Path) -> Result<(), QemuError> {
    use std::os::unix::ffi::OsStrExt;
    let what = || format!("moving {} to {}", scratch.display(), target.display());
    let c = |path: &Path| std::ffi::CString::new(path.as_os_str().as_bytes());
    let (from, to) = match (c(scratch), c(target)) {
        (Ok(from), Ok(to)) => (from, to),
        _ => return Err(LifecycleError::io(what(), std::io::ErrorKind::InvalidInput.into()).into()),
    };
    // SAFETY: both are NUL-terminated paths; renameat2 only reads them.
    let renamed = unsafe {
        libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_NOREPLACE)
    };
    if renamed != 0 {
        return Err(LifecycleError::io(what(), std::io::Error::last_os_error()).into());
    }
    Ok(())
}

/// Ends a saved VM's QEMU: `quit`, then SIGKILL after the quit grace; waits until it is reaped.
async fn exit(vm: &QemuVm) {
    let grace = vm.config.quit_grace;
    if let Ok(Err(e)) = tokio::time::timeout(grace, vm.qmp.quit()).await {
        tracing::debug!(vm = %vm.id(), error = %e, "QMP quit failed; killing");
    }
    if tokio::time::timeout(grace, vm.process.exited()).await.is_err() {
        vm.process.kill();
        let _reaped = tokio::time::timeout(std::time::Duration::from_secs(5), vm.process.exited()).await;
    }
}

/// Creates `dir` (0700) if it is missing.
pub(crate) fn private_dir(dir: &Path) -> Result<(), LifecycleError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).recursive(true).create(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(LifecycleError::io(format!("creating {}", dir.display()), e)),
    }
}

/// Removes `dir` and what is in it; a missing one is fine.
pub(crate) fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "removing a saved VM's files failed"),
    }
}
