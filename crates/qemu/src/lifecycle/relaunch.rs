//! The command line a saved VM starts again with, and its hash (kept in the manifest).
//!
//! A migration stream loads only into a QEMU with the same devices, RAM size and RAM block name as
//! the one that wrote it. A saved VM starts again from its own spec (shape, image, console) as
//! QEMU waiting for the stream (`-incoming defer`), without kernel and initramfs (they are in the
//! RAM it loads), its RAM anonymous under the block name the stream carries. The hash of that
//! command line, with per-VM paths as placeholders, is saved with the VM and compared before a
//! load: a firepit that builds another command line (or another QEMU) refuses the saved VM with a
//! clear error instead of a failed migration.

use std::path::Path;

use firepit_pool::ShapeKey;

use super::manifest::SavedSpec;
use crate::argv::{GuestMemory, LaunchSpec, RamBlock};
use crate::config::Accel;
use crate::error::QemuError;
use crate::launch::Launcher;
use crate::vm_spec::VmSpec;

/// The VM spec a saved VM was made from.
pub(crate) fn vm_spec(saved: &SavedSpec) -> (ShapeKey, VmSpec) {
    let mut spec = VmSpec::of(saved.shape.clone(), saved.image_id.clone(), saved.image.clone());
    spec.console = saved.console;
    (ShapeKey::new(saved.key.clone()), spec)
}

/// Anonymous RAM under `block`'s name.
pub(crate) fn memory(block: RamBlock) -> GuestMemory {
    match block {
        RamBlock::Machine => GuestMemory::Anonymous,
        RamBlock::Backend => GuestMemory::Ram,
    }
}

/// The command line of VM `id` started again from `saved` in runtime directory `dir`, its RAM
/// `memory` (anonymous for a resume, the template's file for a template built from it).
pub(crate) fn launch_spec(
    launcher: &Launcher,
    (id, accel): (&str, Accel),
    saved: &SavedSpec,
    dir: &Path,
    memory: GuestMemory,
) -> Result<LaunchSpec, QemuError> {
    let (key, spec) = vm_spec(saved);
    let mut launch = launcher.launch_spec(id, accel, (&key, &spec), dir, memory)?;
    launch.incoming = Some("defer".into());
    launch.without_kernel = true;
    Ok(launch)
}

/// SHA-256 of the command line `saved` starts again with (RAM block `block`), paths as placeholders.
pub(crate) async fn cmdline_sha256(
    launcher: &Launcher,
    saved: &SavedSpec,
    block: RamBlock,
) -> Result<String, QemuError> {
    let accel = launcher.accel().await;
    let launch = launch_spec(launcher, ("VM", accel), saved, Path::new("/RUNTIME"), memory(block))?;
    let mut joined = Vec::new();
    for arg in crate::argv::build_argv(&launch) {
        joined.extend_from_slice(arg.as_encoded_bytes());
        joined.push(0);
    }
    Ok(crate::snapshot::store::sha256_hex(&joined))
}
