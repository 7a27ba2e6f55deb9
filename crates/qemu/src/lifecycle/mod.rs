//! The life of a running VM beyond one QEMU process: pause it to disk and resume it, snapshot it,
//! fork it.
//!
//! # Why
//! A lease lives until it is released; with these it can also rest at no cost and come back as
//! it was (a paused VM's QEMU has exited: no CPU, no RAM, only its files), be copied into new VMs
//! (a snapshot, from which any number of VMs start), or be copied into running VMs at once (a
//! fork: each child a copy-on-write copy of the parent's memory and disk at that moment, with an
//! identity of its own).
//!
//! # How it fits
//! Everything rests on one format, a *saved VM* ([`SavedVm`], see `manifest`): a directory with
//! QEMU's migration stream of the VM (device state and every non-zero guest page: about the
//! memory the guest touched), its disk layers above the image's base, and a manifest with
//! checksums. The parts, each below the next:
//! - `stream`: the migration stream to and from a file through `fd:` migrations (no helper
//!   process), hashed on the way;
//! - `layers`: the disk chain copied out and back in, with relative backing names;
//! - `space`: the room a save may take, checked before anything stops;
//! - `relaunch`: the command line a saved VM starts again with, and its hash;
//! - `save`: stop, write to a scratch directory, rename, then exit or run on;
//! - `start`: a saved VM started again, as itself (resume) or as a new VM (from a snapshot);
//! - `template`: a copy-on-write template made from a saved VM (forks, many VMs from a snapshot);
//! - this module: the API on [`QemuProvider`].
//!
//! What they keep, cost and cannot do: see [`SavedVm`].

pub(crate) mod layers;
pub(crate) mod manifest;
mod relaunch;
pub(crate) mod save;
pub(crate) mod space;
mod start;
mod stream;
pub(crate) mod template;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::lifecycle_error::LifecycleError;
pub use manifest::SavedKind;

use firepit_net::NetworkState;
use manifest::SavedManifest;
use save::AfterSave;
use start::Identity;

use crate::error::QemuError;
use crate::provider::QemuProvider;
use crate::vm::QemuVm;

/// A VM saved on disk: paused, or a snapshot. Cheap to clone (a path and its manifest).
///
/// # What it costs (measured: `firepit bench lifecycle`, release build, TCG, 2 busy cores)
/// A 256 MiB guest whose workload wrote ~100 MB: ≈172 MiB of state (device state and every
/// non-zero page), written in ≈0.26 s p50 (pause, until QEMU has exited: no CPU, no RAM left);
/// resume until its first exec answers ≈0.37 s p50 (a snapshot clone ≈0.25 s, a cold boot ≈2 s);
/// a snapshot ≈0.35 s (the VM is stopped only while its state is written); fork of 8, all
/// answering, ≈1.8 s, of 1 ≈0.7 s (the parent streams straight into the forks' template). A
/// 1 GiB guest with the same workload costs about the same: the state is what the guest touched.
///
/// # Limits
/// - A VM resumed or started from a snapshot has its own anonymous memory (not copy-on-write of
///   anything): it costs the memory it touches, and is not in the pool's memory budget.
/// - Connections through the NAT that were open when the VM was saved are gone (the guest sees
///   them reset); port forwards are made again, at their old host ports when free.
/// - QEMU and firepit must be the versions that saved the VM (checked; an error says so).
///
/// ```no_run
/// # async fn demo(provider: firepit_qemu::QemuProvider, vm: firepit_qemu::QemuVm) -> Result<(), firepit_qemu::QemuError> {
/// use firepit_qemu::SavedVm;
/// let paused = provider.pause_to_disk(&vm, "/var/lib/firepit/paused/lease-1".as_ref()).await?;
/// drop(vm); // its QEMU has exited: no CPU, no RAM
/// println!("{} MiB of state", paused.state_bytes() >> 20);
/// // ... later, maybe in another process:
/// let paused = SavedVm::open("/var/lib/firepit/paused/lease-1".as_ref())?;
/// let vm = provider.resume_saved(&paused).await?; // same files, processes, address, forwards
/// assert_eq!(vm.exec(["true"]).await?.exit_code, Some(0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SavedVm {
    dir: PathBuf,
    manifest: SavedManifest,
}

