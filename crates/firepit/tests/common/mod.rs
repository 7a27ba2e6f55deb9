//! Helpers shared by the facade's integration tests (real QEMU VMs under TCG here).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The guest image at the default location (`FIREPIT_IMAGE_DIR`, which `scripts/test` exports).
///
/// Missing image = a failed test with the fix in the message, never a silent skip.
pub fn image() -> firepit::image::Image {
    firepit::image::Image::open_default().unwrap_or_else(|e| panic!("{e}"))
}

/// A provider config whose runtime directory is private to this test, so leftovers are ours.
///
/// Snapshot templates (the facade's default fill) go to `<runtime_dir>/templates` and are removed
/// with the provider, so a test leaves nothing in the machine's default template dir.
pub fn provider_config(runtime_dir: &Path) -> firepit::qemu::ProviderConfig {
    firepit::qemu::ProviderConfig {
        runtime_dir: runtime_dir.to_path_buf(),
        template_dir: runtime_dir.join(TEMPLATES),
        keep_templates: false,
        ..Default::default()
    }
}

/// The template dir's name under a test's runtime dir.
pub const TEMPLATES: &str = "templates";

/// PIDs of the QEMU processes that are children of this test process and keep their sockets under
/// `runtime_dir` (tests of one binary run in parallel: each looks only at its own VMs).
pub fn child_qemu_pids(runtime_dir: &Path) -> Vec<u32> {
    let marker = runtime_dir.as_os_str().as_encoded_bytes();
    let me = std::process::id();
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return pids };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let comm = stat.get(stat.find('(').map_or(0, |i| i + 1)..close).unwrap_or("");
        let ppid = stat[close + 1..].split_whitespace().nth(1).and_then(|s| s.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = cmdline.windows(marker.len().max(1)).any(|w| w == marker);
        if ppid == Some(me) && comm.starts_with("qemu-system") && ours {
            pids.push(pid);
        }
    }
    pids
}

/// Polls `condition` every 50 ms until it holds or `deadline` passes; returns whether it held.
pub async fn eventually(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
}

/// Entries left in a runtime directory (sockets, per-VM dirs).
pub fn leftovers(runtime_dir: &Path) -> Vec<PathBuf> {
    let mut left: Vec<PathBuf> = std::fs::read_dir(runtime_dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    // Snapshot templates outlive a pool's shutdown by design (they go with the provider, or are
    // kept for reuse); their cleanup is tested in firepit-qemu's vm_snapshot tests.
    left.retain(|p| p != &runtime_dir.join(TEMPLATES));
    left
}
