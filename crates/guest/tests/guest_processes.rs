//! Programs through a `Guest` whose agent is the real agent's request handling in this process
//! (`InProcessAgent`): exec with the image's defaults, attached processes with streamed output and
//! stdin, terminals, background processes across reconnects, and what a `Gate` does to requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use firepit_agent::{
    Channel, ExecRequest, FailureKind, IdentityRequest, ProcessOutputRequest, PtyRequest, SpawnRequest,
    StartProcessRequest, WindowSize,
};
use firepit_guest::{ExecDefaults, Gate, Guest, GuestError, InProcessAgent, Wake};

fn guest() -> Guest {
    Guest::new(InProcessAgent::new())
}

/// Whether host process `pid` is gone or a zombie.
fn not_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')),
    }
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn exec_runs_with_stdin_and_the_images_defaults_which_the_request_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = ExecDefaults {
        env: vec![("GREETING".into(), "hi".into()), ("NAME".into(), "image".into())],
        cwd: Some(dir.path().display().to_string()),
        user: None,
    };
    let guest = guest().with_exec_defaults(defaults);
    let mut request = ExecRequest {
        argv: vec!["sh".into(), "-c".into(), "echo $GREETING $NAME $(pwd); wc -c".into()],
        stdin: b"four".to_vec(),
        ..Default::default()
    };
    request.env.push(("NAME".into(), "request".into()));
    let out = guest.exec_request(request).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout_lossy(), format!("hi request {}\n4\n", dir.path().display()));

    let missing = guest.exec(["no-such-program-here"]).await.unwrap_err();
    assert!(matches!(missing, GuestError::Remote { .. }), "{missing:?}");
    let timed_out = guest
        .exec_request(ExecRequest {
            argv: vec!["sleep".into(), "5".into()],
            timeout_ms: 200,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(timed_out.timed_out && timed_out.exit_code.is_none(), "{timed_out:?}");
}

#[tokio::test]
async fn a_spawned_process_streams_its_output_reads_stdin_and_reports_its_exit() {
    let guest = guest();
    let started = Instant::now();
    let mut process =
        guest.spawn(SpawnRequest::new(["sh", "-c", "echo first; sleep 1; echo second"])).await.unwrap();
    let mut stdout = process.take_stdout().unwrap();
    assert_eq!(stdout.next_chunk().await.unwrap().unwrap(), b"first\n");
    assert!(started.elapsed() < Duration::from_millis(900), "the first line waited for the exit");
    assert_eq!(stdout.next_chunk().await.unwrap().unwrap(), b"second\n");
    assert_eq!(process.wait().await.unwrap().exit_code, Some(0));

    let mut request = SpawnRequest::new(["sh", "-c", "wc -c; echo oops >&2; exit 5"]);
    request.stdin = true;
    let mut process = guest.spawn(request).await.unwrap();
    let mut stdin = process.take_stdin().unwrap();
    let writer = tokio::spawn(async move {
        for _ in 0..10 {
            stdin.write_all(&vec![b'x'; 100_000]).await.unwrap();
        }
        stdin.close().unwrap();
    });
    let output = process.output().await.unwrap();
    writer.await.unwrap();
    assert_eq!((output.stdout_lossy().trim(), output.stderr_lossy().as_str()), ("1000000", "oops\n"));
    assert_eq!(output.exit_code, Some(5));

    let missing = guest.spawn(SpawnRequest::new(["no-such-program-here"])).await.unwrap_err();
    assert_eq!(missing.failure_kind(), Some(FailureKind::NotFound), "{missing:?}");
}

#[tokio::test]
async fn dropping_an_attached_process_kills_it_and_its_group() {
    let guest = guest();
    let process = guest.spawn(SpawnRequest::new(["sleep", "30"])).await.unwrap();
    let pid = process.pid();
    assert!(!not_running(pid));
    drop(process);
    eventually("the dropped process to die", || not_running(pid)).await;
}

#[tokio::test]
async fn a_terminal_runs_a_shell_that_sees_its_size_and_exits_with_its_status() {
    let guest = guest();
    let mut session = guest.pty(PtyRequest::shell(24, 80)).await.unwrap();
    session.resize(WindowSize { rows: 40, cols: 120 }).unwrap();
    session.write(b"stty size; exit 3\n").await.unwrap();
    let mut screen = Vec::new();
    while let Some(chunk) = session.read().await.unwrap() {
        screen.extend(chunk);
    }
    assert!(String::from_utf8_lossy(&screen).contains("40 120"), "{}", String::from_utf8_lossy(&screen));
    assert_eq!(session.wait().await.unwrap().exit_code, Some(3));
}

#[tokio::test]
async fn a_background_process_outlives_a_reconnect_and_is_read_by_offset() {
    let guest = guest();
    let mut request = StartProcessRequest::new(["sh", "-c", "echo one; sleep 30"]);
    request.tag = Some("ticker".into());
    let info = guest.start_process(request).await.unwrap();
    let read = |offset| ProcessOutputRequest {
        process: "ticker".into(),
        channel: Channel::Stdout,
        offset,
        max_bytes: 0,
        wait_ms: 5_000,
    };
    let first = guest.process_output(read(0)).await.unwrap();
    assert_eq!(first.bytes, b"one\n");
    let attached = guest.spawn(SpawnRequest::new(["sleep", "30"])).await.unwrap();
    guest.disconnect().await;
    eventually("the attached process to end with its connection", || not_running(attached.pid())).await;
    assert!(!not_running(info.pid), "a background process lives on");
    let listed = guest.processes().await.unwrap();
    assert_eq!(listed.iter().map(|p| p.id).collect::<Vec<_>>(), [info.id]);
    guest.signal_process(info.id, libc::SIGTERM).await.unwrap();
    let ended = guest.wait_process("ticker", Duration::from_secs(5)).await.unwrap();
    assert!(ended.exit.is_some(), "{ended:?}");
    guest.remove_process(info.id).await.unwrap();
    assert!(guest.processes().await.unwrap().is_empty());
}

#[tokio::test]
async fn background_processes_die_with_the_last_handle_of_their_agent() {
    let guest = guest();
    let info = guest.start_process(StartProcessRequest::new(["sleep", "30"])).await.unwrap();
    drop(guest);
    eventually("the background process to die with its agent", || not_running(info.pid)).await;
}

#[tokio::test]
async fn an_in_process_agent_refuses_to_touch_the_hosts_identity() {
    let identity = IdentityRequest { hostname: Some("not-this-host".into()), ..IdentityRequest::default() };
    let refused = guest().set_identity(identity).await.unwrap_err();
    assert!(matches!(refused, GuestError::Remote { .. }), "{refused:?}");
}

/// A gate that refuses once closed, and otherwise makes every request wait for a counted wake-up.
#[derive(Debug, Default)]
struct Counting {
    closed: std::sync::atomic::AtomicBool,
    wakes: Arc<AtomicUsize>,
}

impl Gate for Counting {
    fn check(&self) -> Result<Option<Wake>, GuestError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(GuestError::Closed);
        }
        let wakes = self.wakes.clone();
        Ok(Some(Box::pin(async move {
            wakes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })))
    }
}

#[tokio::test]
async fn a_gate_runs_before_every_request_and_can_refuse_it() {
    let gate = Arc::new(Counting::default());
    let ungated = guest();
    let guest = ungated.clone().with_gate(gate.clone());
    guest.ping().await.unwrap();
    guest.exec(["true"]).await.unwrap();
    guest.spawn(SpawnRequest::new(["true"])).await.unwrap().wait().await.unwrap();
    assert_eq!(gate.wakes.load(Ordering::SeqCst), 3);
    ungated.ping().await.unwrap();
    assert_eq!(gate.wakes.load(Ordering::SeqCst), 3, "the guest it was made from is not gated");
    gate.closed.store(true, Ordering::SeqCst);
    assert!(matches!(guest.ping().await.unwrap_err(), GuestError::Closed));
    assert!(matches!(guest.stat("/").await.unwrap_err(), GuestError::Closed));
}
