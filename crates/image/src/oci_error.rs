//! [`OciError`]: why an OCI image could not be imported (wrapped in
//! [`ImageError::Oci`](crate::ImageError::Oci)). Below both the importer and the crate's error, so
//! neither imports the other.

use std::path::PathBuf;

/// Why an OCI image could not be imported.
///
/// ```
/// let err = firepit_image::oci::OciError::Platform { found: "linux/arm64".into() };
/// assert!(err.to_string().contains("linux/amd64"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The path is no OCI layout, oci-archive or docker-save archive.
    #[error("{path} is not an OCI image layout, an oci-archive or a `docker save` archive: {detail}")]
    NotAnImage {
        /// The path given.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The layout holds several images and none was chosen, or the one asked for is not there.
    #[error("{path}: {detail}")]
    WhichImage {
        /// The layout.
        path: PathBuf,
        /// What is there.
        detail: String,
    },
    /// The image is not for linux/amd64.
    #[error("the image is for {found}; firepit runs linux/amd64 guests")]
    Platform {
        /// `os/architecture` of the image.
        found: String,
    },
    /// A blob the manifest names is missing or does not match its digest.
    #[error("blob {digest} ({path}): {detail}; the image is incomplete or damaged")]
    Blob {
        /// Its digest.
        digest: String,
        /// Where it should be.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A JSON document of the image (index, manifest, config) is not what the spec says.
    #[error("{what} of the image is not valid: {detail}")]
    BadDocument {
        /// Which document.
        what: String,
        /// The decoding error.
        detail: String,
    },
    /// A layer cannot be applied.
    #[error("layer {layer}: {detail}")]
    BadLayer {
        /// The layer's digest or file.
        layer: String,
        /// What is wrong (an entry escaping the root, a hard link to nothing, ...).
        detail: String,
    },
    /// The config's `User` names no user or group of the image.
    #[error("the image's User {user:?}: {detail}")]
    User {
        /// The `User` value.
        user: String,
        /// What could not be resolved.
        detail: String,
    },
}
