//! The sandbox API end to end on real VMs, through the Rust client and a real `firepit serve`:
//! a 100 MiB file round trip with bounded daemon memory, directories as tar streams and the file
//! operations, a streamed exec that delivers output before the command exits, an exec timeout
//! that kills the whole process group, a background process that outlives its client, and a PTY
//! whose size follows a resize, and a command over a WebSocket fed stdin while it runs, as a user.
//!
//! One daemon (one snapshot shape of 512 MiB VMs, depth 2) is shared by the binary's tests; each
//! test leases its own VM and releases it.

mod common;

use std::time::{Duration, Instant};

use common::shared_daemon::{self, Shared};
use firepit_api::{
    AcquireRequest, ErrorCode, FileKind, MkdirBody, OutputChannel, OutputQuery, Program, SignalSpec,
    SpawnBody, StartProcessBody, StreamEvent, WriteFileQuery,
};
use firepit_client::{Client, ClientError, ExecEvent, ExecWsOptions, PtyEvent, PtyOptions, decode_chunk};
use firepit_tools::procfs::peak_rss_kib;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

async fn daemon() -> &'static Shared {
    shared_daemon::daemon("sandbox-api", 512, 2).await
}

/// A VM leased for one test: released by [`Leased::release`], or on drop if the test panicked.
struct Leased {
    client: Client,
    id: String,
    released: bool,
}

impl Leased {
    async fn new() -> Self {
        let client = daemon().await.daemon.client();
        let request =
            AcquireRequest { shape: "default".into(), wait_ms: 120_000, ttl_ms: None, snapshot: None };
        let id = client.acquire(&request, None).await.unwrap().lease_id;
        Self { client, id, released: false }
    }

    async fn release(mut self) {
        self.released = true;
        self.client.release(&self.id).await.unwrap();
    }

    /// Runs a shell script and returns its stdout (panics unless it exits 0).
    async fn sh(&self, script: &str) -> String {
        let out =
            self.client.exec(&self.id, &firepit_api::ExecBody::new(["sh", "-c", script])).await.unwrap();
        assert_eq!(out.exit_code, Some(0), "`{script}`: {out:?}");
        out.stdout
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (client, id) = (self.client.clone(), self.id.clone());
        shared_daemon::runtime().spawn(async move { client.release(&id).await });
    }
}

fn code(error: &ClientError) -> ErrorCode {
    error.code().unwrap_or_else(|| panic!("no API error code: {error}"))
}

