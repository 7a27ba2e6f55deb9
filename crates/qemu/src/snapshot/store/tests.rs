use super::*;

fn key() -> TemplateKey {
    TemplateKey {
        image_id: "img".into(),
        shape: "img@1/1cpu/64MiB".into(),
        qemu_version: "QEMU emulator version 7.2.22".into(),
        cmdline_sha256: sha256_hex(b"argv"),
        disk: None,
    }
}

fn published(base: &Path) -> PathBuf {
    let scratch = scratch_path(base);
    std::fs::create_dir(&scratch).unwrap();
    std::fs::write(scratch.join(MEMORY_FILE), vec![0u8; 4096]).unwrap();
    std::fs::write(scratch.join(STATE_FILE), b"device state").unwrap();
    let target = base.join(shape_dir_name(&key().shape));
    publish(&scratch, &target, &key(), 4096).unwrap();
    assert!(!scratch.exists());
    target
}

#[test]
fn a_published_template_is_valid_for_its_key_only() {
    let base = tempfile::tempdir().unwrap();
    let dir = published(base.path());
    assert!(matches!(inspect(&dir, &key()), Found::Valid(m) if m.state_bytes == 12));
    let newer_qemu = TemplateKey { qemu_version: "QEMU emulator version 8.0".into(), ..key() };
    assert!(matches!(
        inspect(&dir, &newer_qemu),
        Found::Stale(TemplateFault::KeyMismatch { what: "QEMU version", .. })
    ));
    let rewritten_disk = TemplateKey { disk: Some("/img/disk.img 4096 1.0 7".into()), ..key() };
    assert!(matches!(
        inspect(&dir, &rewritten_disk),
        Found::Stale(TemplateFault::KeyMismatch { what: "root disk", .. })
    ));
    let other_argv = TemplateKey { cmdline_sha256: sha256_hex(b"other"), ..key() };
    assert!(matches!(
        inspect(&dir, &other_argv),
        Found::Stale(TemplateFault::KeyMismatch { what: "command line hash", .. })
    ));
    assert!(matches!(inspect(&base.path().join("nothing"), &key()), Found::Absent));
}

#[test]
fn truncated_altered_or_missing_files_are_corrupt() {
    let base = tempfile::tempdir().unwrap();
    let dir = published(base.path());
    std::fs::write(dir.join(STATE_FILE), b"device").unwrap();
    assert!(matches!(
        inspect(&dir, &key()),
        Found::Corrupt(TemplateFault::Size { actual: 6, expected: 12, .. })
    ));
    std::fs::write(dir.join(STATE_FILE), b"DEVICE STATE").unwrap();
    assert!(matches!(inspect(&dir, &key()), Found::Corrupt(TemplateFault::Checksum { .. })));
    std::fs::write(dir.join(STATE_FILE), b"device state").unwrap();
    std::fs::remove_file(dir.join(MEMORY_FILE)).unwrap();
    assert!(matches!(inspect(&dir, &key()), Found::Corrupt(TemplateFault::Unreadable { .. })));
    std::fs::write(dir.join(MANIFEST_FILE), b"{not json").unwrap();
    let Found::Corrupt(fault) = inspect(&dir, &key()) else { panic!("a garbled manifest is corrupt") };
    assert!(fault.to_string().contains("not a template manifest"), "{fault}");
    std::fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    assert!(matches!(inspect(&dir, &key()), Found::Corrupt(TemplateFault::ManifestMissing(_))));
}

#[test]
fn a_template_dir_others_can_enter_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("templates");
    ensure_private_dir(&dir).unwrap();
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let error = ensure_private_dir(&dir).unwrap_err().to_string();
    assert!(error.contains("not private"), "{error}");
    let link = base.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(ensure_private_dir(&link).is_err(), "a symlink is refused");
}

#[test]
fn shape_dir_names_are_safe_and_distinct() {
    let a = shape_dir_name("img@6.1/1cpu/256MiB");
    let b = shape_dir_name("img@6.1/1cpu/256MiB+x");
    assert!(!a.contains('/') && a.starts_with("img@6.1_1cpu_256MiB-"));
    assert_ne!(a, b);
}

#[test]
fn a_retired_template_gets_a_scratch_name_and_is_removed() {
    let base = tempfile::tempdir().unwrap();
    let dir = published(base.path());
    let moved = retire(&dir).unwrap();
    assert!(!dir.exists() && moved.exists());
    assert!(moved.file_name().unwrap().to_string_lossy().starts_with("firepit-"));
    remove(&moved);
    assert!(!moved.exists());
}
