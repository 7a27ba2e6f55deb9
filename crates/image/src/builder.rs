//! [`ImageBuilder`]: resolve packages, download, unpack, write the initramfs and the manifest.
//!
//! Caching: `apt-cache` takes seconds on hosts without a package cache file, so a rebuild does not
//! ask apt again while the apt lists are unchanged (same file names, sizes and mtimes under
//! `/var/lib/apt/lists`): it reuses the package versions recorded in the manifest. The build is
//! skipped when the input fingerprint — package versions, agent hash, modules, hostname, kernel
//! command line, builder version — equals the manifest's.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::apt::{self, PackageRef};
use crate::deb;
use crate::error::ImageError;
use crate::initramfs::{self, Contents};
use crate::manifest::{INITRAMFS_FILE, Image, KERNEL_FILE, MANIFEST_FILE, Manifest, PackageInfo};
use crate::{files, kernel};

/// Kernel command line the image is built for: `-M microvm` under TCG cannot calibrate the TSC,
/// hence `tsc=reliable tsc_early_khz=`; `quiet` because console output under TCG is slow.
pub const DEFAULT_KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 quiet tsc=reliable tsc_early_khz=2000000";
/// Modules `/init` loads (their dependencies are added): virtio-mmio transport, the agent's
/// virtio-serial port, the virtio RNG, virtio-blk for root disks and the virtio NIC of
/// `network = "nat"` shapes (each loads in a few ms and finds no device when the VM has none).
pub const DEFAULT_MODULES: &[&str] =
    &["virtio_mmio", "virtio_console", "virtio_rng", "virtio_blk", "virtio_net"];
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";
const KERNEL_PREFIX: &str = "linux-image-";
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// Bump when the image layout changes in a way the inputs do not show.
const FORMAT: u32 = 1;
const TOTAL_STEPS: u32 = 6;

/// One step of a build, reported to the progress callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// 1-based step number.
    pub step: u32,
    /// Number of steps of a full build (a cached build jumps to the last).
    pub total: u32,
    /// What is being done, e.g. `downloading busybox-static 1:1.35.0-4+deb12u1+b1`.
    pub message: String,
}

/// Builds a guest image into a directory.
///
/// ```no_run
/// use firepit_image::ImageBuilder;
/// let image = ImageBuilder::new("target/firepit-image")
///     .agent("target/x86_64-unknown-linux-gnu/agent/firepit-agent")
///     .build(&mut |p| eprintln!("[{}/{}] {}", p.step, p.total, p.message))?;
/// println!("image {} at {}", image.id(), image.kernel().display());
/// # Ok::<(), firepit_image::ImageError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    out_dir: PathBuf,
    agent: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    modules: Vec<String>,
    hostname: String,
    kernel_cmdline: String,
}

