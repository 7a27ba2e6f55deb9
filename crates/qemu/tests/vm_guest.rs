//! Talking to a real guest: console round trip and exec through the agent.
//!
//! One VM is booted for the whole binary (≈3 s under TCG) and shared by these tests; they only run
//! commands, none changes the VM's state. At exit an `atexit` hook kills it and removes its files
//! (statics are never dropped).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use firepit_agent::ExecRequest;
use firepit_pool::Provider;
use firepit_qemu::QemuVm;
use tokio::sync::OnceCell;

static SHARED_PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn kill_shared_vm() {
    let pid = SHARED_PID.load(Ordering::SeqCst);
    if pid != 0 {
        // SAFETY: plain kill(2) of the QEMU we started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    let _ = std::fs::remove_dir_all(common::runtime_dir_path("guest"));
}

async fn vm() -> &'static QemuVm {
    static VM: OnceCell<QemuVm> = OnceCell::const_new();
    VM.get_or_init(|| async {
        let image = common::image();
        let dir = common::runtime_dir("guest");
        let provider = common::provider(&dir, |_| {});
        let vm = provider
            .create(&common::shape(), &common::cold_spec(&image))
            .await
            .expect("booting the shared VM");
        SHARED_PID.store(vm.pid(), Ordering::SeqCst);
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe { libc::atexit(kill_shared_vm) };
        eprintln!("shared VM {} booted in {:?} under {}", vm.id(), vm.boot_duration(), vm.accel());
        vm
    })
    .await
}

#[test]
fn console_round_trip_echo_hello() {
    common::run(async {
        let console = vm().await.console().await.unwrap();
        console.send("echo hel''lo-from-console\n").await.unwrap();
        let out = console.read_until("hello-from-console").await.unwrap();
        assert!(out.contains("hello-from-console"), "{out:?}");
    });
}

#[test]
fn console_read_until_timeout_reports_the_tail() {
    common::run(async {
        let console = vm().await.console().await.unwrap();
        console.send("echo tail-marker\n").await.unwrap();
        let err = console.read_until_timeout("never-printed", Duration::from_millis(1500)).await.unwrap_err();
        assert!(err.to_string().contains("tail-marker"), "{err}");
    });
}

#[test]
fn exec_returns_exit_codes() {
    common::run(async {
        let vm = vm().await;
        assert_eq!(vm.exec(["true"]).await.unwrap().exit_code, Some(0));
        assert_eq!(vm.exec(["sh", "-c", "exit 7"]).await.unwrap().exit_code, Some(7));
        let killed = vm.exec(["sh", "-c", "kill -9 $$"]).await.unwrap();
        assert_eq!((killed.exit_code, killed.signal), (None, Some(9)));
    });
}

#[test]
fn exec_captures_stdout_and_stderr_separately() {
    common::run(async {
        let out = vm().await.exec(["sh", "-c", "echo out; echo err >&2"]).await.unwrap();
        assert_eq!(out.stdout_lossy(), "out\n");
        assert_eq!(out.stderr_lossy(), "err\n");
        assert!(!out.truncated && !out.timed_out);
    });
}

#[test]
fn exec_feeds_stdin_env_and_cwd() {
    common::run(async {
        let request = ExecRequest {
            argv: vec!["sh".into(), "-c".into(), "cat; echo \"$GREETING\"; pwd".into()],
            env: vec![("GREETING".into(), "hi there".into())],
            cwd: Some("/tmp".into()),
            stdin: b"from stdin\n".to_vec(),
            ..Default::default()
        };
        let out = vm().await.exec_request(request).await.unwrap();
        assert_eq!(out.stdout_lossy(), "from stdin\nhi there\n/tmp\n");
    });
}

#[test]
fn exec_past_its_timeout_is_killed_and_flagged() {
    common::run(async {
        let request =
            ExecRequest { argv: vec!["sleep".into(), "30".into()], timeout_ms: 500, ..Default::default() };
        let started = std::time::Instant::now();
        let out = vm().await.exec_request(request).await.unwrap();
        assert!(out.timed_out, "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    });
}

#[test]
fn exec_output_is_truncated_at_the_limit() {
    common::run(async {
        let request = ExecRequest {
            argv: vec!["sh".into(), "-c".into(), "yes | head -c 100000".into()],
            max_output_bytes: 1000,
            ..Default::default()
        };
        let out = vm().await.exec_request(request).await.unwrap();
        assert!(out.truncated);
        assert_eq!(out.stdout.len(), 1000);
    });
}

#[test]
fn concurrent_execs_and_pings_all_answer() {
    common::run(async {
        let vm = vm().await;
        let started = std::time::Instant::now();
        let slow = vm.exec(["sleep", "1"]);
        let fast = async {
            let pong = vm.ping().await.unwrap();
            let elapsed = started.elapsed();
            (pong, elapsed)
        };
        let (slow, (pong, ping_elapsed)) = tokio::join!(slow, fast);
        assert!(slow.unwrap().success());
        assert!(ping_elapsed < Duration::from_millis(900), "ping waited for the exec: {ping_elapsed:?}");
        assert!(pong.uptime_ms > 0);
        let mut round_trips = Vec::new();
        for _ in 0..10 {
            let t = std::time::Instant::now();
            vm.exec(["true"]).await.unwrap();
            round_trips.push(t.elapsed());
        }
        round_trips.sort();
        eprintln!("exec round trip: median {:?}, max {:?}", round_trips[5], round_trips[9]);
    });
}
