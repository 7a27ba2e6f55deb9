//! Unpacking an uploaded tar archive: bounded, refusing what it does not make, and all or nothing.
//!
//! The archive is the client's, so the unpacker trusts nothing in it. Before an entry touches the
//! disk its name is checked: relative (leading `/`s dropped), no `..`, no name over 255 bytes nor
//! path over 4,095, at most [`UnpackLimits::max_depth`] names deep, not leading through a symbolic
//! link the archive made; a hard link must name an earlier entry; device nodes are refused. The
//! reader counts the bytes of metadata (headers, long names, PAX records) before each entry, so a
//! multi-gigabyte "long name" fails instead of filling memory. Entries are unpacked into a
//! staging directory ([`Stage`]) that is moved into place at the end, so a refused entry, a
//! damaged archive or a cancelled upload leave the destination as it was. The cancel is checked
//! before every entry, so the work stops with the request.
//!
//! The entries themselves are written by the `tar` crate (`Entry::unpack_in`, with its own
//! check that nothing lands outside the staging directory as a second line of defence).

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use firepit_agent::{
    Failure, FailureKind, MAX_ARCHIVE_DEPTH, MAX_ARCHIVE_ENTRIES, MAX_ARCHIVE_HEADER_BYTES, MAX_NAME_BYTES,
    MAX_PATH_BYTES,
};
use tar::EntryType;

use crate::failure::{self, short};
use crate::unpack_stage::Stage;

/// Bounds on one archive (the defaults are the protocol's constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most entries.
    pub max_entries: u64,
    /// Most names in one entry's path.
    pub max_depth: usize,
    /// Most bytes of metadata before one entry's data.
    pub max_header_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_entries: MAX_ARCHIVE_ENTRIES,
            max_depth: MAX_ARCHIVE_DEPTH,
            max_header_bytes: MAX_ARCHIVE_HEADER_BYTES,
        }
    }
}

/// How many symbolic links of the archive are remembered by name; past that, every entry's path
/// is checked on disk instead (slower, as exact).
const REMEMBERED_LINKS: usize = 10_000;

/// Unpacks the tar archive `input` into the directory `dest` (created with its parents if missing)
/// under `limits`, checking `cancelled` before every entry (see the module docs). Leaves `dest` as
/// it was on any failure.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let source = tempfile::tempdir()?;
/// std::fs::write(source.path().join("hello.txt"), "hi")?;
/// let archive = firepit_agent::pack_dir(source.path(), Vec::new())?;
/// let limits = firepit_agent::UnpackLimits::default();
/// firepit_agent::unpack_archive(archive.as_slice(), &dir.path().join("out"), &limits, &|| false).unwrap();
/// assert_eq!(std::fs::read_to_string(dir.path().join("out/hello.txt"))?, "hi");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn unpack_archive<R: Read>(
    input: R,
    dest: &Path,
    limits: &UnpackLimits,
    cancelled: &dyn Fn() -> bool,
) -> Result<(), Failure> {
    let mut input = input;
    let head = read_head(&mut input).map_err(|e| failure::io("reading the archive", &e))?;
    if let Some(format) = compressed(&head) {
        let message = format!(
            "the archive is {format}-compressed: send an uncompressed tar (decompress it first, e.g. with `{format} -d`)"
        );
        return Err(Failure::new(FailureKind::BadArchive, message));
    }
    let meter = Meter::default();
    let reader = Metered { inner: io::Cursor::new(head).chain(input), meter: meter.clone(), limit: limits.max_header_bytes };
    let stage = Stage::new(dest)?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut unpacker = Unpacker {
        root: stage.root().to_path_buf(),
        dest_len: dest.as_os_str().len(),
        limits: *limits,
        links: HashSet::new(),
        forget_links: false,
        deferred: Vec::new(),
        entries: 0,
    };
    let entries = archive.entries().map_err(|e| archive_error(&e, &meter, cancelled, "reading the archive"))?;
    meter.start_header();
    for entry in entries {
        if cancelled() {
            return Err(Failure::new(FailureKind::Cancelled, "cancelled by the host"));
        }
        let mut entry = entry.map_err(|e| archive_error(&e, &meter, cancelled, "reading the archive"))?;
        meter.end_header();
        unpacker.entry(&mut entry).map_err(|error| match error {
            EntryError::Refused(failure) => failure,
            EntryError::Io(name, e) => archive_error(&e, &meter, cancelled, &format!("unpacking `{name}`")),
        })?;
        meter.start_header();
    }
    unpacker.apply_deferred()?;
    stage.finish()
}

