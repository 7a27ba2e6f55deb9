//! Stopping: graceful within a budget, immediate on a second request, always shutting the backend
//! down and removing the socket; start-up reaps what a crashed previous run left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use firepit_api::{AcquireRequest, ExecBody};
use firepit_client::ClientError;
use firepit_daemon::backend::{LeaseBackend, OwnedProcess};
use firepit_daemon::config::Config;
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::records::RecordStore;
use firepit_daemon::server::{Daemon, ServeError};
use firepit_daemon::shutdown::{self, Phase};
use firepit_daemon::test_daemon::TestDaemon;
use firepit_daemon::{DaemonError, records::RecordError};

/// `sleep` for `ms` (a real program: the fake backend's guest runs the host's).
fn sleep_body(ms: u64) -> ExecBody {
    ExecBody::new(["sleep".to_owned(), format!("{}.{:03}", ms / 1000, ms % 1000)])
}

async fn lease(daemon: &TestDaemon) -> String {
    let request = AcquireRequest { shape: "small".into(), wait_ms: 0, ttl_ms: None, snapshot: None };
    daemon.client().acquire(&request, None).await.unwrap().lease_id
}

#[tokio::test]
async fn graceful_stop_finishes_in_flight_requests_then_cleans_up() {
    let daemon = TestDaemon::start().await;
    let id = lease(&daemon).await;
    let client = daemon.client();
    let in_flight = tokio::spawn(async move { client.exec(&id, &sleep_body(300)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (backend, socket, client) = (daemon.backend.clone(), daemon.socket.clone(), daemon.client());
    let report = daemon.stop().await;
    assert_eq!(in_flight.await.unwrap().unwrap().exit_code, Some(0), "the in-flight exec finished");
    assert!(report.drained && !report.immediate, "{report:?}");
    assert_eq!(report.leases_ended, 1);
    assert!(backend.is_shut_down());
    assert_eq!(backend.leased("small"), 0, "every leased VM was released");
    assert!(!socket.exists(), "the socket file is removed");
    assert!(matches!(client.pools().await, Err(ClientError::Connect { .. })));
}

#[tokio::test]
async fn second_stop_request_cancels_in_flight_requests_at_once() {
    let daemon = TestDaemon::start().await;
    let id = lease(&daemon).await;
    let client = daemon.client();
    let in_flight = tokio::spawn(async move { client.exec(&id, &sleep_body(5_000)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    assert_eq!(daemon.controller.escalate(), Phase::Graceful);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(daemon.controller.escalate(), Phase::Immediate);
    let report = tokio::time::timeout(Duration::from_secs(3), daemon.handle).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(report.immediate && !report.drained, "{report:?}");
    assert!(in_flight.await.unwrap().is_err(), "the cancelled request fails");
    assert!(daemon.backend.is_shut_down(), "the backend is shut down even on an immediate stop");
    assert!(!daemon.socket.exists());
}

#[tokio::test]
async fn in_flight_requests_past_the_budget_are_cancelled() {
    let backend = FakeBackend::with_shape("small", 2);
    let daemon = TestDaemon::start_with(backend, |o| o.shutdown_budget = Duration::from_millis(200)).await;
    let id = lease(&daemon).await;
    let client = daemon.client();
    let in_flight = tokio::spawn(async move { client.exec(&id, &sleep_body(5_000)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    daemon.controller.graceful();
    let report = tokio::time::timeout(Duration::from_secs(3), daemon.handle).await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(190), "the budget was granted");
    assert!(!report.drained && !report.immediate, "{report:?}");
    assert!(in_flight.await.unwrap().is_err());
    assert!(daemon.backend.is_shut_down());
}

#[tokio::test]
async fn sigterm_then_sigint_escalate_the_shutdown_phase() {
    let (controller, signal) = shutdown::channel();
    shutdown::forward_os_signals(controller).unwrap();
    // SAFETY: signalling our own process; tokio's handlers are installed, so it is not killed.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    tokio::time::timeout(Duration::from_secs(5), signal.clone().reached(Phase::Graceful)).await.unwrap();
    unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
    tokio::time::timeout(Duration::from_secs(5), signal.clone().reached(Phase::Immediate)).await.unwrap();
}

#[tokio::test]
async fn stale_socket_is_replaced_and_a_live_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = firepit_daemon::test_daemon::options(&dir);
    std::fs::create_dir_all(options.socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&options.socket).unwrap()); // leaves a stale file
    let backend: Arc<dyn LeaseBackend> = Arc::new(FakeBackend::with_shape("small", 1));
    let first = Daemon::bind(backend.clone(), options.clone()).await.unwrap();
    let (controller, signal) = shutdown::channel();
    let running = tokio::spawn(first.run(signal));
    let second = Daemon::bind(backend, options.clone()).await;
    assert!(matches!(second, Err(ServeError::SocketInUse(_))));
    controller.graceful();
    running.await.unwrap();

    std::fs::write(&options.socket, b"not a socket").unwrap();
    let backend: Arc<dyn LeaseBackend> = Arc::new(FakeBackend::with_shape("small", 1));
    assert!(matches!(Daemon::bind(backend, options).await, Err(ServeError::NotASocket(_))));
}

fn config_in(dir: &tempfile::TempDir) -> Config {
    config_with_socket(dir, "firepit.sock")
}

fn config_with_socket(dir: &tempfile::TempDir, socket: &str) -> Config {
    let text = format!(
        "state_dir = {state:?}\n[listen]\nsocket = {socket:?}\n[[shape]]\nname = \"small\"\nimage = {image:?}\n",
        state = dir.path().join("state"),
        socket = dir.path().join(socket),
        image = dir.path(),
    );
    Config::from_toml(&text, "test".as_ref()).unwrap()
}

#[tokio::test]
async fn start_up_reaps_processes_a_crashed_previous_run_left() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(&dir);
    let mut orphan = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let vm_dir = dir.path().join("vms").join("vm-0");
    std::fs::create_dir_all(&vm_dir).unwrap();
    {
        let store = RecordStore::open(&config.state_dir()).unwrap();
        store
            .record(&OwnedProcess { vm_id: "vm-0".into(), pid: orphan.id(), runtime_dir: vm_dir.clone() })
            .unwrap();
    } // "crash": the record stays

    let (controller, signal) = shutdown::channel();
    let backend = FakeBackend::with_shape("small", 1);
    let built = backend.clone();
    let config_for_run = config.clone();
    let daemon = tokio::spawn(async move {
        firepit_daemon::run(&config_for_run, signal, move |_records| async move {
            Ok(Arc::new(built) as Arc<dyn LeaseBackend>)
        })
        .await
    });
    // The socket is bound first; requests are answered once the daemon serves.
    let client = firepit_client::Client::new(firepit_client::Endpoint::Unix(config.socket_path()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.healthz().await.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(orphan.try_wait().unwrap().is_some(), "the orphan was killed before serving");
    assert!(!vm_dir.exists(), "its runtime dir was removed");

    // A second daemon on the same state dir (another socket) is refused, and its socket removed.
    let other = config_with_socket(&dir, "other.sock");
    let (_c2, signal2) = shutdown::channel();
    let second = firepit_daemon::run(&other, signal2, |_records| async {
        Ok(Arc::new(FakeBackend::default()) as Arc<dyn LeaseBackend>)
    })
    .await;
    assert!(matches!(second, Err(DaemonError::Records(RecordError::Locked(_)))), "{second:?}");
    assert!(!other.socket_path().exists(), "a daemon that did not start leaves no socket");

    controller.graceful();
    daemon.await.unwrap().unwrap();
    assert!(backend.is_shut_down());
    assert!(!config.socket_path().exists());
}
