//! A snapshot template made from a saved VM: what forks and many VMs from one snapshot are
//! copy-on-write clones of.
//!
//! A saved VM's memory is a migration stream, which a clone cannot map. So a template QEMU starts
//! with its RAM in a shared file (`memory`, in the template directory on tmpfs), loads the stream
//! into it, saves only its device state (`device.bin`, with `x-ignore-shared`: the RAM stays in the
//! file) and exits without ever running. Clones then map `memory` privately and load `device.bin`
//! exactly as clones of a shape's template do ([`crate::snapshot`]); the saved disk layers, frozen,
//! are their disk's base.
//!
//! Loading the stream reads every page of the shared file (QEMU checks each zero page before
//! writing it), which allocates them all in tmpfs; the pages that are zero are given back
//! afterwards ([`punch_zero_pages`], in the background: a hole reads as the zeros it replaces, so
//! clones mapping the file meanwhile see the same memory).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use tokio::time::Instant;

use super::manifest::{FileSum, SavedManifest, SavedSpec, TOP_LAYER};
use super::relaunch;
use crate::argv::{GuestMemory, RamBlock};
use crate::error::QemuError;
use crate::launch::Launcher;
use crate::lifecycle_error::LifecycleError;
use crate::vm::QemuVm;

/// The template's RAM file.
pub(crate) const MEMORY_FILE: &str = crate::snapshot::store::MEMORY_FILE;
/// The template's device state (saved with `x-ignore-shared`).
pub(crate) const DEVICE_FILE: &str = "device.bin";

/// A template directory made from a saved VM; removed when the last holder (the clones) drops it.
#[derive(Debug)]
pub(crate) struct SavedTemplate {
    pub dir: PathBuf,
    /// What the VM it was made from is made of.
    pub spec: SavedSpec,
    /// The RAM block its memory file holds.
    pub ram_block: RamBlock,
}

impl Drop for SavedTemplate {
    fn drop(&mut self) {
        super::save::remove_dir(&self.dir);
        tracing::debug!(dir = %self.dir.display(), "template of a saved VM removed");
    }
}

/// Makes a template in `into` (which exists, private) from the saved VM in `saved` (`manifest`,
/// checked by `start::check`). When `saved` is another directory, its disk layers are copied
/// into `into` first (checked on the way), so the template outlives the saved VM.
pub(crate) async fn build(
    launcher: &Launcher,
    saved: &Path,
    manifest: &SavedManifest,
    into: &Path,
) -> Result<(), QemuError> {
    let started_at = Instant::now();
    if saved != into {
        super::layers::load(saved, &manifest.disk, into).await?;
    }
    let deadline = super::stream::deadline(manifest.spec.shape.memory_mb);
    let started = start(launcher, (&manifest.spec, manifest.ram_block), into, deadline).await?;
    let loaded = super::stream::load(&started.qmp, saved, &manifest.state, deadline).await;
    finish(started, loaded, &manifest.disk, into, deadline).await?;
    tracing::info!(from = %saved.display(), template = %into.display(), took = ?started_at.elapsed(), "template made from a saved VM");
    Ok(())
}

/// Makes a template in `into` (which exists, private) straight from the running `vm`, as a fork
/// wants it: `vm` stops, its disk layers are copied into `into`, a template QEMU loads its
/// migration stream through a pipe (no file in between, both migrations at once), then `vm` runs
/// again, whatever failed, and the template saves its device state. Returns what clones need.
pub(crate) async fn from_vm(
    launcher: &Launcher,
    vm: &QemuVm,
    into: &Path,
) -> Result<SavedTemplate, QemuError> {
    let started_at = Instant::now();
    if vm.exit_info().is_some() {
        return Err(LifecycleError::NotRunning { vm: vm.id().to_owned() }.into());
    }
    vm.awake().await?;
    let layers = super::save::disk_layers(launcher, vm).await?;
    let disk_bytes = layers.iter().map(|layer| super::space::allocated_bytes(&layer.filename)).sum();
    super::space::check(into, super::space::estimate(vm.pid(), vm.spec.memory_mb, &vm.memory, disk_bytes))?;
    let (spec, ram_block) = (super::save::saved_spec(vm), vm.memory.block());
    let deadline = super::stream::deadline(vm.spec.memory_mb);
    vm.qmp.stop().await?;
    let streamed = async {
        let disk = match &vm.spec.image.disk {
            Some(base) => super::layers::save(&launcher.config.qemu_img_binary, &layers, base, into).await?,
            None => Vec::new(),
        };
        let started = start(launcher, (&spec, ram_block), into, deadline).await?;
        match super::stream::pipe_between(&vm.qmp, &started.qmp, deadline).await {
            Ok(()) => Ok((started, disk)),
            Err(e) => {
                reap(&started).await;
                Err(e)
            }
        }
    }
    .await;
    let stopped = started_at.elapsed();
    if let Err(e) = vm.qmp.cont().await {
        tracing::warn!(vm = %vm.id(), error = %e, "the VM did not run again after its fork");
    }
    let (started, disk) = streamed?;
    finish(started, Ok(()), &disk, into, deadline).await?;
    tracing::info!(vm = %vm.id(), template = %into.display(), ?stopped, took = ?started_at.elapsed(), "template made from a running VM");
    Ok(SavedTemplate { dir: into.to_path_buf(), spec, ram_block })
}

