//! A background process outlives the host's connection to the agent; an attached one does not.
//!
//! Its own binary and VM: disconnecting the agent ends every open stream of the connection, which
//! would break tests running beside it.

mod common;
mod vm_sandbox_common;

use std::time::Duration;

use firepit_agent::{Channel, ProcessOutputRequest, SpawnRequest, StartProcessRequest};
use firepit_guest::GuestError;
use firepit_qemu::QemuVm;
use vm_sandbox_common::{eventually, guest_pid_not_running};

async fn vm() -> &'static QemuVm {
    vm_sandbox_common::shared_vm("sandbox-reconnect", 256).await
}

fn read_from(offset: u64) -> ProcessOutputRequest {
    ProcessOutputRequest {
        process: "ticker".into(),
        channel: Channel::Stdout,
        offset,
        max_bytes: 0,
        wait_ms: 10_000,
    }
}

/// The numbers of the complete `tick N` lines in `bytes`.
fn ticks(bytes: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| line.strip_prefix("tick ").and_then(|n| n.parse().ok()))
        .collect()
}

#[test]
fn background_process_survives_the_host_disconnecting_and_sigterm_ends_it() {
    common::run(async {
        let vm = vm().await;
        let script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done";
        let mut request = StartProcessRequest::new(["sh", "-c", script]);
        request.tag = Some("ticker".into());
        let info = vm.start_process(request).await.unwrap();
        let first = vm.process_output(read_from(0)).await.unwrap();
        assert!(!first.bytes.is_empty());
        let mut offset = first.next_offset;
        let mut seen = first.bytes.clone();

        // An attached process on the same connection, to show the difference.
        let attached = vm.spawn(SpawnRequest::new(["sleep", "600"])).await.unwrap();
        let attached_pid = attached.pid();
        let mut attached = attached;

        // The host goes away: a new connection (a new agent session) starts with the next request.
        vm.disconnect().await;
        let error = attached.wait().await.unwrap_err();
        assert!(matches!(error, GuestError::Closed), "{error:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;

        let listed = vm.processes().await.unwrap();
        let ticker = listed.iter().find(|p| p.id == info.id).expect("the process is still listed");
        assert!(ticker.exit.is_none(), "the background process died with the connection: {ticker:?}");
        eventually("the attached process to die with its session", Duration::from_secs(10), || {
            guest_pid_not_running(vm, attached_pid)
        })
        .await;

        // Continue reading where the first connection stopped: nothing missed, nothing repeated.
        while ticks(&seen).len() < 15 {
            let more = vm.process_output(read_from(offset)).await.unwrap();
            assert_eq!((more.offset, more.missed), (offset, 0), "{more:?}");
            offset = more.next_offset;
            seen.extend(more.bytes);
        }
        let numbers = ticks(&seen);
        assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>(), "lines lost or repeated");

        vm.signal_process("ticker", libc::SIGTERM).await.unwrap();
        let ended = vm.wait_process(info.id, Duration::from_secs(10)).await.unwrap();
        assert_eq!(ended.exit.and_then(|e| e.signal), Some(libc::SIGTERM), "{ended:?}");
        eventually("the ticker to be gone", Duration::from_secs(10), || guest_pid_not_running(vm, info.pid))
            .await;
        let rest = vm.process_output(read_from(offset)).await.unwrap();
        assert!(rest.eof || !rest.bytes.is_empty(), "{rest:?}");
    });
}
