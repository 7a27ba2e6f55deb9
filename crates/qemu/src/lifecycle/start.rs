//! Starting a VM from a saved state: the same VM again (a resume) or a new one (from a snapshot).
//!
//! The saved VM is checked first (manifest format, QEMU version, command line, the root disk's
//! base, every file's size); its disk layers are copied into the new VM's runtime directory
//! (checked against their SHA-256 on the way); QEMU starts waiting for the stream, loads it (its
//! SHA-256 checked alongside) and runs; the agent answers. Then:
//! - a resume keeps everything the guest had (its address and MAC, hostname, machine id, its
//!   processes and files: they are in the memory and disk it loaded), sets the guest's clock
//!   forward to the host's (it stood still while paused) and makes the port forwards again, at
//!   their old host ports when those are free;
//! - a VM from a snapshot gets an identity of its own, as a snapshot clone does (fresh entropy,
//!   the clock, hostname, machine id, and a new address and MAC).

use firepit_agent::IdentityRequest;
use tokio::time::Instant;

use super::manifest::SavedManifest;
use super::relaunch;
use crate::config::FillKind;
use crate::error::QemuError;
use crate::launch::Launcher;
use crate::lifecycle_error::LifecycleError;
use crate::vm::QemuVm;

/// Who the started VM is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    /// The saved VM itself, resumed.
    Same,
    /// A new VM with an identity of its own.
    Fresh,
}

/// Fails unless the saved VM in `dir` can be loaded by this launcher's QEMU and command line, and
/// its root disk's base is the one it was saved on.
pub(crate) async fn check(
    launcher: &Launcher,
    dir: &std::path::Path,
    manifest: &SavedManifest,
) -> Result<(), QemuError> {
    let incompatible = |what, found: &str, wanted: &str| LifecycleError::Incompatible {
        dir: dir.to_path_buf(),
        what,
        found: found.to_owned(),
        wanted: wanted.to_owned(),
    };
    if manifest.qemu_version != launcher.caps.version {
        return Err(incompatible("QEMU version", &manifest.qemu_version, &launcher.caps.version).into());
    }
    let cmdline = relaunch::cmdline_sha256(launcher, &manifest.spec, manifest.ram_block).await?;
    if cmdline != manifest.cmdline_sha256 {
        return Err(incompatible("command line (hash)", &manifest.cmdline_sha256, &cmdline).into());
    }
    if let Some(base) = &manifest.spec.image.disk {
        let now = crate::disk::base_stamp(&base.base).map_err(|e| LifecycleError::BaseChanged {
            dir: dir.to_path_buf(),
            base: base.base.clone(),
            why: format!("cannot be read ({e})"),
        })?;
        if manifest.base_stamp.as_deref() != Some(now.as_str()) {
            let why = "was changed since (size, time or inode differ)".to_owned();
            return Err(
                LifecycleError::BaseChanged { dir: dir.to_path_buf(), base: base.base.clone(), why }.into()
            );
        }
    }
    Ok(())
}

/// Starts the VM saved in `dir` (its manifest checked by [`check`]) as `identity` says.
pub(crate) async fn start(
    launcher: &Launcher,
    dir: &std::path::Path,
    manifest: &SavedManifest,
    identity: Identity,
) -> Result<QemuVm, QemuError> {
    let started_at = Instant::now();
    let deadline = super::stream::deadline(manifest.spec.shape.memory_mb);
    let accel = launcher.accel().await;
    let (id, vm_dir) = launcher.new_dir()?;
    super::layers::load(dir, &manifest.disk, vm_dir.path()).await?;
    let memory = relaunch::memory(manifest.ram_block);
    let mut launch = relaunch::launch_spec(launcher, (&id, accel), &manifest.spec, vm_dir.path(), memory)?;
    if identity == Identity::Same
        && let Some(plan) = launch.network.as_mut()
    {
        plan.resume = manifest.network.clone();
    }
    let started = launcher.start(&launch, vm_dir, deadline).await?;
    let spawned = started_at.elapsed();
    if let Err(e) = super::stream::load(&started.qmp, dir, &manifest.state, deadline).await {
        started.process.kill();
        let _reaped = tokio::time::timeout(std::time::Duration::from_secs(5), started.process.exited()).await;
        return Err(e);
    }
    let streamed = started_at.elapsed();
    started.qmp.cont().await?;
    let timeout = deadline.saturating_duration_since(Instant::now());
    crate::boot::wait_for_agent(&started, timeout, deadline).await?;
    let loaded = started_at.elapsed();
    tracing::debug!(?spawned, ?streamed, ?loaded, "saved VM loaded");
    let (key, spec) = relaunch::vm_spec(&manifest.spec);
    let mut vm = launcher.vm((&key, &spec), &launch, loaded, started, FillKind::Saved);
    vm.set_exec_defaults(spec.image.exec_defaults.clone());
    match identity {
        Identity::Same => {
            let clock = IdentityRequest {
                unix_time_ns: Some(crate::pause::unix_time_ns()),
                ..IdentityRequest::default()
            };
            vm.set_identity(clock).await?;
            if let (Some(network), Some(state)) = (&vm.network, &manifest.network) {
                network.restore_forwards(&vm.qmp, &state.forwards).await;
            }
        }
        Identity::Fresh => {
            vm.set_identity(firepit_guest::fresh_identity(vm.id())).await?;
            vm.configure_network().await?;
        }
    }
    vm.boot_duration = started_at.elapsed();
    tracing::info!(vm = %vm.id(), from = %dir.display(), ?identity, ?loaded, ready = ?vm.boot_duration, "VM started from its saved state");
    Ok(vm)
}