/// Starts a template QEMU for a VM of `spec` whose RAM (`block`) goes to the shared file
/// `memory` in `into` and whose disk (if any) is the top layer in `into`, waiting for a stream.
async fn start(
    launcher: &Launcher,
    (spec, block): (&SavedSpec, RamBlock),
    into: &Path,
    deadline: Instant,
) -> Result<crate::boot::Started, QemuError> {
    let accel = launcher.accel().await;
    let (id, vm_dir) = launcher.new_dir()?;
    let memory = GuestMemory::File { path: into.join(MEMORY_FILE), shared: true, block };
    let mut launch = relaunch::launch_spec(launcher, (&id, accel), spec, vm_dir.path(), memory)?;
    if launch.disk.is_some() {
        launch.disk = Some(into.join(TOP_LAYER));
    }
    launcher.start(&launch, vm_dir, deadline).await
}

/// Once the template QEMU `started` has the VM's memory (`loaded`): saves its device state into
/// `into`, ends it, freezes the disk layers `disk` and gives the memory file's zero pages back
/// (in the background).
async fn finish(
    started: crate::boot::Started,
    loaded: Result<(), QemuError>,
    disk: &[FileSum],
    into: &Path,
    deadline: Instant,
) -> Result<(), QemuError> {
    let saved_device = async {
        loaded?;
        started.qmp.migrate_set_capabilities(&[("x-ignore-shared", true)]).await?;
        super::stream::save_with(&started.qmp, &into.join(DEVICE_FILE), deadline, true).await
    }
    .await;
    reap(&started).await;
    saved_device?;
    for layer in disk {
        crate::disk::freeze(&into.join(&layer.file))?;
    }
    let memory = into.join(MEMORY_FILE);
    tokio::task::spawn_blocking(move || match punch_zero_pages(&memory) {
        Ok(freed) => {
            tracing::debug!(file = %memory.display(), freed_mib = freed >> 20, "zero pages given back")
        }
        Err(e) => tracing::warn!(file = %memory.display(), error = %e, "giving zero pages back failed"),
    });
    Ok(())
}

/// Kills a template QEMU (it never runs a vCPU) and waits a little for it to be reaped.
async fn reap(started: &crate::boot::Started) {
    started.process.kill();
    let _reaped = tokio::time::timeout(std::time::Duration::from_secs(5), started.process.exited()).await;
}

/// Punches a hole (`fallocate`) over every run of all-zero 4 KiB pages of `path`; returns the
/// bytes freed.
pub(crate) fn punch_zero_pages(path: &Path) -> Result<u64, LifecycleError> {
    use std::os::unix::fs::FileExt;
    const PAGE: usize = 4096;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| LifecycleError::io(format!("opening {}", path.display()), e))?;
    let length =
        file.metadata().map_err(|e| LifecycleError::io(format!("inspecting {}", path.display()), e))?.len();
    let mut buffer = vec![0u8; 2 << 20];
    let (mut offset, mut freed) = (0u64, 0u64);
    let mut run: Option<u64> = None;
    let mut punch = |start: u64, end: u64| -> Result<(), LifecycleError> {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: fallocate on an open descriptor with in-range offsets has no memory-safety preconditions.
        if unsafe {
            libc::fallocate(file.as_raw_fd(), mode, start as libc::off_t, (end - start) as libc::off_t)
        } != 0
        {
            return Err(LifecycleError::io(
                format!("punching holes in {}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        freed += end - start;
        Ok(())
    };
    while offset < length {
        let n = file
            .read_at(&mut buffer, offset)
            .map_err(|e| LifecycleError::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        for (index, page) in buffer[..n].chunks(PAGE).enumerate() {
            let at = offset + (index * PAGE) as u64;
            match (page.iter().all(|byte| *byte == 0), run) {
                (true, None) => run = Some(at),
                (false, Some(start)) => {
                    punch(start, at)?;
                    run = None;
                }
                _ => {}
            }
        }
        offset += n as u64;
    }
    if let Some(start) = run {
        punch(start, offset)?;
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pages_become_holes_and_the_content_stays() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let mut content = vec![0u8; 64 * 4096];
        content[5 * 4096] = 1;
        content[63 * 4096 + 4095] = 2;
        std::fs::write(&path, &content).unwrap();
        let before = std::fs::metadata(&path).unwrap().blocks();
        let freed = punch_zero_pages(&path).unwrap();
        assert_eq!(freed, 62 * 4096);
        assert_eq!(std::fs::read(&path).unwrap(), content, "holes read as zeros");
        assert!(std::fs::metadata(&path).unwrap().blocks() < before);
    }
}
