//! Request handling, independent of where the bytes come from (a virtio-serial port in the guest,
//! a Unix socket pair in tests).
//!
//! One reader decodes frames; pings and identity requests are answered inline, each exec runs on its
//! own thread; every response goes through one writer thread so frames never interleave.

use std::io::{ErrorKind, Read, Write};
use std::sync::mpsc::{self, Sender};
use std::thread;

use firepit_agent::{
    FrameDecoder, FrameError, Pong, Request, RequestFrame, Response, ResponseFrame, encode_frame,
};

use crate::{exec, identity, network};

/// Why [`serve_connection`] returned.
#[derive(Debug)]
pub enum ConnectionEnd {
    /// The stream gave end-of-file (on a virtio-serial port: no host connected right now).
    Eof,
    /// Reading failed.
    Error(std::io::Error),
}

/// Answers one request (runs it on the calling thread).
pub fn handle(request: Request) -> Response {
    match request {
        Request::Ping => {
            Response::Pong(Pong { agent_version: env!("CARGO_PKG_VERSION").into(), uptime_ms: uptime_ms() })
        }
        Request::Exec(exec_request) => match exec::run(&exec_request) {
            Ok(result) => Response::Exec(result),
            Err(error) => Response::Error { message: error.to_string() },
        },
        Request::SetIdentity(identity_request) => match identity::apply(&identity_request) {
            Ok(applied) => Response::Identity(applied),
            Err(error) => Response::Error { message: error.to_string() },
        },
        Request::ConfigureNetwork(config) => match network::configure(&config) {
            Ok(applied) => Response::Network(applied),
            Err(error) => Response::Error { message: error.to_string() },
        },
    }
}

/// Milliseconds since boot, from /proc/uptime (0 if unreadable).
fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|s| s.parse::<f64>().ok()))
        .map_or(0, |secs| (secs * 1000.0) as u64)
}

/// Starts the writer thread: every frame sent on the returned channel is written whole, in order.
/// The thread ends when every sender is dropped or a write fails.
pub fn spawn_writer<W: Write + Send + 'static>(mut writer: W) -> Sender<ResponseFrame> {
    let (tx, rx) = mpsc::channel::<ResponseFrame>();
    thread::spawn(move || {
        for frame in rx {
            let bytes = match encode_frame(&frame) {
                Ok(bytes) => bytes,
                Err(error) => match encode_frame(&ResponseFrame {
                    id: frame.id,
                    response: Response::Error { message: format!("response could not be encoded: {error}") },
                }) {
                    Ok(bytes) => bytes,
                    Err(_) => continue,
                },
            };
            if let Err(error) = writer.write_all(&bytes).and_then(|()| writer.flush()) {
                eprintln!("firepit-agent: writing a response failed: {error}");
                return;
            }
        }
    });
    tx
}

/// Reads frames from `reader` until end-of-file or a read error, dispatching each request.
///
/// A malformed frame is answered with [`Response::Error`] (id 0) and skipped; a frame announcing
/// more than the size limit is answered likewise and the buffered bytes are dropped (resync).
pub fn serve_connection<R: Read>(mut reader: R, responses: &Sender<ResponseFrame>) -> ConnectionEnd {
    let mut decoder = FrameDecoder::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return ConnectionEnd::Eof,
            Ok(n) => n,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return ConnectionEnd::Error(error),
        };
        decoder.push(&chunk[..n]);
        for incoming in drain_requests(&mut decoder) {
            match incoming {
                Incoming::Request(frame) => dispatch(frame, responses),
                Incoming::Reply(reply) => {
                    let _host_gone = responses.send(reply);
                }
            }
        }
    }
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

fn dispatch(frame: RequestFrame, responses: &Sender<ResponseFrame>) {
    let RequestFrame { id, request } = frame;
    if matches!(request, Request::Exec(_)) {
        let responses = responses.clone();
        thread::spawn(move || {
            let _host_gone = responses.send(ResponseFrame { id, response: handle(request) });
        });
    } else {
        let _host_gone = responses.send(ResponseFrame { id, response: handle(request) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firepit_agent::ExecRequest;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    struct Client {
        stream: UnixStream,
        decoder: FrameDecoder,
    }

    impl Client {
        fn start() -> Self {
            let (host, guest) = UnixStream::pair().unwrap();
            let writer = spawn_writer(guest.try_clone().unwrap());
            thread::spawn(move || serve_connection(guest, &writer));
            host.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            Self { stream: host, decoder: FrameDecoder::new() }
        }
        fn send(&mut self, id: u64, request: Request) {
            self.stream.write_all(&encode_frame(&RequestFrame { id, request }).unwrap()).unwrap();
        }
        fn recv(&mut self) -> ResponseFrame {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(frame) = self.decoder.next_frame().unwrap() {
                    return frame;
                }
                let n = self.stream.read(&mut buf).unwrap();
                assert!(n > 0, "agent closed the stream");
                self.decoder.push(&buf[..n]);
            }
        }
    }

    fn sh(script: &str) -> Request {
        Request::Exec(ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            ..ExecRequest::default()
        })
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
        let (tx, _rx) = mpsc::channel();
        drop(host);
        assert!(matches!(serve_connection(guest, &tx), ConnectionEnd::Eof));
    }

    #[test]
    fn exec_errors_are_reported_not_fatal() {
        let mut client = Client::start();
        client.send(7, Request::Exec(ExecRequest::default()));
        let frame = client.recv();
        assert_eq!(frame.id, 7);
        assert!(matches!(frame.response, Response::Error { .. }));
    }
}
