//! `firepit status` (placeholder: implemented with the daemon).

use super::CliResult;

/// Arguments of `firepit status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}

/// Runs `firepit status`.
pub async fn run(_args: StatusArgs) -> CliResult {
    Err("`firepit status` is not implemented yet".into())
}
