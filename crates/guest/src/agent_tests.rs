//! The agent client against a fake agent behind a Unix socket (QEMU's side in real life): ids,
//! deadlines, reconnects and hostile bytes.

use super::*;
use crate::channel::UnixSocket;
use firepit_agent::{ExecRequest, ExecResult, Pong};
use tokio::net::UnixListener;

/// Serves connections one after another; each request is answered by `answer` after `delay(request)`.
/// A request `Exec` with argv `["hangup"]` makes the fake drop the connection.
fn fake_agent(listener: UnixListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (mut read, write) = stream.into_split();
            let write = Arc::new(tokio::sync::Mutex::new(write));
            let mut decoder = FrameDecoder::new();
            let mut buf = [0u8; 4096];
            'conn: while let Ok(n) = read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                decoder.push(&buf[..n]);
                while let Ok(Some(frame)) = decoder.next_frame::<RequestFrame>() {
                    let (delay, response) = match frame.request {
                        Request::Hello(nonce) => (0, Response::Hello(nonce)),
                        Request::Ping => {
                            (0, Response::Pong(Pong { agent_version: "t".into(), uptime_ms: 1 }))
                        }
                        Request::Exec(ExecRequest { argv, .. }) if argv == ["hangup"] => break 'conn,
                        Request::Exec(ExecRequest { argv, .. }) => {
                            let ms: u64 = argv[1].parse().unwrap();
                            let stdout = argv[1].clone().into_bytes();
                            (
                                ms,
                                Response::Exec(ExecResult {
                                    exit_code: Some(0),
                                    stdout,
                                    ..Default::default()
                                }),
                            )
                        }
                        _ => (0, Response::Error { message: "nope".into() }),
                    };
                    let write = write.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let bytes = encode_frame(&ResponseFrame { id: frame.id, response }).unwrap();
                        let _ = write.lock().await.write_all(&bytes).await;
                    });
                }
            }
        }
    })
}

fn setup() -> (tempfile::TempDir, AgentClient, tokio::task::JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let fake = fake_agent(UnixListener::bind(&path).unwrap());
    (dir, AgentClient::new(UnixSocket::new(path)), fake)
}

fn sleep_exec(ms: u64) -> Request {
    Request::Exec(ExecRequest { argv: vec!["sleep".into(), ms.to_string()], ..Default::default() })
}

#[tokio::test]
async fn concurrent_requests_answered_out_of_order_reach_their_callers() {
    let (_dir, client, _fake) = setup();
    let client = Arc::new(client);
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.request(sleep_exec(300), Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let fast = client.request(sleep_exec(10), Duration::from_secs(5)).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(250), "fast request waited for the slow one");
    assert!(matches!(fast, Response::Exec(r) if r.stdout == b"10"));
    assert!(matches!(slow.await.unwrap().unwrap(), Response::Exec(r) if r.stdout == b"300"));
}

#[tokio::test]
async fn request_past_its_deadline_times_out_and_the_channel_still_works() {
    let (_dir, client, _fake) = setup();
    let err = client.request(sleep_exec(500), Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, GuestError::Timeout { request: "exec", .. }), "{err:?}");
    let pong = client.request(Request::Ping, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(pong, Response::Pong(_)));
}

#[tokio::test]
async fn dropped_connection_fails_pending_request_and_next_request_reconnects() {
    let (_dir, client, _fake) = setup();
    let hangup = Request::Exec(ExecRequest { argv: vec!["hangup".into()], ..Default::default() });
    let err = client.request(hangup, Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, GuestError::Closed), "{err:?}");
    let pong = client.request(Request::Ping, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(pong, Response::Pong(_)));
}

#[tokio::test]
async fn missing_socket_reports_closed() {
    let dir = tempfile::tempdir().unwrap();
    let client = AgentClient::new(UnixSocket::new(dir.path().join("none.sock")));
    let err = client.request(Request::Ping, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, GuestError::Closed), "{err:?}");
}

/// A fake agent that answers every connection with `garbage` and then keeps the connection open.
fn garbage_agent(listener: UnixListener, garbage: Vec<u8>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let garbage = garbage.clone();
            tokio::spawn(async move {
                let _ = stream.write_all(&garbage).await;
                let mut sink = [0u8; 4096];
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    })
}

fn cases(default: u32) -> proptest::prelude::ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(default);
    proptest::prelude::ProptestConfig { cases, ..Default::default() }
}

proptest::proptest! {
    #![proptest_config(cases(256))]

    /// Whatever the guest sends, draining never panics and never keeps a maximal frame buffered.
    #[test]
    fn random_guest_bytes_drain_into_frames_or_typed_errors(
        chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..512), 0..16)
    ) {
        let mut decoder = FrameDecoder::new();
        for chunk in &chunks {
            decoder.push(chunk);
            let drained = drain_responses(&mut decoder);
            if drained.unusable.is_some() {
                proptest::prop_assert_eq!(decoder.buffered(), 0);
            }
            proptest::prop_assert!(decoder.buffered() < 4 + firepit_agent::MAX_FRAME_LEN);
        }
    }
}

