//! Reading Debian packages without dpkg: a `.deb` is an `ar` archive holding `debian-binary`,
//! `control.tar.*` and `data.tar.*`, each tarball compressed with xz (Debian 12), zstd (Ubuntu),
//! gzip (old packages) or not at all.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::ImageError;

/// A regular file taken out of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebFile {
    /// Unix permission bits from the tarball.
    pub mode: u32,
    /// The contents.
    pub data: Vec<u8>,
}

/// The fields of a package's `control` file that the builder uses (see [`parse_control`]).
///
/// ```
/// let control = firepit_image::deb::parse_control("Package: busybox-static\nVersion: 1:1.35.0-4\n");
/// assert_eq!((control.package.as_str(), control.version.as_str()), ("busybox-static", "1:1.35.0-4"));
/// assert!(control.depends.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Control {
    /// `Package:`.
    pub package: String,
    /// `Version:`.
    pub version: String,
    /// `Depends:`, split at commas, version constraints and alternatives removed.
    pub depends: Vec<String>,
    /// The dependencies pinned to one version (`name (= version)`), as `(name, version)`.
    pub depends_exact: Vec<(String, String)>,
}

fn bad(path: &Path, detail: impl Into<String>) -> ImageError {
    ImageError::BadPackage { package: path.to_path_buf(), detail: detail.into() }
}

/// A part of `deb` could not be read: `part` says which, `source` why.
fn unreadable(deb: &Path, part: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let (package, part) = (deb.to_path_buf(), part.into());
    move |source| ImageError::PackageUnreadable { package, part, source }
}

/// Opens the member of `deb` whose name starts with `prefix` (`"data.tar"`), decompressed.
fn open_member(
    deb: &Path,
    prefix: &str,
    visit: &mut dyn FnMut(&mut dyn Read) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let file = File::open(deb).map_err(ImageError::io("opening", deb))?;
    let mut archive = ar::Archive::new(BufReader::new(file));
    while let Some(entry) = archive.next_entry() {
        let entry = entry.map_err(unreadable(deb, "ar archive"))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let Some(suffix) = name.strip_prefix(prefix) else { continue };
        return match suffix {
            ".xz" => visit(&mut liblzma::read::XzDecoder::new(entry)),
            ".zst" => {
                let mut decoder =
                    zstd::stream::read::Decoder::new(entry).map_err(ImageError::io("decompressing", deb))?;
                visit(&mut decoder)
            }
            ".gz" => visit(&mut flate2::read::GzDecoder::new(entry)),
            "" => visit(&mut { entry }),
            other => Err(bad(deb, format!("unsupported compression {other:?} of {name}"))),
        };
    }
    Err(bad(deb, format!("no {prefix}.* member")))
}

fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir | std::path::Component::RootDir))
        .collect()
}

/// Reads the regular files of `deb`'s data tarball for which `wanted` returns true, keyed by their
/// path without the leading `./` (e.g. `boot/vmlinuz-6.1.0-56-cloud-amd64`).
///
/// ```no_run
/// let files = firepit_image::deb::read_files("busybox.deb".as_ref(), |p| p.ends_with("bin/busybox"))?;
/// # Ok::<(), firepit_image::ImageError>(())
/// ```
pub fn read_files(
    deb: &Path,
    wanted: impl Fn(&Path) -> bool,
) -> Result<BTreeMap<PathBuf, DebFile>, ImageError> {
    let mut found = BTreeMap::new();
    open_member(deb, "data.tar", &mut |reader| {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(unreadable(deb, "data tarball"))?;
        for entry in entries {
            let mut entry = entry.map_err(unreadable(deb, "data tarball"))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = normalize(&entry.path().map_err(unreadable(deb, "a path in the data tarball"))?);
            if !wanted(&path) {
                continue;
            }
            let mode = entry.header().mode().unwrap_or(0o644);
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(unreadable(deb, path.display().to_string()))?;
            found.insert(path, DebFile { mode, data });
        }
        Ok(())
    })?;
    Ok(found)
}

