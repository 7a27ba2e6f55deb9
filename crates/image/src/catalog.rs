//! Naming and listing guest images: what `firepit image ls` prints, and what a shape's `image`
//! (or any user-given image name) resolves to.

use std::path::{Path, PathBuf};

use crate::error::ImageError;
use crate::kind::ImageKind;
use crate::manifest::Image;
use crate::store::{DiskImage, ImageStore, allocated_bytes};

/// One line of `firepit image ls`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    /// The image id (what a shape or `VmConfig` can name).
    pub id: String,
    /// Initramfs, raw ext4 disk or qcow2 disk.
    pub kind: ImageKind,
    /// Bytes its files take on the host (disks are sparse).
    pub size_bytes: u64,
    /// The packages it was built from, or its source (`oci PATH ...`, `firepit initramfs ...`).
    pub source: String,
    /// Its directory.
    pub dir: PathBuf,
}

/// The default image at `default_dir` (when there is one) followed by every image in `store`.
///
/// ```no_run
/// let images = firepit_image::list_images(&firepit_image::default_dir(), &firepit_image::ImageStore::open_default())?;
/// for image in images {
///     println!("{:16} {:9} {:>6} MiB  {}", image.id, image.kind.as_str(), image.size_bytes >> 20, image.source);
/// }
/// # Ok::<(), firepit_image::ImageError>(())
/// ```
pub fn list_images(default_dir: &Path, store: &ImageStore) -> Result<Vec<ImageInfo>, ImageError> {
    let mut infos = Vec::new();
    if let Ok(image) = Image::open(default_dir) {
        let names: Vec<&str> = image.manifest().packages.iter().map(|p| p.package.name.as_str()).collect();
        infos.push(ImageInfo {
            id: image.id().to_owned(),
            kind: ImageKind::Initramfs,
            size_bytes: allocated_bytes(image.kernel()) + allocated_bytes(image.initramfs()),
            source: format!(
                "firepit initramfs + kernel {} (packages {})",
                image.kernel_version(),
                names.join(",")
            ),
            dir: image.dir().to_path_buf(),
        });
    }
    for image in store.list()? {
        let record = image.record();
        let source = match record.packages.is_empty() {
            true => record.source.to_string(),
            false => {
                let versions: Vec<String> =
                    record.packages.iter().map(|p| format!("{}={}", p.name, p.version)).collect();
                format!("{} [{}]", record.source, versions.join(" "))
            }
        };
        infos.push(ImageInfo {
            id: image.id().to_owned(),
            kind: record.kind,
            size_bytes: image.usage_bytes(),
            source,
            dir: image.dir().to_path_buf(),
        });
    }
    Ok(infos)
}

/// What a user-given image name turned out to be.
#[derive(Debug, Clone)]
pub enum GuestImage {
    /// A firepit image directory (kernel + initramfs + manifest).
    Firepit(Image),
    /// A stored root disk image (its directory, or its id in the store).
    Stored(DiskImage),
    /// A file: an initramfs, or a root disk firepit did not make.
    File {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: ImageKind,
    },
}

impl GuestImage {
    /// Resolves `name`: a stored image's directory, a firepit image directory (any other
    /// directory fails as [`ImageError::NotAnImage`]), an image file (told apart by content, see
    /// [`ImageKind::detect`]), or the id of an image in `store`.
    ///
    /// ```no_run
    /// use firepit_image::{GuestImage, ImageStore};
    /// match GuestImage::resolve("0123456789abcdef".as_ref(), &ImageStore::open_default())? {
    ///     GuestImage::Stored(disk) => println!("disk {}", disk.disk().display()),
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok::<(), firepit_image::ImageError>(())
    /// ```
    pub fn resolve(name: &Path, store: &ImageStore) -> Result<Self, ImageError> {
        if name.is_dir() {
            if name.join(crate::store::DISK_RECORD_FILE).exists() {
                return DiskImage::open(name).map(GuestImage::Stored);
            }
            // Any other directory is meant as a firepit image: say what it lacks.
            return Image::open(name).map(GuestImage::Firepit);
        }
        if !name.exists()
            && let Some(id) = name.to_str().filter(|s| !s.contains('/'))
        {
            return store.get(id).map(GuestImage::Stored);
        }
        let kind = ImageKind::detect(name)?;
        Ok(GuestImage::File { path: name.to_path_buf(), kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_files_stored_ids_or_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path().join("store"));
        let err = GuestImage::resolve("0123456789abcdef".as_ref(), &store).unwrap_err();
        assert!(matches!(err, ImageError::NotInStore { .. }), "{err}");
        let err = GuestImage::resolve(dir.path(), &store).unwrap_err();
        assert!(matches!(err, ImageError::NotAnImage { .. }), "a directory is no firepit image: {err}");
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"junk").unwrap();
        assert!(matches!(GuestImage::resolve(&junk, &store), Err(ImageError::UnusableImage { .. })));
        assert!(list_images(&dir.path().join("none"), &store).unwrap().is_empty());
    }
}
