//! `firepit snapshot create|ls|show|rm`: the daemon's snapshots of leases (`create` is `firepit
//! lease snapshot`; leases start from them with `firepit lease acquire --snapshot ID`).

use std::process::ExitCode;

use firepit_api::SnapshotInfo;

use crate::CliResult;
use crate::status::ConnectArgs;

/// Subcommands of `firepit snapshot`.
#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Snapshot a running lease (memory, processes, disk; it runs on); prints the snapshot as
    /// JSON. The same as `firepit lease snapshot`.
    Create(crate::lease::LeaseIdArgs),
    /// List the snapshots, oldest first.
    Ls {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Print them as JSON (an array) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one snapshot as JSON.
    Show {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The snapshot id.
        snapshot_id: String,
    },
    /// Delete a snapshot and its files (leases started from it run on).
    Rm {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The snapshot id.
        snapshot_id: String,
    },
}

/// Runs `firepit snapshot ...`.
pub async fn run(command: SnapshotCommand) -> CliResult {
    match command {
        SnapshotCommand::Create(args) => return crate::lease::snapshot(args).await,
        SnapshotCommand::Ls { connect, json } => {
            let snapshots = connect.client()?.list_snapshots().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&snapshots)?);
            } else {
                print!("{}", table(&snapshots));
            }
        }
        SnapshotCommand::Show { connect, snapshot_id } => {
            let snapshot = connect.client()?.get_snapshot(&snapshot_id).await?;
            println!("{}", serde_json::to_string_pretty(&snapshot)?);
        }
        SnapshotCommand::Rm { connect, snapshot_id } => {
            connect.client()?.delete_snapshot(&snapshot_id).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Snapshots as a table: id, shape, size, created, source lease.
fn table(snapshots: &[SnapshotInfo]) -> String {
    let mut out = format!("{:<20} {:<12} {:>9} {:<24} {}\n", "ID", "SHAPE", "SIZE_MIB", "CREATED", "SOURCE");
    for snapshot in snapshots {
        out.push_str(&format!(
            "{:<20} {:<12} {:>9} {:<24} {}\n",
            snapshot.snapshot_id,
            snapshot.shape,
            snapshot.size_bytes >> 20,
            snapshot.created_at,
            snapshot.source_lease_id
        ));
    }
    out
}
