//! envd's commands without a stdin or a terminal run as firepit *background processes*, not as
//! exec sessions: the guest keeps a background process's output and runs it on whatever its
//! reader does, so the command outlives a broken connection, a daemon's reconnect and a pause of
//! its sandbox (E2B's SDK expects a background command to be there after `pause` → `connect`).
//!
//! [`Background::follow`] reads both outputs from their offsets as firepit streams them. When a stream breaks
//! (the sandbox pauses, the daemon restarts a connection) it waits until the sandbox runs again
//! and reads on from the same offsets, so nothing is lost or repeated. It never wakes a paused
//! sandbox itself: while this endpoint pauses or has paused it, the [`PauseGate`] holds the
//! readers, and firepit's lease view (which does not resume a lease) says when a pause from
//! elsewhere (a timeout that pauses) is over.

use std::time::Duration;

use firepit_api::{ErrorCode, ExitStatusView, LeaseState, OutputChannel, SignalSpec, StreamEvent};
use firepit_client::{Client, ClientError, decode_chunk};
use tokio::sync::{mpsc, watch};

use crate::proto::process::process_event::data_event::Output;

/// How often a reader asks whether a sandbox paused from elsewhere runs again.
const PAUSED_POLL: Duration = Duration::from_secs(1);

/// Failed reads in a row (the sandbox running) before a reader gives up.
const MAX_FAILURES: u32 = 20;

/// Pause between a failed read and the next.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Holds the readers of a sandbox's background processes while this endpoint pauses it.
#[derive(Debug)]
pub struct PauseGate(watch::Sender<bool>);

impl Default for PauseGate {
    fn default() -> Self {
        Self(watch::channel(false).0)
    }
}