/// Writes `size` pseudo-random bytes to `path`; returns their SHA-256.
fn random_file(path: &std::path::Path, size: usize) -> String {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..size / block.len() {
        for word in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        hasher.update(&block);
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    hex::encode(hasher.finalize())
}

#[test]
fn file_of_100_mib_round_trips_with_the_same_sha256_and_the_daemons_memory_stays_flat() {
    shared_daemon::run(async {
        let vm = Leased::new().await;
        let pid = daemon().await.daemon.pid().unwrap();
        let size = 100 * 1024 * 1024;
        let local = tempfile::tempdir().unwrap();
        let source = local.path().join("big.bin");
        let sent_hash = random_file(&source, size);
        let peak_before = peak_rss_kib(pid);

        let started = Instant::now();
        let query = WriteFileQuery { path: "/tmp/big.bin".into(), ..Default::default() };
        let written = vm
            .client
            .write_file(&vm.id, &query, tokio::fs::File::open(&source).await.unwrap())
            .await
            .unwrap();
        let upload = started.elapsed();
        assert_eq!(written, size as u64);
        let guest_hash = vm.sh("sha256sum /tmp/big.bin").await;
        assert_eq!(
            guest_hash.split_whitespace().next(),
            Some(sent_hash.as_str()),
            "the guest got other bytes"
        );

        let started = Instant::now();
        let mut download = vm.client.read_file(&vm.id, "/tmp/big.bin").await.unwrap();
        assert_eq!(download.size(), Some(size as u64));
        let (mut hasher, mut received, mut buf) = (Sha256::new(), 0usize, vec![0u8; 1 << 16]);
        loop {
            let n = download.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            received += n;
        }
        let download_time = started.elapsed();
        assert_eq!(received, size);
        assert_eq!(hex::encode(hasher.finalize()), sent_hash, "the download differs");

        let growth_kib = peak_rss_kib(pid).saturating_sub(peak_before);
        let mb_s = |d: Duration| size as f64 / 1e6 / d.as_secs_f64();
        eprintln!(
            "100 MiB through the API: upload {:.2?} ({:.0} MB/s), download {:.2?} ({:.0} MB/s); daemon peak RSS {} KiB → +{} KiB",
            upload,
            mb_s(upload),
            download_time,
            mb_s(download_time),
            peak_before,
            growth_kib
        );
        assert!(growth_kib < 32 * 1024, "the daemon's peak RSS grew by {growth_kib} KiB moving 100 MiB");
        assert!(upload < Duration::from_secs(60) && download_time < Duration::from_secs(60));
        vm.client.remove(&vm.id, "/tmp/big.bin", false).await.unwrap();
        vm.release().await;
    });
}

#[test]
fn directories_round_trip_as_tar_streams_and_file_operations_answer_typed_errors() {
    shared_daemon::run(async {
        let vm = Leased::new().await;
        let (c, id) = (&vm.client, vm.id.as_str());
        let local = tempfile::tempdir().unwrap();
        let tree = local.path().join("tree");
        std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
        std::fs::write(tree.join("top.txt"), "top\n").unwrap();
        std::fs::write(tree.join("sub/deeper/run.sh"), "#!/bin/sh\necho ran\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tree.join("sub/deeper/run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("top.txt", tree.join("link")).unwrap();

        c.upload_dir(id, &tree, "/root/tree").await.unwrap();
        assert_eq!(vm.sh("/root/tree/sub/deeper/run.sh; cat /root/tree/link").await, "ran\ntop\n");
        let listing = c.list_dir(id, "/root/tree").await.unwrap();
        let names: Vec<&str> = listing.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["link", "sub", "top.txt"]);
        assert_eq!(listing.entries[0].stat.kind, FileKind::Symlink);
        assert_eq!(c.stat(id, "/root/tree/sub/deeper/run.sh", true).await.unwrap().mode, 0o755);

        c.mkdir(id, &MkdirBody { path: "/root/tree/new/a".into(), parents: true, mode: None }).await.unwrap();
        c.chmod(id, "/root/tree/top.txt", 0o600).await.unwrap();
        c.chown(
            id,
            &firepit_api::ChownBody { path: "/root/tree/top.txt".into(), uid: Some(1), gid: Some(2) },
        )
        .await
        .unwrap();
        let stat = c.stat(id, "/root/tree/top.txt", true).await.unwrap();
        assert_eq!((stat.mode, stat.uid, stat.gid), (0o600, 1, 2));
        c.rename(id, "/root/tree/new", "/root/tree/renamed").await.unwrap();
        assert_eq!(c.stat(id, "/root/tree/renamed/a", true).await.unwrap().kind, FileKind::Dir);

        let back = local.path().join("back");
        c.download_dir(id, "/root/tree", &back).await.unwrap();
        assert_eq!(std::fs::read_to_string(back.join("sub/deeper/run.sh")).unwrap(), "#!/bin/sh\necho ran\n");
        let mode = std::fs::metadata(back.join("sub/deeper/run.sh")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        assert_eq!(std::fs::read_link(back.join("link")).unwrap(), std::path::Path::new("top.txt"));
        assert!(back.join("renamed/a").is_dir());

        assert_eq!(code(&c.read_file(id, "/root/nope").await.unwrap_err()), ErrorCode::NotFound);
        assert_eq!(code(&c.read_file(id, "/root/tree").await.unwrap_err()), ErrorCode::IsADirectory);
        assert_eq!(code(&c.list_dir(id, "/root/tree/top.txt").await.unwrap_err()), ErrorCode::NotADirectory);
        assert_eq!(code(&c.remove(id, "/root/tree", false).await.unwrap_err()), ErrorCode::DirectoryNotEmpty);
        assert_eq!(code(&c.stat(id, "relative", true).await.unwrap_err()), ErrorCode::InvalidInput);
        let query = WriteFileQuery { path: "/proc/version".into(), ..Default::default() };
        let denied = c.write_file(id, &query, std::io::Cursor::new(b"x".to_vec())).await.unwrap_err();
        assert!(matches!(code(&denied), ErrorCode::PermissionDenied | ErrorCode::IoError), "{denied}");
        c.remove(id, "/root/tree", true).await.unwrap();
        assert_eq!(code(&c.stat(id, "/root/tree", true).await.unwrap_err()), ErrorCode::NotFound);
        vm.release().await;
    });
}

#[test]
fn streamed_exec_delivers_the_first_line_before_the_command_exits() {
    shared_daemon::run(async {
        let vm = Leased::new().await;
        let started = Instant::now();
        let body = SpawnBody::new(["sh", "-c", "echo one; sleep 2; echo two >&2; exit 3"]);
        let mut events = vm.client.exec_stream(&vm.id, &body).await.unwrap();
        let (mut first_line_at, mut stdout, mut stderr, mut exit) = (None, Vec::new(), Vec::new(), None);
        while let Some(event) = events.next_event().await.unwrap() {
            match event {
                StreamEvent::Stdout(chunk) => {
                    first_line_at.get_or_insert(started.elapsed());
                    stdout.extend(decode_chunk(&chunk).unwrap());
                }
                StreamEvent::Stderr(chunk) => stderr.extend(decode_chunk(&chunk).unwrap()),
                StreamEvent::Exit(status) => exit = Some((status, started.elapsed())),
                StreamEvent::Error { error, message } => panic!("{error}: {message}"),
                _ => {}
            }
        }
        let (status, exited_at) = exit.expect("an exit event");
        let first = first_line_at.expect("stdout arrived");
        assert_eq!(
            (stdout.as_slice(), stderr.as_slice(), status.exit_code),
            (&b"one\n"[..], &b"two\n"[..], Some(3))
        );
        assert!(
            exited_at - first >= Duration::from_millis(1500),
            "first line at {first:?}, exit at {exited_at:?}"
        );
        vm.release().await;
    });
}

/// Guest processes whose command line is `sleep 301`.
async fn sleepers(vm: &Leased) -> usize {
    let script = "n=0; for f in /proc/[0-9]*/cmdline; do [ \"$(tr '\\0' ' ' < $f 2>/dev/null)\" = 'sleep 301 ' ] && n=$((n+1)); done; echo $n";
    vm.sh(script).await.trim().parse().unwrap()
}

#[test]
fn an_exec_timeout_kills_the_whole_process_group() {
    shared_daemon::run(async {
        let vm = Leased::new().await;
        let body = SpawnBody {
            timeout_ms: 1500,
            ..SpawnBody::new(["sh", "-c", "sleep 301 & sleep 301 & echo up; wait"])
        };
        let mut events = vm.client.exec_stream(&vm.id, &body).await.unwrap();
        let mut timed_out = None;
        while let Some(event) = events.next_event().await.unwrap() {
            if let StreamEvent::Stdout(_) = &event {
                assert_eq!(sleepers(&vm).await, 2, "both children run before the timeout");
            }
            if let StreamEvent::Exit(status) = event {
                timed_out = Some(status);
            }
        }
        let status = timed_out.expect("an exit event");
        assert!(status.timed_out && status.signal == Some(libc::SIGKILL), "{status:?}");
        assert_eq!(sleepers(&vm).await, 0, "the timeout left the command's children running");

        // An attached command dies with its client: here the client leaves mid-stream.
        let body = SpawnBody::new(["sh", "-c", "sleep 301 & echo up; wait"]);
        let mut events = vm.client.exec_stream(&vm.id, &body).await.unwrap();
        while !matches!(events.next_event().await.unwrap(), Some(StreamEvent::Stdout(_))) {}
        assert_eq!(sleepers(&vm).await, 1);
        drop(events);
        let deadline = Instant::now() + Duration::from_secs(10);
        while sleepers(&vm).await != 0 {
            assert!(Instant::now() < deadline, "the command outlived its client's disconnect");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        vm.release().await;
    });
}

#[test]
fn a_background_process_survives_its_clients_disconnect_and_is_read_from_an_offset() {
    shared_daemon::run(async {
        let vm = Leased::new().await;
        let script = "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.1; done";
        let start =
            StartProcessBody { tag: Some("ticker".into()), ..Program::new(["sh", "-c", script]).into() };
        {
            // A first client starts it, follows its output a little, then goes away.
            let first = daemon().await.daemon.client();
            let started = first.start_process(&vm.id, &start).await.unwrap();
            assert!(started.exit.is_none() && started.tag.as_deref() == Some("ticker"));
            let mut follow = first.follow_output(&vm.id, "ticker", OutputChannel::Stdout, 0).await.unwrap();
            let Some(StreamEvent::Stdout(chunk)) = follow.next_event().await.unwrap() else {
                panic!("a chunk")
            };
            assert_eq!(chunk.offset, Some(0));
            assert!(decode_chunk(&chunk).unwrap().starts_with(b"line 0\n"));
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let second = daemon().await.daemon.client();
        let listed = second.processes(&vm.id).await.unwrap();
        let ticker = listed.iter().find(|p| p.tag.as_deref() == Some("ticker")).expect("listed");
        assert!(ticker.exit.is_none(), "it still runs after its client left: {ticker:?}");
        assert!(ticker.stdout_bytes > 30, "it kept writing: {ticker:?}");

        let head = second
            .process_output(&vm.id, "ticker", &OutputQuery { max_bytes: 7, ..Default::default() })
            .await
            .unwrap();
        assert_eq!((head.offset, head.data.as_str(), head.next_offset), (0, "line 0\n", 7));
        let query = OutputQuery { offset: head.next_offset, max_bytes: 7, ..Default::default() };
        let next = second.process_output(&vm.id, &ticker.id.to_string(), &query).await.unwrap();
        assert_eq!((next.offset, next.data.as_str(), next.missed), (7, "line 1\n", 0));

        second.signal_process(&vm.id, "ticker", SignalSpec::Name("TERM".into())).await.unwrap();
        let ended = second.process(&vm.id, "ticker", 10_000).await.unwrap();
        let exit = ended.exit.expect("TERM ended it");
        assert_eq!(exit.signal, Some(libc::SIGTERM), "{exit:?}");
        // A follower reading from the middle gets the rest, the end, and the exit.
        let mut follow = second.follow_output(&vm.id, "ticker", OutputChannel::Stdout, 7).await.unwrap();
        let (mut rest, mut eof, mut exited) = (Vec::new(), None, None);
        while let Some(event) = follow.next_event().await.unwrap() {
            match event {
                StreamEvent::Stdout(chunk) => rest.extend(decode_chunk(&chunk).unwrap()),
                StreamEvent::Eof { next_offset } => eof = Some(next_offset),
                StreamEvent::Exit(status) => exited = Some(status),
                other => panic!("{other:?}"),
            }
        }
        assert!(rest.starts_with(b"line 1\n"));
        assert_eq!(eof, Some(7 + rest.len() as u64));
        assert_eq!(exited.and_then(|s| s.signal), Some(libc::SIGTERM));
        second.remove_process(&vm.id, "ticker").await.unwrap();
        assert_eq!(code(&second.process(&vm.id, "ticker", 0).await.unwrap_err()), ErrorCode::ProcessNotFound);
        vm.release().await;
    });
}

#[test]
fn a_pty_over_websocket_reports_the_size_set_by_a_resize_and_its_exit_status() {
    shared_daemon::run(async {
        let vm = Leased::new().await;
        let mut pty = vm.client.pty(&vm.id, &PtyOptions::default()).await.unwrap();
        assert!(matches!(pty.next_event().await.unwrap(), Some(PtyEvent::Started { .. })));
        pty.resize(33, 101).await.unwrap();
        pty.send_input(b"stty size; exit 7\n").await.unwrap();
        let (mut screen, mut status) = (Vec::new(), None);
        while let Some(event) =
            tokio::time::timeout(Duration::from_secs(30), pty.next_event()).await.unwrap().unwrap()
        {
            match event {
                PtyEvent::Output(bytes) => screen.extend(bytes),
                PtyEvent::Exit(exit) => status = Some(exit),
                other => panic!("{other:?}"),
            }
        }
        let screen = String::from_utf8_lossy(&screen);
        assert!(screen.contains("33 101"), "stty did not see the resize:\n{screen}");
        assert_eq!(status.and_then(|s| s.exit_code), Some(7));
        let refused =
            vm.client.pty(&vm.id, &PtyOptions { argv: vec!["/no/such".into()], ..Default::default() }).await;
        assert_eq!(code(&refused.unwrap_err()), ErrorCode::ExecRefused);
        vm.release().await;
    });
}

#[test]
fn exec_over_websocket_takes_stdin_while_it_runs_keeps_channels_apart_and_runs_as_a_user() {
    shared_daemon::run(async {
        let vm = Leased::new().await;
        let options =
            ExecWsOptions { stdin: true, ..ExecWsOptions::new(["sh", "-c", "cat; echo err >&2; id -u"]) };
        let mut session = vm.client.exec_ws(&vm.id, &options).await.unwrap();
        assert!(matches!(session.next_event().await.unwrap(), Some(ExecEvent::Started { .. })));
        session.send_stdin(b"first ").await.unwrap();
        session.send_stdin(b"second").await.unwrap();
        session.close_stdin().await.unwrap();
        let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
        while let Some(event) =
            tokio::time::timeout(Duration::from_secs(30), session.next_event()).await.unwrap().unwrap()
        {
            match event {
                ExecEvent::Stdout(bytes) => out.extend(bytes),
                ExecEvent::Stderr(bytes) => err.extend(bytes),
                ExecEvent::Exit(exit) => status = Some(exit),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(String::from_utf8_lossy(&out), "first second0\n");
        assert_eq!(String::from_utf8_lossy(&err), "err\n");
        assert_eq!(status.and_then(|s| s.exit_code), Some(0));

        let as_user = ExecWsOptions { user: Some("4242:4343".into()), ..ExecWsOptions::new(["id"]) };
        let mut session = vm.client.exec_ws(&vm.id, &as_user).await.unwrap();
        let mut out = Vec::new();
        while let Some(event) = session.next_event().await.unwrap() {
            if let ExecEvent::Stdout(bytes) = event {
                out.extend(bytes);
            }
        }
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("uid=4242") && out.contains("gid=4343"), "{out}");
        let unknown = ExecWsOptions { user: Some("no-such-user".into()), ..ExecWsOptions::new(["true"]) };
        assert_eq!(code(&vm.client.exec_ws(&vm.id, &unknown).await.unwrap_err()), ErrorCode::ExecRefused);
        vm.release().await;
    });
}
