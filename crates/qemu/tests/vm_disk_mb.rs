//! A shape's `disk_mb` on an image without a root disk (the guest's files live in its RAM): `/`
//! and `/tmp` together hold at most that much more than the image, and the guest gets `ENOSPC`
//! past it. (Root disks: `crates/firepit/tests/vm_disk.rs`.) One real VM (TCG here).

mod common;

#[test]
fn without_a_root_disk_disk_mb_bounds_what_the_guest_writes_to_slash_and_tmp_together() {
    common::run(async {
        let dir = common::runtime_dir("disk-mb");
        let provider = common::provider(&dir, |_| {});
        let mut spec = common::cold_spec(&common::image());
        spec.disk_mb = Some(64);
        let vm = provider.cold_boot(&common::shape(), &spec).await.unwrap();
        let script = "dd if=/dev/zero of=/tmp/a bs=1M count=40 2>&1; echo first=$?; \
                      dd if=/dev/zero of=/b bs=1M count=40 2>&1; echo second=$?; sync; \
                      echo total=$(( $(wc -c < /tmp/a) + $(wc -c < /b) ))";
        let out = vm.exec(["sh", "-c", script]).await.unwrap();
        let text = out.stdout_lossy();
        assert!(text.contains("first=0"), "40 MiB fit: {text}");
        assert!(
            text.contains("No space left on device") && text.contains("second=1"),
            "80 MiB do not: {text}"
        );
        let total: u64 =
            text.lines().find_map(|l| l.strip_prefix("total=")).and_then(|n| n.parse().ok()).unwrap();
        assert!((60 << 20..=64 << 20).contains(&total), "{} MiB written in / and /tmp together", total >> 20);
        vm.shutdown().await;
        drop(provider);
        common::assert_removed_empty(&dir);
    });
}
