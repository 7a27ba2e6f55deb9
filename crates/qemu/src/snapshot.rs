//! Snapshot fill: one template VM per shape, then copy-on-write clones restored in ~0.1–0.3 s.
//!
//! The Kata "VM templating" trick, measured in notes/qemu.md for QEMU 7.2:
//! - the template boots with its RAM in a file in /dev/shm mapped `share=on`, so the guest's memory
//!   *is* the file; once ready it is stopped and only its device state is migrated to a file
//!   (`x-ignore-shared`: ~50 KB in ~20 ms), then it quits; the RAM file stays;
//! - a clone starts with the same RAM file mapped `share=off` (a private copy-on-write mapping: pages
//!   are copied only when the clone writes them), `-incoming defer`, loads the device state with
//!   `migrate-incoming exec:cat STATE`, `cont`s, answers an agent ping, and gets its own identity
//!   (entropy, clock, hostname, machine id) before it is handed out.
//!
//! The template (RAM file + state) is shared through an `Arc` held by every clone; its files are
//! removed when the last holder (provider cache or clone) drops it, never while a clone maps them.
//!
//! Fallback: when the template cannot be built, or restores fail [`MAX_RESTORE_FAILURES`] times in a
//! row, the shape cold-boots (with a warning) and the template is rebuilt after [`RETRY_AFTER`].
//!
//! Limitations: templates are not reused across provider restarts (they are rebuilt, ≈ one cold
//! boot); `exec:` migration forks `cat`, so snapshot VMs run with `-sandbox ...,spawn=allow`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firepit_pool::ShapeKey;
use tokio::time::Instant;

use crate::argv::GuestMemory;
use crate::boot;
use crate::config::ImagePaths;
use crate::error::{QemuError, SnapshotError, SpawnError};
use crate::provider::ProviderInner;
use crate::qmp::QmpClient;
use crate::vm::QemuVm;

/// Consecutive failed restores after which the template is dropped and rebuilt.
pub const MAX_RESTORE_FAILURES: u32 = 3;
/// How long a shape cold-boots after its template failed before the template is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest a restore may take (capped by the boot timeout). Measured: 0.1–0.3 s idle, 2.5 s under heavy
/// load. A broken state file makes QEMU 7.2 wait in `setup` forever (it reports no failure), so
/// this deadline is what ends such a restore.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(20);

static NEXT_TEMPLATE: AtomicU64 = AtomicU64::new(1);

/// A template's files: the guest RAM file and the device state. Removed on drop.
#[derive(Debug)]
pub(crate) struct Template {
    memory_file: PathBuf,
    state_file: PathBuf,
    dir: PathBuf,
    restore_failures: AtomicU32,
}

impl Drop for Template {
    fn drop(&mut self) {
        for result in [std::fs::remove_file(&self.memory_file), std::fs::remove_dir_all(&self.dir)] {
            if let Err(e) = result.map_err(|e| (e.kind(), e))
                && e.0 != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e.1, "removing snapshot template files failed");
            }
        }
        tracing::debug!(memory = %self.memory_file.display(), "snapshot template removed");
    }
}

/// Where a `Snapshot` shape's template stands (see `QemuProvider::template_state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateState {
    /// Not built yet (the next fill builds it).
    Missing,
    /// Being built (or a fill is deciding).
    Building,
    /// Fills restore clones from it.
    Ready,
    /// Building or restoring failed: fills cold-boot until it is retried. The last error.
    Failed(String),
}

#[derive(Debug, Default)]
enum Slot {
    #[default]
    Empty,
    Ready(Arc<Template>),
    Failed {
        at: Instant,
        error: String,
    },
}

/// Snapshot templates per shape.
#[derive(Debug, Default)]
pub(crate) struct Templates {
    slots: Mutex<HashMap<ShapeKey, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl Templates {
    fn slot(&self, shape: &ShapeKey) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.entry(shape.clone()).or_default().clone()
    }

    /// The state of the shape's template.
    pub(crate) fn state(&self, shape: &ShapeKey) -> TemplateState {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            slots.get(shape).cloned()
        };
        let Some(slot) = slot else { return TemplateState::Missing };
        let Ok(slot) = slot.try_lock() else { return TemplateState::Building };
        match &*slot {
            Slot::Empty => TemplateState::Missing,
            Slot::Ready(_) => TemplateState::Ready,
            Slot::Failed { error, .. } => TemplateState::Failed(error.clone()),
        }
    }

    /// Forgets the shape's template; its files go when the last clone using it is gone.
    pub(crate) fn forget(&self, shape: &ShapeKey) {
        let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.remove(shape);
    }
}

