//! Builds firepit's guest images: firepit's own — a Debian cloud kernel plus a tiny busybox
//! initramfs that starts the firepit agent — from Debian packages with nothing but apt and Rust;
//! and root disks with the user's software on them, from Debian packages or OCI images.
//!
//! # Why
//! The pool needs a guest that boots in a couple of seconds under TCG, answers the agent protocol,
//! and is the same on every machine. Debian already ships a signed, maintained kernel
//! (`linux-image-cloud-amd64`) and a static busybox (`busybox-static`); building from them needs
//! no root file system, no container runtime, no loop devices and no network beyond apt.
//! Users' test suites and sandboxes need *their* software in the VM: a root disk boots with
//! firepit's kernel and initramfs, which mount it, start the agent inside it and hand over to its
//! init, so nothing of firepit has to be on the disk (see [`initramfs`]).
//!
//! # What it is not
//! - Not a distribution builder: firepit's image holds what its packages bring (a kernel, its
//!   virtio modules, busybox and the agent), unpacked without dpkg. Disks with real userlands are
//!   made by Debian's own tools ([`PackageDiskBuilder`] runs `mmdebstrap`, which resolves and
//!   configures packages as Debian does; its docs say why that tool) or taken from OCI images
//!   ([`OciImporter`]); firepit writes no resolver of its own.
//! - Not an installer: nothing is installed on the host.
//! - Not a registry client: OCI images are imported from a layout directory or an archive.
//! - Not a VMM: it writes files. `firepit-qemu` boots them, each VM on its own copy-on-write
//!   overlay of a disk.
//!
//! # Disks
//! [`ImageKind::detect`] tells an initramfs, a raw ext4 disk and a qcow2 disk apart by content
//! (and says what anything else is). [`PackageDiskBuilder`] and [`OciImporter`] write raw ext4
//! disks (`mkfs.ext4 -d`, e2fsprogs) into an [`ImageStore`] (default [`default_store_dir`], next
//! to the default image), one directory per image named by a hash of its inputs, with an
//! `image.json` ([`DiskRecord`]) saying where it came from and the defaults its commands run
//! with. [`list_images`] is what `firepit image ls` prints; [`GuestImage::resolve`] turns a name
//! (a directory, a file, a stored id) into an image.
//!
//! # How firepit's image is built
//! [`ImageBuilder`] (or [`build_default`]) resolves package versions with apt ([`PackageRef`]),
//! downloads the `.deb` files into a cache, unpacks them in Rust ([`deb`]), takes the kernel and
//! the virtio modules it needs in load order ([`kernel`], [`modules`]), adds busybox, the agent and
//! a generated `/init` ([`initramfs`]), and writes a reproducible newc archive ([`cpio`]). The
//! result is a directory with `vmlinuz`, `initramfs.cpio.gz` and `manifest.json` ([`Manifest`]),
//! opened again later with [`Image::open`]; its id is a hash of the kernel and initramfs, so equal
//! images have equal ids. Every failure is an [`ImageError`] that says what to do.
//!
//! Caching: downloaded .deb files stay in `<out_dir>/.cache/debs/<package>/<version>/` (or
//! [`ImageBuilder::cache_dir`]). The manifest records an input fingerprint (package versions, agent
//! hash, modules, hostname, kernel command line, `/init` template, builder version); a build whose
//! fingerprint matches returns the existing image without touching apt (≈0.02 s). apt is asked
//! again only after its package lists change (`apt-get update`), and the agent is re-hashed only
//! when its file's size, mtime or inode change. Builds into one directory are serialised by a
//! `flock` on `<out_dir>/.build.lock`.
//!
//! ```no_run
//! let image = firepit_image::build_default(
//!     "target/x86_64-unknown-linux-gnu/agent/firepit-agent".as_ref(),
//!     "target/firepit-image".as_ref(),
//! )?;
//! println!("qemu-system-x86_64 -kernel {} -initrd {} -append '{}'",
//!     image.kernel().display(), image.initramfs().display(), image.manifest().kernel_cmdline);
//! # Ok::<(), firepit_image::ImageError>(())
//! ```

#![warn(missing_docs)]

mod apt;
mod builder;
mod catalog;
pub mod cpio;
pub mod deb;
mod error;
mod files;
pub mod initramfs;
pub mod kernel;
mod kind;
mod location;
mod manifest;
mod mkdisk;
pub mod modules;
pub mod oci;
mod oci_error;
mod packages;
mod store;

pub use apt::PackageRef;
pub use builder::{DEFAULT_KERNEL_CMDLINE, DEFAULT_MODULES, ImageBuilder, Progress, build_default};
pub use catalog::{GuestImage, ImageInfo, list_images};
pub use error::ImageError;
pub use kind::ImageKind;
pub use location::{IMAGE_DIR_ENV, STORE_DIR_ENV, default_dir, default_store_dir};
pub use manifest::{INITRAMFS_FILE, Image, KERNEL_FILE, MANIFEST_FILE, Manifest, PackageInfo};
pub use oci::OciImporter;
pub use packages::PackageDiskBuilder;
pub use store::{DISK_FILE, DISK_RECORD_FILE, DiskImage, DiskRecord, ExecConfig, ImageSource, ImageStore};
