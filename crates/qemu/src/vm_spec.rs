//! [`VmSpec`]: what the provider makes the VMs of one shape from.
//!
//! The pool keeps one per shape (it is the provider's `Provider::Spec`) and hands it to every
//! `create`, so the provider keeps no table of images or shapes. It is the shape's
//! [`ShapeSpec`] itself — not a copy of some of its fields — with what the provider needs beside
//! it: the image files the shape's `image` resolved to, and whether the caller gets the console.
//! A field added to `ShapeSpec` thus reaches the provider without a change here; what the QEMU
//! command line takes from it is computed in one place, `Launcher::launch_spec`. Checking it
//! against the host (the shape's bounds, files exist, snapshot with `run_as`) is
//! [`QemuProvider::check`](crate::QemuProvider::check)'s job.

use std::ops::{Deref, DerefMut};

use firepit_shape::ShapeSpec;

use crate::config::ImagePaths;

/// What the QEMU provider makes the VMs of one shape from: the shape ([`ShapeSpec`]: size, fill,
/// network, warm-up, …), the guest image it resolved to, and whether the console is the caller's.
///
/// It derefs to its [`ShapeSpec`], so `spec.memory_mb` or `spec.fill = FillStrategy::ColdBoot`
/// read and write the shape's own fields (`spec.image` is the resolved [`ImagePaths`]; the
/// shape's own `image`, what the user named, is `spec.shape.image`). Fields may be added, so it
/// is built with [`VmSpec::new`] (the shape defaults of [`ShapeSpec::new`]) or [`VmSpec::of`] (a
/// shape given). A `firepit_shape::ShapeSpec` becomes one through the `firepit` facade, which
/// opens the shape's image.
///
/// ```
/// use firepit_qemu::{FillStrategy, ImagePaths, VmSpec};
/// let mut spec = VmSpec::new("debian-6.1", ImagePaths::new("/images/vmlinuz", "/images/initramfs.cpio.gz"));
/// assert_eq!((spec.cpus, spec.memory_mb, spec.fill), (1, 256, FillStrategy::Snapshot));
/// assert!(spec.warm_up && !spec.console);
/// spec.memory_mb = 512;
/// spec.fill = FillStrategy::ColdBoot;
/// assert_eq!(spec.shape.memory_mb, 512);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VmSpec {
    /// The shape: machine size, fill, network, warm-up, and whatever the shape describes next.
    /// The provider refuses a spec whose shape is out of [`ShapeSpec::validate_vm`]'s bounds.
    pub shape: ShapeSpec,
    /// Names the guest image in template manifests and logs (for firepit images: the image's
    /// content id, `firepit_image::Image::id`).
    pub image_id: String,
    /// The kernel and initramfs the VMs boot, and the root disk each VM gets its own overlay of
    /// (if any) with the defaults its commands run with.
    pub image: ImagePaths,
    /// Whether the serial console is the caller's: the guest keeps an interactive shell on it and
    /// [`QemuVm::console`](crate::QemuVm::console) hands it out. Off (the default), the guest runs
    /// no shell there (the console only carries boot output and the readiness line) and
    /// `console()` fails with [`ConfigError::ConsoleDisabled`](crate::ConfigError::ConsoleDisabled).
    /// A root disk with its own init decides itself what runs on its console.
    pub console: bool,
    /// The directory of a saved snapshot (a [`SavedVm`](crate::SavedVm)) the shape's VMs start
    /// from, each with an identity of its own
    /// ([`QemuProvider::start_from_snapshot`](crate::QemuProvider::start_from_snapshot)), instead
    /// of booting `image` or cloning the shape's template; `None` (the default): they do not.
    /// Its size must be the shape's (the facade checks it when it wires the shape).
    pub snapshot: Option<std::path::PathBuf>,
}

impl VmSpec {
    /// A spec for `image` (named `image_id`) with the shape defaults of [`ShapeSpec::new`]:
    /// 1 vCPU, 256 MiB, snapshot fill, no network, every VM warmed up before hand-out; no console.
    pub fn new(image_id: impl Into<String>, image: ImagePaths) -> Self {
        Self::of(ShapeSpec::new(String::new(), std::path::PathBuf::new()), image_id, image)
    }

    /// A spec for the VMs of `shape`, which boot `image` (named `image_id`); no console.
    ///
    /// ```
    /// use firepit_qemu::{ImagePaths, VmSpec};
    /// use firepit_shape::ShapeSpec;
    /// let shape = ShapeSpec { cpus: 2, ..ShapeSpec::new("big", "/images/debian") };
    /// let spec = VmSpec::of(shape, "debian-6.1", ImagePaths::new("/images/vmlinuz", "/images/initrd"));
    /// assert_eq!((spec.name.as_str(), spec.cpus), ("big", 2));
    /// ```
    pub fn of(shape: ShapeSpec, image_id: impl Into<String>, image: ImagePaths) -> Self {
        Self { shape, image_id: image_id.into(), image, console: false, snapshot: None }
    }
}

/// A `VmSpec` reads as the shape it makes VMs of.
impl Deref for VmSpec {
    type Target = ShapeSpec;

    fn deref(&self) -> &ShapeSpec {
        &self.shape
    }
}

impl DerefMut for VmSpec {
    fn deref_mut(&mut self) -> &mut ShapeSpec {
        &mut self.shape
    }
}
