//! A saved VM's disk: the layers of its copy-on-write chain above the image's base, copied out of
//! the VM and back into a new one.
//!
//! A running VM's disk is a chain of qcow2 layers over the image's read-only base: its own overlay
//! on top, under it (for a snapshot clone) its template's frozen disk, under that (for a VM resumed
//! or forked before) the layers it came with. Saving copies every layer above the base into the
//! saved directory, the top as `disk.qcow2` and the ones below as `layer-1.qcow2`, `layer-2.qcow2`,
//! …, and points each copy at the next by a *relative* name (`qemu-img rebase -u` rewrites only the
//! header), the last at the base by its absolute path; then nothing the VM came from needs to stay.
//! Starting a VM copies the layers into its runtime directory under the same names, checking each
//! against the manifest's SHA-256 on the way: the relative names still hold, and the running VM
//! writes to its own top layer only.
//!
//! Copies happen while QEMU is stopped after its migration completed: QEMU flushed and let go of
//! the images then, so the files are consistent; a VM that keeps running (snapshot, fork) goes on
//! writing to its own top layer, never to the copies.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::manifest::{FileSum, TOP_LAYER};
use crate::lifecycle_error::LifecycleError;
use crate::root_disk::RootDisk;

/// How long one `qemu-img info` or `rebase -u` may take (each reads or writes a few KiB).
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(30);

/// One image of a chain, as `qemu-img info --backing-chain` tells it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct ChainImage {
    /// The image's file, as QEMU opened it.
    pub filename: PathBuf,
    /// `qcow2`, `raw`, …
    pub format: String,
    /// The backing file's name as written in the header (possibly relative).
    #[serde(rename = "backing-filename", default)]
    pub backing_filename: Option<String>,
}

/// The chain of `top`, top first, down to the image that has no backing file.
pub(crate) async fn chain(qemu_img: &Path, top: &Path) -> Result<Vec<ChainImage>, LifecycleError> {
    let info = [
        "info".as_ref(),
        "-U".as_ref(),
        "--backing-chain".as_ref(),
        "--output=json".as_ref(),
        top.as_os_str(),
    ];
    let output = run(qemu_img, &info).await?;
    serde_json::from_slice(&output).map_err(|source| LifecycleError::Manifest {
        what: format!("reading the backing chain of {}", top.display()),
        source,
    })
}

/// The layers of `chain` above `base` (the image's own base file): what a save copies.
pub(crate) fn above_base<'a>(chain: &'a [ChainImage], base: &Path) -> &'a [ChainImage] {
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let is_base =
        |image: &ChainImage| std::fs::canonicalize(&image.filename).is_ok_and(|found| found == base);
    let end = chain.iter().position(is_base).unwrap_or(chain.len().saturating_sub(1));
    &chain[..end]
}

/// The name of layer `index` (0 is the top) in a saved VM or a runtime directory.
pub(crate) fn layer_name(index: usize) -> String {
    if index == 0 { TOP_LAYER.to_owned() } else { format!("layer-{index}.qcow2") }
}

/// Copies `layers` (top first, all above the image's root disk `base`) into `dir` under
/// [`layer_name`]s, re-points each copy at the next by its relative name (the last at `base`), and
/// returns the copies' sizes and SHA-256s.
pub(crate) async fn save(
    qemu_img: &Path,
    layers: &[ChainImage],
    base: &RootDisk,
    dir: &Path,
) -> Result<Vec<FileSum>, LifecycleError> {
    let mut sums = Vec::with_capacity(layers.len());
    for (index, layer) in layers.iter().enumerate() {
        let name = layer_name(index);
        let copy = dir.join(&name);
        let (from, to) = (layer.filename.clone(), copy.clone());
        blocking("copying a disk layer", move || copy_private(&from, &to)).await??;
        let backing = match layers.get(index + 1) {
            Some(_) => layer_name(index + 1),
            None => base.base.to_string_lossy().into_owned(),
        };
        if layer.backing_filename.as_deref() != Some(backing.as_str()) {
            let format = match layers.get(index + 1) {
                Some(next) => next.format.clone(),
                None => base.format.as_str().to_owned(),
            };
            let rebase = ["rebase", "-u", "-f", "qcow2", "-F", format.as_str(), "-b", backing.as_str()];
            let mut args: Vec<&std::ffi::OsStr> = rebase.iter().map(|arg| arg.as_ref()).collect();
            args.push(copy.as_os_str());
            run(qemu_img, &args).await?;
        }
        let hashed = copy.clone();
        let (bytes, sha256) =
            blocking("hashing a disk layer", move || crate::snapshot::store::file_sha256(&hashed))
                .await?
                .map_err(|e| LifecycleError::io(format!("reading {}", copy.display()), e))?;
        sums.push(FileSum { file: name, bytes, sha256 });
    }
    Ok(sums)
}

