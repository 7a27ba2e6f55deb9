//! Where the default guest image lives, so that every tool agrees on one place.
//!
//! `scripts/demo`, `scripts/test`, `firepit image build`, `firepit demo`, every bench, the
//! default shape of `firepit serve` and the library all call [`default_dir`]; the environment
//! variable [`IMAGE_DIR_ENV`] overrides it everywhere.

use std::path::PathBuf;

/// Environment variable naming the default image directory (overrides the per-user data dir).
pub const IMAGE_DIR_ENV: &str = "FIREPIT_IMAGE_DIR";

/// The default image directory: `$FIREPIT_IMAGE_DIR` when set and not empty, else `image` in the
/// data dir: `$XDG_DATA_HOME/firepit/image`, else `/var/lib/firepit/image` for root (a system
/// service; QEMU run as `qemu_user` can reach it, which it cannot under `/root`), else
/// `$HOME/.local/share/firepit/image`.
///
/// ```
/// // SAFETY (test): no other thread reads the environment here.
/// unsafe { std::env::set_var("FIREPIT_IMAGE_DIR", "/srv/firepit/image") };
/// assert_eq!(firepit_image::default_dir(), std::path::Path::new("/srv/firepit/image"));
/// ```
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(IMAGE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    data_dir().join("image")
}

/// Environment variable naming the image store (disk images built from packages or imported from
/// OCI images; see [`ImageStore`](crate::ImageStore)).
pub const STORE_DIR_ENV: &str = "FIREPIT_IMAGE_STORE";

/// The image store: `$FIREPIT_IMAGE_STORE` when set and not empty, else `images` in the data dir
/// (see [`default_dir`]). It does not follow `FIREPIT_IMAGE_DIR`, which names one image, not a
/// place for many.
///
/// ```
/// // SAFETY (test): no other thread reads the environment here.
/// unsafe { std::env::set_var("FIREPIT_IMAGE_STORE", "/srv/firepit/images") };
/// assert_eq!(firepit_image::default_store_dir(), std::path::Path::new("/srv/firepit/images"));
/// ```
pub fn default_store_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(STORE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    data_dir().join("images")
}

/// `$XDG_DATA_HOME/firepit`, else `/var/lib/firepit` for root or without a home, else
/// `$HOME/.local/share/firepit`.
fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("firepit");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) if !root => PathBuf::from(home).join(".local/share/firepit"),
        _ => PathBuf::from("/var/lib/firepit"),
    }
}

impl crate::manifest::Image {
    /// Opens the image at [`default_dir`], with an error that says how to build it when it is
    /// missing.
    ///
    /// ```no_run
    /// let image = firepit_image::Image::open_default()?;
    /// println!("{} at {}", image.id(), image.dir().display());
    /// # Ok::<(), firepit_image::ImageError>(())
    /// ```
    pub fn open_default() -> Result<Self, crate::error::ImageError> {
        let dir = default_dir();
        Self::open(&dir)
            .map_err(|error| crate::error::ImageError::NoDefaultImage { dir, source: Box::new(error) })
    }
}
