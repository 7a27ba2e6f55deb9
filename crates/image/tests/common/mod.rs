//! Shared by the integration tests: where the static agent is, and a real image to use.

use std::path::PathBuf;

/// The static agent: `$FIREPIT_AGENT`, else where `scripts/build-image` puts it.
pub fn agent_path() -> PathBuf {
    let path = std::env::var_os("FIREPIT_AGENT").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/x86_64-unknown-linux-gnu/agent/firepit-agent")
    });
    assert!(
        path.is_file(),
        "static agent {} not found: run scripts/build-image (or set FIREPIT_AGENT) before these tests",
        path.display()
    );
    path
}

/// Deb cache shared by test runs, so tests do not download 27 MB each time.
pub fn deb_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("firepit-image-debs")
}