/// How one entry failed: refused by a check, or an error while writing it.
enum EntryError {
    Refused(Failure),
    Io(String, io::Error),
}

impl From<Failure> for EntryError {
    fn from(failure: Failure) -> Self {
        EntryError::Refused(failure)
    }
}

/// The state of one unpack.
struct Unpacker {
    root: PathBuf,
    dest_len: usize,
    limits: UnpackLimits,
    /// Symbolic links the archive made (relative paths), while there are few enough.
    links: HashSet<PathBuf>,
    /// Too many links to remember: check paths on disk.
    forget_links: bool,
    /// Directories whose mode would keep their own entries out: (path, mode), applied at the end.
    deferred: Vec<(PathBuf, u32)>,
    entries: u64,
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), EntryError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            let message = format!("the archive has more than {} entries", self.limits.max_entries);
            return Err(Failure::new(FailureKind::ArchiveLimit, message).into());
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        // Before the path's own checks: a device entry is refused whatever it names (even `.`).
        if matches!(kind, EntryType::Char | EntryType::Block) {
            let what = if kind == EntryType::Char { "character" } else { "block" };
            let message = format!(
                "archive entry `{}` is a {what} device: device nodes are not unpacked (make them with mknod)",
                short(&name)
            );
            return Err(Failure::new(FailureKind::ArchiveEntryRefused, message).into());
        }
        let Some(path) = self.relative(&raw)? else { return Ok(()) };
        self.check_no_link_on_the_way(&path, &name)?;
        let io_error = |e: io::Error| EntryError::Io(short(&name).into_owned(), e);
        if kind == EntryType::Symlink {
            self.check_link_target(entry, &name)?;
        }
        match kind {
            EntryType::Link => {
                let target = self.hard_link_target(entry, &name)?;
                self.make_hard_link(&path, &target).map_err(io_error)?;
            }
            EntryType::Fifo => self.make_fifo(&path, entry.header().mode().unwrap_or(0o644)).map_err(io_error)?,
            EntryType::Directory => {
                let mode = entry.header().mode().unwrap_or(0o755) & 0o7777;
                if mode & 0o700 != 0o700 {
                    // Unpacked open; its mode is set once its contents are in.
                    std::fs::create_dir_all(self.root.join(&path)).map_err(io_error)?;
                    self.deferred.push((path.clone(), mode));
                } else if !entry.unpack_in(&self.root).map_err(io_error)? {
                    return Err(refused(&name, "its path leads out of the directory").into());
                }
            }
            _ => {
                if !entry.unpack_in(&self.root).map_err(io_error)? {
                    return Err(refused(&name, "its path leads out of the directory").into());
                }
            }
        }
        if kind == EntryType::Symlink {
            self.remember_link(path);
        } else if !self.links.is_empty() {
            self.links.remove(&path);
        }
        Ok(())
    }

    /// The entry's path inside the archive, checked; `None` for the archive's root itself (`./`).
    fn relative(&self, raw: &[u8]) -> Result<Option<PathBuf>, Failure> {
        let name = String::from_utf8_lossy(raw);
        let path = Path::new(std::ffi::OsStr::from_bytes(raw));
        let mut relative = PathBuf::new();
        let mut depth = 0;
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => return Err(refused(&name, "its path has `..`")),
                Component::Normal(part) => {
                    if part.len() > MAX_NAME_BYTES {
                        let message = format!(
                            "archive entry `{}`: a name of {} bytes (at most {MAX_NAME_BYTES})",
                            short(&name),
                            part.len()
                        );
                        return Err(Failure::new(FailureKind::NameTooLong, message));
                    }
                    depth += 1;
                    relative.push(part);
                }
            }
        }
        if depth > self.limits.max_depth {
            let message = format!(
                "archive entry `{}` is {depth} directories deep (at most {})",
                short(&name),
                self.limits.max_depth
            );
            return Err(Failure::new(FailureKind::ArchiveLimit, message));
        }
        let full = self.dest_len + 1 + relative.as_os_str().len();
        if full > MAX_PATH_BYTES {
            let message = format!(
                "archive entry `{}` would have a path of {full} bytes (at most {MAX_PATH_BYTES})",
                short(&name)
            );
            return Err(Failure::new(FailureKind::NameTooLong, message));
        }
        Ok((depth > 0).then_some(relative))
    }

    /// Refuses an entry whose path goes through a symbolic link the archive made.
    fn check_no_link_on_the_way(&self, path: &Path, name: &str) -> Result<(), Failure> {
        let mut prefix = PathBuf::new();
        let parents = path.components().count().saturating_sub(1);
        for component in path.components().take(parents) {
            prefix.push(component);
            let is_link = match self.forget_links {
                false => self.links.contains(&prefix),
                true => std::fs::symlink_metadata(self.root.join(&prefix)).is_ok_and(|m| m.is_symlink()),
            };
            if is_link {
                let why = format!("its path leads through the symbolic link `{}`", prefix.display());
                return Err(refused(name, &why));
            }
        }
        Ok(())
    }

    fn remember_link(&mut self, path: PathBuf) {
        if self.links.len() < REMEMBERED_LINKS {
            self.links.insert(path);
        } else {
            self.forget_links = true;
            self.links.clear();
        }
    }

    fn check_link_target<R: Read>(&self, entry: &tar::Entry<'_, R>, name: &str) -> Result<(), Failure> {
        let target = entry.link_name_bytes().unwrap_or_default();
        if target.is_empty() {
            return Err(refused(name, "it is a symbolic link with an empty target"));
        }
        if target.len() > MAX_PATH_BYTES {
            let message = format!(
                "archive entry `{}`: a link target of {} bytes (at most {MAX_PATH_BYTES})",
                short(name),
                target.len()
            );
            return Err(Failure::new(FailureKind::NameTooLong, message));
        }
        Ok(())
    }

    /// A hard link's target: an earlier entry of the archive that is not a directory.
    fn hard_link_target<R: Read>(&self, entry: &tar::Entry<'_, R>, name: &str) -> Result<PathBuf, Failure> {
        let target = entry.link_name_bytes().unwrap_or_default().into_owned();
        let target_name = String::from_utf8_lossy(&target).into_owned();
        let Some(relative) = self.relative(&target)? else {
            return Err(refused(name, "it is a hard link to the directory itself"));
        };
        self.check_no_link_on_the_way(&relative, name)?;
        match std::fs::symlink_metadata(self.root.join(&relative)) {
            Ok(meta) if !meta.is_dir() => Ok(relative),
            _ => {
                let why = format!(
                    "it is a hard link to `{}`, which is not an earlier file of the archive",
                    short(&target_name)
                );
                Err(refused(name, &why))
            }
        }
    }

    /// Makes room for a new entry at `path` (its parents made, an earlier non-directory entry
    /// there removed); its full path.
    fn place(&self, path: &Path) -> io::Result<PathBuf> {
        let full = self.root.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_dir() => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
            Ok(_) => std::fs::remove_file(&full)?,
            Err(_) => {}
        }
        Ok(full)
    }

    fn make_hard_link(&self, path: &Path, target: &Path) -> io::Result<()> {
        let full = self.place(path)?;
        std::fs::hard_link(self.root.join(target), full)
    }

    fn make_fifo(&self, path: &Path, mode: u32) -> io::Result<()> {
        let full = self.place(path)?;
        let c_path = std::ffi::CString::new(full.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: mkfifo reads the NUL-terminated path for the duration of the call.
        if unsafe { libc::mkfifo(c_path.as_ptr(), (mode & 0o7777) as libc::mode_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        std::fs::set_permissions(&full, std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777))
    }

    /// Gives the restrictive directories their modes, innermost first.
    fn apply_deferred(&mut self) -> Result<(), Failure> {
        self.deferred.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, mode) in &self.deferred {
            let full = self.root.join(path);
            std::fs::set_permissions(&full, std::os::unix::fs::PermissionsExt::from_mode(*mode))
                .map_err(|e| failure::io(format!("chmod {}", path.display()), &e))?;
        }
        Ok(())
    }
}