impl SavedVm {
    /// Opens the saved VM in `dir` and checks its manifest and file sizes (the checksums are
    /// checked when it is loaded). A directory whose save never finished has no manifest:
    /// [`LifecycleError::NotSaved`].
    pub fn open(dir: &Path) -> Result<Self, LifecycleError> {
        Ok(Self { dir: dir.to_path_buf(), manifest: manifest::read(dir)? })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Paused or snapshot.
    pub fn kind(&self) -> SavedKind {
        self.manifest.kind
    }

    /// The name of the shape the VM was of.
    pub fn shape(&self) -> &str {
        &self.manifest.spec.key
    }

    /// The id the VM had when it was saved.
    pub fn vm_id(&self) -> &str {
        &self.manifest.vm_id
    }

    /// The shape the VM was made of (size, image, network, …).
    pub fn shape_spec(&self) -> &firepit_shape::ShapeSpec {
        &self.manifest.spec.shape
    }

    /// The kernel, initramfs and base root disk the VM was booted from (they must still exist
    /// to start it again).
    pub fn image(&self) -> &crate::config::ImagePaths {
        &self.manifest.spec.image
    }

    /// The name of the image the VM was booted from.
    pub fn image_id(&self) -> &str {
        &self.manifest.spec.image_id
    }

    /// Bytes of the migration stream: device state and every non-zero guest page.
    pub fn state_bytes(&self) -> u64 {
        self.manifest.state.bytes
    }

    /// Bytes on disk: the stream and the disk layers.
    pub fn total_bytes(&self) -> u64 {
        self.manifest.total_bytes()
    }

    /// When it was saved, seconds since the Unix epoch.
    pub fn created_unix(&self) -> u64 {
        self.manifest.created_unix
    }

    /// Its network as it was saved (address, narrowings, forwards); `None` without one.
    pub fn network(&self) -> Option<&NetworkState> {
        self.manifest.network.as_ref()
    }

    /// Removes its files.
    pub fn remove(self) -> Result<(), LifecycleError> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LifecycleError::io(format!("removing {}", self.dir.display()), e)),
        }
    }

    /// Removes what saves of processes that are gone (killed while saving) left in `parent`, the
    /// directory saved VMs are put in; returns how many. Finished saved VMs are never touched.
    pub fn sweep(parent: &Path) -> usize {
        crate::rundir::remove_stale_in(parent)
    }
}

/// Pause, resume, snapshot and fork (see [`SavedVm`]: what they keep, what they cost). Every VM
/// these make is told to the ownership hook and is the caller's to end
/// ([`Provider::destroy`](firepit_pool::Provider::destroy)).
impl QemuProvider {
    /// Pauses `vm` to disk: its memory, device state and disk layers go into `dir` (which must not
    /// exist; its parent is created), then its QEMU exits. The handle is left with an exited VM:
    /// drop it (or destroy it). On any error before the state is complete the VM runs on and
    /// nothing is left in `dir`; too little room is [`LifecycleError::InsufficientStorage`].
    pub async fn pause_to_disk(&self, vm: &QemuVm, dir: &Path) -> Result<SavedVm, QemuError> {
        let manifest = save::save(self.launcher(), vm, dir, SavedKind::Paused, AfterSave::Exit).await?;
        Ok(SavedVm { dir: dir.to_path_buf(), manifest })
    }

    /// Snapshots `vm` into `dir` (which must not exist): its memory, device state and disk at
    /// this moment. The VM is stopped only while its state is written, then runs on.
    pub async fn snapshot(&self, vm: &QemuVm, dir: &Path) -> Result<SavedVm, QemuError> {
        let manifest = save::save(self.launcher(), vm, dir, SavedKind::Snapshot, AfterSave::Run).await?;
        Ok(SavedVm { dir: dir.to_path_buf(), manifest })
    }

    /// Resumes a paused VM: the same guest again (files, processes and their output, address,
    /// hostname, machine id), its clock set forward, its port forwards made again (at their old
    /// host ports when free). Once it runs, a paused VM's files are removed (it cannot be resumed
    /// twice); a snapshot's are kept. On error nothing is removed: try again, or remove it.
    pub async fn resume_saved(&self, saved: &SavedVm) -> Result<QemuVm, QemuError> {
        start::check(self.launcher(), &saved.dir, &saved.manifest).await?;
        let vm = start::start(self.launcher(), &saved.dir, &saved.manifest, Identity::Same).await?;
        self.report_spawned(&vm);
        if saved.kind() == SavedKind::Paused {
            save::remove_dir(&saved.dir);
        }
        Ok(vm)
    }

    /// Starts a new VM from the snapshot `saved`, with an identity of its own (entropy, clock,
    /// hostname, machine id, address and MAC). Its memory is its own (loaded, not shared); for
    /// several at once that share it, see [`clones_of`](Self::clones_of).
    pub async fn start_from_snapshot(&self, saved: &SavedVm) -> Result<QemuVm, QemuError> {
        start::check(self.launcher(), &saved.dir, &saved.manifest).await?;
        let vm = start::start(self.launcher(), &saved.dir, &saved.manifest, Identity::Fresh).await?;
        self.report_spawned(&vm);
        Ok(vm)
    }

