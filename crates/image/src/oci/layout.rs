//! Finding an image's manifest, config and layers in an OCI layout (or an archive of one, or a
//! `docker save` archive), with every blob checked against its digest.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ImageError;
use crate::oci_error::OciError;

/// Where an archive is unpacked inside the staging directory.
const UNPACKED: &str = "unpacked";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A layer blob to apply.
#[derive(Debug)]
pub(super) struct Layer {
    pub digest: String,
    pub path: PathBuf,
}

/// The parts of an image the importer needs.
#[derive(Debug)]
pub(super) struct OpenedImage {
    /// The manifest's digest (the image's identity).
    pub digest: String,
    pub reference: Option<String>,
    /// The image config (JSON).
    pub config: Vec<u8>,
    /// Bottom layer first.
    pub layers: Vec<Layer>,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn not_image(path: &Path, detail: impl Into<String>) -> ImageError {
    OciError::NotAnImage { path: path.to_path_buf(), detail: detail.into() }.into()
}

fn document<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(bytes)
        .map_err(|e| OciError::BadDocument { what: what.into(), detail: e.to_string() }.into())
}

/// Opens the image at `path`: a layout directory, or an archive unpacked into `staging`.
pub(super) fn open(path: &Path, reference: Option<&str>, staging: &Path) -> Result<OpenedImage, ImageError> {
    let meta = std::fs::metadata(path).map_err(|e| not_image(path, e.to_string()))?;
    let dir = if meta.is_dir() {
        path.to_path_buf()
    } else {
        let target = staging.join(UNPACKED);
        unpack_archive(path, &target)?;
        target
    };
    if dir.join("index.json").is_file() {
        from_layout(&dir, path, reference)
    } else if dir.join("manifest.json").is_file() {
        from_docker_save(&dir, path, reference)
    } else {
        Err(not_image(path, "no index.json (OCI layout) and no manifest.json (docker save)"))
    }
}

/// Removes an unpacked archive from the staging directory (before the disk is committed).
pub(super) fn remove_unpacked(staging: &Path) -> Result<(), ImageError> {
    let dir = staging.join(UNPACKED);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ImageError::io("removing", &dir)(e)),
        _ => Ok(()),
    }
}

fn unpack_archive(path: &Path, target: &Path) -> Result<(), ImageError> {
    let reader = super::apply::decompressed(path).map_err(|e| not_image(path, e.to_string()))?;
    std::fs::create_dir_all(target).map_err(ImageError::io("creating", target))?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    archive.unpack(target).map_err(|e| not_image(path, format!("not a readable tar archive ({e})")))
}

/// Reads blob `digest` of the layout in `dir`, checking its SHA-256.
fn blob(dir: &Path, digest: &str) -> Result<(PathBuf, Vec<u8>), ImageError> {
    let path = blob_path(dir, digest)?;
    let bytes = std::fs::read(&path).map_err(|e| blob_error(digest, &path, e.to_string()))?;
    check_digest(digest, &path, &bytes)?;
    Ok((path, bytes))
}

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let hex =
        digest.strip_prefix("sha256:").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    match hex {
        Some(hex) => Ok(dir.join("blobs/sha256").join(hex)),
        None => Err(blob_error(digest, dir, "only sha256 digests are supported".into())),
    }
}

fn blob_error(digest: &str, path: &Path, detail: String) -> ImageError {
    OciError::Blob { digest: digest.into(), path: path.to_path_buf(), detail }.into()
}

fn check_digest(digest: &str, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    if actual == digest {
        Ok(())
    } else {
        Err(blob_error(digest, path, format!("its content hashes to {actual}")))
    }
}

/// Checks a (possibly large) layer file against `digest` without reading it into memory.
fn check_file_digest(digest: &str, path: &Path) -> Result<(), ImageError> {
    let mut file = std::fs::File::open(path).map_err(|e| blob_error(digest, path, e.to_string()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) => return Err(blob_error(digest, path, e.to_string())),
        }
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual == digest {
        Ok(())
    } else {
        Err(blob_error(digest, path, format!("its content hashes to {actual}")))
    }
}

fn is_index(media_type: &str) -> bool {
    media_type.contains("image.index") || media_type.contains("manifest.list")
}