/// Makes a VM for a `Snapshot` shape: a clone of its template, or a cold boot as fallback.
pub(crate) async fn create_clone(
    inner: &ProviderInner,
    shape: &ShapeKey,
    paths: &ImagePaths,
) -> Result<QemuVm, QemuError> {
    let slot = inner.snapshots.slot(shape);
    let template = {
        let mut slot = slot.lock().await;
        match &*slot {
            Slot::Ready(template) => Some(template.clone()),
            Slot::Failed { at, error } if at.elapsed() < RETRY_AFTER => {
                tracing::warn!(%shape, %error, "snapshot template unavailable; cold booting");
                None
            }
            Slot::Empty | Slot::Failed { .. } => match build_template(inner, shape, paths).await {
                Ok(template) => {
                    let template = Arc::new(template);
                    *slot = Slot::Ready(template.clone());
                    Some(template)
                }
                Err(e) => {
                    tracing::warn!(%shape, error = %e, "building the snapshot template failed; cold booting");
                    *slot = Slot::Failed { at: Instant::now(), error: e.to_string() };
                    None
                }
            },
        }
    };
    let Some(template) = template else {
        return inner.cold_boot(shape, paths).await;
    };
    match restore(inner, shape, paths, &template).await {
        Ok(vm) => {
            template.restore_failures.store(0, Ordering::Relaxed);
            Ok(vm)
        }
        Err(e) => {
            let failures = template.restore_failures.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(%shape, failures, error = %e, "snapshot restore failed; cold booting");
            if failures >= MAX_RESTORE_FAILURES {
                let mut slot = slot.lock().await;
                *slot =
                    Slot::Failed { at: Instant::now(), error: format!("{failures} restores failed: {e}") };
            }
            inner.cold_boot(shape, paths).await
        }
    }
}

/// Shell-quotes a path for an `exec:` migration URI (run by `/bin/sh -c`).
fn quoted(path: &Path) -> Result<String, SnapshotError> {
    let text = path.to_string_lossy();
    if text.contains('\'') {
        return Err(SnapshotError::Migration {
            direction: "out",
            message: format!("path {text} contains a single quote; choose another runtime_dir"),
        });
    }
    Ok(format!("'{text}'"))
}

async fn build_template(
    inner: &ProviderInner,
    shape: &ShapeKey,
    paths: &ImagePaths,
) -> Result<Template, QemuError> {
    let started_at = Instant::now();
    let n = NEXT_TEMPLATE.fetch_add(1, Ordering::Relaxed);
    let name = format!("firepit-{}-t{n}", std::process::id());
    let dir = inner.config.runtime_dir.join(&name);
    std::fs::create_dir_all(&dir).map_err(|e| SpawnError::io(format!("creating {}", dir.display()), e))?;
    let template = Template {
        memory_file: Path::new("/dev/shm").join(&name),
        state_file: dir.join("state.bin"),
        dir,
        restore_failures: AtomicU32::new(0),
    };
    let deadline = started_at + inner.config.boot_timeout;
    let accel = inner.accel().await;
    let (id, vm_dir) = inner.new_dir()?;
    let memory = GuestMemory::File { path: template.memory_file.clone(), shared: true };
    let spec = inner.spec(&id, accel, shape, paths, &vm_dir, memory)?;
    let started = boot::start(&inner.config.qemu_binary, &spec, vm_dir, &inner.config, deadline).await?;
    boot::wait_ready(&started, inner.config.boot_timeout, deadline).await?;
    let booted = started_at.elapsed();
    let qmp = started.qmp.clone();
    qmp.stop().await?;
    qmp.migrate_set_capabilities(&[("x-ignore-shared", true)]).await?;
    qmp.migrate(&format!("exec:cat > {}", quoted(&template.state_file)?)).await?;
    wait_migration(&qmp, "out", deadline).await?;
    let vm = inner.vm(id, shape, accel, booted, started, None);
    vm.shutdown().await;
    tracing::info!(%shape, ?booted, total = ?started_at.elapsed(), memory = %template.memory_file.display(),
        "snapshot template built");
    Ok(template)
}

async fn wait_migration(
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

async fn restore(
    inner: &ProviderInner,
    shape: &ShapeKey,
    paths: &ImagePaths,
    template: &Arc<Template>,
) -> Result<QemuVm, QemuError> {
    let started_at = Instant::now();
    let deadline = started_at + inner.config.boot_timeout.min(RESTORE_TIMEOUT);
    for file in [&template.state_file, &template.memory_file] {
        let usable = std::fs::metadata(file).map(|m| m.len() > 0).unwrap_or(false);
        if !usable {
            let message = format!("template file {} is missing or empty", file.display());
            return Err(SnapshotError::Migration { direction: "in", message }.into());
        }
    }
    let accel = inner.accel().await;
    let (id, dir) = inner.new_dir()?;
    let memory = GuestMemory::File { path: template.memory_file.clone(), shared: false };
    let mut spec = inner.spec(&id, accel, shape, paths, &dir, memory)?;
    spec.incoming = Some("defer".into());
    let started = boot::start(&inner.config.qemu_binary, &spec, dir, &inner.config, deadline).await?;
    let qmp = started.qmp.clone();
    qmp.migrate_set_capabilities(&[("x-ignore-shared", true)]).await?;
    qmp.migrate_incoming(&format!("exec:cat {}", quoted(&template.state_file)?)).await?;
    wait_migration(&qmp, "in", deadline).await?;
    qmp.cont().await?;
    boot::wait_for_agent(&started, inner.config.boot_timeout.min(RESTORE_TIMEOUT), deadline).await?;
    let restored = started_at.elapsed();
    let template_holder: Arc<dyn std::any::Any + Send + Sync> = template.clone();
    let mut vm = inner.vm(id, shape, accel, restored, started, Some(template_holder));
    let applied = vm.set_identity(crate::exec::fresh_identity(vm.id())).await?;
    vm.boot_duration = started_at.elapsed();
    tracing::info!(vm = %vm.id(), %shape, ?restored, ready = ?started_at.elapsed(), ?applied, "VM restored from snapshot");
    Ok(vm)
}