    /// [`start_from_snapshot`](Self::start_from_snapshot) of the snapshot saved in `dir`, opened
    /// (its manifest read) first: what a shape on a snapshot fills with.
    pub(crate) async fn start_from_snapshot_in(&self, dir: &Path) -> Result<QemuVm, QemuError> {
        let dir = dir.to_path_buf();
        let opened = tokio::task::spawn_blocking(move || SavedVm::open(&dir)).await;
        let saved =
            opened.map_err(|source| LifecycleError::Task { what: "opening a snapshot", source })??;
        self.start_from_snapshot(&saved).await
    }

    /// Starts `count` VMs from the snapshot `saved`, copy-on-write clones of one template made from
    /// it (in the template directory, removed with the last clone), each with its own identity.
    /// Each succeeds or fails on its own; the outer error is about the template.
    pub async fn clones_of(
        &self,
        saved: &SavedVm,
        count: usize,
    ) -> Result<Vec<Result<QemuVm, QemuError>>, QemuError> {
        if count == 0 {
            return Err(LifecycleError::NoForks.into());
        }
        start::check(self.launcher(), &saved.dir, &saved.manifest).await?;
        let into = self.template_scratch()?;
        let (spec, ram_block) = (saved.manifest.spec.clone(), saved.manifest.ram_block);
        let template = Arc::new(template::SavedTemplate { dir: into.clone(), spec, ram_block });
        template::build(self.launcher(), &saved.dir, &saved.manifest, &into).await?;
        Ok(self.clone_template(template, count).await)
    }

    /// Forks `vm` into `count` new VMs: each a copy-on-write copy of its memory and disk at this
    /// moment, with its own identity (entropy, clock, hostname, machine id, address and MAC). The
    /// parent is stopped while its disk layers are copied and its memory streams into the forks'
    /// template (a pipe, no file), then runs on. Each fork succeeds or fails on its own; the outer
    /// error means none was made (the parent runs on either way).
    pub async fn fork(&self, vm: &QemuVm, count: usize) -> Result<Vec<Result<QemuVm, QemuError>>, QemuError> {
        if count == 0 {
            return Err(LifecycleError::NoForks.into());
        }
        let into = self.template_scratch()?;
        let template = match template::from_vm(self.launcher(), vm, &into).await {
            Ok(template) => Arc::new(template),
            Err(e) => {
                save::remove_dir(&into);
                return Err(e);
            }
        };
        Ok(self.clone_template(template, count).await)
    }

    /// A fresh private directory for a template in the template directory (a scratch name,
    /// swept if this process dies).
    fn template_scratch(&self) -> Result<PathBuf, QemuError> {
        let base = &self.launcher().config.template_dir;
        crate::snapshot::store::ensure_private_dir(base)?;
        let dir = crate::snapshot::store::scratch_path(base);
        save::private_dir(&dir)?;
        Ok(dir)
    }

    /// `count` clones of `template`, restored at once, each holding the template.
    async fn clone_template(
        &self,
        template: Arc<template::SavedTemplate>,
        count: usize,
    ) -> Vec<Result<QemuVm, QemuError>> {
        let mut clones = tokio::task::JoinSet::new();
        for index in 0..count {
            let (provider, template) = (self.clone(), template.clone());
            clones.spawn(async move { (index, provider.clone_one(template).await) });
        }
        let mut made: Vec<Option<Result<QemuVm, QemuError>>> = (0..count).map(|_| None).collect();
        while let Some(joined) = clones.join_next().await {
            match joined {
                Ok((index, result)) => made[index] = Some(result),
                Err(e) => tracing::error!(error = %e, "a fork's task failed"),
            }
        }
        made.into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(LifecycleError::io("forking", std::io::Error::other("the fork's task failed")).into())
                })
            })
            .collect()
    }

    async fn clone_one(&self, template: Arc<template::SavedTemplate>) -> Result<QemuVm, QemuError> {
        let (key, spec) = relaunch::vm_spec(&template.spec);
        let memory = template.dir.join(template::MEMORY_FILE);
        let device = crate::snapshot::build::quoted(&template.dir.join(template::DEVICE_FILE))?;
        let holder: Arc<dyn std::any::Any + Send + Sync> = template.clone();
        let vm = crate::snapshot::restore::restore_clone(
            self.launcher(),
            (&key, &spec),
            (&memory, template.ram_block),
            &device,
            holder,
        )
        .await?;
        self.report_spawned(&vm);
        Ok(vm)
    }
}
