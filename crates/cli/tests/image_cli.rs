//! `firepit image import|ls|rm` as a user runs them, on a private image store
//! (`FIREPIT_IMAGE_STORE`): an OCI layout becomes a stored root disk that `ls` lists with its
//! source and `rm` removes; bad input fails with a message naming it.

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn firepit(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firepit"))
        .args(args)
        .env("FIREPIT_IMAGE_STORE", store)
        .output()
        .expect("the firepit binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `bytes` as a blob of the layout and returns its digest.
fn blob(layout: &Path, bytes: &[u8]) -> String {
    let hex = hex::encode(Sha256::digest(bytes));
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

/// A one-layer OCI layout whose root holds `/etc/hello`.
fn layout(work: &Path) -> std::path::PathBuf {
    let tree = work.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hello"), "hello\n").unwrap();
    let tarball = work.join("layer.tar");
    let status = Command::new("tar")
        .args(["--sort=name", "--numeric-owner", "-cf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let layout = work.join("oci");
    let layer = std::fs::read(&tarball).unwrap();
    let layer_digest = blob(&layout, &layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"]}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let config_digest = blob(&layout, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let manifest_digest = blob(&layout, manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{}}}]}}"#,
        manifest.len()
    );
    std::fs::write(layout.join("index.json"), index).unwrap();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    layout
}

#[test]
fn import_lists_and_removes_an_oci_image_in_the_store() {
    // SAFETY: geteuid cannot fail. Importing keeps the image's owners, which needs root.
    if unsafe { libc::geteuid() } != 0 {
        let out = firepit(Path::new("/nonexistent"), &["image", "import", "/nonexistent"]);
        assert_eq!(out.status.code(), Some(1));
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let layout = layout(work.path());

    let out = firepit(&store, &["image", "import", layout.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert_eq!(id.len(), 16, "the import prints the image id: {id:?}");

    let out = firepit(&store, &["image", "ls", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let entry = listed.iter().find(|i| i["id"] == id.as_str()).expect("the imported image is listed");
    assert_eq!(entry["kind"], "raw_ext4", "{entry}");
    assert!(entry["source"].as_str().unwrap().contains("oci"), "{entry}");
    assert!(store.join(&id).join("disk.img").is_file());

    let out = firepit(&store, &["image", "rm", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!store.join(&id).exists(), "removed from the store");
    let out = firepit(&store, &["image", "rm", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&id), "{}", text(&out.stderr));
}

#[test]
fn importing_something_that_is_no_oci_image_names_it() {
    let work = tempfile::tempdir().unwrap();
    let bogus = work.path().join("not-an-image.tar");
    std::fs::write(&bogus, b"random bytes, not a tarball").unwrap();
    for path in [bogus.to_str().unwrap(), "/nonexistent/image"] {
        let out = firepit(&work.path().join("store"), &["image", "import", path]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(path), "the error names {path}: {}", text(&out.stderr));
    }
    assert!(
        !work.path().join("store").exists()
            || std::fs::read_dir(work.path().join("store")).unwrap().all(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')),
        "nothing stored"
    );
}
