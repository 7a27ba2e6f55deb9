//! [`PackageDiskBuilder`]: a root disk with Debian packages in it, their dependencies resolved and
//! configured the way Debian does it.
//!
//! # Why mmdebstrap
//! Installing packages *correctly* means resolving dependencies (apt's solver), unpacking in
//! order and running every maintainer script (`postinst` creates users, alternatives, caches). The
//! initramfs builder can unpack a static busybox by hand; a Python or git install cannot be done
//! that way without re-implementing dpkg. `mmdebstrap` (Debian's own, maintained, one Perl
//! script over apt and dpkg) does exactly this: it runs apt with the given sources to resolve and
//! download, installs the essential set plus the asked-for packages in a chroot with their scripts
//! run, and leaves a directory. It is faster than `debootstrap` (one apt call, no second stage),
//! needs no network beyond the apt mirror, and builds the `minbase` variant (essential packages
//! and apt, no init system). `mkfs.ext4 -d` (e2fsprogs) then writes the tree into an ext4 image
//! without mounting anything. Mirrors: the host's apt sources (`/etc/apt/sources.list` and the
//! `.list`/`.sources` files in `/etc/apt/sources.list.d`) are passed to mmdebstrap as they are;
//! they are the only mirrors firepit assumes reachable.
//!
//! The result boots with firepit's kernel and initramfs: `minbase` has no init, so firepit's init
//! stays PID 1 and the console gets the disk's `/bin/sh` (see `firepit_image::initramfs`). Docs,
//! man pages, info pages and translations are left out (like Debian's `slim` container images).
//!
//! # Caching
//! The image id hashes the inputs: the package names, suite, variant, the contents of the apt
//! source files, the free space and the builder's format. The same inputs find the stored image
//! (≈ms); versions are what the mirror had at build time and are recorded in the image's record.
//! [`PackageDiskBuilder::rebuild`] replaces a stored image (e.g. after a security update).
//! Needs root: the tree's files must belong to their Debian owners (root, `_apt`, ...), and
//! `mkfs.ext4 -d` copies owners from the tree.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::apt::PackageRef;
use crate::builder::Progress;
use crate::error::ImageError;
use crate::kind::ImageKind;
use crate::store::{DISK_FILE, DiskImage, DiskRecord, ExecConfig, ImageSource, ImageStore, STORE_FORMAT};

const TOTAL_STEPS: u32 = 5;
const VARIANT: &str = "minbase";
/// Paths dpkg leaves out (as Debian's slim container images do); copyright files stay.
const DPKG_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
];

/// Builds (or finds in the store) a root disk holding Debian packages.
///
/// ```no_run
/// use firepit_image::{ImageStore, PackageDiskBuilder};
/// let store = ImageStore::open_default();
/// let image = PackageDiskBuilder::new(&store, ["python3", "git"])
///     .build(&mut |p| eprintln!("[{}/{}] {}", p.step, p.total, p.message))?;
/// println!("{} at {}", image.id(), image.disk().display());
/// # Ok::<(), firepit_image::ImageError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PackageDiskBuilder {
    store: ImageStore,
    packages: Vec<String>,
    suite: Option<String>,
    sources: Option<Vec<PathBuf>>,
    free_space_mb: u64,
    rebuild: bool,
    customize: Vec<String>,
}

impl PackageDiskBuilder {
    /// A builder of a disk with `packages` (and what they depend on) for `store`.
    pub fn new<I, S>(store: &ImageStore, packages: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut packages: Vec<String> = packages.into_iter().map(Into::into).collect();
        packages.sort();
        packages.dedup();
        Self {
            store: store.clone(),
            packages,
            suite: None,
            sources: None,
            free_space_mb: 256,
            rebuild: false,
            customize: Vec::new(),
        }
    }

    /// The Debian suite (default: the host's, `VERSION_CODENAME` in `/etc/os-release`).
    pub fn suite(mut self, suite: impl Into<String>) -> Self {
        self.suite = Some(suite.into());
        self
    }

    /// The apt source files (`.list` or deb822 `.sources`) to install from (default: the host's).
    pub fn sources(mut self, files: Vec<PathBuf>) -> Self {
        self.sources = Some(files);
        self
    }

    /// Free space left in the file system for the guest's writes (default 256 MiB; the file is
    /// sparse, so unused space costs nothing on the host).
    pub fn free_space_mb(mut self, mb: u64) -> Self {
        self.free_space_mb = mb;
        self
    }

    /// Build even if the store has an image with these inputs, and replace it.
    pub fn rebuild(mut self, rebuild: bool) -> Self {
        self.rebuild = rebuild;
        self
    }

    /// The id the image has (or will have): a hash of the inputs.
    pub fn id(&self) -> Result<String, ImageError> {
        Ok(self.fingerprint()?.0[..16].to_owned())
    }

