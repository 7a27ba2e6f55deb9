//! Snapshot fill: one template VM per shape, then copy-on-write clones restored in ~0.1–0.3 s.
//!
//! The Kata "VM templating" trick, measured in notes/qemu.md for QEMU 7.2:
//! - the template boots with its RAM in a file on tmpfs mapped `share=on`, so the guest's memory
//!   *is* the file; once ready it is stopped and only its device state is migrated to a file
//!   (`x-ignore-shared`: ~50 KB in ~20 ms), then it quits; the RAM file stays;
//! - a clone starts with the same RAM file mapped `share=off` (a private copy-on-write mapping: pages
//!   are copied only when the clone writes them), `-incoming defer`, loads the device state with
//!   `migrate-incoming exec:cat STATE`, `cont`s, answers an agent ping, and gets its own identity
//!   (entropy, clock, hostname, machine id) before it is handed out.
//!
//! With a root disk, the template writes to an overlay kept in its template directory; at save
//! time (stopped, flushed by the migration) it becomes read-only and the base of each clone's own
//! overlay, so a clone's disk is exactly the disk its restored memory knows (see `disk`).
//!
//! Templates live in `ProviderConfig::template_dir`, one directory per shape (named after the
//! shape's name, image and size) with a manifest (see
//! [`crate::snapshot::store`]); a new provider reuses a valid one instead of booting. In memory a
//! template is an `Arc` held by the provider and by every clone: when it is dropped for good (shape
//! unregistered, found corrupt, restores failing, or `keep_templates = false`), its directory is
//! moved aside at once and removed when the last holder goes, never while a clone maps it.
//!
//! Fallback: when the template cannot be built, is found damaged before a restore, or restores fail
//! [`MAX_RESTORE_FAILURES`] times in a row, the shape cold-boots (`fill_strategy` label
//! `cold_boot_fallback`, [`TemplateState::Failed`] with the reason) and the template is rebuilt
//! after `ProviderConfig::snapshot_retry_after` ([`RETRY_AFTER`](crate::RETRY_AFTER) by default).
//!
//! Limitation: `exec:` migration forks `cat`, so snapshot VMs run with `-sandbox ...,spawn=allow`.
//!
//! The parts, each below the one before: this module keeps the templates per shape and chooses
//! between restoring and falling back; [`build`] boots and saves a template; [`restore`] makes one
//! clone; [`store`] reads and writes template directories and their manifests; [`stamp`] checks a
//! template's files cheaply before each restore; [`state`] is what the provider reports.

pub(crate) mod build;
pub(crate) mod restore;
pub(crate) mod stamp;
pub(crate) mod state;
pub(crate) mod store;

pub use restore::RESTORE_TIMEOUT;
pub use state::{TemplateOrigin, TemplateState};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firepit_pool::ShapeKey;
use tokio::time::Instant;

use crate::config::FillKind;
use crate::error::{QemuError, SnapshotError};
use crate::launch::Launcher;
use crate::vm::QemuVm;
use crate::vm_spec::VmSpec;
use store::{Found, Manifest, TemplateFault};

/// Consecutive failed restores after which the template is dropped and rebuilt.
pub const MAX_RESTORE_FAILURES: u32 = 3;
/// A template on disk, shared by the provider and its clones.
#[derive(Debug)]
pub(crate) struct Template {
    /// Where its files are (moved aside when the template is discarded).
    dir: Mutex<PathBuf>,
    manifest: Manifest,
    /// Remove the files when the last holder drops it.
    remove_on_drop: AtomicBool,
    discarded: AtomicBool,
    restore_failures: AtomicU32,
    /// Its files as they last passed a full check (a restore re-checks only changed files).
    checked: crate::snapshot::stamp::CheckedStamps,
}

