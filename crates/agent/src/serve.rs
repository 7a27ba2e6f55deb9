//! Request handling, independent of where the bytes come from (a virtio-serial port in the guest,
//! a Unix socket pair in tests).
//!
//! One reader decodes frames and never blocks on a request: pings and stream-control frames
//! (input, credit, cancel, resize, signal) are handled inline, every other request runs on a thread
//! of its own, and every response goes through one writer thread so frames never interleave.
//!
//! A *session* is what one host connection sees: its open streams and the writer generation its
//! responses carry. It ends at end-of-file (the host went away) or at the host's next
//! [`Request::Hello`]; its streams are cancelled (attached processes killed, transfers stopped) and
//! its queued responses dropped. Background processes belong to the [`Agent`], not to a session.

use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::thread;

use firepit_agent::{
    Failure, FailureKind, FrameDecoder, FrameError, Pong, Request, RequestFrame, Response, ResponseFrame,
};

use crate::processes::ProcessTable;
use crate::stream::{Control, StreamHandle, Streams};
use crate::writer::{Sink, Writer};
use crate::{exec, files, identity, network, pty, spawn, transfer};

/// What outlives host connections: the response writer and the background processes.
pub struct Agent {
    writer: Writer,
    processes: Arc<ProcessTable>,
    machine: Machine,
}

/// Whether the agent may change the machine it runs on (its identity, its network interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// A guest of its own: every request is served.
    Owned,
    /// Someone else's machine (the agent runs in-process on a host, for tests): identity and
    /// network requests are refused, so a test can never set the host's clock or hostname.
    Shared,
}

impl Agent {
    /// An agent writing responses to `writer`, keeping background processes in `processes` (one
    /// table for the agent's life, shared by the agents of successive port handles).
    pub fn new<W: std::io::Write + Send + 'static>(writer: W, processes: Arc<ProcessTable>) -> Self {
        Self { writer: Writer::spawn(writer), processes, machine: Machine::Owned }
    }

    /// An agent on a machine it does not own (see [`serve_in_process`]): files, processes and
    /// terminals are served as in a guest; identity and network configuration are refused.
    pub fn contained<W: std::io::Write + Send + 'static>(writer: W, processes: Arc<ProcessTable>) -> Self {
        Self { writer: Writer::spawn(writer), processes, machine: Machine::Shared }
    }
}

/// Serves one host connection over `stream` (one end of a Unix socket pair) on a thread of this
/// process, as a [`contained`](Agent::contained) agent keeping background processes in
/// `processes`. The thread ends when the other end closes (the session's streams are cancelled,
/// their processes killed); background processes stay in `processes` (see
/// [`ProcessTable::kill_all`]).
///
/// For host-side tests and test doubles: the agent's real request handling, on the host's own files
/// and programs, without a VM.
///
/// ```
/// use std::sync::Arc;
/// use firepit_agent::{FrameDecoder, ProcessTable, Request, RequestFrame, Response, ResponseFrame, encode_frame};
/// use std::io::{Read, Write};
/// let (mut host, agent_end) = std::os::unix::net::UnixStream::pair()?;
/// firepit_agent::serve_in_process(agent_end, Arc::new(ProcessTable::default()))?;
/// host.write_all(&encode_frame(&RequestFrame { id: 1, request: Request::Ping }).unwrap())?;
/// let mut decoder = FrameDecoder::new();
/// let mut buf = [0u8; 4096];
/// let frame: ResponseFrame = loop {
///     if let Some(frame) = decoder.next_frame().unwrap() { break frame; }
///     let n = host.read(&mut buf)?;
///     decoder.push(&buf[..n]);
/// };
/// assert!(matches!(frame.response, Response::Pong(_)));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve_in_process(
    stream: std::os::unix::net::UnixStream,
    processes: Arc<ProcessTable>,
) -> std::io::Result<thread::JoinHandle<ConnectionEnd>> {
    let agent = Agent::contained(stream.try_clone()?, processes);
    thread::Builder::new().name("firepit-agent".into()).spawn(move || serve_connection(&stream, &agent))
}

/// Why [`serve_connection`] returned.
#[derive(Debug)]
pub enum ConnectionEnd {
    /// The stream gave end-of-file (on a virtio-serial port: no host connected right now).
    Eof,
    /// Reading failed.
    Error(std::io::Error),
}