    /// Shell commands run in the finished tree (as root, in a chroot, in order) before the disk is
    /// written, e.g. to add a user: mmdebstrap's `--customize-hook`. They are part of the image's
    /// inputs (its id).
    ///
    /// ```
    /// use firepit_image::{ImageStore, PackageDiskBuilder};
    /// let store = ImageStore::new("/tmp/firepit-doc-store");
    /// let builder = PackageDiskBuilder::new(&store, ["sudo"]).customize(["useradd -m app"]);
    /// # let _ = builder;
    /// ```
    pub fn customize<I, S>(mut self, commands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.customize = commands.into_iter().map(Into::into).collect();
        self
    }

    /// Builds the disk, or returns the stored one with the same inputs.
    pub fn build(&self, progress: &mut dyn FnMut(Progress)) -> Result<DiskImage, ImageError> {
        let mut step = 0;
        next(progress, &mut step, format!("checking inputs (packages {})", self.packages.join(",")));
        if self.packages.is_empty() {
            return Err(ImageError::InvalidPackageName { name: String::new() });
        }
        for name in &self.packages {
            if !valid_package_spec(name) {
                return Err(ImageError::InvalidPackageName { name: name.clone() });
            }
        }
        let (fingerprint, suite, sources) = self.fingerprint()?;
        let id = fingerprint[..16].to_owned();
        let _lock = self.store.lock(&id)?;
        if !self.rebuild
            && let Ok(image) = self.store.get(&id)
        {
            progress(Progress {
                step: TOTAL_STEPS,
                total: TOTAL_STEPS,
                message: format!("cached image {id}"),
            });
            return Ok(image);
        }
        if !crate::mkdisk::is_root() {
            return Err(ImageError::ToolFailed {
                command: "mmdebstrap".into(),
                status: "not started".into(),
                stderr: "building a root disk needs root (its files must belong to their Debian owners)"
                    .into(),
            });
        }
        let staging = self.store.stage()?;
        let tree = staging.path().join("rootfs");
        next(
            progress,
            &mut step,
            format!("installing {} with mmdebstrap ({suite})", self.packages.join(",")),
        );
        let mut args: Vec<OsString> = vec![
            format!("--variant={VARIANT}").into(),
            "--format=directory".into(),
            format!("--include={}", self.packages.join(",")).into(),
            "--aptopt=Acquire::Languages \"none\"".into(),
        ];
        args.extend(DPKG_EXCLUDES.iter().map(|rule| OsString::from(format!("--dpkgopt={rule}"))));
        // mmdebstrap runs each hook with `sh -c` and the tree as `$1`.
        args.extend(self.customize.iter().map(|command| {
            OsString::from(format!("--customize-hook=chroot \"$1\" /bin/sh -c {}", shell_quote(command)))
        }));
        args.extend([OsString::from(&suite), tree.as_os_str().to_owned()]);
        args.extend(sources.iter().map(|s| s.as_os_str().to_owned()));
        let step_now = step;
        crate::mkdisk::run("mmdebstrap", "mmdebstrap", &args, &mut |line| {
            if let Some(message) = line.strip_prefix("I: ") {
                progress(Progress { step: step_now, total: TOTAL_STEPS, message: message.to_owned() });
            }
        })?;
        next(progress, &mut step, "recording package versions".into());
        let packages = installed_versions(&tree, &self.packages)?;
        next(progress, &mut step, format!("writing the ext4 disk ({} MiB free)", self.free_space_mb));
        let disk = staging.path().join(DISK_FILE);
        let disk_bytes = crate::mkdisk::make_ext4(&tree, &disk, self.free_space_mb, "firepit-root")?;
        std::fs::remove_dir_all(&tree).map_err(ImageError::io("removing", &tree))?;
        next(progress, &mut step, format!("saving image {id}"));
        let record = DiskRecord {
            format: STORE_FORMAT,
            id,
            kind: ImageKind::RawExt4,
            disk_file: DISK_FILE.into(),
            disk_bytes,
            source: ImageSource::Packages { packages: self.packages.clone(), suite },
            packages,
            exec: ExecConfig::default(),
            created_unix: crate::store::now_unix(),
            input_fingerprint: fingerprint,
        };
        self.store.commit(staging, &record)
    }