impl Template {
    fn new(dir: PathBuf, manifest: Manifest, keep: bool) -> Self {
        Self {
            dir: Mutex::new(dir),
            manifest,
            remove_on_drop: AtomicBool::new(!keep),
            discarded: AtomicBool::new(false),
            restore_failures: AtomicU32::new(0),
            checked: Default::default(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.dir.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Moves the files out of the loaders' way now and removes them with the last holder.
    fn discard(&self, why: impl std::fmt::Display) {
        self.remove_on_drop.store(true, Ordering::SeqCst);
        if self.discarded.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut dir = self.dir.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match store::retire(&dir) {
            Ok(moved) => {
                tracing::info!(template = %dir.display(), %why, "snapshot template discarded");
                *dir = moved;
            }
            Err(e) => {
                tracing::warn!(template = %dir.display(), error = %e, "moving a discarded template aside failed")
            }
        }
    }

    /// Checks the files before a restore: QEMU 7.2 hangs instead of failing on a broken state file.
    /// Files unchanged since they last passed are not read again (`template_stamp`).
    fn check(&self) -> Result<(), TemplateFault> {
        let dir = self.dir();
        self.checked.check(&dir, || match store::inspect(&dir, &self.manifest.key) {
            Found::Valid(found) if found == self.manifest => Ok(()),
            Found::Valid(_) => Err(TemplateFault::ManifestChanged),
            Found::Absent => Err(TemplateFault::Gone),
            Found::Stale(fault) | Found::Corrupt(fault) => Err(fault),
        })
    }
}

impl Drop for Template {
    fn drop(&mut self) {
        if self.remove_on_drop.load(Ordering::SeqCst) {
            store::remove(&self.dir());
        }
    }
}

#[derive(Debug, Default)]
enum Slot {
    #[default]
    Empty,
    Ready {
        template: Arc<Template>,
        origin: TemplateOrigin,
    },
    Failed {
        at: Instant,
        error: String,
    },
}

/// Snapshot templates per shape.
#[derive(Debug, Default)]
pub(crate) struct Templates {
    slots: Mutex<HashMap<ShapeKey, Arc<tokio::sync::Mutex<Slot>>>>,
    /// Every template made, until its last holder drops it (for `remove_templates`).
    live: Mutex<Vec<std::sync::Weak<Template>>>,
    /// What templates and clones cost against the pool's memory budget.
    pub(crate) charges: crate::memory_charge::Charges,
}

impl Templates {
    fn slot(&self, shape: &ShapeKey) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.entry(shape.clone()).or_default().clone()
    }

    /// Whether `slot` is still the shape's slot (not forgotten since a fill took it).
    fn is_current(&self, shape: &ShapeKey, slot: &Arc<tokio::sync::Mutex<Slot>>) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.get(shape).is_some_and(|current| Arc::ptr_eq(current, slot))
    }

    /// The state of the shape's template.
    pub(crate) fn state(&self, shape: &ShapeKey, retry_after: Duration) -> TemplateState {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            slots.get(shape).cloned()
        };
        let Some(slot) = slot else { return TemplateState::Missing };
        let Ok(slot) = slot.try_lock() else { return TemplateState::Building };
        match &*slot {
            Slot::Empty => TemplateState::Missing,
            Slot::Ready { origin, .. } => TemplateState::Ready(origin.clone()),
            Slot::Failed { at, error } => TemplateState::Failed {
                error: error.clone(),
                retry_in: retry_after.saturating_sub(at.elapsed()),
            },
        }
    }

    /// Directories of the templates of this provider still alive (held by its cache or a clone).
    pub(crate) fn dirs_in_use(&self) -> Vec<PathBuf> {
        let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.retain(|template| template.strong_count() > 0);
        live.iter().filter_map(std::sync::Weak::upgrade).map(|template| template.dir()).collect()
    }

    fn track(&self, template: Template) -> Arc<Template> {
        let template = Arc::new(template);
        let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.retain(|template| template.strong_count() > 0);
        live.push(Arc::downgrade(&template));
        template
    }

    /// Discards `shape`'s `template` (its files go with its last holder) and stops charging its RAM
    /// against the memory budget.
    fn discard(&self, shape: &ShapeKey, template: &Template, why: impl std::fmt::Display) {
        template.discard(why);
        self.charges.template_gone(shape);
    }

    /// Forgets the shape's template and discards its files (removed with its last clone).
    pub(crate) fn forget(&self, shape: &ShapeKey) {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            slots.remove(shape)
        };
        self.charges.template_gone(shape);
        let Some(slot) = slot else { return };
        // A fill holding the lock finishes with its own Arc; try_lock avoids blocking here.
        if let Ok(slot) = slot.try_lock()
            && let Slot::Ready { template, .. } = &*slot
        {
            template.discard("its shape was unregistered");
        }
    }
}

