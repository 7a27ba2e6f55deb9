//! The protections against real connections on loopback, with short limits.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::*;

const SHORT: Duration = Duration::from_millis(400);

fn limits(max_connections: usize) -> HttpLimits {
    HttpLimits {
        header_read_timeout: SHORT,
        body_idle_timeout: SHORT,
        max_connections_per_client: max_connections,
        max_head_bytes: None,
    }
}

async fn read_body(body: Body) -> Result<Bytes, StatusCode> {
    axum::body::to_bytes(body, usize::MAX).await.map_err(|error| {
        if crate::is_body_timeout(&error) { StatusCode::REQUEST_TIMEOUT } else { StatusCode::BAD_REQUEST }
    })
}

fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "hi" }))
        .route("/echo", post(|body: Body| async move { read_body(body).await.map(|b| b.len().to_string()) }))
        .route(
            "/stream",
            get(|| async {
                // 10 chunks, 150 ms apart: longer in all than every timeout, never idle that long.
                Body::from_stream(ticks(10, Duration::from_millis(150)))
            }),
        )
}

/// `count` chunks, one per `every`.
fn ticks(count: usize, every: Duration) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(count, move |left| async move {
        if left == 0 {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((Ok(Bytes::from_static(b"tick\n")), left - 1))
    })
}

async fn start(max_connections: usize) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, router(), limits(max_connections), async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Reads until the server closes; what it sent and how long that took.
async fn read_to_close(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
}

#[tokio::test]
async fn half_sent_heads_and_idle_connections_are_closed_after_the_head_timeout() {
    let (addr, _stop) = start(8).await;
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, took) = read_to_close(&mut half).await;
    assert!(took >= SHORT - Duration::from_millis(50) && took < SHORT * 4, "{took:?}");

    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (answer, took) = read_to_close(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hi"), "{answer}");
    assert!(took < SHORT * 4, "the kept-alive connection was closed once idle: {took:?}");
}

#[tokio::test]
async fn a_declared_body_that_never_comes_times_out_and_closes_the_connection() {
    let (addr, _stop) = start(8).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n\r\n{}")
        .await
        .unwrap();
    let (answer, took) = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < SHORT * 4, "{took:?}");
}

#[tokio::test]
async fn a_stream_outlives_every_timeout_while_its_data_flows() {
    let (addr, _stop) = start(8).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let (answer, took) = read_to_close(&mut stream).await;
    assert_eq!(answer.matches("tick").count(), 10, "{answer}");
    assert!(took > SHORT * 3, "{took:?}");
}

#[tokio::test]
async fn one_client_past_its_bound_is_refused_and_may_connect_again_later() {
    let (addr, _stop) = start(2).await;
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    let (answer, _) = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    drop(first);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut again = TcpStream::connect(addr).await.unwrap();
    again.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let (answer, _) = read_to_close(&mut again).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_stop_lets_the_request_in_flight_finish() {
    let (addr, stop) = start(8).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    let (answer, _) = read_to_close(&mut stream).await;
    assert_eq!(answer.matches("tick").count(), 10, "{answer}");
    assert!(TcpStream::connect(addr).await.is_err(), "no longer listening");
}
