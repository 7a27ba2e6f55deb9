//! A careless or hostile client against a real `firepit serve` on real VMs (issue 25): interrupted
//! and stalled uploads leave the previous content, non-UTF-8 names are refused (never merged),
//! hostile and damaged archives are the client's 4xx and stop the guest's work, a full disk is
//! 507, errors name what is wrong, and a terminal fed a large message notices its client leaving.
//! (The forwards' bound is tested in `vm_ports.rs`, whose shape has a network; the header timeout
//! and the connection bound in firepit-http's tests, with short limits.)
//!
//! One daemon (one snapshot shape, depth 2, a 3 s body idle timeout) is shared by the binary's
//! tests; each test leases its own VM and releases it.

mod common;

use std::time::{Duration, Instant};

use common::shared_daemon::{self, Shared};
use firepit_api::{AcquireRequest, ErrorCode, MkdirBody, WriteFileQuery};
use firepit_client::{Client, ClientError, PtyEvent, PtyOptions};
use tar::{EntryType, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY_IDLE_SECS: u64 = 3;

async fn daemon() -> &'static Shared {
    let http = format!("\n[http]\nbody_idle_timeout_secs = {BODY_IDLE_SECS}\n");
    shared_daemon::daemon_with("hardening", 512, 2, &http).await
}

/// A VM leased for one test, released at the end (or by the daemon's TTL if the test panicked).
struct Leased {
    client: Client,
    id: String,
}

impl Leased {
    async fn new() -> Self {
        let client = daemon().await.daemon.client();
        let request = AcquireRequest {
            shape: "default".into(),
            wait_ms: 120_000,
            ttl_ms: Some(600_000),
            snapshot: None,
        };
        let id = client.acquire(&request, None).await.unwrap().lease_id;
        Self { client, id }
    }

    async fn release(self) {
        self.client.release(&self.id).await.unwrap();
    }

    /// Runs a shell script and returns its stdout (panics unless it exits 0).
    async fn sh(&self, script: &str) -> String {
        let out =
            self.client.exec(&self.id, &firepit_api::ExecBody::new(["sh", "-c", script])).await.unwrap();
        assert_eq!(out.exit_code, Some(0), "`{script}`: {out:?}");
        out.stdout
    }

    async fn write(&self, path: &str, data: &[u8]) -> Result<u64, ClientError> {
        let query = WriteFileQuery { path: path.into(), ..Default::default() };
        self.client.write_file(&self.id, &query, std::io::Cursor::new(data.to_vec())).await
    }

    async fn read(&self, path: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.client.read_file(&self.id, path).await.unwrap().read_to_end(&mut out).await.unwrap();
        out
    }

    /// A JSON request; answers the status and the body.
    async fn json(&self, method: &str, route: &str, body: &str) -> (u16, String) {
        let method = method.parse().unwrap();
        let path = format!("/v1/leases/{}/{route}", self.id);
        let answer = self.client.request(method, &path, Some(body.as_bytes().to_vec()), &[]).await.unwrap();
        (answer.status.as_u16(), answer.text())
    }
}

fn code(error: &ClientError) -> ErrorCode {
    error.code().unwrap_or_else(|| panic!("no API error code: {error}"))
}