/// Answers one request that is neither a stream nor stream control (runs on the calling thread).
pub fn handle(request: Request, processes: &Arc<ProcessTable>, machine: Machine) -> Response {
    let answer = |result: Result<Response, Failure>| result.unwrap_or_else(Response::Failed);
    match request {
        Request::SetIdentity(_) | Request::ConfigureNetwork(_) if machine == Machine::Shared => {
            let message =
                format!("{} changes the machine: refused by an agent running in-process", request.kind());
            Response::Error { message }
        }
        Request::Ping => {
            Response::Pong(Pong { agent_version: env!("CARGO_PKG_VERSION").into(), uptime_ms: uptime_ms() })
        }
        Request::Exec(exec_request) => match exec::run(&exec_request, &processes.execs) {
            Ok(result) => Response::Exec(result),
            Err(error) => Response::Error { message: error.to_string() },
        },
        Request::SetIdentity(identity_request) => match identity::apply(&identity_request) {
            Ok(applied) => Response::Identity(applied),
            Err(error) => Response::Error { message: error.to_string() },
        },
        Request::Stat(r) => answer(files::stat(&r).map(Response::Stat)),
        Request::ListDir(r) => answer(files::list_dir(&r).map(Response::Entries)),
        Request::Mkdir(r) => answer(files::mkdir(&r).map(|()| Response::Ok)),
        Request::Remove(r) => answer(files::remove(&r).map(|()| Response::Ok)),
        Request::Chmod(r) => answer(files::chmod(&r).map(|()| Response::Ok)),
        Request::Chown(r) => answer(files::chown(&r).map(|()| Response::Ok)),
        Request::Rename(r) => answer(files::rename(&r).map(|()| Response::Ok)),
        Request::StartProcess(r) => answer(processes.start(&r).map(Response::Process)),
        Request::ListProcesses => Response::Processes(processes.list()),
        Request::SignalProcess(r) => answer(processes.signal(&r.process, r.signal).map(|()| Response::Ok)),
        Request::WaitProcess(r) => {
            let timeout = std::time::Duration::from_millis(r.timeout_ms);
            answer(processes.wait(&r.process, timeout).map(Response::Process))
        }
        Request::ProcessOutput(r) => answer(processes.output(&r).map(Response::ProcessOutput)),
        Request::RemoveProcess(r) => answer(processes.remove(&r).map(|()| Response::Ok)),
        Request::ConfigureNetwork(config) => match network::configure(&config) {
            Ok(applied) => Response::Network(applied),
            Err(error) => Response::Error { message: error.to_string() },
        },
        Request::Usage(r) => Response::Usage(crate::usage::read(&r)),
        other => {
            let message = format!("{} is not a one-shot request", other.kind());
            Response::Failed(Failure::new(FailureKind::Protocol, message))
        }
    }
}

/// Milliseconds since boot, from /proc/uptime (0 if unreadable).
fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|s| s.parse::<f64>().ok()))
        .map_or(0, |secs| (secs * 1000.0) as u64)
}

/// One host session: its sink (writer generation) and its open streams.
struct Session<'a> {
    agent: &'a Agent,
    sink: Sink,
    streams: Streams,
}

impl<'a> Session<'a> {
    fn new(agent: &'a Agent) -> Self {
        Self { agent, sink: agent.writer.new_session(), streams: Streams::default() }
    }

    fn end(&self, why: &str) {
        self.streams.cancel_all(why);
    }

