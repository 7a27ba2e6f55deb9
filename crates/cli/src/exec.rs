//! `firepit exec LEASE -- CMD...`: runs a command in a leased VM and prints its output as the
//! command writes it (a streamed exec), then exits with the command's exit code.

use std::process::ExitCode;

use firepit_api::StreamEvent;
use firepit_client::{Client, decode_chunk};
use tokio::io::AsyncWriteExt;

use crate::CliResult;
use crate::lease::ExecArgs;
use crate::status::ConnectArgs;

/// Arguments of `firepit exec`.
#[derive(Debug, clap::Args)]
pub struct ExecCmd {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The lease id (from `firepit lease acquire`).
    lease_id: String,
    #[command(flatten)]
    exec: ExecArgs,
}

/// Runs `firepit exec`.
pub async fn run(args: ExecCmd) -> CliResult {
    stream_exec(&args.connect.client()?, &args.lease_id, &args.exec).await
}

/// Runs `exec` in the lease, copying its stdout and stderr to ours as they come; returns its exit
/// code (128 + signal when a signal killed it).
pub async fn stream_exec(client: &Client, lease_id: &str, exec: &ExecArgs) -> CliResult {
    let mut events = client.exec_stream(lease_id, &exec.spawn_body()?).await?;
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    while let Some(event) = events.next_event().await? {
        match event {
            StreamEvent::Stdout(chunk) => {
                stdout.write_all(&decode_chunk(&chunk)?).await?;
                stdout.flush().await?;
            }
            StreamEvent::Stderr(chunk) => {
                stderr.write_all(&decode_chunk(&chunk)?).await?;
                stderr.flush().await?;
            }
            StreamEvent::Exit(status) => {
                if status.timed_out {
                    eprintln!("firepit: the command was killed after {} ms", exec.timeout_ms);
                }
                let code = match (status.exit_code, status.signal) {
                    (Some(code), _) => code,
                    (None, Some(signal)) => 128 + signal,
                    (None, None) => 1,
                };
                return Ok(ExitCode::from((code & 0xff) as u8));
            }
            StreamEvent::Error { error, message } => {
                return Err(format!("the command's stream broke: {message} ({error})").into());
            }
            StreamEvent::Started { .. } | StreamEvent::Eof { .. } => {}
        }
    }
    Err("the daemon ended the stream without the command's exit status".into())
}
