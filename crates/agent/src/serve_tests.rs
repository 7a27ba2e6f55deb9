//! The agent's request handling driven through a Unix socket pair, running real processes and
//! files on the test machine (the guest's code paths, without a VM).

use super::*;
use firepit_agent::{Channel, Credit, ExecRequest, SpawnRequest, encode_frame};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

pub(super) struct Client {
    pub(super) stream: UnixStream,
    pub(super) decoder: FrameDecoder,
}

impl Client {
    /// A client of a contained agent (these tests run on the host: never its clock or hostname).
    pub(super) fn start() -> Self {
        Self::start_with(Arc::default())
    }
    pub(super) fn send(&mut self, id: u64, request: Request) {
        self.stream.write_all(&encode_frame(&RequestFrame { id, request }).unwrap()).unwrap();
    }
    pub(super) fn recv(&mut self) -> ResponseFrame {
        self.try_recv(Duration::from_secs(20)).expect("no frame within 20 s")
    }
    pub(super) fn try_recv(&mut self, within: Duration) -> Option<ResponseFrame> {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 65536];
        loop {
            if let Some(frame) = self.decoder.next_frame().unwrap() {
                return Some(frame);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("agent closed the stream"),
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
                Err(e) => panic!("{e}"),
            }
        }
    }
    /// Receives frames of stream `id` up to its terminal one, crediting output as it arrives.
    /// Returns (stdout, stderr, non-output responses).
    pub(super) fn drain(&mut self, id: u64) -> (Vec<u8>, Vec<u8>, Vec<Response>) {
        let (mut out, mut err, mut events) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            let frame = self.recv();
            assert_eq!(frame.id, id, "{frame:?}");
            match frame.response {
                Response::Output(chunk) => {
                    let credit = Credit { channel: chunk.channel, bytes: chunk.bytes.len() as u32 };
                    match chunk.channel {
                        Channel::Stdout => out.extend(chunk.bytes),
                        Channel::Stderr => err.extend(chunk.bytes),
                    }
                    self.send(id, Request::Credit(credit));
                }
                Response::Credit(_) => {}
                response => {
                    let end = response.is_terminal();
                    events.push(response);
                    if end {
                        return (out, err, events);
                    }
                }
            }
        }
    }
}

pub(super) fn sh(script: &str) -> Request {
    Request::Exec(ExecRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..ExecRequest::default()
    })
}

pub(super) fn spawn_sh(script: &str, timeout_ms: u64) -> Request {
    Request::Spawn(SpawnRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        timeout_ms,
        ..SpawnRequest::default()
    })
}

/// Whether `pid` is gone or a zombie (not running any more).
pub(super) fn not_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

pub(super) fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ping_is_answered_with_version_and_the_request_id() {
    let mut client = Client::start();
    client.send(42, Request::Ping);
    let frame = client.recv();
    assert_eq!(frame.id, 42);
    let Response::Pong(pong) = frame.response else { panic!("expected pong, got {frame:?}") };
    assert_eq!(pong.agent_version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn execs_run_concurrently_and_answer_by_id() {
    let mut client = Client::start();
    client.send(1, sh("sleep 1; echo slow"));
    client.send(2, sh("echo fast"));
    let first = client.recv();
    assert_eq!(first.id, 2, "the fast exec must not wait for the slow one");
    let second = client.recv();
    assert_eq!(second.id, 1);
    let Response::Exec(result) = second.response else { panic!("expected exec result") };
    assert_eq!(result.stdout, b"slow\n");
}

#[test]
fn malformed_frame_gets_an_error_and_serving_goes_on() {
    let mut client = Client::start();
    client.stream.write_all(&[0, 0, 0, 2, 0xff, 0xff]).unwrap();
    let frame = client.recv();
    assert_eq!(frame.id, 0);
    assert!(matches!(frame.response, Response::Error { .. }));
    client.send(5, Request::Ping);
    assert_eq!(client.recv().id, 5);
}

#[test]
fn oversized_frame_is_rejected_and_the_stream_resyncs() {
    let mut client = Client::start();
    client.stream.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    assert!(matches!(client.recv().response, Response::Error { .. }));
    client.send(6, Request::Ping);
    assert_eq!(client.recv().id, 6);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..Default::default()
    })]

    /// Whatever the host sends, decoding never panics, only errors are replied (with id 0), and
    /// what stays buffered is less than one maximal frame.
    #[test]
    fn random_bytes_become_requests_or_error_replies(
        chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..512), 0..16)
    ) {
        let mut decoder = FrameDecoder::new();
        for chunk in &chunks {
            decoder.push(chunk);
            for incoming in drain_requests(&mut decoder) {
                if let Incoming::Reply(reply) = incoming {
                    proptest::prop_assert_eq!(reply.id, 0);
                    let is_error = matches!(reply.response, Response::Error { .. });
                    proptest::prop_assert!(is_error);
                }
            }
            proptest::prop_assert!(decoder.buffered() < 4 + firepit_agent::MAX_FRAME_LEN);
        }
    }
}

