//! Console handles against a fake guest on a socket pair.

use super::*;
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;

fn console_pair(capacity: usize) -> (Arc<ConsoleShared>, UnixStream) {
    let (ours, guest) = UnixStream::pair().unwrap();
    (ConsoleShared::start(ours, capacity, Duration::from_millis(300)), guest)
}

#[tokio::test]
async fn read_until_returns_output_through_the_match_and_moves_the_cursor() {
    let (shared, mut guest) = console_pair(1024);
    let console = shared.handle(None);
    guest.write_all(b"echo hello\r\nhello\r\n$ ").await.unwrap();
    assert_eq!(console.read_until("hello").await.unwrap(), "echo hello");
    assert_eq!(console.read_until("hello").await.unwrap(), "\r\nhello");
    assert_eq!(console.peek(), "\r\n$ ");
}

#[tokio::test]
async fn reader_waiting_before_output_arrives_wakes_up() {
    let (shared, mut guest) = console_pair(1024);
    let console = shared.handle(None);
    let waiter =
        tokio::spawn(async move { console.read_until_timeout("READY", Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    guest.write_all(b"booting...\nREA").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    guest.write_all(b"DY\n").await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), "booting...\nREADY");
}

#[tokio::test]
async fn fresh_handle_ignores_output_printed_before_it_was_made() {
    let (shared, mut guest) = console_pair(1024);
    guest.write_all(b"old hello\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let console = shared.handle(None);
    let err = console.read_until("hello").await.unwrap_err();
    assert!(matches!(err, ConsoleError::Timeout { .. }), "{err:?}");
    assert!(shared.handle(Some(0)).read_until("hello").await.is_ok());
}

#[tokio::test]
async fn timeout_error_quotes_the_tail_of_what_was_read() {
    let (shared, mut guest) = console_pair(1024);
    let console = shared.handle(None);
    guest.write_all(b"line one\r\nline two\r\n").await.unwrap();
    let err = console.read_until_timeout("never", Duration::from_millis(100)).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("\"never\" did not appear"), "{message}");
    assert!(message.contains("line one\nline two"), "{message}");
}

#[tokio::test]
async fn guest_closing_ends_waiters_with_closed() {
    let (shared, guest) = console_pair(1024);
    let console = shared.handle(None);
    drop(guest);
    let err = console.read_until_timeout("x", Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, ConsoleError::Closed { .. }), "{err:?}");
}

#[tokio::test]
async fn memory_stays_bounded_and_old_output_is_dropped() {
    let (shared, mut guest) = console_pair(16);
    guest.write_all(b"FIRST-0123456789abcdefghijkl-LAST").await.unwrap();
    let console = shared.handle(Some(0));
    console.read_until("LAST").await.unwrap();
    assert_eq!(shared.tail(10).len(), 16);
    assert!(!shared.tail(10).contains("FIRST"));
}

#[tokio::test]
async fn send_reaches_the_guest_and_output_streams_as_chunks() {
    let (shared, mut guest) = console_pair(1024);
    let console = shared.handle(None);
    let mut output = console.output();
    console.send("echo hi\n").await.unwrap();
    let mut buf = [0u8; 8];
    guest.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"echo hi\n");
    guest.write_all(b"hi\r\n").await.unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(5), output.next()).await.unwrap().unwrap();
    assert_eq!(&chunk[..], b"hi\r\n");
}