/// An entry refused, naming it and why.
fn refused(name: &str, why: &str) -> Failure {
    Failure::new(FailureKind::ArchiveEntryRefused, format!("archive entry `{}` refused: {why}", short(name)))
}

/// The failure for `error` from the tar reader or while writing an entry.
fn archive_error(error: &io::Error, meter: &Meter, cancelled: &dyn Fn() -> bool, doing: &str) -> Failure {
    if cancelled() {
        return Failure::new(FailureKind::Cancelled, "cancelled by the host");
    }
    if let Some(limit) = meter.over.get() {
        let message = format!("the archive has more than {limit} bytes of headers and names for one entry");
        return Failure::new(FailureKind::ArchiveLimit, message);
    }
    if meter.eof.get() {
        return Failure::new(
            FailureKind::BadArchive,
            format!("{doing}: the archive ends in the middle of an entry (truncated?)"),
        );
    }
    match failure::kind_of(error) {
        FailureKind::Io | FailureKind::InvalidInput if !meter.in_data.get() => Failure::new(
            FailureKind::BadArchive,
            format!("{doing}: not a valid tar archive ({error})"),
        ),
        _ => failure::io(doing, error),
    }
}

/// The first bytes of the input, enough to recognise a compressed archive.
fn read_head(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; 6];
    let mut filled = 0;
    while filled < head.len() {
        match input.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    head.truncate(filled);
    Ok(head)
}

