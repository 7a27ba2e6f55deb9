//! Builds the real image from Debian packages (needs apt and its package lists) into a temporary
//! directory, checks what is inside, and that a second build with the same inputs is a cache hit.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use firepit_image::cpio::{self, Node};
use firepit_image::{Image, ImageBuilder};

#[test]
fn real_image_builds_from_debian_packages_and_rebuilds_from_cache() {
    let out = tempfile::tempdir().unwrap();
    let builder = ImageBuilder::new(out.path()).agent(common::agent_path()).cache_dir(common::deb_cache());
    let mut steps = Vec::new();
    let image = builder.build(&mut |p| steps.push(p)).unwrap();
    assert!(steps.len() >= 5, "progress reports every step: {steps:?}");
    assert!(steps.iter().all(|p| p.step <= p.total));

    let manifest = image.manifest();
    assert!(image.kernel_version().contains("cloud-amd64"), "{}", image.kernel_version());
    assert_eq!(image.id().len(), 16);
    assert!(manifest.packages.iter().any(|p| p.package.name.starts_with("linux-image-6")));
    assert!(manifest.packages.iter().any(|p| p.package.name == "busybox-static"));
    assert_eq!(
        manifest.modules,
        [
            "virtio_ring",
            "virtio",
            "virtio_mmio",
            "virtio_console",
            "virtio_rng",
            "virtio_blk",
            "failover",
            "net_failover",
            "virtio_net"
        ]
    );
    assert!(std::fs::metadata(image.kernel()).unwrap().len() > 5_000_000);

    let mut raw = Vec::new();
    let gz = std::fs::read(image.initramfs()).unwrap();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut raw).unwrap();
    let files = cpio::read(&raw).unwrap();
    assert_eq!(files["bin/sh"].1, Node::Symlink("busybox".into()));
    assert!(matches!(files["sbin/firepit-agent"], (0o755, Node::File(_))));
    let ko = format!("lib/modules/{}/virtio_console.ko", image.kernel_version());
    assert!(files.contains_key(&ko), "missing {ko}");
    assert_eq!(manifest.files, files.keys().cloned().collect::<Vec<_>>());

    let reopened = Image::open(out.path()).unwrap();
    assert_eq!(reopened.id(), image.id());

    let started = Instant::now();
    let again = builder.build(&mut |_| {}).unwrap();
    let cached_in = started.elapsed();
    assert_eq!(again.id(), image.id());
    assert!(cached_in < Duration::from_secs(1), "cached rebuild took {cached_in:?}");
}

#[test]
fn missing_agent_is_a_clear_error() {
    let out = tempfile::tempdir().unwrap();
    let error = ImageBuilder::new(out.path()).agent(out.path().join("nope")).build(&mut |_| {}).unwrap_err();
    assert!(matches!(error, firepit_image::ImageError::AgentMissing(_)));
    assert!(error.to_string().contains("scripts/build-image"), "{error}");
}

#[test]
fn opening_a_directory_without_an_image_says_how_to_build_one() {
    let dir = tempfile::tempdir().unwrap();
    let error = Image::open(dir.path()).unwrap_err();
    assert!(error.to_string().contains("firepit image build"), "{error}");
}
