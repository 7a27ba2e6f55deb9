//! Snapshot fill with real VMs: a template per shape, copy-on-write clones with their own identity,
//! and no file left once the clones and the provider are gone.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use firepit_pool::Provider;
use firepit_qemu::{FillStrategy, TemplateState};

fn template_files() -> Vec<String> {
    let prefix = format!("firepit-{}-t", std::process::id());
    std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

#[test]
fn snapshot_clones_restore_fast_with_distinct_identities_and_clean_up() {
    common::run(async {
        let image = common::image();
        let dir = common::runtime_dir("snapshot");
        let provider = common::provider(&image, &dir, |_| {});
        provider.register_image_with(&image.id, image.paths.clone(), FillStrategy::Snapshot).unwrap();
        let shape = common::shape(&image);

        let cold_started = Instant::now();
        let cold = provider.cold_boot(&shape).await.unwrap();
        let cold_ms = cold_started.elapsed().as_millis();
        let cold_memory = common::memory_kib(cold.pid());
        provider.destroy(cold).await;

        let template_started = Instant::now();
        let first = provider.create(&shape).await.unwrap();
        let template_and_first_ms = template_started.elapsed().as_millis();
        assert_eq!(template_files().len(), 1, "one template memory file in /dev/shm");

        let mut restore_ms = Vec::new();
        let mut clones = vec![first];
        for _ in 0..2 {
            let started = Instant::now();
            clones.push(provider.create(&shape).await.unwrap());
            restore_ms.push(started.elapsed().as_millis());
        }
        eprintln!(
            "cold boot {cold_ms} ms; template + first clone {template_and_first_ms} ms; restores {restore_ms:?} ms; \
             clone boot_duration {:?}",
            clones.iter().map(|vm| vm.boot_duration()).collect::<Vec<_>>()
        );
        eprintln!(
            "(rss, pss) KiB: cold VM {cold_memory:?}; clones {:?}",
            clones.iter().map(|vm| common::memory_kib(vm.pid())).collect::<Vec<_>>()
        );

        let mut hostnames = Vec::new();
        for vm in &clones {
            let out = vm.exec(["sh", "-c", "hostname; date +%s"]).await.unwrap();
            assert!(out.success(), "{out:?}");
            let text = out.stdout_lossy();
            let lines: Vec<&str> = text.lines().collect();
            hostnames.push(lines[0].to_string());
            let guest_now: u64 = lines[1].trim().parse().unwrap();
            let host_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            assert!(guest_now.abs_diff(host_now) <= 2, "guest clock {guest_now} vs host {host_now}");
        }
        hostnames.sort();
        hostnames.dedup();
        assert_eq!(hostnames.len(), clones.len(), "clones share a hostname");

        // The template lives while clones map it, and goes with the last holder.
        provider.forget_template(&shape);
        assert_eq!(template_files().len(), 1, "template removed while clones still map it");
        for vm in clones {
            provider.destroy(vm).await;
        }
        assert!(template_files().is_empty(), "template memory file left: {:?}", template_files());
        drop(provider);
        tokio::time::sleep(Duration::from_millis(10)).await;
        common::assert_removed_empty(&dir);
    });
}

#[test]
fn snapshot_clones_read_different_random_bytes() {
    common::run(async {
        let image = common::image();
        let dir = common::runtime_dir("snapshot-rng");
        let provider = common::provider(&image, &dir, |_| {});
        provider.register_image_with(&image.id, image.paths.clone(), FillStrategy::Snapshot).unwrap();
        let shape = common::shape(&image);
        // Both clones alive, read right after restore: the case that must not repeat bytes.
        let (a, b) = (provider.create(&shape).await.unwrap(), provider.create(&shape).await.unwrap());
        let mut random = Vec::new();
        for vm in [a, b] {
            let out = vm.exec(["sh", "-c", "head -c 16 /dev/urandom | od -An -tx1"]).await.unwrap();
            random.push(out.stdout_lossy());
            provider.destroy(vm).await;
        }
        drop(provider);
        common::assert_removed_empty(&dir);
        assert_ne!(
            random[0], random[1],
            "two clones read the same bytes from /dev/urandom right after restore"
        );
    });
}

#[test]
fn missing_template_state_falls_back_to_cold_boot() {
    common::run(async {
        let image = common::image();
        let dir = common::runtime_dir("snapshot-fallback");
        let provider = common::provider(&image, &dir, |_| {});
        provider.register_image_with(&image.id, image.paths.clone(), FillStrategy::Snapshot).unwrap();
        let shape = common::shape(&image);
        let first = provider.create(&shape).await.unwrap();
        assert_eq!(provider.template_state(&shape), TemplateState::Ready);
        let state_files: Vec<_> =
            common::leftovers(&dir).into_iter().map(|d| d.join("state.bin")).filter(|f| f.exists()).collect();
        assert_eq!(state_files.len(), 1, "exactly one template state file");
        std::fs::remove_file(&state_files[0]).unwrap();
        let fallback = provider.create(&shape).await.expect("cold boot fallback");
        assert!(fallback.exec(["true"]).await.unwrap().success());
        assert!(fallback.boot_duration() > first.boot_duration(), "fallback should have cold-booted");
        provider.destroy(first).await;
        provider.destroy(fallback).await;
        drop(provider);
        common::assert_removed_empty(&dir);
        assert!(common::qemu_children(&dir).is_empty());
    });
}
