//! `firepit demo` (placeholder until the QEMU provider lands).

use super::CliResult;

/// Arguments of `firepit demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

/// Runs `firepit demo`.
pub async fn run(_args: DemoArgs) -> CliResult {
    Err("`firepit demo` is not implemented yet".into())
}
