//! `firepit image build` (placeholder until the image builder lands; owned by the image engineer).

use std::path::PathBuf;

/// Builds the guest image.
pub fn run_build(_agent: Option<PathBuf>, _out: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    Err("the image builder is not wired yet".into())
}
