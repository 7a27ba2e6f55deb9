//! `firepit serve` (placeholder: implemented with the daemon).

use super::CliResult;

/// Arguments of `firepit serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

/// Runs `firepit serve`.
pub async fn run(_args: ServeArgs) -> CliResult {
    Err("`firepit serve` is not implemented yet".into())
}
