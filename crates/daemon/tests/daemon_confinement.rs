//! The daemon's own files: its socket is 0600 in a 0700 directory it creates, and a socket
//! directory that another user owns (say a predictable `<tmp>/firepit-<uid>` created first by
//! someone else) is refused rather than used.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use firepit_daemon::fake::FakeBackend;
use firepit_daemon::server::Daemon;
use firepit_daemon::test_daemon::{TestDaemon, options};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn socket_is_0600_in_a_0700_directory_it_creates() {
    let daemon = TestDaemon::start().await;
    assert_eq!(mode(&daemon.socket), 0o600);
    assert_eq!(mode(daemon.socket.parent().unwrap()), 0o700);
    daemon.stop().await;
}

#[tokio::test]
async fn socket_directory_owned_by_another_user_is_refused() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to give a directory to another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&dir);
    let parent = opts.socket.parent().unwrap().to_owned();
    std::fs::create_dir_all(&parent).unwrap();
    std::os::unix::fs::chown(&parent, Some(12345), Some(12345)).unwrap();
    opts.tcp = None;
    let backend = Arc::new(FakeBackend::with_shape("small", 1));
    let err = Daemon::bind(backend, opts).await.err().expect("must be refused").to_string();
    assert!(err.contains("owned by uid 12345"), "{err}");
}
