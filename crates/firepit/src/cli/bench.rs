//! `firepit bench` (placeholder).

use super::CliResult;

/// Subcommands of `firepit bench`.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// VM benchmarks: cold boot, reserve, exec round trip, memory.
    Vm,
}

/// Runs `firepit bench ...`.
pub async fn run(_command: BenchCommand) -> CliResult {
    Err("`firepit bench` is not implemented yet".into())
}
