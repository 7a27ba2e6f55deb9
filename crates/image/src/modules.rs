//! Picking kernel modules and their load order.
//!
//! A kernel .deb ships no `modules.dep` (depmod writes it at install time), so dependencies are read
//! from each module's `.modinfo` section: NUL-separated `key=value` strings, among them
//! `depends=virtio,virtio_ring` and `name=virtio_console`.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A kernel module found in the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Module name as the kernel knows it (`virtio_rng`, with underscores).
    pub name: String,
    /// Path of the .ko inside the package.
    pub path: PathBuf,
    /// Names of the modules it needs loaded first.
    pub depends: Vec<String>,
    /// The .ko contents.
    pub data: Vec<u8>,
}

/// The module name of a .ko file name (`virtio-rng.ko` → `virtio_rng`).
///
/// ```
/// assert_eq!(firepit_image::modules::module_name("virtio-rng.ko"), "virtio_rng");
/// ```
pub fn module_name(file_name: &str) -> String {
    file_name.trim_end_matches(".ko").replace('-', "_")
}

/// The `depends=` list from a module's modinfo strings (empty when it has none).
///
/// ```
/// let ko = b"\0license=GPL\0depends=virtio,virtio_ring\0name=virtio_console\0";
/// assert_eq!(firepit_image::modules::modinfo_depends(ko), ["virtio", "virtio_ring"]);
/// ```
pub fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(b"depends="))
        .map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// Kernel modules that are needed (asked for, or a dependency of one) but not available.
///
/// ```
/// let missing = firepit_image::modules::MissingModules(vec!["virtio_ring".into()]);
/// assert_eq!(missing.to_string(), "kernel modules not found: virtio_ring");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kernel modules not found: {}", .0.join(", "))]
pub struct MissingModules(pub Vec<String>);

/// Orders `wanted` and everything they depend on so each module comes after its dependencies.
/// The error names every module that is needed but not in `available`.
///
/// ```
/// use firepit_image::modules::{load_order, Module};
/// let module = |name: &str, deps: &[&str]| (name.to_string(), Module {
///     name: name.into(), path: format!("{name}.ko").into(),
///     depends: deps.iter().map(|d| d.to_string()).collect(), data: vec![],
/// });
/// let available = [module("virtio_ring", &[]), module("virtio", &["virtio_ring"])].into();
/// assert_eq!(load_order(&["virtio"], &available).unwrap(), ["virtio_ring", "virtio"]);
/// assert_eq!(load_order(&["virtio_console"], &available).unwrap_err().0, ["virtio_console"]);
/// ```
pub fn load_order(
    wanted: &[&str],
    available: &BTreeMap<String, Module>,
) -> Result<Vec<String>, MissingModules> {
    fn visit(
        name: &str,
        available: &BTreeMap<String, Module>,
        order: &mut Vec<String>,
        missing: &mut Vec<String>,
        depth: usize,
    ) {
        if order.iter().any(|n| n == name) || missing.iter().any(|n| n == name) || depth > 64 {
            return;
        }
        let Some(module) = available.get(name) else {
            missing.push(name.to_owned());
            return;
        };
        for dep in &module.depends {
            visit(dep, available, order, missing, depth + 1);
        }
        order.push(name.to_owned());
    }
    let mut order = Vec::new();
    let mut missing = Vec::new();
    for name in wanted {
        visit(&module_name(name), available, &mut order, &mut missing, 0);
    }
    if missing.is_empty() { Ok(order) } else { Err(MissingModules(missing)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, depends: &[&str]) -> (String, Module) {
        let m = Module {
            name: name.into(),
            path: PathBuf::from(format!("{name}.ko")),
            depends: depends.iter().map(|d| d.to_string()).collect(),
            data: Vec::new(),
        };
        (name.into(), m)
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let available: BTreeMap<_, _> = [
            module("virtio_ring", &[]),
            module("virtio", &["virtio_ring"]),
            module("virtio_mmio", &["virtio", "virtio_ring"]),
            module("virtio_console", &["virtio", "virtio_ring"]),
            module("virtio_rng", &["virtio", "virtio_ring"]),
        ]
        .into();
        let order = load_order(&["virtio_mmio", "virtio_console", "virtio-rng"], &available).unwrap();
        assert_eq!(order, ["virtio_ring", "virtio", "virtio_mmio", "virtio_console", "virtio_rng"]);
    }

    #[test]
    fn missing_modules_are_named() {
        let available: BTreeMap<_, _> = [module("virtio", &["virtio_ring"])].into();
        assert_eq!(load_order(&["virtio"], &available), Err(MissingModules(vec!["virtio_ring".to_string()])));
    }
}
