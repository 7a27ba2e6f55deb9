//! How a directory travels as a tar stream, in either direction: entries named relative to the
//! directory, sorted by name, symbolic links kept as links, FIFOs and device nodes as what they
//! are (a header with the device numbers, no data, as GNU tar stores them), sockets skipped (tar
//! has no type for them). The guest agent packs
//! downloads this way, and the host packs uploads this way (`firepit-guest` for the library,
//! `firepit-client` for the daemon's API, which passes the stream on to the agent unchanged).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Appends the entries under `dir` to `builder`, named `prefix/...`, in the order described in
/// the module docs. Set `builder.follow_symlinks(false)` first to keep links as links
/// ([`pack_dir`] does).
pub fn append_tree<W: Write>(builder: &mut tar::Builder<W>, dir: &Path, prefix: &Path) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let file_type = entry.file_type()?;
        if file_type.is_socket() {
            continue;
        }
        let name = prefix.join(entry.file_name());
        if file_type.is_fifo() || file_type.is_char_device() || file_type.is_block_device() {
            append_special(builder, &entry.path(), &name)?;
            continue;
        }
        builder.append_path_with_name(entry.path(), &name)?;
        if file_type.is_dir() {
            append_tree(builder, &entry.path(), &name)?;
        }
    }
    Ok(())
}

/// Appends the FIFO or device node at `path` as `name`: a header of its type, mode, owner and
/// device numbers, no data. (`tar::Builder::append_path_with_name` names such entries by their
/// full path, which a relative archive refuses.)
pub fn append_special<W: Write>(builder: &mut tar::Builder<W>, path: &Path, name: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let mut header = tar::Header::new_gnu();
    // Fills the type from the mode (FIFO, character or block device), the owner and the times.
    header.set_metadata(&meta);
    header.set_size(0);
    let device = meta.rdev();
    let (major, minor) = (libc::major(device), libc::minor(device));
    header.set_device_major(major)?;
    header.set_device_minor(minor)?;
    builder.append_data(&mut header, name, io::empty())
}

/// Writes the archive of `dir`'s contents into `out` and hands `out` back, flushed.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("hello.txt"), "hi")?;
/// let archive = firepit_agent::pack_dir(dir.path(), Vec::new())?;
/// let names: Vec<String> = tar::Archive::new(archive.as_slice())
///     .entries()?
///     .map(|entry| entry.map(|e| e.path().unwrap().display().to_string()))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(names, ["hello.txt"]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn pack_dir<W: Write>(dir: &Path, out: W) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    append_tree(&mut builder, dir, Path::new(""))?;
    let mut out = builder.into_inner()?;
    out.flush()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn fifos_are_packed_as_fifos_under_their_relative_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "x").unwrap();
        let pipe = CString::new(dir.path().join("pipe").as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(pipe.as_ptr(), 0o600) }, 0);
        let archive = super::pack_dir(dir.path(), Vec::new()).unwrap();
        let mut archive = tar::Archive::new(archive.as_slice());
        let entries: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().entry_type())
            })
            .collect();
        assert_eq!(entries, [("a".into(), tar::EntryType::Regular), ("pipe".into(), tar::EntryType::Fifo)]);
    }
}
