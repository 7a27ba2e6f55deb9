//! [`VmSpec`]: what the provider makes the VMs of one shape from.
//!
//! The pool keeps one per shape (it is the provider's `Provider::Spec`) and hands it to every
//! `create`, so the provider keeps no table of images or shapes. It is plain data: checking it
//! against the host (files exist, size bounds, snapshot with `run_as`) is
//! [`QemuProvider::check`](crate::QemuProvider::check)'s job.

use firepit_shape::{FillStrategy, NetworkSpec, ShapeSpec};

use crate::config::ImagePaths;

/// What the QEMU provider makes the VMs of one shape from: the guest image, the machine size and
/// how a VM is made ready.
///
/// Fields may be added, so it is built with [`VmSpec::new`], which takes
/// the shape defaults of [`ShapeSpec::new`] (1 vCPU, 256 MiB, snapshot fill), and then changed
/// field by field. A `firepit_shape::ShapeSpec` becomes one through the `firepit` facade, which
/// opens the shape's image directory.
///
/// ```
/// use firepit_qemu::{FillStrategy, ImagePaths, VmSpec};
/// let mut spec = VmSpec::new("debian-6.1", ImagePaths::new("/images/vmlinuz", "/images/initramfs.cpio.gz"));
/// assert_eq!((spec.cpus, spec.memory_mb, spec.fill), (1, 256, FillStrategy::Snapshot));
/// assert!(spec.warm_up);
/// spec.memory_mb = 512;
/// spec.fill = FillStrategy::ColdBoot;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VmSpec {
    /// Names the guest image in template manifests and logs (for firepit images: the image's
    /// content id, `firepit_image::Image::id`).
    pub image_id: String,
    /// The kernel and initramfs the VMs boot, and the root disk each VM gets its own overlay of
    /// (if any) with the defaults its commands run with.
    pub image: ImagePaths,
    /// Virtual CPUs per VM (at least 1).
    pub cpus: u32,
    /// Guest memory per VM, MiB (at least 32). Also what a cold-booted VM is charged against the
    /// pool's memory budget.
    pub memory_mb: u64,
    /// Cold boot every VM, or restore copy-on-write clones of a template (the shape's fill).
    pub fill: FillStrategy,
    /// No NIC (the default), or NAT egress under a policy (see [`NetworkSpec`]).
    pub network: NetworkSpec,
    /// Run a trivial command (the agent executing itself) in every new VM before it is handed out,
    /// so the code a first command needs is translated during the fill, not on the user's clock
    /// (see `warm.rs`). Default `true`.
    pub warm_up: bool,
}

impl VmSpec {
    /// A spec for `image` (named `image_id`) with the shape defaults of [`ShapeSpec::new`]:
    /// 1 vCPU, 256 MiB, snapshot fill, no network; every VM warmed up before hand-out.
    pub fn new(image_id: impl Into<String>, image: ImagePaths) -> Self {
        let defaults = ShapeSpec::new(String::new(), std::path::PathBuf::new());
        Self {
            image_id: image_id.into(),
            image,
            cpus: defaults.cpus,
            memory_mb: defaults.memory_mb,
            fill: defaults.fill,
            network: defaults.network,
            warm_up: true,
        }
    }
}
