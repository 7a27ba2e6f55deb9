//! The one wiring path from a shape description to a pool: [`PoolShape`].
//!
//! A shape is described once, as a [`ShapeSpec`] (the daemon's `[[shape]]` table, the body of
//! `PUT /v1/shapes/{name}`, or the library's [`VmConfig`](crate::VmConfig) through
//! [`Firepit::pool`](crate::Firepit::pool)). Every way in goes through here and is checked here,
//! by the one [`ShapeSpec::validate`], before anything is read or started: the same shape gets the
//! same [`Error::InvalidShape`] from the library as from the daemon. Then it is split, the same
//! way for every caller, into what the pool keeps per shape — its name ([`ShapeKey`]) and how its
//! bucket is kept warm ([`ShapeConfig`]: depth, age, health check, pausing) — and what the QEMU
//! provider makes its VMs from ([`VmSpec`]: the shape itself, with the image files it resolved
//! to). The pool stores the `VmSpec` in the shape's bucket and hands it to every `create`; nobody
//! else keeps a table of shapes.

use firepit_image::{GuestImage, Image, ImageStore};
use firepit_pool::{PoolBuilder, ShapeConfig, ShapeKey};
use firepit_qemu::{ImagePaths, QemuProvider, VmSpec};
use firepit_shape::ShapeSpec;

use crate::error::Error;
use crate::vm_config::{ResolvedImage, VmConfig};

/// A pool of QEMU microVMs, as built by [`Firepit::pool`](crate::Firepit::pool) or wired shape by
/// shape with [`PoolShape`].
pub type VmPool = firepit_pool::Pool<QemuProvider>;

/// A VM leased from a [`VmPool`]: derefs to [`VmHandle`](crate::VmHandle); dropping it destroys
/// the VM and the pool boots a replacement.
pub type PooledVm = firepit_pool::PooledVm<QemuProvider>;

/// A shape wired for a pool of QEMU VMs: the pool's key and settings and the provider's spec, all
/// taken from one [`ShapeSpec`].
///
/// ```no_run
/// # async fn demo() -> Result<(), firepit::Error> {
/// use firepit::{AgentPing, PoolShape, ShapeSpec};
/// use firepit::qemu::{ProviderConfig, QemuProvider};
/// let provider = QemuProvider::new(ProviderConfig::default())?;
/// let builder = firepit::pool::Pool::builder(provider).health_check(AgentPing);
/// let small = PoolShape::open(&ShapeSpec::new("small", "target/firepit-image"))?;
/// let pool = small.add_to(builder)?.build().await?;   // one bucket, named `small`
/// let big = ShapeSpec { cpus: 2, memory_mb: 1024, ..ShapeSpec::new("big", "target/firepit-image") };
/// PoolShape::open(&big)?.register(&pool)?;           // added at run time
/// let vm = pool.reserve_shape(&"big".into()).await?;
/// assert_eq!(pool.spec(vm.shape()).map(|spec| spec.cpus), Some(2));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PoolShape {
    /// The shape's name: what callers reserve by, and the `shape` label of every metric.
    pub key: ShapeKey,
    /// What the provider makes the shape's VMs from.
    pub vm: VmSpec,
    /// How the pool keeps the shape's bucket warm.
    pub config: ShapeConfig,
}

impl PoolShape {
    /// Wires `spec`: checks it ([`ShapeSpec::validate`]) and resolves its image
    /// ([`GuestImage::resolve`]) in the default image store ([`ImageStore::open_default`]); see
    /// [`open_in`](Self::open_in).
    ///
    /// Errors: [`Error::InvalidShape`] (which field, what is allowed), [`Error::ImageBuild`] (the
    /// image names nothing usable, and what was found instead).
    pub fn open(spec: &ShapeSpec) -> Result<Self, Error> {
        Self::open_in(spec, &ImageStore::open_default())
    }

    /// [`open`](Self::open) with the image store given. `spec.image` may name
    /// - a firepit image directory (`firepit image build`): its id names the image, its kernel and
    ///   initramfs are what the VMs boot;
    /// - a root disk in `store`, by its directory or its id: booted with the default image's
    ///   kernel and initramfs (as [`VmConfig::from_disk`] does), its exec defaults applied;
    /// - a file: a root disk (raw ext4 or qcow2), or an initramfs, booted with the default
    ///   image's kernel (and initramfs), told apart by content (as [`VmConfig::resolve`] does).
    ///
    /// Blocking (reads image files): call it from `spawn_blocking` where that matters.
    ///
    /// ```no_run
    /// use firepit::{PoolShape, ShapeSpec};
    /// use firepit::image::ImageStore;
    /// let store = ImageStore::new("/var/lib/firepit/images");
    /// let shape = PoolShape::open_in(&ShapeSpec::new("python", "0123456789abcdef"), &store)?;
    /// assert!(shape.vm.image.disk.is_some());
    /// # Ok::<(), firepit::Error>(())
    /// ```
    pub fn open_in(spec: &ShapeSpec, store: &ImageStore) -> Result<Self, Error> {
        spec.validate()?;
        if spec.snapshot_image().is_some() {
            return Err(firepit_shape::InvalidShape {
                shape: spec.name.clone(),
                key: "image".into(),
                value: spec.image.display().to_string(),
                allowed: "a snapshot is a shape's image only when registered at run time \
                          (`PUT /v1/shapes/{name}` on the daemon that holds it; see `from_snapshot`)"
                    .into(),
            }
            .into());
        }
        let resolved = match GuestImage::resolve(&spec.image, store)? {
            GuestImage::Firepit(image) => ResolvedImage {
                image_id: image.id().to_owned(),
                paths: ImagePaths::new(image.kernel(), image.initramfs()),
            },
            GuestImage::Stored(disk) => VmConfig::from_disk(&Image::open_default()?, &disk).resolve()?,
            GuestImage::File { path, .. } => {
                let firepit = Image::open_default()?;
                let mut config = VmConfig::new(firepit.kernel(), path);
                config.initramfs = Some(firepit.initramfs().to_path_buf());
                config.resolve()?
            }
        };
        Ok(Self::wire(spec, resolved))
    }