/// Reads and parses the `control` file of `deb`.
///
/// ```no_run
/// let control = firepit_image::deb::read_control("linux-image-cloud-amd64.deb".as_ref())?;
/// println!("{} {} depends on {:?}", control.package, control.version, control.depends);
/// # Ok::<(), firepit_image::ImageError>(())
/// ```
pub fn read_control(deb: &Path) -> Result<Control, ImageError> {
    let mut text = None;
    open_member(deb, "control.tar", &mut |reader| {
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(unreadable(deb, "control tarball"))? {
            let mut entry = entry.map_err(unreadable(deb, "control tarball"))?;
            let is_control = entry.path().map(|p| normalize(&p) == Path::new("control")).unwrap_or(false);
            if is_control {
                let mut body = String::new();
                entry.read_to_string(&mut body).map_err(unreadable(deb, "control file"))?;
                text = Some(body);
                break;
            }
        }
        Ok(())
    })?;
    text.map(|t| parse_control(&t)).ok_or_else(|| bad(deb, "no control file"))
}

/// Parses the fields of a control file (continuation lines are ignored: none of ours need them).
///
/// ```
/// let control = firepit_image::deb::parse_control(
///     "Package: linux-image-cloud-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)\n",
/// );
/// assert_eq!(control.depends_exact[0].1, "6.1.192-2");
/// ```
pub fn parse_control(text: &str) -> Control {
    let mut control = Control::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key {
            "Package" => control.package = value.to_owned(),
            "Version" => control.version = value.to_owned(),
            "Depends" | "Pre-Depends" => {
                for dep in value.split(',') {
                    let first = dep.split('|').next().unwrap_or("").trim();
                    let Some(name) = first.split([' ', '(']).next().filter(|n| !n.is_empty()) else {
                        continue;
                    };
                    control.depends.push(name.to_owned());
                    let pinned = first.split_once("(=").and_then(|(_, v)| v.split(')').next());
                    if let Some(version) = pinned {
                        control.depends_exact.push((name.to_owned(), version.trim().to_owned()));
                    }
                }
            }
            _ => {}
        }
    }
    control
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// Writes a small .deb with an xz data tarball and a gzip control tarball.
    pub(crate) fn make_deb(dir: &Path, control: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&tarball(files)).unwrap();
        let data = xz.finish().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tarball(&[("./control", control.as_bytes())])).unwrap();
        let control = gz.finish().unwrap();
        let path = dir.join("test.deb");
        let mut archive = ar::Builder::new(File::create(&path).unwrap());
        for (name, body) in
            [("debian-binary", &b"2.0\n"[..]), ("control.tar.gz", &control), ("data.tar.xz", &data)]
        {
            let header = ar::Header::new(name.as_bytes().to_vec(), body.len() as u64);
            archive.append(&header, body).unwrap();
        }
        path
    }

    #[test]
    fn read_files_returns_only_wanted_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let deb =
            make_deb(dir.path(), "Package: p\n", &[("./boot/vmlinuz-1", b"kernel"), ("./usr/doc", b"doc")]);
        let files = read_files(&deb, |p| p.starts_with("boot")).unwrap();
        assert_eq!(files.len(), 1);
        let file = &files[Path::new("boot/vmlinuz-1")];
        assert_eq!(file.data, b"kernel");
        assert_eq!(file.mode & 0o777, 0o755);
    }

    #[test]
    fn read_control_parses_version_and_depends() {
        let dir = tempfile::tempdir().unwrap();
        let text = "Package: linux-image-cloud-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2), a | b\n";
        let deb = make_deb(dir.path(), text, &[]);
        let control = read_control(&deb).unwrap();
        assert_eq!(control.version, "6.1.192-2");
        assert_eq!(control.depends, ["linux-image-6.1.0-56-cloud-amd64", "a"]);
        let pinned = [("linux-image-6.1.0-56-cloud-amd64".to_string(), "6.1.192-2".to_string())];
        assert_eq!(control.depends_exact, pinned);
    }

    #[test]
    fn a_file_that_is_not_a_deb_is_an_unreadable_package_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.deb");
        std::fs::write(&path, b"not an archive at all").unwrap();
        assert!(matches!(read_files(&path, |_| true), Err(ImageError::PackageUnreadable { .. })));
    }
}
