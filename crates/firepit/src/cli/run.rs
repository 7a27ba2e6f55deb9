//! `firepit run` (placeholder: implemented with the daemon).

use super::CliResult;

/// Arguments of `firepit run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Runs `firepit run`.
pub async fn run(_args: RunArgs) -> CliResult {
    Err("`firepit run` is not implemented yet".into())
}