#[test]
fn end_of_file_returns_eof_so_the_caller_can_wait_for_the_next_host() {
    let (host, guest) = UnixStream::pair().unwrap();
    let agent = Agent::new(std::io::sink(), Arc::default());
    drop(host);
    assert!(matches!(serve_connection(guest, &agent), ConnectionEnd::Eof));
}

#[test]
fn exec_errors_are_reported_not_fatal() {
    let mut client = Client::start();
    client.send(7, Request::Exec(ExecRequest::default()));
    let frame = client.recv();
    assert_eq!(frame.id, 7);
    assert!(matches!(frame.response, Response::Error { .. }));
}

impl Client {
    pub(super) fn start_with(processes: Arc<ProcessTable>) -> Self {
        let (host, guest) = UnixStream::pair().unwrap();
        serve_in_process(guest, processes).unwrap();
        host.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Self { stream: host, decoder: FrameDecoder::new() }
    }
}

#[test]
fn hello_starts_a_new_session_and_cancels_the_old_streams() {
    let mut client = Client::start();
    client.send(1, spawn_sh("exec sleep 30", 0));
    let Response::Started(started) = client.recv().response else { panic!("expected Started") };
    client.send(2, Request::Hello(99));
    // Frames of the ended session are dropped: the next frame is the answer to hello.
    let frame = client.recv();
    assert_eq!((frame.id, frame.response), (2, Response::Hello(99)));
    eventually("the old session's process to die", || not_running(started.pid));
    assert!(client.try_recv(Duration::from_millis(300)).is_none());
}

#[test]
fn a_contained_agent_refuses_to_change_the_machine() {
    let mut client = Client::start();
    let identity =
        firepit_agent::IdentityRequest { hostname: Some("not-this-host".into()), ..Default::default() };
    client.send(1, Request::SetIdentity(identity));
    let network = firepit_agent::NetworkConfig {
        mac: [2, 0, 0, 0, 0, 1],
        address: [100, 96, 0, 16],
        prefix_len: 16,
        gateway: [100, 96, 0, 1],
        nameservers: Vec::new(),
    };
    client.send(2, Request::ConfigureNetwork(network));
    for id in [1, 2] {
        let frame = client.recv();
        assert_eq!(frame.id, id);
        assert!(
            matches!(&frame.response, Response::Error { message } if message.contains("in-process")),
            "{frame:?}"
        );
    }
}

#[test]
fn kill_all_ends_every_background_process_and_one_shot_exec() {
    let processes = Arc::new(ProcessTable::default());
    let mut client = Client::start_with(processes.clone());
    let start = firepit_agent::StartProcessRequest::new(["sleep", "30"]);
    client.send(1, Request::StartProcess(start));
    let Response::Process(info) = client.recv().response else { panic!("expected Process") };
    assert!(!not_running(info.pid));
    client.send(2, sh("sleep 30"));
    eventually("the one-shot exec to run", || !processes.execs.lock().is_empty());
    processes.kill_all();
    eventually("the background process to die", || not_running(info.pid));
    let frame = client.recv();
    assert!(matches!(frame.response, Response::Exec(ref r) if r.signal == Some(libc::SIGKILL)), "{frame:?}");
}
