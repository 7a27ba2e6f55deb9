//! The unpacker on hostile and damaged archives: each is refused with its own kind, and the
//! destination is left exactly as it was (no staging directory behind).

use std::fs;
use std::path::Path;

use firepit_agent::FailureKind;
use tar::{EntryType, Header};

use super::{UnpackLimits, unpack_archive};
use crate::replace::STAGING_PREFIX;

/// One raw tar entry (header + data padded to 512), with names written as given: the `tar`
/// crate's builder refuses the hostile ones this test needs.
fn raw_entry(name: &[u8], kind: EntryType, data: &[u8], link: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if link.len() > 99 {
        out.extend(raw_entry(b"././@LongLink", EntryType::GNULongLink, &[link, &[0]].concat(), b""));
    }
    if name.len() > 99 {
        // A GNU long name entry first ("././@LongLink", type L), as GNU tar writes it.
        out.extend(raw_entry(b"././@LongLink", EntryType::GNULongName, &[name, &[0]].concat(), b""));
    }
    let mut header = Header::new_gnu();
    let gnu = header.as_gnu_mut().expect("a GNU header");
    let short = &name[..name.len().min(99)];
    gnu.name[..short.len()].copy_from_slice(short);
    gnu.linkname[..link.len().min(99)].copy_from_slice(&link[..link.len().min(99)]);
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0; 1024]);
    out
}

fn file(name: &str, data: &str) -> Vec<u8> {
    raw_entry(name.as_bytes(), EntryType::Regular, data.as_bytes(), b"")
}

/// A destination holding one file, `keep`, with known content.
fn destination() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("keep"), "before").unwrap();
    dir
}

/// The destination still holds exactly `keep` with its content, and nothing staged.
fn assert_untouched(dir: &Path) {
    let names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["keep"], "left behind: {names:?}");
    assert_eq!(fs::read_to_string(dir.join("keep")).unwrap(), "before");
}

fn unpack(bytes: &[u8], dest: &Path) -> Result<(), firepit_agent::Failure> {
    unpack_archive(bytes, dest, &UnpackLimits::default(), &|| false)
}

fn refused_with(bytes: &[u8], kind: FailureKind) -> String {
    let dest = destination();
    let failure = unpack(bytes, dest.path()).unwrap_err();
    assert_eq!(failure.kind, kind, "{}", failure.message);
    assert_untouched(dest.path());
    failure.message
}

#[test]
fn a_good_archive_lands_whole_with_links_hard_links_and_fifos() {
    let dest = destination();
    let bytes = archive(&[
        raw_entry(b"dir/", EntryType::Directory, b"", b""),
        file("dir/a", "A"),
        file("keep", "after"),
        raw_entry(b"dir/hard", EntryType::Link, b"", b"dir/a"),
        raw_entry(b"link", EntryType::Symlink, b"", b"/etc"),
        raw_entry(b"dir/pipe", EntryType::Fifo, b"", b""),
    ]);
    unpack(&bytes, dest.path()).unwrap();
    let d = dest.path();
    assert_eq!(fs::read_to_string(d.join("keep")).unwrap(), "after");
    assert_eq!(fs::read_to_string(d.join("dir/hard")).unwrap(), "A");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert_eq!(fs::metadata(d.join("dir/a")).unwrap().nlink(), 2);
    assert_eq!(fs::read_link(d.join("link")).unwrap(), Path::new("/etc"));
    assert!(fs::symlink_metadata(d.join("dir/pipe")).unwrap().file_type().is_fifo());
    let staged = fs::read_dir(d).unwrap().filter(|e| {
        e.as_ref().unwrap().file_name().to_string_lossy().starts_with(STAGING_PREFIX)
    });
    assert_eq!(staged.count(), 0);
}

#[test]
fn paths_out_of_the_directory_or_through_its_links_are_refused() {
    refused_with(&archive(&[file("ok", "x"), file("../escape", "x")]), FailureKind::ArchiveEntryRefused);
    let through = archive(&[
        raw_entry(b"up", EntryType::Symlink, b"", b"/tmp"),
        file("up/written-through-a-link", "x"),
    ]);
    let message = refused_with(&through, FailureKind::ArchiveEntryRefused);
    assert!(message.contains("symbolic link `up`"), "{message}");
    assert!(!Path::new("/tmp/written-through-a-link").exists());
}

#[test]
fn hard_links_to_anything_but_an_earlier_file_and_device_nodes_are_refused() {
    let outside = archive(&[raw_entry(b"h", EntryType::Link, b"", b"/etc/passwd")]);
    refused_with(&outside, FailureKind::ArchiveEntryRefused);
    let up = archive(&[raw_entry(b"h", EntryType::Link, b"", b"../keep")]);
    refused_with(&up, FailureKind::ArchiveEntryRefused);
    let to_dir = archive(&[raw_entry(b"d/", EntryType::Directory, b"", b""), raw_entry(b"h", EntryType::Link, b"", b"d")]);
    refused_with(&to_dir, FailureKind::ArchiveEntryRefused);
    let message = refused_with(&archive(&[raw_entry(b"sda", EntryType::Block, b"", b"")]), FailureKind::ArchiveEntryRefused);
    assert!(message.contains("block device"), "{message}");
    refused_with(&archive(&[raw_entry(b"tty", EntryType::Char, b"", b"")]), FailureKind::ArchiveEntryRefused);
}