/// The compression whose magic number `head` starts with, if any (named by its command).
fn compressed(head: &[u8]) -> Option<&'static str> {
    const MAGIC: [(&[u8], &str); 5] = [
        (&[0x1f, 0x8b], "gzip"),
        (b"BZh", "bzip2"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (&[0x5d, 0, 0], "lzma"),
    ];
    MAGIC.iter().find(|(magic, _)| head.starts_with(magic)).map(|(_, name)| *name)
}

/// What the reader saw: whether it is inside an entry's data, how much metadata it read since,
/// whether the input ended, and whether the metadata bound was passed.
#[derive(Clone, Default)]
struct Meter {
    in_data: Rc<Cell<bool>>,
    header_bytes: Rc<Cell<u64>>,
    eof: Rc<Cell<bool>>,
    over: Rc<Cell<Option<u64>>>,
}

impl Meter {
    fn start_header(&self) {
        self.in_data.set(false);
        self.header_bytes.set(0);
    }

    fn end_header(&self) {
        self.in_data.set(true);
    }
}

/// The input, counted by a [`Meter`]: past `limit` bytes of metadata before one entry, it fails.
struct Metered<R> {
    inner: R,
    meter: Meter,
    limit: u64,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.meter.eof.set(true);
        }
        if !self.meter.in_data.get() {
            let read = self.meter.header_bytes.get() + n as u64;
            self.meter.header_bytes.set(read);
            if read > self.limit {
                self.meter.over.set(Some(self.limit));
                return Err(io::Error::other("too much archive metadata"));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