impl Templates {
    /// Makes a VM for a `Snapshot` shape: a clone of its template, or a cold boot as fallback.
    pub(crate) async fn create_clone(
        &self,
        launcher: &Launcher,
        shape: &ShapeKey,
        vm: &VmSpec,
    ) -> Result<QemuVm, QemuError> {
        let slot = self.slot(shape);
        let template = {
            let mut slot = slot.lock().await;
            match &*slot {
                Slot::Ready { template, .. } => Some(template.clone()),
                Slot::Failed { at, .. } if at.elapsed() < launcher.config.snapshot_retry_after => None,
                Slot::Empty | Slot::Failed { .. } => match obtain(launcher, shape, vm).await {
                    Ok((template, origin)) => {
                        let template = self.track(template);
                        *slot = Slot::Ready { template: template.clone(), origin };
                        self.charges.template_ready(shape, vm.memory_mb);
                        Some(template)
                    }
                    Err(e) => {
                        tracing::warn!(%shape, error = %e, "building the snapshot template failed; cold booting");
                        *slot =
                            Slot::Failed { at: Instant::now(), error: format!("template build failed: {e}") };
                        None
                    }
                },
            }
        };
        let Some(template) = template else {
            return launcher.cold_boot(shape, vm, FillKind::ColdBootFallback).await;
        };
        if !self.is_current(shape, &slot) {
            // `forget` ran while this fill held the slot (e.g. built the template): it could not see it.
            self.discard(shape, &template, "its shape was unregistered");
        }
        if let Err(why) = template.check() {
            tracing::warn!(%shape, %why, "snapshot template damaged; cold booting until it is rebuilt");
            self.discard(shape, &template, &why);
            *slot.lock().await =
                Slot::Failed { at: Instant::now(), error: format!("template damaged: {why}") };
            return launcher.cold_boot(shape, vm, FillKind::ColdBootFallback).await;
        }
        match restore(launcher, (shape, vm), &template).await {
            Ok(mut clone) => {
                template.restore_failures.store(0, Ordering::Relaxed);
                if let Ok((_, kib)) = crate::memory_charge::process_memory_kib(clone.pid())
                    && kib > 0
                {
                    let mb = crate::memory_charge::kib_to_mib_ceil(kib);
                    clone.memory_charge_mb = Some(mb);
                    self.charges.clone_measured(shape, mb);
                    tracing::debug!(vm = %clone.id(), %shape, pss_mib = mb, "clone charged its PSS");
                }
                Ok(clone)
            }
            Err(e) => {
                let failures = template.restore_failures.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(%shape, failures, error = %e, "snapshot restore failed; cold booting");
                if failures >= MAX_RESTORE_FAILURES {
                    let error = format!("{failures} restores in a row failed: {e}");
                    self.discard(shape, &template, &error);
                    *slot.lock().await = Slot::Failed { at: Instant::now(), error };
                }
                launcher.cold_boot(shape, vm, FillKind::ColdBootFallback).await
            }
        }
    }
}

/// The shape's template: reused from the template directory when valid, else built.
async fn obtain(
    launcher: &Launcher,
    shape: &ShapeKey,
    vm: &VmSpec,
) -> Result<(Template, TemplateOrigin), QemuError> {
    let key = crate::snapshot::build::template_key(launcher, shape, vm).await?;
    let base = &launcher.config.template_dir;
    store::ensure_private_dir(base)?;
    let dir = base.join(store::shape_dir_name(&key.shape));
    let keep = launcher.config.keep_templates;
    let inspect_dir = dir.clone();
    let inspect_key = key.clone();
    let found = tokio::task::spawn_blocking(move || store::inspect(&inspect_dir, &inspect_key))
        .await
        .map_err(SnapshotError::Check)?;
    let origin = match found {
        Found::Valid(manifest) => {
            tracing::info!(%shape, dir = %dir.display(), created_unix = manifest.created_unix,
                "snapshot template reused");
            return Ok((Template::new(dir, manifest, keep), TemplateOrigin::Reused));
        }
        Found::Absent => TemplateOrigin::Built,
        Found::Stale(why) | Found::Corrupt(why) => {
            tracing::warn!(%shape, dir = %dir.display(), %why, "snapshot template unusable; rebuilding it");
            match store::retire(&dir) {
                Ok(moved) => store::remove(&moved),
                Err(e) => {
                    return Err(SnapshotError::Io {
                        what: format!("moving {} aside", dir.display()),
                        source: e,
                    }
                    .into());
                }
            }
            TemplateOrigin::Rebuilt(why.to_string())
        }
    };
    let manifest = crate::snapshot::build::build(launcher, (shape, vm), &key, &dir).await?;
    Ok((Template::new(dir, manifest, keep), origin))
}

async fn restore(
    launcher: &Launcher,
    shape: (&ShapeKey, &VmSpec),
    template: &Arc<Template>,
) -> Result<QemuVm, QemuError> {
    let dir = template.dir();
    let holder: Arc<dyn std::any::Any + Send + Sync> = template.clone();
    crate::snapshot::restore::restore_clone(
        launcher,
        shape,
        (&dir.join(store::MEMORY_FILE), crate::argv::RamBlock::Backend),
        &crate::snapshot::build::quoted(&dir.join(store::STATE_FILE))?,
        holder,
    )
    .await
}
