//! `firepit shell [LEASE]`: an interactive terminal in a VM, through the daemon's PTY WebSocket.
//!
//! The local terminal goes raw (every key, Ctrl-C included, goes to the guest), its size follows
//! the window (SIGWINCH → resize), output is written as it arrives, and the exit status of the
//! guest's shell is ours. Without a lease id it leases a VM of `--shape` for the session (renewing
//! it while the session lasts) and releases it at the end, whatever happened.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use firepit_api::AcquireRequest;
use firepit_client::{Client, PtyEvent, PtyOptions, PtySender};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::CliResult;
use crate::status::ConnectArgs;
use crate::terminal::{RawMode, window_size};

/// End-of-transmission: what a terminal sends for Ctrl-D.
const EOT: u8 = 0x04;

/// Arguments of `firepit shell`.
#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// A lease id; without one, a VM of `--shape` is leased for the session and released after.
    lease_id: Option<String>,
    /// Shape to lease when no lease id is given.
    #[arg(long, default_value = "default", conflicts_with = "lease_id")]
    shape: String,
    /// How long to wait for a ready VM, in ms.
    #[arg(long, default_value_t = 30_000)]
    wait_ms: u64,
    /// The program to run on the terminal, after `--` (default: the guest's login shell).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Runs `firepit shell`.
pub async fn run(args: ShellArgs) -> CliResult {
    let client = args.connect.client()?;
    let Some(shape) = args.lease_id.is_none().then_some(args.shape.clone()) else {
        let lease_id = args.lease_id.clone().unwrap_or_default();
        return session(&client, &lease_id, &args.command).await;
    };
    let lease = client
        .acquire(&AcquireRequest { shape, wait_ms: args.wait_ms, ttl_ms: None, snapshot: None }, None)
        .await?;
    let renewer =
        tokio::spawn(keep_renewed(client.clone(), lease.lease_id.clone(), lease.expires_at_unix_ms));
    let outcome = session(&client, &lease.lease_id, &args.command).await;
    renewer.abort();
    let released = client.release(&lease.lease_id).await;
    let code = outcome?;
    released?;
    Ok(code)
}

/// Renews the lease when a third of its lifetime is left, for as long as the session runs.
async fn keep_renewed(client: Client, lease_id: String, mut expires_at_unix_ms: u64) {
    loop {
        let now = firepit_unix_ms();
        let left = Duration::from_millis(expires_at_unix_ms.saturating_sub(now));
        tokio::time::sleep(left * 2 / 3).await;
        match client.renew(&lease_id, None).await {
            Ok(lease) => expires_at_unix_ms = lease.expires_at_unix_ms,
            Err(error) => {
                tracing::warn!(%error, "cannot renew the shell's lease");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn firepit_unix_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Runs one terminal session on `lease_id`; returns the guest program's exit code.
async fn session(client: &Client, lease_id: &str, command: &[String]) -> CliResult {
    let (rows, cols) = window_size().unwrap_or((24, 80));
    let options = PtyOptions { argv: command.to_vec(), rows, cols, ..PtyOptions::default() };
    let pty = client.pty(lease_id, &options).await?;
    let (sender, mut receiver) = pty.split();
    let raw = RawMode::enable()?;
    let keyboard = tokio::spawn(forward_input(sender, raw.is_some()));
    let mut stdout = std::io::stdout();
    let outcome = loop {
        match receiver.next_event().await {
            Ok(Some(PtyEvent::Output(bytes))) => {
                stdout.write_all(&bytes)?;
                stdout.flush()?;
            }
            Ok(Some(PtyEvent::Started { .. })) => {}
            Ok(Some(PtyEvent::Exit(status))) => {
                let code = status.exit_code.or(status.signal.map(|s| 128 + s)).unwrap_or(1);
                break Ok(ExitCode::from((code & 0xff) as u8));
            }
            Ok(Some(PtyEvent::Error { error, message })) => {
                break Err(format!("the terminal session ended: {message} ({error})").into());
            }
            Ok(None) => break Err("the daemon closed the terminal without an exit status".into()),
            Err(error) => break Err(error.into()),
        }
    };
    keyboard.abort();
    drop(raw);
    outcome
}

/// Sends keystrokes and window resizes until the session ends. At the end of a piped (not
/// terminal) stdin it sends one Ctrl-D, as closing a terminal would.
async fn forward_input(mut sender: PtySender, is_terminal: bool) {
    let mut keys = read_stdin();
    let winch = signal(SignalKind::window_change());
    let mut winch = match winch {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::warn!(%error, "cannot watch window size changes");
            None
        }
    };
    loop {
        tokio::select! {
            key = keys.recv() => {
                let sent = match key {
                    Some(bytes) => sender.send_input(&bytes).await,
                    None if is_terminal => return,
                    None => {
                        let _session_may_be_over = sender.send_input(&[EOT]).await;
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
            Some(()) = async { winch.as_mut()?.recv().await } => {
                if let Some((rows, cols)) = window_size() {
                    let _session_may_be_over = sender.resize(rows, cols).await;
                }
            }
        }
    }
}

/// Stdin's bytes as they come, read on a thread of its own (a blocking read of a terminal cannot
/// be cancelled; the thread ends with the process).
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    let spawned = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot read stdin");
    }
    rx
}