    fn dispatch(&mut self, frame: RequestFrame) {
        let RequestFrame { id, request } = frame;
        if request.is_stream_control() {
            // Control for a stream that already ended (or never was) is dropped: the host may still
            // be crediting or sending into a stream whose end is on its way.
            if let Some(stream) = self.streams.get(id) {
                match request {
                    Request::Input(chunk) => stream.push_input(chunk),
                    Request::Credit(credit) => stream.add_credit(credit),
                    Request::Cancel => {
                        stream.cancel(Failure::new(FailureKind::Cancelled, "cancelled by the host"))
                    }
                    Request::Resize(size) => stream.push_resize(size),
                    Request::Signal(signal) => stream.post(Control::Signal(signal)),
                    _ => {}
                }
            }
            return;
        }
        match request {
            Request::Hello(nonce) => {
                // The new session (a new writer generation) first, so that nothing the old
                // streams send while they wind down gets out.
                let old = std::mem::replace(self, Session::new(self.agent));
                old.end("a new host session started");
                self.sink.send(id, Response::Hello(nonce));
            }
            // Answered inline: cheap reads, asked often (a usage sample every few seconds).
            Request::Ping | Request::Usage(_) => {
                self.sink.send(id, handle(request, &self.agent.processes, self.agent.machine));
            }
            request => match job(request) {
                Job::Stream(job) => match self.streams.open(id, &self.sink) {
                    Ok(stream) => {
                        thread::spawn(move || job(stream));
                    }
                    Err(failure) => {
                        self.sink.send(id, Response::Failed(failure));
                    }
                },
                Job::OneShot(request) => {
                    let (sink, processes) = (self.sink.clone(), self.agent.processes.clone());
                    let machine = self.agent.machine;
                    thread::spawn(move || sink.send(id, handle(request, &processes, machine)));
                }
            },
        }
    }
}

/// What a request needs: a stream and its handler, or one answer.
enum Job {
    Stream(Box<dyn FnOnce(StreamHandle) + Send>),
    OneShot(Request),
}

/// Sorts a request into a stream job or a one-shot request.
fn job(request: Request) -> Job {
    Job::Stream(match request {
        Request::WriteFile(r) => Box::new(move |stream| transfer::write_file(stream, r)),
        Request::ReadFile(r) => Box::new(move |stream| transfer::read_file(stream, r)),
        Request::UploadTar(r) => Box::new(move |stream| transfer::upload_tar(stream, r)),
        Request::DownloadTar(r) => Box::new(move |stream| transfer::download_tar(stream, r)),
        Request::Spawn(r) => Box::new(move |stream| spawn::run(stream, r)),
        Request::Pty(r) => Box::new(move |stream| pty::run(stream, r)),
        other => return Job::OneShot(other),
    })
}

/// Reads frames from `reader` until end-of-file or a read error, dispatching each request. The
/// session ends with it (its streams are cancelled).
///
/// A malformed frame is answered with [`Response::Error`] (id 0) and skipped; a frame announcing
/// more than the size limit is answered likewise and the buffered bytes are dropped (resync).
pub fn serve_connection<R: Read>(mut reader: R, agent: &Agent) -> ConnectionEnd {
    let mut session = Session::new(agent);
    let mut decoder = FrameDecoder::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let end = loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break ConnectionEnd::Eof,
            Ok(n) => n,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => break ConnectionEnd::Error(error),
        };
        decoder.push(&chunk[..n]);
        for incoming in drain_requests(&mut decoder) {
            match incoming {
                Incoming::Request(frame) => session.dispatch(frame),
                Incoming::Reply(reply) => {
                    session.sink.send(reply.id, reply.response);
                }
            }
        }
    };
    // Move the writer past this session before cancelling its streams: their last frames are
    // for a host that is gone.
    drop(agent.writer.new_session());
    session.end("the host disconnected");
    end
}

/// What one decoded frame asks of the serving loop.
#[derive(Debug)]
pub enum Incoming {
    /// A well-formed request: run it.
    Request(RequestFrame),
    /// A frame that could not be decoded: send this error reply (id 0) and go on.
    Reply(ResponseFrame),
}

/// Pops every complete frame out of `decoder` (pure: no I/O, nothing run). A malformed body becomes an
/// error reply; an oversized length prefix becomes an error reply and the buffered bytes are dropped,
/// so after this returns the decoder holds less than one maximal frame.
pub fn drain_requests(decoder: &mut FrameDecoder) -> Vec<Incoming> {
    let mut out = Vec::new();
    loop {
        match decoder.next_frame::<RequestFrame>() {
            Ok(None) => return out,
            Ok(Some(frame)) => out.push(Incoming::Request(frame)),
            Err(error) => {
                if matches!(error, FrameError::TooLarge { .. }) {
                    decoder.clear();
                }
                let message = format!("bad request frame: {error}");
                out.push(Incoming::Reply(ResponseFrame { id: 0, response: Response::Error { message } }));
            }
        }
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "serve_stream_tests.rs"]
mod stream_tests;
