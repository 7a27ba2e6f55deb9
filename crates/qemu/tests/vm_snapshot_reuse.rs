//! Snapshot templates across provider restarts, with real VMs: a valid template is reused, a stale
//! or corrupt one is rebuilt, one damaged under a running provider makes the shape fall back to cold
//! boot (saying why) until it is rebuilt, and what stays behind is exactly the kept template.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use firepit_pool::Provider;
use firepit_qemu::{FillKind, QemuProvider, TemplateOrigin, TemplateState};

fn snapshot_provider(dir: &Path, templates: &Path) -> QemuProvider {
    common::provider(dir, |c| {
        c.template_dir = templates.to_path_buf();
        c.snapshot_retry_after = Duration::from_secs(1);
    })
}

/// The one shape directory in `templates` (asserts there is exactly one entry).
fn only_template(templates: &Path) -> PathBuf {
    let entries = common::leftovers(templates);
    assert_eq!(entries.len(), 1, "exactly one template directory: {entries:?}");
    let dir = entries[0].clone();
    let mut files: Vec<String> = common::leftovers(&dir)
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["manifest.json", "memory", "state.bin"], "in {}", dir.display());
    dir
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, manifest.to_string()).unwrap();
}

/// Creates one VM, checks that it answers, destroys it; returns how it was made.
async fn fill_once(provider: &QemuProvider) -> FillKind {
    let (shape, spec) = (common::shape(), common::snapshot_spec(&common::image()));
    let vm = provider.create(&shape, &spec).await.unwrap();
    assert!(vm.exec(["true"]).await.unwrap().success());
    let kind = vm.fill();
    provider.destroy(vm).await;
    kind
}

#[test]
fn templates_are_reused_across_providers_and_rebuilt_when_stale_damaged_or_corrupt() {
    common::run(async {
        let dir = common::runtime_dir("snapshot-reuse");
        let templates = PathBuf::from(format!("/dev/shm/fpq-{}-reuse", std::process::id()));
        let _ = std::fs::remove_dir_all(&templates);
        let shape = common::shape();

        // 1. Built, then kept when the provider goes (keep_templates defaults to true).
        let provider = snapshot_provider(&dir, &templates);
        assert_eq!(fill_once(&provider).await, FillKind::Snapshot);
        assert_eq!(provider.template_state(&shape), TemplateState::Ready(TemplateOrigin::Built));
        drop(provider);
        let template = only_template(&templates);
        let built_at = std::fs::read_to_string(template.join("manifest.json")).unwrap();
        common::assert_removed_empty(&dir);

        // 2. A new provider reuses it: no template boot, the manifest is untouched.
        let provider = snapshot_provider(&dir, &templates);
        assert_eq!(fill_once(&provider).await, FillKind::Snapshot);
        assert_eq!(provider.template_state(&shape), TemplateState::Ready(TemplateOrigin::Reused));
        assert_eq!(std::fs::read_to_string(template.join("manifest.json")).unwrap(), built_at);
        drop(provider);

        // 3. Stale: made by another QEMU. Rebuilt, and the status says why.
        edit_manifest(&template, |m| m["qemu_version"] = "QEMU emulator version 0.1".into());
        let provider = snapshot_provider(&dir, &templates);
        assert_eq!(fill_once(&provider).await, FillKind::Snapshot);
        let state = provider.template_state(&shape);
        assert!(
            matches!(&state, TemplateState::Ready(TemplateOrigin::Rebuilt(why)) if why.contains("QEMU version")),
            "{state:?}"
        );
        assert!(state.to_string().starts_with("snapshot: template rebuilt"), "{state}");

        // 4. Damaged under the running provider (state file gone): cold-boot fallback with the
        //    reason in the status, then, after the retry delay (1 s here), a new template.
        std::fs::remove_file(only_template(&templates).join("state.bin")).unwrap();
        assert_eq!(fill_once(&provider).await, FillKind::ColdBootFallback);
        let state = provider.template_state(&shape);
        assert!(
            matches!(&state, TemplateState::Failed { error, .. } if error.contains("damaged")),
            "{state:?}"
        );
        assert!(state.to_string().starts_with("cold boot fallback: template damaged"), "{state}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(fill_once(&provider).await, FillKind::Snapshot, "recovered: restoring again");
        assert_eq!(provider.template_state(&shape), TemplateState::Ready(TemplateOrigin::Built));
        drop(provider);

        // 5. Corrupt on disk (truncated state file) when a provider starts: rebuilt.
        let template = only_template(&templates);
        let state_file = template.join("state.bin");
        let len = std::fs::metadata(&state_file).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&state_file).unwrap().set_len(len / 2).unwrap();
        let provider = snapshot_provider(&dir, &templates);
        assert_eq!(fill_once(&provider).await, FillKind::Snapshot);
        let state = provider.template_state(&shape);
        assert!(
            matches!(&state, TemplateState::Ready(TemplateOrigin::Rebuilt(why)) if why.contains("truncated")),
            "{state:?}"
        );

        // What stays behind: the kept template, nothing else; an explicit cleanup removes it.
        drop(provider);
        only_template(&templates);
        common::assert_removed_empty(&dir);
        assert!(common::qemu_children(&dir).is_empty());
        let cleaner = snapshot_provider(&dir, &templates);
        assert_eq!(cleaner.remove_templates(), 1);
        assert!(!templates.exists(), "the template dir is removed once empty");
        drop(cleaner);
        common::assert_removed_empty(&dir);
    });
}
