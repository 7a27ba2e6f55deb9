//! `firepit drain`: a daemon stops taking new leases (gateways place elsewhere); existing leases
//! run to their end.

use std::process::ExitCode;
use std::time::Duration;

use firepit_api::DrainResponse;
use firepit_client::Method;

use crate::CliResult;
use crate::status::ConnectArgs;

/// Arguments of `firepit drain`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Take new leases again.
    #[arg(long)]
    undo: bool,
    /// Wait until every lease has ended, printing how many are left.
    #[arg(long, conflicts_with = "undo")]
    wait: bool,
}

/// Runs `firepit drain`.
pub async fn run(args: DrainArgs) -> CliResult {
    let client = args.connect.client()?;
    let method = if args.undo { Method::DELETE } else { Method::POST };
    let view: DrainResponse = client.request(method, "/v1/drain", None, &[]).await?.json()?;
    match view.draining {
        true => println!("draining: no new leases; {} still held", view.leases),
        false => println!("taking leases again ({} held)", view.leases),
    }
    if args.wait {
        let mut left = view.leases;
        while left > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = client.pools().await?.leases;
            if now != left {
                println!("{now} leases left");
            }
            left = now;
        }
        println!("drained: no lease left");
    }
    Ok(ExitCode::SUCCESS)
}
