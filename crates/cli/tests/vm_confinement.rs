//! The real daemon, confined: `firepit serve` with a TCP listener and a bearer token, QEMU as
//! `nobody` (when run as root). The token must appear in no log line, no process title or
//! environment of a QEMU child, and no response; the socket and directories must be private; QEMU
//! must run under its seccomp sandbox as the configured user.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use firepit_client::{Client, Endpoint, Method};
use firepit_tools::procfs::qemu_under;

const TOKEN_ENV: &str = "FIREPIT_CONFINEMENT_TEST_TOKEN";
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).mode() & 0o777
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or("").trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_daemon_keeps_its_token_secret_and_its_files_and_qemu_confined() {
    let (dir, mut settings) = common::small_shape_settings("confinement");
    settings.socket = dir.path().join("run").join("api.sock");
    let (socket, state) = (settings.socket.clone(), settings.state_dir.clone());
    let token = format!("secret-{:032x}", rand::random::<u128>());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    settings.tcp = Some((addr, TOKEN_ENV.to_owned()));
    if is_root() {
        settings.qemu_user = Some("nobody".into());
    }
    let mut daemon = common::daemon(dir, &settings).with_env(TOKEN_ENV, &token).with_env("RUST_LOG", "debug");
    daemon.start(common::BOOT_DEADLINE).await.expect("the daemon listens once its pool is warm");
    let daemon_pid = daemon.pid().expect("the daemon runs");

    // Files: the socket 0600 in a 0700 directory, ownership records private.
    assert_eq!(mode(&socket), 0o600, "API socket");
    assert_eq!(mode(socket.parent().unwrap()), 0o700, "API socket directory");
    assert_eq!(mode(&state.join("owned")), 0o700, "ownership records");
    assert_eq!(mode(&state.join("daemon.lock")), 0o600, "lock file");
    let vms = state.join("vms");
    assert_eq!(mode(&vms), if is_root() { 0o711 } else { 0o700 }, "VM runtime directory");
    for entry in std::fs::read_dir(&vms).unwrap().flatten() {
        assert_eq!(mode(&entry.path()), 0o700, "{}", entry.path().display());
    }

    // QEMU: sandboxed, as nobody, with no token in its command line or environment.
    let qemus = qemu_under(&state).into_iter().map(|p| p.pid).collect::<Vec<_>>();
    assert!(!qemus.is_empty(), "the daemon's VM runs");
    for pid in &qemus {
        assert_eq!(status_field(*pid, "Seccomp:"), "2", "qemu {pid} runs under seccomp");
        if is_root() {
            let uid = status_field(*pid, "Uid:");
            assert!(uid.split_whitespace().all(|u| u == NOBODY.to_string()), "qemu {pid} uids: {uid}");
        }
        for file in ["cmdline", "environ"] {
            let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
            assert!(!contains(&bytes, &token), "the token is in /proc/{pid}/{file} of QEMU");
        }
    }
    let title = std::fs::read(format!("/proc/{daemon_pid}/cmdline")).unwrap();
    assert!(!contains(&title, &token), "the token is in the daemon's process title");

    // Responses: wrong, missing, partial and right tokens, and errors behind a right token.
    let authority = format!("127.0.0.1:{port}");
    let tcp = |token: Option<String>| Client::new(Endpoint::Tcp { authority: authority.clone(), token });
    let half = token[..token.len() / 2].to_owned();
    let mut bodies = Vec::new();
    for (who, presented, expected) in [
        ("no token", None, 401),
        ("wrong token", Some("wrong-token-0123456789abcdef".to_owned()), 401),
        ("half the token", Some(half), 401),
        ("the token with a suffix", Some(format!("{token}x")), 401),
        ("the token", Some(token.clone()), 200),
    ] {
        let response = tcp(presented).request(Method::GET, "/v1/pools", None, &[]).await.unwrap();
        assert_eq!(response.status.as_u16(), expected, "{who}: {}", response.text());
        bodies.push(response.text());
    }
    let client = tcp(Some(token.clone()));
    for (method, path, body) in [
        (Method::POST, "/v1/leases", Some(br#"{"shape":"none"}"#.to_vec())),
        (Method::POST, "/v1/leases", Some(b"not json".to_vec())),
        (Method::POST, "/v1/leases/nope/exec", Some(br#"{"argv":["true"]}"#.to_vec())),
        (Method::GET, "/v1/nothing-here", None),
        (Method::GET, "/metrics", None),
        (Method::GET, "/v1/openapi.json", None),
    ] {
        let response = client.request(method, path, body, &[]).await.unwrap();
        bodies.push(format!("{:?} {}", response.headers, response.text()));
    }
    for body in &bodies {
        assert!(!body.contains(&token), "a response contains the token: {body}");
    }
    // A full round trip over the authenticated TCP listener.
    let out = client
        .request(Method::POST, "/v1/leases", Some(br#"{"shape":"small","wait_ms":60000}"#.to_vec()), &[])
        .await
        .unwrap();
    assert_eq!(out.status.as_u16(), 201, "{}", out.text());
    assert!(!out.text().contains(&token));

    // Stop, then read every line the daemon logged (at debug level).
    daemon.stop(Duration::from_secs(60)).await.expect("graceful stop");
    let logged = std::fs::read(daemon.log_path()).unwrap();
    let printed = std::fs::read(daemon.stdout_path()).unwrap();
    assert!(contains(&logged, "request"), "the log has request lines (sanity)");
    assert!(!contains(&logged, &token), "the token is in the daemon's log");
    assert!(!contains(&printed, &token), "the token is in the daemon's stdout");
    assert!(
        common::eventually(Duration::from_secs(5), || qemu_under(&state).is_empty()).await,
        "no QEMU left"
    );
}