impl PauseGate {
    /// Readers wait (`true`, before a pause) or go on (`false`, once resumed).
    pub fn hold(&self, held: bool) {
        self.0.send_replace(held);
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// One background process of one sandbox.
#[derive(Clone)]
pub struct Background {
    /// firepit's API.
    pub client: Client,
    /// The sandbox's lease.
    pub lease: String,
    /// The process's firepit id.
    pub id: u64,
}

/// What a reader of a background process hears.
#[derive(Debug)]
pub enum Followed {
    /// Output, in order per channel.
    Output(Output),
    /// The process exited and all its output was passed on (the last event).
    Exit(ExitStatusView),
    /// The sandbox went away, or firepit kept failing (the last event).
    Gone(String),
}

impl Background {
    /// Signals its process group.
    pub async fn signal(&self, signal: i32) -> Result<(), ClientError> {
        self.client.signal_process(&self.lease, &self.id.to_string(), SignalSpec::Number(signal)).await
    }

    /// Frees what the guest keeps of it once it has exited.
    pub async fn forget(&self) {
        if let Err(error) = self.client.remove_process(&self.lease, &self.id.to_string()).await {
            tracing::debug!(lease = %self.lease, id = self.id, %error, "removing an ended process failed");
        }
    }

    /// Starts reading its stdout and stderr; the receiver hears them, then its exit.
    pub fn follow(&self, gate: &PauseGate) -> mpsc::Receiver<Followed> {
        let (sender, receiver) = mpsc::channel(64);
        let this = self.clone();
        let gate = gate.subscribe();
        tokio::spawn(async move {
            let (stdout, stderr) = tokio::join!(
                this.read(OutputChannel::Stdout, gate.clone(), &sender),
                this.read(OutputChannel::Stderr, gate.clone(), &sender),
            );
            let last = match (stdout, stderr) {
                (Err(gone), _) | (_, Err(gone)) => Followed::Gone(gone),
                (Ok(Some(status)), _) | (_, Ok(Some(status))) => Followed::Exit(status),
                (Ok(None), Ok(None)) => match this.wait_exit(gate).await {
                    Ok(status) => Followed::Exit(status),
                    Err(gone) => Followed::Gone(gone),
                },
            };
            let _reader_gone = sender.send(last).await;
        });
        receiver
    }

    /// Passes one channel on from offset 0 until it ends: its exit status when firepit sent it.
    async fn read(
        &self,
        channel: OutputChannel,
        mut gate: watch::Receiver<bool>,
        sender: &mpsc::Sender<Followed>,
    ) -> Result<Option<ExitStatusView>, String> {
        let id = self.id.to_string();
        let mut offset = 0;
        let mut failures = 0;
        loop {
            let mut ended = false;
            let broke = match self.client.follow_output(&self.lease, &id, channel, offset).await {
                Err(error) => Broke::from(&error),
                Ok(mut stream) => loop {
                    match stream.next_event().await {
                        Ok(Some(StreamEvent::Stdout(chunk) | StreamEvent::Stderr(chunk))) => {
                            let bytes = decode_chunk(&chunk).map_err(|e| e.to_string())?;
                            offset = chunk.offset.unwrap_or(offset) + bytes.len() as u64;
                            failures = 0;
                            let output = match channel {
                                OutputChannel::Stdout => Output::Stdout(bytes),
                                OutputChannel::Stderr => Output::Stderr(bytes),
                            };
                            if sender.send(Followed::Output(output)).await.is_err() {
                                return Ok(None);
                            }
                        }
                        Ok(Some(StreamEvent::Eof { next_offset })) => {
                            offset = next_offset;
                            ended = true;
                        }
                        Ok(Some(StreamEvent::Exit(status))) => return Ok(Some(status)),
                        Ok(Some(StreamEvent::Started { .. })) => {}
                        // The channel ended but the process runs on (it closed its output).
                        Ok(None) if ended => return Ok(None),
                        Ok(None) => {
                            break Broke { code: None, message: "the output stream ended early".into() };
                        }
                        Ok(Some(StreamEvent::Error { error, message })) => {
                            break Broke { code: Some(error), message };
                        }
                        Err(error) => break Broke::from(&error),
                    }
                },
            };
            failures += 1;
            if failures > MAX_FAILURES {
                return Err(format!("reading the command's output kept failing: {}", broke.message));
            }
            self.until_running(&broke, &mut gate).await?;
        }
    }

    /// Waits for the exit of a process whose outputs have both ended.
    async fn wait_exit(&self, mut gate: watch::Receiver<bool>) -> Result<ExitStatusView, String> {
        let id = self.id.to_string();
        let mut failures = 0;
        loop {
            match self.client.process(&self.lease, &id, 30_000).await {
                Ok(view) => {
                    if let Some(status) = view.exit {
                        return Ok(status);
                    }
                }
                Err(error) => {
                    failures += 1;
                    if failures > MAX_FAILURES {
                        return Err(format!("waiting for the command's exit kept failing: {error}"));
                    }
                    self.until_running(&Broke::from(&error), &mut gate).await?;
                }
            }
        }
    }

    /// After a broken read: returns once the sandbox runs again, or why it never will.
    async fn until_running(&self, broke: &Broke, gate: &mut watch::Receiver<bool>) -> Result<(), String> {
        if matches!(broke.code, Some(ErrorCode::LeaseEnded | ErrorCode::LeaseNotFound)) {
            return Err(broke.message.clone());
        }
        tokio::time::sleep(RETRY_AFTER).await;
        loop {
            if gate.wait_for(|held| !held).await.is_err() {
                return Err("the sandbox is gone".into());
            }
            match self.client.lease(&self.lease).await {
                Ok(view) if view.state == LeaseState::Running => return Ok(()),
                Ok(view) if view.state == LeaseState::Ended => {
                    return Err(format!("the sandbox ended ({:?})", view.end_reason));
                }
                Err(error)
                    if matches!(error.code(), Some(ErrorCode::LeaseEnded | ErrorCode::LeaseNotFound)) =>
                {
                    return Err(error.to_string());
                }
                // Paused from elsewhere, or firepit did not answer: ask again soon.
                _ => {
                    let _held_or_not = tokio::time::timeout(PAUSED_POLL, gate.changed()).await;
                }
            }
        }
    }
}

/// Why a read stopped before its channel's end.
struct Broke {
    code: Option<ErrorCode>,
    message: String,
}

impl From<&ClientError> for Broke {
    fn from(error: &ClientError) -> Self {
        Self { code: error.code(), message: error.to_string() }
    }
}
