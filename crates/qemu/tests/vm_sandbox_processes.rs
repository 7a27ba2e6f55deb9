//! Processes through the guest agent on a real VM: streamed output, stdin, timeouts that kill the
//! whole process group, a reader that stops reading, terminals, and background processes.
//!
//! One VM is shared by these tests; none disconnects the agent (that is `vm_sandbox_reconnect`).

mod common;
mod vm_sandbox_common;

use std::time::{Duration, Instant};

use firepit_agent::{
    Channel, FailureKind, ProcessOutputRequest, PtyRequest, SpawnRequest, StartProcessRequest, WindowSize,
};
use firepit_qemu::QemuVm;
use vm_sandbox_common::{agent_pid, eventually, guest_pid_not_running, guest_rss_kib, sh};

async fn vm() -> &'static QemuVm {
    vm_sandbox_common::shared_vm("sandbox-processes", 256).await
}

fn sh_request(script: &str) -> SpawnRequest {
    SpawnRequest::new(["sh", "-c", script])
}

#[test]
fn streamed_exec_delivers_its_first_line_before_it_exits() {
    common::run(async {
        let vm = vm().await;
        let started = Instant::now();
        let mut process = vm.spawn(sh_request("echo first; sleep 2; echo second")).await.unwrap();
        let mut stdout = process.take_stdout().unwrap();
        let first = stdout.next_chunk().await.unwrap().unwrap();
        let first_at = started.elapsed();
        assert_eq!(first, b"first\n");
        let second = stdout.next_chunk().await.unwrap().unwrap();
        let second_at = started.elapsed();
        assert_eq!(second, b"second\n");
        assert!(stdout.next_chunk().await.unwrap().is_none());
        let status = process.wait().await.unwrap();
        assert_eq!((status.exit_code, status.timed_out), (Some(0), false));
        assert!(first_at < Duration::from_millis(1500), "first line after {first_at:?}");
        assert!(second_at >= first_at + Duration::from_millis(1800), "{first_at:?} then {second_at:?}");
        eprintln!("streamed exec: first line after {first_at:?}, second after {second_at:?}");

        let mut latencies = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            let mut process = vm.spawn(SpawnRequest::new(["echo", "hi"])).await.unwrap();
            let mut stdout = process.take_stdout().unwrap();
            assert_eq!(stdout.next_chunk().await.unwrap().unwrap(), b"hi\n");
            latencies.push(started.elapsed());
            process.wait().await.unwrap();
        }
        latencies.sort();
        eprintln!("first-chunk latency of `echo hi`: median {:?}, max {:?}", latencies[5], latencies[9]);
    });
}

#[test]
fn stdin_is_streamed_and_stderr_kept_apart() {
    common::run(async {
        let vm = vm().await;
        let mut request = sh_request("wc -c; echo oops >&2; exit 5");
        request.stdin = true;
        let mut process = vm.spawn(request).await.unwrap();
        let mut stdin = process.take_stdin().unwrap();
        let writer = tokio::spawn(async move {
            let block = vec![b'x'; 100_000];
            for _ in 0..20 {
                stdin.write_all(&block).await.unwrap();
            }
            stdin.close().unwrap();
        });
        let output = process.output().await.unwrap();
        writer.await.unwrap();
        assert_eq!(output.stdout_lossy().trim(), "2000000");
        assert_eq!(output.stderr_lossy(), "oops\n");
        assert_eq!(output.exit_code, Some(5));
    });
}

#[test]
fn exec_timeout_kills_the_whole_process_group() {
    common::run(async {
        let vm = vm().await;
        let mut request = sh_request("sleep 300 & echo $!; wait");
        request.timeout_ms = 1000;
        let started = Instant::now();
        let mut process = vm.spawn(request).await.unwrap();
        let leader = process.pid();
        let mut stdout = process.take_stdout().unwrap();
        let grandchild: u32 =
            String::from_utf8(stdout.next_chunk().await.unwrap().unwrap()).unwrap().trim().parse().unwrap();
        drop(stdout);
        let status = process.wait().await.unwrap();
        assert!(status.timed_out, "{status:?}");
        assert_eq!(status.signal, Some(libc::SIGKILL));
        assert!(started.elapsed() < Duration::from_secs(10));
        // Reported only once reaped; the grandchild died with the group.
        assert!(guest_pid_not_running(vm, leader).await, "the leader runs on after its timeout");
        eventually("the grandchild to die", Duration::from_secs(5), || guest_pid_not_running(vm, grandchild))
            .await;

        // The one-shot exec path keeps the same promise.
        let exec = firepit_agent::ExecRequest {
            argv: vec!["sh".into(), "-c".into(), "sleep 300 & echo $! > /tmp/gc.pid; wait".into()],
            timeout_ms: 1000,
            ..Default::default()
        };
        let out = vm.exec_request(exec).await.unwrap();
        assert!(out.timed_out);
        let grandchild: u32 = sh(vm, "cat /tmp/gc.pid").await.trim().parse().unwrap();
        eventually("the exec's grandchild to die", Duration::from_secs(5), || {
            guest_pid_not_running(vm, grandchild)
        })
        .await;
    });
}

