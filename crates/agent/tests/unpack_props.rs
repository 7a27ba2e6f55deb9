//! Property tests of the agent's tar unpacker, the code that runs on a client's archive in the
//! guest: archives of random entries (names with `..`, `.`, empty and over-long components, deep
//! paths; files, directories, symbolic and hard links to random targets, FIFOs, device nodes).
//!
//! What must hold for *any* of them: unpacking never panics; it either succeeds or leaves the
//! destination exactly as it was (nothing staged behind); nothing is ever written outside the
//! destination; a refusal is the client's fault (a 4xx kind, never `Io`); a path deeper than the limit or a device node is always refused; what it
//! makes holds no device node and no path deeper than the limit.
//!
//! The case count defaults to a CI-friendly 256; a longer campaign:
//! `PROPTEST_CASES=20000 cargo test --release -p firepit-agent --test unpack_props`.

#![cfg(feature = "serve")]

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use firepit_agent::{FailureKind, UnpackLimits, unpack_archive};
use proptest::prelude::*;
use tar::{EntryType, Header};

const MAX_DEPTH: usize = 6;

#[derive(Debug, Clone)]
enum Kind {
    File,
    Dir,
    Symlink(String),
    HardLink(String),
    Fifo,
    Device,
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "keep", "sub"]).prop_map(String::from),
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just(String::new()),
        1 => Just("n".repeat(256)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(component(), 1..=MAX_DEPTH + 2))
        .prop_map(|(absolute, parts)| format!("{}{}", if absolute { "/" } else { "" }, parts.join("/")))
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::File),
        2 => Just(Kind::Dir),
        2 => path().prop_map(Kind::Symlink),
        1 => Just(Kind::Symlink("../../outside".into())),
        2 => path().prop_map(Kind::HardLink),
        1 => Just(Kind::HardLink("../outside/secret".into())),
        1 => Just(Kind::Fifo),
        1 => Just(Kind::Device),
    ]
}

/// One raw entry: names written as given (a GNU long name or link first past 99 bytes).
fn entry(name: &str, kind: &Kind) -> Vec<u8> {
    let (entry_type, data, link): (EntryType, &[u8], &str) = match kind {
        Kind::File => (EntryType::Regular, b"data", ""),
        Kind::Dir => (EntryType::Directory, b"", ""),
        Kind::Symlink(to) => (EntryType::Symlink, b"", to),
        Kind::HardLink(to) => (EntryType::Link, b"", to),
        Kind::Fifo => (EntryType::Fifo, b"", ""),
        Kind::Device => (EntryType::Char, b"", ""),
    };
    let mut out = Vec::new();
    if link.len() > 99 {
        out.extend(raw(b"././@LongLink", EntryType::GNULongLink, &[link.as_bytes(), &[0]].concat(), b""));
    }
    if name.len() > 99 {
        out.extend(raw(b"././@LongLink", EntryType::GNULongName, &[name.as_bytes(), &[0]].concat(), b""));
    }
    out.extend(raw(name.as_bytes(), entry_type, data, link.as_bytes()));
    out
}

fn raw(name: &[u8], kind: EntryType, data: &[u8], link: &[u8]) -> Vec<u8> {
    let mut header = Header::new_gnu();
    let gnu = header.as_gnu_mut().expect("a GNU header");
    gnu.name[..name.len().min(99)].copy_from_slice(&name[..name.len().min(99)]);
    gnu.linkname[..link.len().min(99)].copy_from_slice(&link[..link.len().min(99)]);
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Every path under `dir` (relative), with whether it is a device node.
fn tree(dir: &Path, under: &Path, out: &mut Vec<(String, bool)>) {
    for item in fs::read_dir(dir).expect("a readable directory") {
        let item = item.expect("an entry");
        let kind = item.file_type().expect("a file type");
        let relative = under.join(item.file_name());
        out.push((relative.display().to_string(), kind.is_block_device() || kind.is_char_device()));
        if kind.is_dir() {
            tree(&item.path(), &relative, out);
        }
    }
}

fn depth(path: &str) -> usize {
    path.split('/').filter(|part| !part.is_empty() && *part != ".").count()
}

proptest! {
    #[test]
    fn any_archive_lands_inside_whole_or_not_at_all(entries in prop::collection::vec((path(), kind()), 1..8)) {
        let root = tempfile::tempdir().expect("a temp dir");
        let (dest, outside) = (root.path().join("dest"), root.path().join("outside"));
        fs::create_dir_all(&dest).expect("dest");
        fs::create_dir_all(&outside).expect("outside");
        fs::write(dest.join("keep"), "before").expect("keep");
        fs::write(outside.join("secret"), "secret").expect("secret");
        let mut bytes: Vec<u8> = entries.iter().flat_map(|(name, kind)| entry(name, kind)).collect();
        bytes.extend_from_slice(&[0; 1024]);
        let limits = UnpackLimits { max_depth: MAX_DEPTH, ..UnpackLimits::default() };

        let result = unpack_archive(bytes.as_slice(), &dest, &limits, &|| false);

        let mut beside: Vec<String> = fs::read_dir(root.path()).expect("root")
            .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned()).collect();
        beside.sort();
        prop_assert_eq!(beside, ["dest", "outside"], "something was written beside the destination");
        let mut out = Vec::new();
        tree(&outside, Path::new(""), &mut out);
        prop_assert_eq!(out.len(), 1, "something was written outside: {:?}", out);
        prop_assert_eq!(fs::read_to_string(outside.join("secret")).expect("secret"), "secret");
        let mut made = Vec::new();
        tree(&dest, Path::new(""), &mut made);
        let too_deep = entries.iter().any(|(name, _)| depth(name) > MAX_DEPTH);
        let device = entries.iter().any(|(_, kind)| matches!(kind, Kind::Device));
        match result {
            Ok(()) => {
                prop_assert!(!too_deep, "a path deeper than {} was unpacked", MAX_DEPTH);
                prop_assert!(!device, "a device node entry was accepted");
                prop_assert!(made.iter().all(|(path, is_device)| !is_device && depth(path) <= MAX_DEPTH), "{:?}", made);
            }
            Err(failure) => {
                // The client's fault, each with its 4xx: never `Io` (a 500) or a protocol failure.
                let expected = [
                    FailureKind::ArchiveLimit,
                    FailureKind::ArchiveEntryRefused,
                    FailureKind::BadArchive,
                    FailureKind::NameTooLong,
                    FailureKind::IsADirectory,
                    FailureKind::NotADirectory,
                    FailureKind::AlreadyExists,
                    FailureKind::DirectoryNotEmpty,
                    FailureKind::NotFound,
                    FailureKind::InvalidInput,
                ];
                prop_assert!(expected.contains(&failure.kind), "{:?}: {}", failure.kind, failure.message);
                prop_assert_eq!(made, vec![("keep".to_string(), false)], "a refused archive left something");
                prop_assert_eq!(fs::read_to_string(dest.join("keep")).expect("keep"), "before");
            }
        }
    }
}
