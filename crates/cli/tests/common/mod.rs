//! Helpers of the CLI crate's end-to-end tests: the guest image, polling, and a `firepit serve`
//! child (through the tools' harness) for one shape `small` of depth 1.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use firepit_tools::child_daemon::ChildDaemon;
use firepit_tools::daemon_dir::{DaemonDir, DaemonSettings, ShapeSettings};

pub mod browser;
pub mod procs;
pub mod shared_daemon;

/// Cold boots under a loaded TCG host take up to 30 s; warm-up and refill get generous deadlines.
pub const BOOT_DEADLINE: Duration = Duration::from_secs(180);

/// The guest image at the default location (`FIREPIT_IMAGE_DIR`, which `scripts/test` exports).
///
/// Missing image = a failed test with the fix in the message, never a silent skip.
pub fn image() -> firepit_image::Image {
    firepit_image::Image::open_default().unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `condition` every 50 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if started.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Settings for one cold-boot shape `small` of depth 1 in a new private directory.
pub fn small_shape_settings(label: &str) -> (DaemonDir, DaemonSettings) {
    let dir = DaemonDir::create(&std::env::temp_dir(), label).expect("a private temp dir");
    let shape = ShapeSettings { fill: "cold".into(), ..ShapeSettings::new("small", image().dir()) };
    let settings = DaemonSettings::new(&dir, vec![shape]);
    (dir, settings)
}

/// A `firepit serve` child for `settings` (not started yet).
pub fn daemon(dir: DaemonDir, settings: &DaemonSettings) -> ChildDaemon {
    ChildDaemon::new(env!("CARGO_BIN_EXE_firepit").into(), dir, settings)
        .expect("the daemon's config is written")
}

/// Waits until the daemon's every shape is full with no fill in flight.
pub async fn wait_full(daemon: &mut ChildDaemon) {
    let started = Instant::now();
    loop {
        if let Err(e) = daemon.check_running() {
            panic!("{e}");
        }
        if let Ok(pools) = daemon.client().pools().await
            && pools.shapes.iter().all(|s| s.ready >= s.depth_high && s.filling == 0)
        {
            return;
        }
        assert!(started.elapsed() < BOOT_DEADLINE, "pool not full in time: {}", daemon.log_tail(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