/// Copies the saved layers `layers` of `from` into `to` (a new VM's runtime directory), checking
/// each against its SHA-256 while copying.
pub(crate) async fn load(from: &Path, layers: &[FileSum], to: &Path) -> Result<(), LifecycleError> {
    for layer in layers {
        let source = super::manifest::check_size(from, layer)?;
        let target = to.join(&layer.file);
        let copied = target.clone();
        let (_, sha256) = blocking("copying a disk layer", move || copy_hashing(&source, &copied)).await??;
        super::manifest::check_sum(from, layer, &sha256)?;
    }
    Ok(())
}

/// Copies `from` to a new file `to` (0600, also when `from` is a frozen read-only layer).
fn copy_private(from: &Path, to: &Path) -> Result<(), LifecycleError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(from, to)
        .map_err(|e| LifecycleError::io(format!("copying {} to {}", from.display(), to.display()), e))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| LifecycleError::io(format!("making {} writable", to.display()), e))
}

/// Copies `from` to a new file `to` (0600), returning the size and SHA-256 of what was copied.
fn copy_hashing(from: &Path, to: &Path) -> Result<(u64, String), LifecycleError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut source = std::fs::File::open(from)
        .map_err(|e| LifecycleError::io(format!("opening {}", from.display()), e))?;
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| LifecycleError::io(format!("creating {}", to.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = source
            .read(&mut buffer)
            .map_err(|e| LifecycleError::io(format!("reading {}", from.display()), e))?;
        if n == 0 {
            return Ok((total, crate::snapshot::store::hex(&hasher.finalize())));
        }
        hasher.update(&buffer[..n]);
        target
            .write_all(&buffer[..n])
            .map_err(|e| LifecycleError::io(format!("writing {}", to.display()), e))?;
        total += n as u64;
    }
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LifecycleError> {
    tokio::task::spawn_blocking(work).await.map_err(|source| LifecycleError::Task { what, source })
}

/// Runs `qemu-img` with `args` under [`QEMU_IMG_TIMEOUT`] (as every disk tool runs, see
/// `disk::run_tool`); returns its standard output.
async fn run(qemu_img: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, LifecycleError> {
    let what = || {
        format!(
            "{} {}",
            qemu_img.display(),
            args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        )
    };
    match crate::disk::run_tool(qemu_img, args, &[0], QEMU_IMG_TIMEOUT).await {
        Ok(Ok(stdout)) => Ok(stdout.into_bytes()),
        Ok(Err((status, stderr))) => {
            Err(LifecycleError::io(what(), std::io::Error::other(format!("{status}: {}", stderr.trim()))))
        }
        // Not installed (the error names the package) or could not be started.
        Err(e) => Err(LifecycleError::io(what(), std::io::Error::other(e.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn overlay(base: &Path, format: &str, path: &Path) {
        let status = tokio::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
            .arg(base)
            .arg(path)
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }

    #[tokio::test]
    async fn a_chain_above_its_base_is_saved_with_relative_names_and_loads_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
        let (template, top) = (dir.path().join("template.qcow2"), dir.path().join("vm.qcow2"));
        overlay(&base, "raw", &template).await;
        overlay(&template, "qcow2", &top).await;
        let qemu_img = Path::new("qemu-img");
        let chain = chain(qemu_img, &top).await.unwrap();
        assert_eq!(chain.len(), 3);
        let layers = above_base(&chain, &base);
        assert_eq!(layers.len(), 2, "the base is not copied");
        let saved = dir.path().join("saved");
        std::fs::create_dir(&saved).unwrap();
        let root = RootDisk::new(&base, crate::root_disk::DiskFormat::Raw);
        let sums = save(qemu_img, layers, &root, &saved).await.unwrap();
        assert_eq!(sums.iter().map(|s| s.file.as_str()).collect::<Vec<_>>(), ["disk.qcow2", "layer-1.qcow2"]);
        let copied = chain_of(&saved.join("disk.qcow2")).await;
        assert_eq!(copied[0].backing_filename.as_deref(), Some("layer-1.qcow2"));
        assert_eq!(copied[1].backing_filename.as_deref(), Some(base.to_str().unwrap()));
        // Moved elsewhere as a whole, the chain still holds.
        let runtime = dir.path().join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        load(&saved, &sums, &runtime).await.unwrap();
        assert_eq!(chain_of(&runtime.join("disk.qcow2")).await.len(), 3);
        let mut damaged = sums.clone();
        damaged[1].sha256 = "00".into();
        let again = dir.path().join("again");
        std::fs::create_dir(&again).unwrap();
        let err = load(&saved, &damaged, &again).await.unwrap_err();
        assert!(matches!(err, LifecycleError::Damaged { .. }), "{err}");
    }

    async fn chain_of(top: &Path) -> Vec<ChainImage> {
        chain(Path::new("qemu-img"), top).await.unwrap()
    }
}