proptest::proptest! {
    #![proptest_config(cases(12))]

    /// A guest that answers with garbage makes requests fail with a typed error within their
    /// deadline: never a panic, never a hang, never a made-up response.
    #[test]
    fn garbage_from_the_guest_fails_requests_with_typed_errors(
        garbage in proptest::collection::vec(proptest::num::u8::ANY, 1..4096)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let outcome = runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("agent.sock");
            let _fake = garbage_agent(UnixListener::bind(&path).unwrap(), garbage);
            let client = AgentClient::new(UnixSocket::new(path));
            let started = std::time::Instant::now();
            let outcome = client.request(Request::Ping, Duration::from_millis(200)).await;
            (outcome, started.elapsed())
        });
        let (outcome, took) = outcome;
        proptest::prop_assert!(took < Duration::from_secs(2), "request took {took:?}");
        // Random bytes are skipped while the client waits for the agent's answer to its hello (a
        // random nonce), so nothing they contain can answer a request.
        match outcome {
            Err(GuestError::Timeout { .. } | GuestError::Closed) => {}
            Ok(response) => proptest::prop_assert!(false, "garbage produced a response: {response:?}"),
            Err(other) => proptest::prop_assert!(false, "unexpected error kind: {other:?}"),
        }
    }
}

#[tokio::test]
async fn oversized_frame_from_the_guest_closes_the_connection_and_the_next_request_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let client = AgentClient::new(UnixSocket::new(path));
    let server = tokio::spawn(async move {
        // First connection: answers the hello, then sends a length prefix of 4 GiB.
        let (mut first, _) = listener.accept().await.unwrap();
        let hello = read_requests(&mut first, 1).await.remove(0);
        let answer = encode_frame(&ResponseFrame { id: hello.id, response: hello_answer(&hello) }).unwrap();
        first.write_all(&answer).await.unwrap();
        first.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        // Second connection: a proper agent.
        fake_agent(listener).await.unwrap();
    });
    let err = client.request(Request::Ping, Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, GuestError::Closed), "{err:?}");
    let pong = client.request(Request::Ping, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(pong, Response::Pong(_)));
    server.abort();
}

/// Reads `count` request frames (they may arrive in one read).
async fn read_requests(stream: &mut tokio::net::UnixStream, count: usize) -> Vec<RequestFrame> {
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    let mut frames = Vec::new();
    while frames.len() < count {
        if let Some(frame) = decoder.next_frame::<RequestFrame>().unwrap() {
            frames.push(frame);
            continue;
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "client hung up");
        decoder.push(&buf[..n]);
    }
    frames
}

fn hello_answer(frame: &RequestFrame) -> Response {
    match frame.request {
        Request::Hello(nonce) => Response::Hello(nonce),
        ref other => panic!("the first request must be hello, got {other:?}"),
    }
}

#[tokio::test]
async fn stale_bytes_before_the_hello_answer_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let client = AgentClient::new(UnixSocket::new(path));
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut frames = read_requests(&mut stream, 2).await;
        let (hello, ping) = (frames.remove(0), frames.remove(0));
        // What an earlier connection left behind: the tail of a frame, then a whole frame that
        // answers the ping's id with something else.
        let stale = encode_frame(&ResponseFrame { id: ping.id, response: Response::Ok }).unwrap();
        stream.write_all(&[0, 0, 0x10, 0x00, 7, 7, 7]).await.unwrap();
        stream.write_all(&stale).await.unwrap();
        let answer = encode_frame(&ResponseFrame { id: hello.id, response: hello_answer(&hello) }).unwrap();
        let pong = Response::Pong(Pong { agent_version: "t".into(), uptime_ms: 1 });
        let pong = encode_frame(&ResponseFrame { id: ping.id, response: pong }).unwrap();
        stream.write_all(&[answer, pong].concat()).await.unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });
    let response = client.request(Request::Ping, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(response, Response::Pong(_)), "{response:?}");
    server.abort();
}

#[test]
fn skip_to_hello_keeps_at_most_a_pattern_of_bytes_and_returns_what_follows() {
    let expected = b"HELLO".to_vec();
    let mut seen = Vec::new();
    assert!(skip_to_hello(&mut seen, &[9; 1000], &expected).is_none());
    assert!(seen.len() < expected.len());
    assert!(skip_to_hello(&mut seen, b"xxHEL", &expected).is_none());
    assert_eq!(skip_to_hello(&mut seen, b"LOtail", &expected), Some(b"tail".to_vec()));
}