/// Writes `head` and then `body` (pausing `pause` between) on a new connection to the daemon's
/// socket, then reads the answer until the daemon closes (bounded); answers what was read.
async fn raw(head: &str, body: &[u8], pause: Duration) -> String {
    let mut stream = tokio::net::UnixStream::connect(daemon().await.daemon.socket()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // A daemon that refuses the head may answer and close before it reads the body (a broken
    // pipe here): its answer is what is checked, not this write.
    let _ = stream.write_all(body).await;
    tokio::time::sleep(pause).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the daemon kept the connection open: {}", String::from_utf8_lossy(&answer));
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn interrupted_or_stalled_uploads_leave_the_previous_content_and_non_utf8_names_are_refused() {
    shared_daemon::run(async {
        let vm = Leased::new().await;
        vm.write("/tmp/f", b"ORIGINAL").await.unwrap();
        let put = |path: &str| {
            format!(
                "PUT /v1/leases/{}/files?path={path} HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: 2000000000\r\n\r\n",
                vm.id
            )
        };
        // A client that sends part of the body and goes away.
        {
            let mut stream = tokio::net::UnixStream::connect(daemon().await.daemon.socket()).await.unwrap();
            stream.write_all(put("/tmp/f").as_bytes()).await.unwrap();
            stream.write_all(b"NEW").await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(vm.read("/tmp/f").await, b"ORIGINAL", "an interrupted upload changed the file");

        // A client that stops sending: 408 body_timeout after the idle timeout, file unchanged.
        let started = Instant::now();
        let answer = raw(&put("/tmp/f"), b"{}", Duration::ZERO).await;
        let waited = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("body_timeout"), "{answer}");
        assert!(waited < Duration::from_secs(BODY_IDLE_SECS + 5), "closed after {waited:?}");
        assert_eq!(vm.read("/tmp/f").await, b"ORIGINAL", "a stalled upload changed the file");
        // The agent drops the staged file when the upload is cancelled, which may finish just
        // after the client has its 408: it must be gone soon, not at once.
        let mut staged = String::new();
        for _ in 0..50 {
            staged = vm.sh("ls -A /tmp | grep -c firepit-upload || true").await;
            if staged.trim() == "0" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(staged.trim(), "0", "a temporary file was left behind");

        // Two names that differ only in invalid UTF-8 are refused, not merged into one.
        for path in ["/tmp/x%80", "/tmp/x%C3"] {
            let head = format!(
                "PUT /v1/leases/{}/files?path={path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: 1\r\n\r\n",
                vm.id
            );
            let answer = raw(&head, b"a", Duration::ZERO).await;
            assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("bad_request"), "{path}: {answer}");
        }
        assert_eq!(vm.sh("ls /tmp | grep -c '^x' || true").await.trim(), "0");
        vm.release().await;
    });
}

/// One raw tar entry: header (names written as given, a GNU long name first past 99 bytes) and
/// data padded to 512 bytes (the `tar` crate's builder refuses the hostile names).
fn entry(name: &[u8], kind: EntryType, data: &[u8], link: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if name.len() > 99 {
        out.extend(entry(b"././@LongLink", EntryType::GNULongName, &[name, &[0]].concat(), b""));
    }
    let mut header = Header::new_gnu();
    let gnu = header.as_gnu_mut().unwrap();
    gnu.name[..name.len().min(99)].copy_from_slice(&name[..name.len().min(99)]);
    gnu.linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// The busy share of the CPU between two `cpu` lines of `/proc/stat`.
fn busy_share(two_lines: &str) -> f64 {
    let sample = |line: &str| -> (u64, u64) {
        let ticks: Vec<u64> = line.split_whitespace().skip(1).map(|t| t.parse().unwrap()).collect();
        (ticks.iter().sum(), ticks[3] + ticks.get(4).copied().unwrap_or(0))
    };
    let mut lines = two_lines.lines();
    let ((total0, idle0), (total1, idle1)) = (sample(lines.next().unwrap()), sample(lines.next().unwrap()));
    let total = (total1 - total0).max(1) as f64;
    1.0 - (idle1 - idle0) as f64 / total
}

fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
    [entries.concat(), vec![0; 1024]].concat()
}

#[test]
fn hostile_and_damaged_archives_and_bad_names_are_the_clients_fault() {
    shared_daemon::run(async {
        let vm = Leased::new().await;
        vm.sh("mkdir -p /tmp/dest && echo kept > /tmp/dest/keep").await;
        let upload = |tar: Vec<u8>| vm.client.upload_tar(&vm.id, "/tmp/dest", std::io::Cursor::new(tar));

        // 3,000 directories deep in a 10 KB tar: a 4xx at once (before the fix: `502 vm_unreachable`
        // after 10 s), and the guest stops working on it (before: a core busy until the lease ended).
        // The bounds leave room for a loaded CI host running the other tests beside this one.
        let deep = "d/".repeat(3000) + "f";
        let started = Instant::now();
        let error =
            upload(archive(&[entry(deep.as_bytes(), EntryType::Regular, b"x", b"")])).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(code(&error), ErrorCode::ArchiveLimit | ErrorCode::NameTooLong), "{error}");
        assert!(took < Duration::from_secs(9), "answered after {took:?}");
        let deep_dirs = "d/".repeat(200) + "f";
        let error = upload(archive(&[entry(deep_dirs.as_bytes(), EntryType::Regular, b"x", b"")])).await;
        assert_eq!(code(&error.unwrap_err()), ErrorCode::ArchiveLimit);
        let busy = busy_share(&vm.sh("head -1 /proc/stat; sleep 2; head -1 /proc/stat").await);
        assert!(busy < 0.8, "the guest's CPU is {:.0} % busy after the refusal", busy * 100.0);

        let file = |name: &str| entry(name.as_bytes(), EntryType::Regular, b"data", b"");
        let refused = [
            ("a hard link out", archive(&[entry(b"h", EntryType::Link, b"", b"/etc/passwd")])),
            ("a symlink escape", archive(&[entry(b"l", EntryType::Symlink, b"", b"/etc"), file("l/x")])),
            ("a dot-dot path", archive(&[file("../escape")])),
            ("a device node", archive(&[entry(b"null", EntryType::Char, b"", b"")])),
        ];
        for (what, tar) in refused {
            let error = upload(tar).await.unwrap_err();
            assert_eq!(code(&error), ErrorCode::ArchiveEntryRefused, "{what}: {error}");
        }
        let good = archive(&[file("one"), file("two")]);
        let damaged = [
            ("garbage", (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>()),
            ("a truncated tar", good[..700].to_vec()),
            ("a gzip stream", [&[0x1f, 0x8b, 0x08, 0x00][..], &[0u8; 600]].concat()),
        ];
        for (what, tar) in damaged {
            let error = upload(tar).await.unwrap_err();
            assert_eq!(code(&error), ErrorCode::BadArchive, "{what}: {error}");
        }
        let long = format!("/tmp/{}", "n".repeat(300));
        assert_eq!(code(&vm.write(&long, b"x").await.unwrap_err()), ErrorCode::NameTooLong);
        let mkdir = MkdirBody { path: format!("/tmp/{}", "m/".repeat(2500)), parents: true, mode: None };
        assert_eq!(code(&vm.client.mkdir(&vm.id, &mkdir).await.unwrap_err()), ErrorCode::NameTooLong);
        let error = vm.client.rename(&vm.id, "/", "/tmp/root").await.unwrap_err();
        assert!(matches!(&error, ClientError::Api { status, .. } if status.is_client_error()), "{error}");
        assert_eq!(vm.sh("ls -A /tmp/dest").await, "keep\n", "a refused archive left something");

        // A full file system is 507 insufficient_storage.
        vm.sh("mkdir -p /mnt/small && mount -t tmpfs -o size=1m tmpfs /mnt/small").await;
        let error = vm.write("/mnt/small/big", &vec![7u8; 2 << 20]).await.unwrap_err();
        assert_eq!(code(&error), ErrorCode::InsufficientStorage, "{error}");
        vm.release().await;
    });
}

#[test]
fn errors_name_what_is_wrong_and_archives_carry_fifos() {
    shared_daemon::run(async {
        let vm = Leased::new().await;
        let (status, body) = vm.json("POST", "exec", r#"{"argv":["pwd"],"cwd":"/no/such/dir"}"#).await;
        assert!((400..500).contains(&status) && body.contains("/no/such/dir"), "{status} {body}");
        let (status, body) = vm.json("POST", "exec", r#"{"argv":["pwd"],"cwd":"/tmp\u0000x"}"#).await;
        assert!(status == 400 && body.contains("bad_cwd"), "{status} {body}");
        let (status, body) =
            vm.json("POST", "processes", r#"{"argv":["true"],"output_limit_bytes":67108865}"#).await;
        assert!(status == 400 && body.contains("output_limit_bytes"), "{status} {body}");
        let (status, body) =
            vm.json("POST", "exec", r#"{"argv":["true"],"max_output_bytes":67108864}"#).await;
        assert!(status == 400 && body.contains("max_output_bytes"), "{status} {body}");

        // A directory holding a FIFO downloads whole, the FIFO an entry of its own.
        vm.sh("mkdir /tmp/pipes && mkfifo /tmp/pipes/p && echo hi > /tmp/pipes/a").await;
        let mut tar = Vec::new();
        vm.client.download_tar(&vm.id, "/tmp/pipes").await.unwrap().read_to_end(&mut tar).await.unwrap();
        let mut kinds: Vec<(String, bool)> = tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().entry_type() == EntryType::Fifo)
            })
            .collect();
        kinds.sort();
        assert!(kinds.contains(&("a".into(), false)) && kinds.contains(&("p".into(), true)), "{kinds:?}");

        vm.release().await;
    });
}

#[test]
fn a_terminal_fed_a_large_message_notices_its_client_leaving() {
    shared_daemon::run(async {
        let vm = Leased::new().await;
        // `sleep` never reads its terminal: the 5 MB message fills the terminal's input at once and
        // the daemon's write to it stays pending until the session ends.
        let options = PtyOptions { argv: vec!["sleep".into(), "600".into()], ..Default::default() };
        let mut pty = vm.client.pty(&vm.id, &options).await.unwrap();
        let Some(PtyEvent::Started { pid }) = pty.next_event().await.unwrap() else { panic!("no start") };
        pty.send_input(&vec![b'x'; 5_000_000]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let alive = format!("test -d /proc/{pid} && echo alive || echo gone");
        assert_eq!(vm.sh(&alive).await.trim(), "alive");
        drop(pty);
        let left = Instant::now();
        loop {
            if vm.sh(&alive).await.trim() == "gone" {
                break;
            }
            assert!(left.elapsed() < Duration::from_secs(5), "the terminal's program outlived its client");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("terminal killed {:?} after its client left", left.elapsed());
        vm.release().await;
    });
}