    /// Wires the library's `config`: checks its shape ([`ShapeSpec::validate`], as
    /// [`open`](Self::open) does) and resolves its kernel and image file
    /// ([`VmConfig::resolve`]); the VMs' console is the caller's if `config` says so. What
    /// [`Firepit::pool`](crate::Firepit::pool)'s build does. Blocking (reads and hashes files).
    ///
    /// ```
    /// use firepit::{PoolShape, VmConfig};
    /// let mut config = VmConfig::new("/images/vmlinuz", "/images/initrd");
    /// config.shape.cpus = 65;
    /// let err = PoolShape::from_vm_config(&config).unwrap_err();
    /// assert_eq!(err.to_string(), "shape \"default\": `cpus` = 65: must be 1..=64");
    /// ```
    pub fn from_vm_config(config: &VmConfig) -> Result<Self, Error> {
        config.shape.validate()?;
        let mut shape = Self::wire(&config.shape, config.resolve()?);
        shape.vm.console = config.console_enabled;
        Ok(shape)
    }

    /// Wires `spec` with its guest given explicitly (`spec.image` is not resolved, only checked
    /// like every shape's): `image_id` names the image, `files` are what the VMs boot. Checks the
    /// shape ([`ShapeSpec::validate`]); [`add_to`](Self::add_to) and [`register`](Self::register)
    /// have the provider check the files.
    ///
    /// ```
    /// use firepit::{FillStrategy, PoolShape, ShapeSpec};
    /// use firepit::qemu::ImagePaths;
    /// let spec =
    ///     ShapeSpec { memory_mb: 512, fill: FillStrategy::ColdBoot, ..ShapeSpec::new("small", "my-image") };
    /// let shape = PoolShape::with_image(&spec, "my-image", ImagePaths::new("/k/vmlinuz", "/k/initrd"))?;
    /// assert_eq!(shape.key.as_str(), "small");
    /// assert_eq!((shape.vm.memory_mb, shape.vm.fill), (512, FillStrategy::ColdBoot));
    /// assert_eq!(shape.config.depth, 1..=2);
    /// assert!(shape.config.health_check);
    /// # Ok::<(), firepit::Error>(())
    /// ```
    pub fn with_image(
        spec: &ShapeSpec,
        image_id: impl Into<String>,
        files: ImagePaths,
    ) -> Result<Self, Error> {
        spec.validate()?;
        Ok(Self::wire(spec, ResolvedImage { image_id: image_id.into(), paths: files }))
    }

