//! Building a snapshot template: boot the shape once with its RAM in a shared file, stop it, save
//! its device state, and publish both under the template directory (see [`crate::snapshot::store`]).
//! With a root disk the template writes to an overlay in the template directory; once the
//! template has quit, that overlay is made read-only and saved with it as its clones' base.

use std::path::{Path, PathBuf};

use firepit_pool::ShapeKey;
use tokio::time::Instant;

use super::store::{self, Manifest, TemplateKey};
use crate::argv::{GuestMemory, RamBlock};
use crate::config::FillKind;
use crate::error::{QemuError, SnapshotError, SpawnError};
use crate::launch::Launcher;
use crate::vm_spec::VmSpec;

/// What a template of `shape` must match: image, shape (name and machine size), QEMU, and the
/// command lines of template and clone (kernel arguments included) with per-VM paths replaced by
/// placeholders.
pub(crate) async fn template_key(
    launcher: &Launcher,
    shape: &ShapeKey,
    vm: &VmSpec,
) -> Result<TemplateKey, QemuError> {
    let accel = launcher.accel().await;
    let mut joined = Vec::new();
    for clone in [false, true] {
        let memory = GuestMemory::File {
            path: PathBuf::from("/TEMPLATE/memory"),
            shared: !clone,
            block: RamBlock::Backend,
        };
        let mut spec = launcher.launch_spec("VM", accel, (shape, vm), Path::new("/RUNTIME"), memory)?;
        spec.tb_size_mb = launcher.config.snapshot_tb_size_mb;
        if clone {
            spec.incoming = Some("defer".into());
            spec.without_kernel = true;
        }
        for arg in crate::argv::build_argv(&spec) {
            joined.extend_from_slice(arg.as_encoded_bytes());
            joined.push(0);
        }
        joined.push(b'\n');
    }
    let disk = vm.image.disk.as_ref().map(|disk| crate::disk::base_stamp(&disk.base)).transpose()?;
    Ok(TemplateKey {
        image_id: vm.image_id.clone(),
        shape: describe(shape, vm),
        qemu_version: launcher.caps.version.clone(),
        cmdline_sha256: store::sha256_hex(&joined),
        disk,
    })
}

/// A shape as a template's manifest and directory name show it: `name@image/1cpu/256MiB`.
pub(crate) fn describe(shape: &ShapeKey, vm: &VmSpec) -> String {
    format!("{shape}@{}/{}cpu/{}MiB", vm.image_id, vm.cpus, vm.memory_mb)
}

/// Shell-quotes a path for an `exec:` migration URI (run by `/bin/sh -c`).
pub(crate) fn quoted(path: &Path) -> Result<String, SnapshotError> {
    let text = path.to_string_lossy();
    if text.contains('\'') {
        return Err(SnapshotError::UnquotablePath { path: path.to_path_buf() });
    }
    Ok(format!("'{text}'"))
}

/// Boots the template in a scratch directory, snapshots it and moves it to `target`.
pub(crate) async fn build(
    launcher: &Launcher,
    (shape, vm): (&ShapeKey, &VmSpec),
    key: &TemplateKey,
    target: &Path,
) -> Result<Manifest, QemuError> {
    store::ensure_private_dir(&launcher.config.template_dir)?;
    let scratch = store::scratch_path(&launcher.config.template_dir);
    std::fs::create_dir(&scratch)
        .map_err(|e| SpawnError::io(format!("creating {}", scratch.display()), e))?;
    let result = build_in(launcher, shape, vm, &scratch).await.and_then(|()| {
        let memory_bytes = vm.memory_mb.saturating_mul(1024 * 1024);
        store::publish(&scratch, target, key, memory_bytes)
    });
    if result.is_err() {
        store::remove(&scratch);
    }
    result
}

async fn build_in(
    launcher: &Launcher,
    shape: &ShapeKey,
    vm_spec: &VmSpec,
    scratch: &Path,
) -> Result<(), QemuError> {
    let started_at = Instant::now();
    let deadline = started_at + launcher.config.boot_timeout;
    let accel = launcher.accel().await;
    let (id, vm_dir) = launcher.new_dir()?;
    let memory =
        GuestMemory::File { path: scratch.join(store::MEMORY_FILE), shared: true, block: RamBlock::Backend };
    let mut spec = launcher.launch_spec(&id, accel, (shape, vm_spec), vm_dir.path(), memory)?;
    spec.tb_size_mb = launcher.config.snapshot_tb_size_mb;
    // The template's overlay is saved with it: at save time it is the disk its clones start from.
    let disk = scratch.join(crate::disk::OVERLAY_FILE);
    if let Some(base) = &vm_spec.image.disk {
        launcher.overlay(&base.base, base.format, &disk).await?;
        spec.disk = Some(disk.clone());
    }
    let started = launcher.start(&spec, vm_dir, deadline).await?;
    crate::boot::wait_ready(&started, launcher.config.boot_timeout, deadline).await?;
    crate::vm_net::configure(&started.guest, started.network.as_ref()).await?;
    let booted = started_at.elapsed();
    let qmp = started.qmp.clone();
    qmp.stop().await?;
    qmp.migrate_set_capabilities(&[("x-ignore-shared", true)]).await?;
    qmp.migrate(&format!("exec:cat > {}", quoted(&scratch.join(store::STATE_FILE))?)).await?;
    crate::snapshot::restore::wait_migration(&qmp, "out", deadline).await?;
    let vm = launcher.vm((shape, vm_spec), &spec, booted, started, FillKind::Snapshot);
    vm.shutdown().await;
    if spec.disk.is_some() {
        crate::disk::freeze(&disk)?;
    }
    tracing::info!(%shape, ?booted, total = ?started_at.elapsed(), "snapshot template built");
    Ok(())
}