    /// The input hash, the suite and the source files it covers.
    fn fingerprint(&self) -> Result<(String, String, Vec<PathBuf>), ImageError> {
        let suite = match &self.suite {
            Some(suite) => suite.clone(),
            None => host_suite()?,
        };
        let sources = match &self.sources {
            Some(files) => files.clone(),
            None => host_sources(),
        };
        if sources.is_empty() {
            return Err(ImageError::PackageUnavailable {
                package: self.packages.join(","),
                detail: "no apt sources found in /etc/apt/sources.list(.d)".into(),
            });
        }
        let mut hasher = Sha256::new();
        hasher.update(format!(
            "firepit package disk format {STORE_FORMAT}\nvariant {VARIANT}\nsuite {suite}\n"
        ));
        hasher.update(format!(
            "packages {}\nfree {}\nexcludes {DPKG_EXCLUDES:?}\n",
            self.packages.join(","),
            self.free_space_mb
        ));
        for command in &self.customize {
            hasher.update(format!("customize {command}\n"));
        }
        for file in &sources {
            let text = std::fs::read(file).map_err(ImageError::io("reading", file))?;
            hasher.update(format!("source {} {}\n", file.display(), text.len()));
            hasher.update(&text);
        }
        Ok((hex::encode(hasher.finalize()), suite, sources))
    }
}

/// `text` as one single-quoted shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Reports the next step.
fn next(progress: &mut dyn FnMut(Progress), step: &mut u32, message: String) {
    *step += 1;
    progress(Progress { step: *step, total: TOTAL_STEPS, message });
}

/// `name` or `name=version`, in Debian's alphabet (nothing that could be read as an option).
fn valid_package_spec(spec: &str) -> bool {
    let (name, version) = spec.split_once('=').map_or((spec, None), |(n, v)| (n, Some(v)));
    let name_ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let version_ok = version
        .is_none_or(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c)));
    name_ok && version_ok
}

/// `VERSION_CODENAME` from `/etc/os-release`.
fn host_suite() -> Result<String, ImageError> {
    let path = Path::new("/etc/os-release");
    let text = std::fs::read_to_string(path).map_err(ImageError::io("reading", path))?;
    text.lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ImageError::PackageUnavailable {
            package: "the Debian suite".into(),
            detail: "/etc/os-release has no VERSION_CODENAME: name the suite (PackageDiskBuilder::suite)"
                .into(),
        })
}

/// The host's enabled apt source files, in a stable order.
fn host_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let main = Path::new("/etc/apt/sources.list");
    let has_entries = |path: &Path| {
        std::fs::read_to_string(path)
            .is_ok_and(|t| t.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')))
    };
    if has_entries(main) {
        files.push(main.to_path_buf());
    }
    let mut listed: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources") && has_entries(p))
        .collect();
    listed.sort();
    files.extend(listed);
    files
}

/// The versions of `wanted` installed in `tree` (per its dpkg database).
fn installed_versions(tree: &Path, wanted: &[String]) -> Result<Vec<PackageRef>, ImageError> {
    let admin = tree.join("var/lib/dpkg");
    let output = std::process::Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args(["-W", "-f", "${Package}\t${Version}\n"])
        .args(wanted.iter().map(|w| w.split('=').next().unwrap_or(w)))
        .output()
        .map_err(|source| ImageError::Io { action: "running", path: "dpkg-query".into(), source })?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(name, version)| PackageRef { name: name.to_owned(), version: version.to_owned() })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_specs_are_debian_names_and_nothing_else() {
        for good in ["python3", "git", "libc6", "g++", "python3.11", "git=1:2.39.5-0+deb12u2"] {
            assert!(valid_package_spec(good), "{good}");
        }
        for bad in ["", "a", "--variant=x", "Python3", "git,curl", "x y", "pkg=", "pkg=$(id)", "-x"] {
            assert!(!valid_package_spec(bad), "{bad}");
        }
    }

    #[test]
    fn the_id_follows_the_inputs_not_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let sources = dir.path().join("debian.sources");
        std::fs::write(&sources, "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n")
            .unwrap();
        let store = ImageStore::new(dir.path().join("store"));
        let builder = |packages: &[&str]| {
            PackageDiskBuilder::new(&store, packages.iter().copied())
                .suite("bookworm")
                .sources(vec![sources.clone()])
        };
        let id = builder(&["python3", "git"]).id().unwrap();
        assert_eq!(id.len(), 16);
        assert_eq!(builder(&["git", "python3", "git"]).id().unwrap(), id, "order and repeats do not matter");
        assert_ne!(builder(&["python3"]).id().unwrap(), id);
        assert_ne!(builder(&["python3", "git"]).free_space_mb(1).id().unwrap(), id);
        std::fs::write(&sources, "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n")
            .unwrap();
        assert_ne!(builder(&["python3", "git"]).id().unwrap(), id, "other sources, other image");
    }

    #[test]
    fn bad_names_fail_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path());
        let err =
            PackageDiskBuilder::new(&store, ["--root=/"]).suite("bookworm").build(&mut |_| {}).unwrap_err();
        assert!(matches!(err, ImageError::InvalidPackageName { .. }), "{err}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing was staged");
    }
}
