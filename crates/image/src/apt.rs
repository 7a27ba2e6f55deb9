//! Asking apt which package versions to use and downloading them (`apt-get download` needs no
//! installation and leaves the system untouched).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::deb::{self, Control};
use crate::error::ImageError;

/// A package pinned to one version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageRef {
    /// Package name (`linux-image-6.1.0-56-cloud-amd64`).
    pub name: String,
    /// Exact version apt would install (`6.1.192-2`).
    pub version: String,
}

fn run(tool: &'static str, args: &[&str], cwd: Option<&Path>) -> Result<std::process::Output, ImageError> {
    let mut command = Command::new(tool);
    command.args(args).env("LC_ALL", "C");
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    command.output().map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => ImageError::AptMissing { tool },
        _ => ImageError::Io { action: "running", path: PathBuf::from(tool), source: error },
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The first concrete package `metapackage` depends on (`linux-image-cloud-amd64` →
/// `linux-image-6.1.0-56-cloud-amd64`), per `apt-cache depends`.
pub fn resolve_dependency(metapackage: &str, prefix: &str) -> Result<String, ImageError> {
    let output = run("apt-cache", &["depends", metapackage], None)?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("Depends:"))
        .map(|dep| dep.trim().trim_matches(['<', '>']).to_owned())
        .find(|dep| dep.starts_with(prefix))
        .ok_or_else(|| ImageError::PackageUnavailable {
            package: metapackage.to_owned(),
            detail: format!(
                "apt-cache depends names no {prefix}* package ({})",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
}

/// The candidate version of each package, per `apt-cache policy` (one call for all).
pub fn candidate_versions(packages: &[&str]) -> Result<Vec<PackageRef>, ImageError> {
    let mut args = vec!["policy"];
    args.extend_from_slice(packages);
    let output = run("apt-cache", &args, None)?;
    let text = String::from_utf8_lossy(&output.stdout);
    packages
        .iter()
        .map(|name| {
            parse_candidate(&text, name)
                .map(|version| PackageRef { name: (*name).to_owned(), version })
                .ok_or_else(|| ImageError::PackageUnavailable {
                    package: (*name).to_owned(),
                    detail: "apt-cache policy shows no candidate version".into(),
                })
        })
        .collect()
}

/// Finds `Candidate:` in the `name:` section of `apt-cache policy` output.
pub fn parse_candidate(policy: &str, name: &str) -> Option<String> {
    let header = format!("{name}:");
    let mut in_section = false;
    for line in policy.lines() {
        if !line.starts_with(' ') {
            in_section = line.trim() == header;
        } else if in_section && let Some(version) = line.trim().strip_prefix("Candidate:") {
            let version = version.trim();
            return (version != "(none)").then(|| version.to_owned());
        }
    }
    None
}

/// Runs `apt-get download specs...` in `dir`; maps failures to errors that say what to do.
fn apt_get_download(specs: &[String], dir: &Path) -> Result<(), ImageError> {
    let mut args = vec!["download", "-q"];
    args.extend(specs.iter().map(String::as_str));
    let output = run("apt-get", &args, Some(dir))?;
    if output.status.success() {
        return Ok(());
    }
    let detail = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.starts_with("E:"))
        .collect::<Vec<_>>()
        .join("; ");
    let spec = specs.join(" ");
    if is_root() {
        Err(ImageError::PackageUnavailable { package: spec, detail })
    } else {
        Err(ImageError::NotRoot { command: format!("apt-get download {spec}"), detail })
    }
}

fn version_dir(cache_dir: &Path, package: &PackageRef) -> PathBuf {
    cache_dir.join(&package.name).join(package.version.replace(':', "%3a"))
}

/// Downloads `package` into `cache_dir/<name>/<version>/` unless a .deb is already there; returns
/// the .deb's path.
pub fn download(package: &PackageRef, cache_dir: &Path) -> Result<PathBuf, ImageError> {
    let dir = version_dir(cache_dir, package);
    if let Some(deb) = find_deb(&dir)? {
        return Ok(deb);
    }
    std::fs::create_dir_all(&dir).map_err(ImageError::io("creating", &dir))?;
    let spec = format!("{}={}", package.name, package.version);
    apt_get_download(std::slice::from_ref(&spec), &dir)?;
    find_deb(&dir)?.ok_or_else(|| ImageError::PackageUnavailable {
        package: spec,
        detail: format!("apt-get download left no .deb in {}", dir.display()),
    })
}

/// Downloads the candidate version of each of `names` with one `apt-get download` call, files
/// each .deb under `cache_dir/<name>/<version>/`, and returns them (with their control files) in
/// the order asked.
pub fn download_candidates(names: &[&str], cache_dir: &Path) -> Result<Vec<(Control, PathBuf)>, ImageError> {
    let incoming = cache_dir.join(format!("incoming-{}", std::process::id()));
    std::fs::create_dir_all(&incoming).map_err(ImageError::io("creating", &incoming))?;
    let result = (|| {
        apt_get_download(&names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(), &incoming)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&incoming).map_err(ImageError::io("reading", &incoming))?.flatten() {
            let path = entry.path();
            let control = deb::read_control(&path)?;
            let package = PackageRef { name: control.package.clone(), version: control.version.clone() };
            let dir = version_dir(cache_dir, &package);
            std::fs::create_dir_all(&dir).map_err(ImageError::io("creating", &dir))?;
            let target = dir.join(entry.file_name());
            std::fs::rename(&path, &target).map_err(ImageError::io("moving into the cache", &target))?;
            found.push((control, target));
        }
        names
            .iter()
            .map(|name| {
                let at = found.iter().position(|(c, _)| c.package == *name);
                at.map(|i| found.swap_remove(i)).ok_or_else(|| ImageError::PackageUnavailable {
                    package: (*name).to_owned(),
                    detail: "apt-get download did not fetch it".into(),
                })
            })
            .collect()
    })();
    // The directory is empty unless something failed half-way; nothing in it is worth keeping.
    let _leftovers_are_disposable = std::fs::remove_dir_all(&incoming);
    result
}

fn find_deb(dir: &Path) -> Result<Option<PathBuf>, ImageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ImageError::io("reading", dir)(error)),
    };
    Ok(entries.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|ext| ext == "deb")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "linux-image-cloud-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-2\n  Version table:\n     6.1.192-2 500\nbusybox-static:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+deb12u1+b1\nmissing:\n  Installed: (none)\n  Candidate: (none)\n";

    #[test]
    fn candidate_is_read_from_the_right_section() {
        assert_eq!(parse_candidate(POLICY, "linux-image-cloud-amd64").as_deref(), Some("6.1.192-2"));
        assert_eq!(parse_candidate(POLICY, "busybox-static").as_deref(), Some("1:1.35.0-4+deb12u1+b1"));
        assert_eq!(parse_candidate(POLICY, "missing"), None);
        assert_eq!(parse_candidate(POLICY, "absent"), None);
    }
}