fn from_layout(dir: &Path, given: &Path, reference: Option<&str>) -> Result<OpenedImage, ImageError> {
    let index_path = dir.join("index.json");
    let text = std::fs::read(&index_path).map_err(ImageError::io("reading", &index_path))?;
    let index: Index = document("index.json", &text)?;
    let chosen = match reference {
        Some(name) => index.manifests.iter().find(|d| d.annotations.get(REF_NAME).is_some_and(|r| r == name)),
        None if index.manifests.len() == 1 => index.manifests.first(),
        None => None,
    };
    let Some(descriptor) = chosen else {
        let names: Vec<&str> =
            index.manifests.iter().filter_map(|d| d.annotations.get(REF_NAME)).map(String::as_str).collect();
        let detail = match reference {
            Some(name) => format!("no image named {name:?} (names: {names:?})"),
            None => {
                format!("{} images (names: {names:?}): choose one with a reference", index.manifests.len())
            }
        };
        return Err(OciError::WhichImage { path: given.to_path_buf(), detail }.into());
    };
    let name = descriptor.annotations.get(REF_NAME).cloned().or_else(|| reference.map(str::to_owned));
    let (mut digest, mut media_type) = (descriptor.digest.clone(), descriptor.media_type.clone());
    // An image index (multi-platform) points on to its linux/amd64 manifest.
    for _depth in 0..4 {
        let (_, bytes) = blob(dir, &digest)?;
        let nested_index = is_index(&media_type)
            || (media_type.is_empty() && serde_json::from_slice::<Index>(&bytes).is_ok());
        if !nested_index {
            return manifest_image(dir, &digest, &bytes, name);
        }
        let nested: Index = document("an image index", &bytes)?;
        let platforms: Vec<String> = nested
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect();
        let amd64 = nested
            .manifests
            .into_iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64"))
            .ok_or(OciError::Platform { found: platforms.join(", ") })?;
        (digest, media_type) = (amd64.digest, amd64.media_type);
    }
    Err(OciError::BadDocument { what: "index.json".into(), detail: "image indexes nest too deep".into() }
        .into())
}

fn manifest_image(
    dir: &Path,
    digest: &str,
    bytes: &[u8],
    reference: Option<String>,
) -> Result<OpenedImage, ImageError> {
    let manifest: Manifest = document("the image manifest", bytes)?;
    let (_, config) = blob(dir, &manifest.config.digest)?;
    let mut layers = Vec::new();
    for layer in &manifest.layers {
        let path = blob_path(dir, &layer.digest)?;
        check_file_digest(&layer.digest, &path)?;
        layers.push(Layer { digest: layer.digest.clone(), path });
    }
    Ok(OpenedImage { digest: digest.to_owned(), reference, config, layers })
}

fn from_docker_save(dir: &Path, given: &Path, reference: Option<&str>) -> Result<OpenedImage, ImageError> {
    let path = dir.join("manifest.json");
    let text = std::fs::read(&path).map_err(ImageError::io("reading", &path))?;
    let entries: Vec<DockerEntry> = document("manifest.json (docker save)", &text)?;
    let tags = |e: &DockerEntry| e.repo_tags.clone().unwrap_or_default();
    let chosen = match reference {
        Some(name) => entries.iter().find(|e| tags(e).iter().any(|t| t == name)),
        None if entries.len() == 1 => entries.first(),
        None => None,
    };
    let Some(entry) = chosen else {
        let all: Vec<String> = entries.iter().flat_map(tags).collect();
        let detail = format!("{} images (tags: {all:?}): choose one with a reference", entries.len());
        return Err(OciError::WhichImage { path: given.to_path_buf(), detail }.into());
    };
    let inside = |name: &str| -> Result<PathBuf, ImageError> {
        let relative = Path::new(name);
        if relative.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
            Ok(dir.join(relative))
        } else {
            Err(not_image(given, format!("manifest.json names {name:?}, outside the archive")))
        }
    };
    let config_path = inside(&entry.config)?;
    let config = std::fs::read(&config_path).map_err(ImageError::io("reading", &config_path))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
    let layers = entry
        .layers
        .iter()
        .map(|name| Ok(Layer { digest: name.clone(), path: inside(name)? }))
        .collect::<Result<_, ImageError>>()?;
    let reference = reference.map(str::to_owned).or_else(|| tags(entry).into_iter().next());
    Ok(OpenedImage { digest, reference, config, layers })
}
