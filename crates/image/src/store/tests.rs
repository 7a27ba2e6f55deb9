use super::*;

fn record(id: &str, disk_bytes: u64) -> DiskRecord {
    DiskRecord {
        format: STORE_FORMAT,
        id: id.into(),
        kind: ImageKind::RawExt4,
        disk_file: DISK_FILE.into(),
        disk_bytes,
        source: ImageSource::Packages { packages: vec!["python3".into()], suite: "bookworm".into() },
        packages: vec![PackageRef { name: "python3".into(), version: "3.11.2-1+b1".into() }],
        exec: ExecConfig::default(),
        created_unix: 1,
        input_fingerprint: format!("{id}ffff"),
    }
}

#[test]
fn a_committed_image_is_listed_got_and_removed_and_a_dropped_staging_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::new(dir.path().join("images"));
    assert!(store.list().unwrap().is_empty(), "a store that does not exist yet is empty");
    let staging = store.stage().unwrap();
    std::fs::write(staging.path().join(DISK_FILE), vec![0u8; 4096]).unwrap();
    let image = store.commit(staging, &record("0123456789abcdef", 4096)).unwrap();
    assert_eq!(image.disk(), store.dir().join("0123456789abcdef").join(DISK_FILE));
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(store.get("0123456789abcdef").unwrap().record().packages[0].name, "python3");
    assert!(matches!(store.get("fedcba9876543210"), Err(ImageError::NotInStore { .. })));
    assert!(matches!(store.get("../etc"), Err(ImageError::NotInStore { .. })));

    let abandoned = store.stage().unwrap();
    let path = abandoned.path().to_path_buf();
    drop(abandoned);
    assert!(!path.exists());

    store.remove("0123456789abcdef").unwrap();
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_disk_of_the_wrong_size_is_a_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::new(dir.path());
    let staging = store.stage().unwrap();
    std::fs::write(staging.path().join(DISK_FILE), vec![0u8; 4096]).unwrap();
    let image = store.commit(staging, &record("00000000000000aa", 4096)).unwrap();
    std::fs::write(image.disk(), b"short").unwrap();
    let err = store.get("00000000000000aa").unwrap_err();
    assert!(matches!(err, ImageError::BadDiskRecord { .. }) && err.to_string().contains("5 bytes"), "{err}");
    assert!(store.list().unwrap().is_empty(), "damaged entries are skipped by list");
}

#[test]
fn sources_display_what_the_image_holds() {
    let packages =
        ImageSource::Packages { packages: vec!["python3".into(), "git".into()], suite: "bookworm".into() };
    assert_eq!(packages.to_string(), "packages python3,git (bookworm)");
    let oci = ImageSource::Oci {
        path: "/tmp/app".into(),
        digest: "sha256:0123456789abcdef0123".into(),
        reference: Some("app:1".into()),
    };
    assert_eq!(oci.to_string(), "oci /tmp/app app:1 (sha256:0123456789ab)");
}
