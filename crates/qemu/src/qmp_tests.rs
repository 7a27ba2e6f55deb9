//! The QMP client against a fake QEMU peer on a socket pair.

use super::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const GREETING: &str =
    r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}"#;

/// A fake QEMU: sends the greeting, then answers each command with `reply(command, id)`.
fn fake_qemu(
    peer: UnixStream,
    reply: impl Fn(&Value) -> Vec<String> + Send + 'static,
) -> tokio::task::JoinHandle<Vec<Value>> {
    tokio::spawn(async move {
        let (read, mut write) = peer.into_split();
        write.write_all(format!("{GREETING}\r\n").as_bytes()).await.unwrap();
        let mut lines = BufReader::new(read).lines();
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let command: Value = serde_json::from_str(&line).unwrap();
            for out in reply(&command) {
                if write.write_all(format!("{out}\r\n").as_bytes()).await.is_err() {
                    return seen;
                }
            }
            let quit = command["execute"] == "quit";
            seen.push(command);
            if quit {
                return seen;
            }
        }
        seen
    })
}

fn ok(command: &Value, ret: Value) -> String {
    json!({ "return": ret, "id": command["id"] }).to_string()
}

#[tokio::test]
async fn handshake_negotiates_capabilities_and_typed_commands_round_trip() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let peer = fake_qemu(theirs, |command| match command["execute"].as_str().unwrap() {
        "query-status" => {
            vec![ok(command, json!({"running": false, "status": "paused", "singlestep": false}))]
        }
        "query-migrate" => vec![ok(command, json!({"status": "completed", "total-time": 16}))],
        _ => vec![ok(command, json!({}))],
    });
    let qmp = QmpClient::handshake(ours, Duration::from_secs(5)).await.unwrap();
    let status = qmp.query_status().await.unwrap();
    assert_eq!(status, StatusInfo { running: false, status: "paused".into() });
    qmp.stop().await.unwrap();
    qmp.migrate_set_capabilities(&[("x-ignore-shared", true)]).await.unwrap();
    qmp.migrate("exec:cat > /tmp/x").await.unwrap();
    assert_eq!(qmp.query_migrate().await.unwrap().status.as_deref(), Some("completed"));
    qmp.quit().await.unwrap();
    let seen = peer.await.unwrap();
    let names: Vec<&str> = seen.iter().map(|c| c["execute"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "qmp_capabilities",
            "query-status",
            "stop",
            "migrate-set-capabilities",
            "migrate",
            "query-migrate",
            "quit"
        ]
    );
    assert_eq!(
        seen[3]["arguments"]["capabilities"][0],
        json!({"capability": "x-ignore-shared", "state": true})
    );
    assert_eq!(seen[4]["arguments"]["uri"], "exec:cat > /tmp/x");
}

#[tokio::test]
async fn command_error_carries_class_and_description() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let _peer = fake_qemu(theirs, |command| {
        if command["execute"] == "cont" {
            vec![json!({"error": {"class": "GenericError", "desc": "migration in progress"}, "id": command["id"]})
                .to_string()]
        } else {
            vec![ok(command, json!({}))]
        }
    });
    let qmp = QmpClient::handshake(ours, Duration::from_secs(5)).await.unwrap();
    let err = qmp.cont().await.unwrap_err();
    assert!(
        matches!(&err, QmpError::Command { command, class, desc }
            if command == "cont" && class == "GenericError" && desc == "migration in progress"),
        "{err:?}"
    );
}

#[tokio::test]
async fn events_are_recorded_and_interleaved_replies_reach_their_caller() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let _peer = fake_qemu(theirs, |command| {
        let event = json!({"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}).to_string();
        vec![event, ok(command, json!({}))]
    });
    let qmp = QmpClient::handshake(ours, Duration::from_secs(5)).await.unwrap();
    let mut events = qmp.events();
    qmp.stop().await.unwrap();
    let event = events.recv().await.unwrap();
    assert_eq!(event.name, "STOP");
}

#[tokio::test]
async fn peer_closing_fails_pending_and_later_commands_with_closed() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let peer = fake_qemu(theirs, |command| {
        if command["execute"] == "qmp_capabilities" { vec![ok(command, json!({}))] } else { vec![] }
    });
    let qmp = QmpClient::handshake(ours, Duration::from_secs(5)).await.unwrap();
    let pending = tokio::spawn({
        let qmp = qmp.clone();
        async move { qmp.query_status().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    peer.abort();
    let err = pending.await.unwrap().unwrap_err();
    assert!(matches!(err, QmpError::Closed), "{err:?}");
    assert!(matches!(qmp.stop().await.unwrap_err(), QmpError::Closed | QmpError::Io(_)));
    assert!(qmp.quit().await.is_ok(), "quit on a closed connection counts as done");
}

#[tokio::test]
async fn silent_peer_times_out_naming_the_command() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let _peer = fake_qemu(theirs, |command| {
        if command["execute"] == "qmp_capabilities" { vec![ok(command, json!({}))] } else { vec![] }
    });
    let qmp = QmpClient::handshake(ours, Duration::from_millis(200)).await.unwrap();
    let err = qmp.query_status().await.unwrap_err();
    assert!(matches!(&err, QmpError::Timeout { command, .. } if command == "query-status"), "{err:?}");
}

#[tokio::test]
async fn non_qmp_greeting_is_a_bad_greeting_error() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.write_all(b"{\"hello\": 1}\n").await.unwrap();
    let err = QmpClient::handshake(ours, Duration::from_secs(1)).await.unwrap_err();
    assert!(
        matches!(&err, QmpError::BadGreeting { source: None, line } if line.contains("hello")),
        "{err:?}"
    );
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.write_all(b"not json\n").await.unwrap();
    let err = QmpClient::handshake(ours, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, QmpError::BadGreeting { source: Some(_), .. }), "{err:?}");
}
