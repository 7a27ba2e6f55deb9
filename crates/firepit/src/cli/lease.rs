//! `firepit lease` (placeholder: implemented with the daemon).

use super::CliResult;

/// Subcommands of `firepit lease`.
#[derive(Debug, clap::Subcommand)]
pub enum LeaseCommand {
    /// Acquire a lease.
    Acquire,
}

/// Runs `firepit lease ...`.
pub async fn run(_command: LeaseCommand) -> CliResult {
    Err("`firepit lease` is not implemented yet".into())
}