#[test]
fn deep_long_and_numerous_entries_hit_their_limits() {
    let deep = "d/".repeat(3000) + "f";
    let message = refused_with(&archive(&[file(&deep, "x")]), FailureKind::ArchiveLimit);
    assert!(message.len() < 400, "the message does not quote 6 KB: {message}");
    let long_name = "n".repeat(300);
    refused_with(&archive(&[file(&long_name, "x")]), FailureKind::NameTooLong);
    let long_path = format!("{}f", "abcdefghijklmnopqrstuvwxyz0123456789/".repeat(120));
    refused_with(&archive(&[file(&long_path, "x")]), FailureKind::NameTooLong);
    let long_link = archive(&[raw_entry(b"l", EntryType::Symlink, b"", "t/".repeat(2500).as_bytes())]);
    refused_with(&long_link, FailureKind::NameTooLong);

    let dest = destination();
    let many: Vec<_> = (0..20).map(|i| file(&format!("f{i}"), "x")).collect();
    let limits = UnpackLimits { max_entries: 10, ..UnpackLimits::default() };
    let failure = unpack_archive(archive(&many).as_slice(), dest.path(), &limits, &|| false).unwrap_err();
    assert_eq!(failure.kind, FailureKind::ArchiveLimit);
    assert_untouched(dest.path());
}

#[test]
fn a_huge_long_name_is_cut_off_by_the_metadata_bound() {
    let name = vec![b'n'; 2 * 1024 * 1024];
    let bytes = archive(&[raw_entry(&name, EntryType::Regular, b"x", b"")]);
    refused_with(&bytes, FailureKind::ArchiveLimit);
}

#[test]
fn garbage_truncated_and_compressed_archives_are_bad_archives() {
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    refused_with(&garbage, FailureKind::BadArchive);
    let whole = archive(&[file("a", &"x".repeat(5000))]);
    let message = refused_with(&whole[..1500], FailureKind::BadArchive);
    assert!(message.contains("truncated"), "{message}");
    let message = refused_with(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3], FailureKind::BadArchive);
    assert!(message.contains("gzip"), "{message}");
    // A file replaced by a later failing entry keeps its old content.
    refused_with(&archive(&[file("keep", "after"), raw_entry(b"sda", EntryType::Block, b"", b"")]), FailureKind::ArchiveEntryRefused);
}

#[test]
fn a_cancelled_unpack_stops_and_leaves_nothing() {
    let dest = destination();
    let many: Vec<_> = (0..50).map(|i| file(&format!("f{i}"), "x")).collect();
    let calls = std::cell::Cell::new(0);
    let cancel_after_ten = || {
        calls.set(calls.get() + 1);
        calls.get() > 10
    };
    let failure =
        unpack_archive(archive(&many).as_slice(), dest.path(), &UnpackLimits::default(), &cancel_after_ten)
            .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Cancelled);
    assert!(calls.get() <= 12, "the work stopped at the cancel: {} checks", calls.get());
    assert_untouched(dest.path());
}

#[test]
fn a_new_directory_is_made_only_when_the_archive_is_good() {
    let top = tempfile::tempdir().unwrap();
    let dest = top.path().join("new/dir");
    let failure = unpack(&archive(&[file("a", "x"), file("../b", "x")]), &dest).unwrap_err();
    assert_eq!(failure.kind, FailureKind::ArchiveEntryRefused);
    assert_eq!(fs::read_dir(top.path()).unwrap().count(), 0, "no parent, no staging left");
    unpack(&archive(&[file("a", "x")]), &dest).unwrap();
    assert_eq!(fs::read_to_string(dest.join("a")).unwrap(), "x");
    let _ = fs::remove_dir_all(top.path().join("new"));
    let restrictive = archive(&[{
        let mut entry = raw_entry(b"ro/", EntryType::Directory, b"", b"");
        let mut header = Header::from_byte_slice(&entry[..512]).clone();
        header.set_mode(0o500);
        header.set_cksum();
        entry[..512].copy_from_slice(header.as_bytes());
        entry
    }, file("ro/inside", "x")]);
    unpack(&restrictive, &dest).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(dest.join("ro")).unwrap().permissions().mode() & 0o777, 0o500);
    assert_eq!(fs::read_to_string(dest.join("ro/inside")).unwrap(), "x");
    fs::set_permissions(dest.join("ro"), fs::Permissions::from_mode(0o700)).unwrap();
}
