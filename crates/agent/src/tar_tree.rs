//! How a directory travels as a tar stream, in either direction: entries named relative to the
//! directory, sorted by name, symbolic links kept as links, sockets skipped. The guest agent packs
//! downloads this way, and the host packs uploads this way (`firepit-guest` for the library,
//! `firepit-client` for the daemon's API, which passes the stream on to the agent unchanged).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::FileTypeExt;
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
        builder.append_path_with_name(entry.path(), &name)?;
        if file_type.is_dir() {
            append_tree(builder, &entry.path(), &name)?;
        }
    }
    Ok(())
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