#[test]
fn a_reader_that_stops_reading_does_not_grow_agent_memory() {
    common::run(async {
        let vm = vm().await;
        let agent = agent_pid(vm).await;
        let before = guest_rss_kib(vm, agent).await;
        let mut process = vm.spawn(SpawnRequest::new(["yes"])).await.unwrap();
        let mut stdout = process.take_stdout().unwrap();
        // Nobody reads for a while: `yes` could write hundreds of MB in this time.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let during = guest_rss_kib(vm, agent).await;
        let cpu = sh(vm, &format!("cut -d' ' -f14,15 /proc/{}/stat", process.pid())).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu_later = sh(vm, &format!("cut -d' ' -f14,15 /proc/{}/stat", process.pid())).await;
        eprintln!(
            "agent RSS {before} KiB before, {during} KiB after 4 s of unread `yes`; yes cpu ticks {cpu:?} -> {cpu_later:?}"
        );
        assert!(during < before + 4096, "agent RSS grew from {before} to {during} KiB");
        assert_eq!(cpu, cpu_later, "`yes` kept running: it should block on its full pipe");
        // Reading resumes the stream.
        let mut read = 0;
        while read < 1_000_000 {
            read += stdout.next_chunk().await.unwrap().unwrap().len();
        }
        let pid = process.pid();
        drop(stdout);
        drop(process);
        eventually("`yes` to be killed with its dropped handle", Duration::from_secs(10), || {
            guest_pid_not_running(vm, pid)
        })
        .await;
    });
}

#[test]
fn pty_reports_the_size_set_by_a_resize_and_the_exit_status() {
    common::run(async {
        let vm = vm().await;
        let mut session = vm.pty(PtyRequest::shell(24, 80)).await.unwrap();
        session.resize(WindowSize { rows: 33, cols: 101 }).unwrap();
        session.write(b"stty size\n").await.unwrap();
        let mut screen = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !screen.contains("33 101") {
            assert!(Instant::now() < deadline, "no `33 101` in {screen:?}");
            let chunk = session.read().await.unwrap().expect("the shell ended early");
            screen.push_str(&String::from_utf8_lossy(&chunk));
        }
        session.write(b"exit 3\n").await.unwrap();
        let status = session.wait().await.unwrap();
        assert_eq!(status.exit_code, Some(3), "{status:?}");
    });
}

#[test]
fn background_process_is_listed_read_by_offset_and_ended_by_sigterm() {
    common::run(async {
        let vm = vm().await;
        let mut request = StartProcessRequest::new(["sh", "-c", "echo started; exec sleep 600"]);
        request.tag = Some("bg-sleeper".into());
        let info = vm.start_process(request.clone()).await.unwrap();
        let duplicate = vm.start_process(request).await.unwrap_err();
        assert_eq!(duplicate.failure_kind(), Some(FailureKind::AlreadyExists));
        let read = ProcessOutputRequest {
            process: "bg-sleeper".into(),
            channel: Channel::Stdout,
            offset: 0,
            max_bytes: 0,
            wait_ms: 10_000,
        };
        let output = vm.process_output(read).await.unwrap();
        assert_eq!(output.bytes, b"started\n");
        let listed = vm.processes().await.unwrap();
        assert!(listed.iter().any(|p| p.id == info.id && p.exit.is_none()), "{listed:?}");
        vm.signal_process(info.id, libc::SIGTERM).await.unwrap();
        let ended = vm.wait_process(info.id, Duration::from_secs(10)).await.unwrap();
        assert_eq!(ended.exit.and_then(|e| e.signal), Some(libc::SIGTERM), "{ended:?}");
        assert!(guest_pid_not_running(vm, info.pid).await);
        vm.remove_process(info.id).await.unwrap();
    });
}

#[test]
fn reading_output_already_dropped_says_how_much_was_missed() {
    common::run(async {
        let vm = vm().await;
        let mut request = StartProcessRequest::new([
            "sh",
            "-c",
            "i=0; while [ $i -lt 500 ]; do echo 123456789; i=$((i+1)); done",
        ]);
        request.output_limit_bytes = 1000;
        let info = vm.start_process(request).await.unwrap();
        let ended = vm.wait_process(info.id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(ended.exit.and_then(|e| e.exit_code), Some(0));
        let read = ProcessOutputRequest {
            process: info.id.into(),
            channel: Channel::Stdout,
            offset: 0,
            max_bytes: 0,
            wait_ms: 5000,
        };
        let output = vm.process_output(read).await.unwrap();
        assert_eq!((output.missed, output.offset, output.bytes.len()), (4000, 4000, 1000), "{output:?}");
        assert!(output.eof);
        assert_eq!(output.next_offset, 5000);
        vm.remove_process(info.id).await.unwrap();
        let gone = vm.wait_process(info.id, Duration::ZERO).await.unwrap_err();
        assert_eq!(gone.failure_kind(), Some(FailureKind::NoSuchProcess));
    });
}

#[test]
fn spawning_a_missing_program_fails_clearly() {
    common::run(async {
        let vm = vm().await;
        let error = vm.spawn(SpawnRequest::new(["/no/such/program"])).await.unwrap_err();
        assert_eq!(error.failure_kind(), Some(FailureKind::NotFound), "{error}");
        assert!(error.to_string().contains("/no/such/program"), "{error}");
        let relative_cwd = SpawnRequest { cwd: Some("tmp".into()), ..SpawnRequest::new(["true"]) };
        let error = vm.spawn(relative_cwd).await.unwrap_err();
        assert_eq!(error.failure_kind(), Some(FailureKind::InvalidInput), "{error}");
    });
}