    /// Wires `spec`, whose `image` names a snapshot (`snapshot:ID`, see
    /// [`ShapeSpec::snapshot_image`]), with that snapshot `saved` opened: the shape's VMs start
    /// from it (its files and processes, each with an identity of its own) instead of booting.
    /// The shape's `cpus`, `memory_mb` and `network` must be the snapshot's
    /// ([`SavedVm::shape_spec`](firepit_qemu::SavedVm::shape_spec)): a mismatch is
    /// [`Error::InvalidShape`] naming the snapshot's value.
    ///
    /// ```no_run
    /// use firepit::{PoolShape, ShapeSpec};
    /// use firepit::qemu::SavedVm;
    /// let saved = SavedVm::open("/var/lib/firepit/snapshots/0123abcd/vm".as_ref())?;
    /// let spec = ShapeSpec { memory_mb: saved.shape_spec().memory_mb, ..ShapeSpec::new("warm", "snapshot:0123abcd") };
    /// let shape = PoolShape::from_snapshot(&spec, saved)?;
    /// assert!(shape.vm.snapshot.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_snapshot(spec: &ShapeSpec, saved: firepit_qemu::SavedVm) -> Result<Self, Error> {
        spec.validate()?;
        let of = saved.shape_spec();
        let mismatch = |key: &str, value: String, theirs: String| firepit_shape::InvalidShape {
            shape: spec.name.clone(),
            key: key.to_owned(),
            value,
            allowed: format!(
                "the snapshot {} was taken of a VM with {key} = {theirs}: give the shape that",
                spec.image.display()
            ),
        };
        if spec.cpus != of.cpus {
            return Err(mismatch("cpus", spec.cpus.to_string(), of.cpus.to_string()).into());
        }
        if spec.memory_mb != of.memory_mb {
            return Err(mismatch("memory_mb", spec.memory_mb.to_string(), of.memory_mb.to_string()).into());
        }
        if spec.network != of.network {
            return Err(
                mismatch("network", format!("{:?}", spec.network), format!("{:?}", of.network)).into()
            );
        }
        let image =
            ResolvedImage { image_id: spec.image.display().to_string(), paths: saved.image().clone() };
        let mut shape = Self::wire(spec, image);
        shape.vm.snapshot = Some(saved.dir().to_path_buf());
        Ok(shape)
    }

    /// The split itself, of a checked `spec`: the provider gets the whole shape, the pool what it
    /// keeps per bucket.
    fn wire(spec: &ShapeSpec, image: ResolvedImage) -> Self {
        let config = ShapeConfig {
            depth: spec.depth.low..=spec.depth.high,
            max_age: spec.max_age(),
            health_check: spec.health_check,
            pause_idle: spec.pause_idle,
            ..ShapeConfig::default()
        };
        let vm = VmSpec::of(spec.clone(), image.image_id, image.paths);
        Self { key: ShapeKey::new(spec.name.clone()), vm, config }
    }

    /// Adds the shape to a pool being built, once the builder's provider accepted its spec
    /// ([`QemuProvider::check`]: files exist, the size can boot).
    pub fn add_to(self, builder: PoolBuilder<QemuProvider>) -> Result<PoolBuilder<QemuProvider>, Error> {
        builder.provider().check(&self.key, &self.vm)?;
        Ok(builder.shape_with(self.key, self.vm, self.config))
    }

    /// Adds the shape to a running pool, once its provider accepted the spec; its bucket starts
    /// filling at once. A name already registered fails with
    /// [`PoolError::DuplicateShape`](firepit_pool::PoolError::DuplicateShape) (in [`Error::Pool`]).
    pub fn register(self, pool: &VmPool) -> Result<(), Error> {
        pool.provider().check(&self.key, &self.vm)?;
        pool.register_shape(self.key, self.vm, self.config)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_a_shape_lands_in_the_pool_or_the_provider() {
        let spec = ShapeSpec {
            cpus: 2,
            memory_mb: 512,
            depth: firepit_shape::Depth { low: 2, high: 3 },
            max_age_secs: Some(90),
            fill: firepit_shape::FillStrategy::ColdBoot,
            health_check: false,
            pause_idle: false,
            warm_up: false,
            ..ShapeSpec::new("big", "/unused")
        };
        let files = ImagePaths::new("/k", "/i");
        let shape = PoolShape::wire(&spec, ResolvedImage { image_id: "img".into(), paths: files.clone() });
        assert_eq!(shape.key, ShapeKey::new("big"));
        assert_eq!((shape.vm.image_id.as_str(), &shape.vm.image), ("img", &files));
        assert_eq!(shape.vm.shape, spec, "the provider gets the whole shape");
        assert!(!shape.vm.console, "the console is the library's to enable");
        assert_eq!(shape.config.depth, 2..=3);
        assert_eq!(shape.config.max_age, Some(std::time::Duration::from_secs(90)));
        assert!(!shape.config.health_check);
        assert!(!shape.config.pause_idle);
        let defaults = ShapeSpec::new("small", "/unused");
        assert!(
            PoolShape::wire(&defaults, ResolvedImage { image_id: "img".into(), paths: files })
                .config
                .pause_idle
        );
    }

    #[test]
    fn opening_an_invalid_shape_or_a_missing_image_says_which() {
        let bad = ShapeSpec { cpus: 0, ..ShapeSpec::new("small", std::env::temp_dir()) };
        assert!(matches!(PoolShape::open(&bad), Err(Error::InvalidShape(e)) if e.key == "cpus"));
        let empty = tempfile::tempdir().unwrap();
        let no_image = ShapeSpec::new("small", empty.path());
        assert!(matches!(PoolShape::open(&no_image), Err(Error::ImageBuild(_))));
        let store = firepit_image::ImageStore::new(empty.path().join("store"));
        let unknown_id = ShapeSpec::new("small", "0123456789abcdef");
        let err = PoolShape::open_in(&unknown_id, &store).unwrap_err();
        assert!(matches!(err, Error::ImageBuild(firepit_image::ImageError::NotInStore { .. })), "{err}");
    }

    #[test]
    fn a_snapshot_image_is_refused_where_no_snapshot_can_be_opened() {
        let store = ImageStore::new("/nonexistent/firepit-images");
        let err = PoolShape::open_in(&ShapeSpec::new("warm", "snapshot:s-1"), &store).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::InvalidShape(_)), "{err}");
        assert!(text.contains("`image` = snapshot:s-1") && text.contains("PUT /v1/shapes"), "{text}");
    }
}
