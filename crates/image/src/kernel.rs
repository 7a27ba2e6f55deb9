//! Taking the kernel and the modules the guest needs out of a `linux-image-*` package.
//!
//! One pass over the (large) data tarball keeps the kernel and every `virtio*` module; a further pass
//! runs only if a dependency lives elsewhere. Dependencies come from each module's modinfo
//! (see [`crate::modules`]).

use std::collections::BTreeMap;
use std::path::Path;

use crate::deb;
use crate::error::ImageError;
use crate::modules::{self, Module};

/// What the guest needs from a kernel package.
#[derive(Debug, Clone)]
pub struct KernelParts {
    /// Kernel release (`6.1.0-56-cloud-amd64`), from the `boot/vmlinuz-<release>` file name.
    pub version: String,
    /// The kernel image (`vmlinuz`).
    pub image: Vec<u8>,
    /// `(module name, .ko bytes)` in load order, dependencies first.
    pub modules: Vec<(String, Vec<u8>)>,
}

/// Reads the kernel and the wanted modules (with their dependencies, in load order).
///
/// ```no_run
/// let parts = firepit_image::kernel::unpack("linux-image.deb".as_ref(), &["virtio_console".into()])?;
/// println!("{} with modules {:?}", parts.version, parts.modules.iter().map(|m| &m.0).collect::<Vec<_>>());
/// # Ok::<(), firepit_image::ImageError>(())
/// ```
pub fn unpack(deb_path: &Path, wanted_modules: &[String]) -> Result<KernelParts, ImageError> {
    let bad = |detail: String| ImageError::BadPackage { package: deb_path.to_path_buf(), detail };
    // One pass over the (large) data tarball: keep the kernel and every virtio module; a second
    // pass only if a dependency lives elsewhere.
    let keep = |p: &Path, names: &[String]| {
        let file = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
        (p.starts_with("boot") && file.starts_with("vmlinuz-"))
            || (file.ends_with(".ko")
                && (file.starts_with("virtio") || names.contains(&modules::module_name(file))))
    };
    let mut files = deb::read_files(deb_path, |p| keep(p, wanted_modules))?;
    let (kernel_path, kernel) = files
        .iter()
        .find(|(p, _)| p.starts_with("boot"))
        .map(|(p, f)| (p.clone(), f.data.clone()))
        .ok_or_else(|| bad("no boot/vmlinuz-* in the package".into()))?;
    let kernel_version = kernel_path
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_prefix("vmlinuz-"))
        .map(str::to_owned)
        .ok_or_else(|| bad(format!("unexpected kernel file name {}", kernel_path.display())))?;
    let wanted: Vec<&str> = wanted_modules.iter().map(String::as_str).collect();
    for _pass in 0..4 {
        let available: BTreeMap<String, Module> = files
            .iter()
            .filter_map(|(path, file)| {
                let name = modules::module_name(path.file_name()?.to_str()?);
                let depends = modules::modinfo_depends(&file.data);
                Some((name.clone(), Module { name, path: path.clone(), depends, data: file.data.clone() }))
            })
            .filter(|(_, m)| m.path.extension().is_some_and(|e| e == "ko"))
            .collect();
        match modules::load_order(&wanted, &available) {
            Ok(order) => {
                let modules = order
                    .into_iter()
                    .filter_map(|n| available.get(&n).map(|m| (n, m.data.clone())))
                    .collect();
                return Ok(KernelParts { version: kernel_version, image: kernel, modules });
            }
            Err(missing) => {
                let more = deb::read_files(deb_path, |p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.ends_with(".ko") && missing.0.contains(&modules::module_name(f)))
                })?;
                if more.is_empty() {
                    return Err(ImageError::ModulesMissing { package: deb_path.to_path_buf(), missing });
                }
                files.extend(more);
            }
        }
    }
    Err(bad("module dependencies nest too deep".into()))
}
