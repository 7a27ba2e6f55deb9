//! `firepit run`: one command in a fresh VM, from the shell.

use firepit_api::AcquireRequest;

use crate::CliResult;
use crate::lease::{ExecArgs, exec_and_print};
use crate::status::ConnectArgs;

/// Arguments of `firepit run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Shape of the VM (see `firepit status`).
    #[arg(long, default_value = "default")]
    shape: String,
    /// How long to wait for a ready VM, in ms.
    #[arg(long, default_value_t = 30_000)]
    wait_ms: u64,
    #[command(flatten)]
    exec: ExecArgs,
}

/// Runs `firepit run`: acquire a VM, run the command, print its output, release the VM (even when
/// the command fails), and exit with the command's exit code.
pub async fn run(args: RunArgs) -> CliResult {
    let client = args.connect.client()?;
    let lease = client
        .acquire(&AcquireRequest { shape: args.shape, wait_ms: args.wait_ms, ttl_ms: None }, None)
        .await?;
    let outcome = exec_and_print(&client, &lease.lease_id, &args.exec).await;
    let released = client.release(&lease.lease_id).await;
    let code = outcome?;
    released?;
    Ok(code)
}
