//! One snapshot restore: start QEMU waiting for an incoming migration, load the template's device
//! state, resume, wait for the agent, give the clone its own identity.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use firepit_pool::ShapeKey;
use tokio::time::Instant;

use crate::argv::{GuestMemory, RamBlock};
use crate::config::FillKind;
use crate::error::{QemuError, SnapshotError};
use crate::launch::Launcher;
use crate::qmp::QmpClient;
use crate::vm::QemuVm;
use crate::vm_spec::VmSpec;

/// Longest a restore may take (capped by the boot timeout). Measured: 0.1–0.3 s idle, 2.5 s under heavy
/// load. A broken state file makes QEMU 7.2 wait in `setup` forever (it reports no failure), so
/// this deadline is what ends such a restore (the state file's hash is checked first).
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `query-migrate` until the migration completed, failed, or `deadline` passed.
pub(crate) async fn wait_migration(
    qmp: &QmpClient,
    direction: &'static str,
    deadline: Instant,
) -> Result<(), QemuError> {
    loop {
        let info = qmp.query_migrate().await?;
        match info.status.as_deref() {
            Some("completed") => return Ok(()),
            Some("failed") | Some("cancelled") => {
                let message = info.error_desc.unwrap_or_else(|| "migration failed".into());
                return Err(SnapshotError::Migration { direction, message }.into());
            }
            status => {
                if Instant::now() >= deadline {
                    let message = format!("still {status:?} at the deadline");
                    return Err(SnapshotError::Migration { direction, message }.into());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Restores a clone of `shape` (made from `vm`) mapping `memory_file` copy-on-write, with device
/// state from `quoted_state` (a shell-quoted path), its RAM block named `block` (see
/// [`RamBlock`]). `template` is kept alive by the clone.
pub(crate) async fn restore_clone(
    launcher: &Launcher,
    (shape, vm_spec): (&ShapeKey, &VmSpec),
    (memory_file, block): (&Path, RamBlock),
    quoted_state: &str,
    template: Arc<dyn std::any::Any + Send + Sync>,
) -> Result<QemuVm, QemuError> {
    let started_at = Instant::now();
    let timeout = launcher.config.boot_timeout.min(RESTORE_TIMEOUT);
    let deadline = started_at + timeout;
    let accel = launcher.accel().await;
    let (id, dir) = launcher.new_dir()?;
    let memory = GuestMemory::File { path: memory_file.to_path_buf(), shared: false, block };
    let mut spec = launcher.launch_spec(&id, accel, (shape, vm_spec), dir.path(), memory)?;
    spec.incoming = Some("defer".into());
    spec.tb_size_mb = launcher.config.snapshot_tb_size_mb;
    spec.without_kernel = true;
    if let Some(overlay) = &spec.disk {
        // The template's disk at save time, matching the memory this clone maps.
        let template_disk = memory_file.with_file_name(crate::disk::OVERLAY_FILE);
        launcher.overlay(&template_disk, crate::root_disk::DiskFormat::Qcow2, overlay).await?;
    }
    let started = launcher.start(&spec, dir, deadline).await?;
    let qmp = started.qmp.clone();
    qmp.migrate_set_capabilities(&[("x-ignore-shared", true)]).await?;
    qmp.migrate_incoming(&format!("exec:cat {quoted_state}")).await?;
    wait_migration(&qmp, "in", deadline).await?;
    qmp.cont().await?;
    crate::boot::wait_for_agent(&started, timeout, deadline).await?;
    let restored = started_at.elapsed();
    let mut vm = launcher.vm((shape, vm_spec), &spec, restored, started, FillKind::Snapshot);
    vm.template = Some(template);
    vm.set_exec_defaults(vm_spec.image.exec_defaults.clone());
    let applied = vm.set_identity(firepit_guest::fresh_identity(vm.id())).await?;
    vm.configure_network().await?;
    vm.boot_duration = started_at.elapsed();
    tracing::info!(vm = %vm.id(), %shape, ?restored, ready = ?started_at.elapsed(), ?applied, "VM restored from snapshot");
    Ok(vm)
}
