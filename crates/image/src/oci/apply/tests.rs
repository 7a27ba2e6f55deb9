use std::os::unix::fs::MetadataExt;

use super::*;

/// Builds a layer tarball from (path, kind) entries, owned by this process's user.
enum Item<'a> {
    Dir(&'a str),
    File(&'a str, &'a str, u32),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

fn layer(dir: &Path, name: &str, items: &[Item<'_>]) -> PathBuf {
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(gid));
        header.set_mtime(1_700_000_000);
        match item {
            Item::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
            Item::File(path, text, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(text.len() as u64);
                builder.append_data(&mut header, path, text.as_bytes()).unwrap();
            }
            Item::Link(path, target) | Item::Hard(path, target) => {
                let kind = if matches!(item, Item::Link(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                header.set_entry_type(kind);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
        }
    }
    let bytes = builder.into_inner().unwrap();
    let path = dir.join(name);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    path
}

#[test]
fn whiteouts_delete_files_and_opaque_dirs_hide_lower_content() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let lower = layer(
        dir.path(),
        "l1",
        &[
            Item::Dir("etc"),
            Item::File("etc/keep", "kept\n", 0o644),
            Item::File("etc/gone", "deleted\n", 0o600),
            Item::Dir("data"),
            Item::File("data/old", "old\n", 0o644),
            Item::Dir("data/sub"),
            Item::File("bin/tool", "#!/bin/sh\n", 0o4755),
            Item::Hard("bin/tool2", "bin/tool"),
        ],
    );
    let upper = layer(
        dir.path(),
        "l2",
        &[
            Item::File("etc/.wh.gone", "", 0o644),
            Item::Dir("data"),
            Item::File("data/.wh..wh..opq", "", 0o644),
            Item::File("data/new", "new\n", 0o640),
            Item::Link("etc/keep-link", "/etc/keep"),
        ],
    );
    apply_layer(&root, &lower, "l1").unwrap();
    apply_layer(&root, &upper, "l2").unwrap();
    assert_eq!(std::fs::read_to_string(root.join("etc/keep")).unwrap(), "kept\n");
    assert!(!root.join("etc/gone").exists(), "a .wh. file deletes its namesake");
    assert!(!root.join("etc/.wh.gone").exists(), "whiteouts are not files of the tree");
    let mut data: Vec<String> = std::fs::read_dir(root.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    data.sort();
    assert_eq!(data, ["new"], "an opaque directory keeps only this layer's entries");
    let tool = std::fs::metadata(root.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755, "set-uid bit kept");
    assert_eq!(tool.ino(), std::fs::metadata(root.join("bin/tool2")).unwrap().ino(), "hard link kept");
    assert_eq!(tool.mtime(), 1_700_000_000);
    assert_eq!(std::fs::metadata(root.join("data/new")).unwrap().mode() & 0o777, 0o640);
    assert_eq!(std::fs::read_link(root.join("etc/keep-link")).unwrap(), Path::new("/etc/keep"));
}

#[test]
fn paths_and_links_never_lead_outside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    // A lower layer plants links pointing out of the root, by absolute and relative paths.
    let lower = layer(
        dir.path(),
        "l1",
        &[Item::Link("abs", outside.to_str().unwrap()), Item::Link("rel", "../../outside")],
    );
    apply_layer(&root, &lower, "l1").unwrap();
    let upper = layer(
        dir.path(),
        "l2",
        &[
            Item::File("abs/escaped", "x", 0o644),
            Item::File("rel/escaped", "x", 0o644),
            Item::File("abs/.wh.victim", "", 0o644),
        ],
    );
    std::fs::write(outside.join("victim"), b"safe").unwrap();
    apply_layer(&root, &upper, "l2").unwrap();
    assert!(
        std::fs::read_dir(&outside).unwrap().count() == 1 && outside.join("victim").exists(),
        "nothing outside changed"
    );
    // The links resolve inside the root instead: /abs -> <root>/<outside path>, /rel -> <root>/outside.
    assert!(root.join(outside.strip_prefix("/").unwrap()).join("escaped").exists());
    assert!(root.join("outside/escaped").exists());
    assert_eq!(resolve(&root, Path::new("../../etc/passwd"), false).unwrap(), root.join("etc/passwd"));
}

#[test]
fn a_hard_link_to_nothing_is_a_bad_layer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let broken = layer(dir.path(), "l1", &[Item::Hard("a", "missing")]);
    let err = apply_layer(&root, &broken, "sha256:abc").unwrap_err();
    assert!(err.to_string().contains("layer sha256:abc") && err.to_string().contains("hard link"), "{err}");
}