impl ImageBuilder {
    /// A builder writing to `out_dir` (created if missing).
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        Self {
            out_dir: out_dir.into(),
            agent: None,
            cache_dir: None,
            modules: DEFAULT_MODULES.iter().map(|m| (*m).to_owned()).collect(),
            hostname: "firepit".into(),
            kernel_cmdline: DEFAULT_KERNEL_CMDLINE.into(),
        }
    }

    /// The static agent binary to put at `/sbin/firepit-agent` (required).
    pub fn agent(mut self, path: impl Into<PathBuf>) -> Self {
        self.agent = Some(path.into());
        self
    }

    /// Where downloaded .deb files are kept (default `<out_dir>/.cache/debs`).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Adds a kernel module for `/init` to load (its dependencies are added too).
    pub fn module(mut self, name: impl Into<String>) -> Self {
        self.modules.push(name.into());
        self
    }

    /// The guest's hostname (default `firepit`).
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = name.into();
        self
    }

    /// Builds the image, or returns the existing one when its inputs have not changed.
    pub fn build(&self, progress: &mut dyn FnMut(Progress)) -> Result<Image, ImageError> {
        let mut step = 0;
        let mut report = |message: String| {
            step += 1;
            progress(Progress { step, total: TOTAL_STEPS, message });
        };
        let agent_path = self.agent.clone().unwrap_or_else(|| PathBuf::from("firepit-agent"));
        report(format!("checking agent {}", agent_path.display()));
        let agent_stamp = match std::fs::metadata(&agent_path) {
            Ok(meta) => files::stamp(&meta),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::AgentMissing(agent_path));
            }
            Err(error) => return Err(ImageError::io("reading", &agent_path)(error)),
        };
        let read_agent = || -> Result<Vec<u8>, ImageError> {
            let bytes = std::fs::read(&agent_path).map_err(ImageError::io("reading", &agent_path))?;
            initramfs::require_static(&agent_path, &bytes)?;
            Ok(bytes)
        };

        report("resolving packages".into());
        std::fs::create_dir_all(&self.out_dir).map_err(ImageError::io("creating", &self.out_dir))?;
        // Two builds into one directory (parallel test processes) would overwrite each other's files.
        let _lock = files::lock_dir(&self.out_dir)?;
        let previous = Image::open(&self.out_dir).ok();
        let cache_dir = self.cache_dir.clone().unwrap_or_else(|| self.out_dir.join(".cache").join("debs"));
        let lists_stamp = files::apt_lists_stamp();
        let packages = match &previous {
            Some(image) if lists_stamp.is_some() && image.manifest().apt_lists_stamp == lists_stamp => {
                image.manifest().packages.iter().map(|p| p.package.clone()).collect()
            }
            _ => self.resolve_packages(&cache_dir)?,
        };
        // Hashing in an unoptimised build runs at a few MB/s: an agent file whose size, mtime and
        // inode are unchanged keeps the hash recorded for it.
        let mut agent = None;
        let agent_sha256 = match &previous {
            Some(image) if image.manifest().agent_stamp == agent_stamp => {
                image.manifest().agent_sha256.clone()
            }
            _ => files::sha256_hex(&[agent.insert(read_agent()?)]),
        };
        let fingerprint = self.fingerprint(&packages, &agent_sha256);
        if let Some(image) = previous
            && image.manifest().input_fingerprint == fingerprint
        {
            progress(Progress {
                step: TOTAL_STEPS,
                total: TOTAL_STEPS,
                message: format!("cached image {}", image.id()),
            });
            return Ok(image);
        }

        let mut debs = Vec::new();
        for package in &packages {
            report(format!("downloading {} {}", package.name, package.version));
            debs.push(apt::download(package, &cache_dir)?);
        }
        let [kernel_deb, busybox_deb] =
            <[PathBuf; 2]>::try_from(debs.clone()).map_err(|_| ImageError::PackageUnavailable {
                package: KERNEL_METAPACKAGE.into(),
                detail: "apt resolved an unexpected package set".into(),
            })?;

        report(format!("unpacking {}", kernel_deb.display()));
        let kernel::KernelParts { version: kernel_version, image: kernel, modules } =
            kernel::unpack(&kernel_deb, &self.modules)?;
        let busybox = deb::read_files(&busybox_deb, |p| p == Path::new("bin/busybox"))?
            .into_values()
            .next()
            .ok_or_else(|| ImageError::BadPackage {
                package: busybox_deb.clone(),
                detail: "no bin/busybox".into(),
            })?;

        report(format!("writing image to {}", self.out_dir.display()));
        let agent = match agent {
            Some(bytes) => bytes,
            None => read_agent()?,
        };
        let contents = Contents {
            kernel_version: &kernel_version,
            modules: &modules,
            busybox: &busybox.data,
            agent: &agent,
            hostname: &self.hostname,
        };
        let archive = initramfs::archive(&contents);
        let mut initramfs_bytes = Vec::new();
        initramfs::write_gzipped(&archive, &mut initramfs_bytes)
            .map_err(ImageError::io("compressing", &self.out_dir))?;
        files::write_atomic(&self.out_dir.join(KERNEL_FILE), &kernel)?;
        files::write_atomic(&self.out_dir.join(INITRAMFS_FILE), &initramfs_bytes)?;
        let infos = packages
            .iter()
            .zip(&debs)
            .map(|(package, deb)| PackageInfo {
                package: package.clone(),
                deb_file: deb.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            })
            .collect();
        let kernel_sha256 = files::sha256_hex(&[&kernel]);
        let initramfs_sha256 = files::sha256_hex(&[&initramfs_bytes]);
        let manifest = Manifest {
            id: files::sha256_hex(&[kernel_sha256.as_bytes(), b"\n", initramfs_sha256.as_bytes()])[..16]
                .to_owned(),
            kernel_version,
            kernel_cmdline: self.kernel_cmdline.clone(),
            kernel_sha256,
            initramfs_sha256,
            kernel_bytes: kernel.len() as u64,
            initramfs_bytes: initramfs_bytes.len() as u64,
            agent_sha256,
            agent_stamp,
            packages: infos,
            modules: modules.into_iter().map(|(name, _)| name).collect(),
            files: archive.paths().map(str::to_owned).collect(),
            builder_version: env!("CARGO_PKG_VERSION").into(),
            input_fingerprint: fingerprint,
            apt_lists_stamp: lists_stamp,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| ImageError::Io {
            action: "serialising",
            path: self.out_dir.join(MANIFEST_FILE),
            source: std::io::Error::other(e),
        })?;
        files::write_atomic(&self.out_dir.join(MANIFEST_FILE), &json)?;
        Image::open(&self.out_dir)
    }

    /// Asks apt for the concrete kernel package and busybox: one `apt-get download` of the kernel
    /// metapackage (a tiny .deb whose control file pins the concrete package and version) and of
    /// busybox-static; `apt-cache` (slower) only if the metapackage pins no version.
    fn resolve_packages(&self, cache_dir: &Path) -> Result<Vec<PackageRef>, ImageError> {
        let fetched = apt::download_candidates(&[KERNEL_METAPACKAGE, BUSYBOX_PACKAGE], cache_dir)?;
        let (meta, busybox) = match fetched.as_slice() {
            [(meta, _), (busybox, _)] => (meta, busybox),
            _ => {
                return Err(ImageError::PackageUnavailable {
                    package: KERNEL_METAPACKAGE.into(),
                    detail: "apt-get download fetched an unexpected set".into(),
                });
            }
        };
        let busybox = PackageRef { name: busybox.package.clone(), version: busybox.version.clone() };
        let pinned = meta.depends_exact.iter().find(|(name, _)| name.starts_with(KERNEL_PREFIX));
        let kernel = match pinned {
            Some((name, version)) => PackageRef { name: name.clone(), version: version.clone() },
            None => {
                let name = apt::resolve_dependency(KERNEL_METAPACKAGE, KERNEL_PREFIX)?;
                apt::candidate_versions(&[&name])?.into_iter().next().ok_or_else(|| {
                    ImageError::PackageUnavailable { package: name, detail: "no candidate version".into() }
                })?
            }
        };
        Ok(vec![kernel, busybox])
    }

    /// Hash of every input.
    fn fingerprint(&self, packages: &[PackageRef], agent_sha256: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("firepit-image {} format {FORMAT}\n", env!("CARGO_PKG_VERSION")));
        for package in packages {
            hasher.update(format!("package {} {}\n", package.name, package.version));
        }
        hasher.update(format!(
            "agent {agent_sha256}\nmodules {:?}\nhostname {}\n",
            self.modules, self.hostname
        ));
        hasher.update(format!(
            "cmdline {}\ninit {}\n",
            self.kernel_cmdline,
            initramfs::init_script("", &self.modules)
        ));
        hex::encode(hasher.finalize())
    }
}

/// Builds (or reuses) the default image: Debian's cloud kernel, busybox-static and `agent`.
///
/// ```no_run
/// let image = firepit_image::build_default("firepit-agent".as_ref(), "target/firepit-image".as_ref())?;
/// println!("{}", image.id());
/// # Ok::<(), firepit_image::ImageError>(())
/// ```
pub fn build_default(agent: &Path, out_dir: &Path) -> Result<Image, ImageError> {
    ImageBuilder::new(out_dir).agent(agent).build(&mut |_| {})
}
