//! The real daemon on real VMs: `firepit serve` with a tiny config on a temporary socket, used
//! through the `firepit` CLI and raw HTTP; SIGTERM leaves no QEMU process and no socket behind.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use firepit_client::Method;
use firepit_tools::procfs::qemu_under;

async fn firepit(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_firepit"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the firepit binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_daemon_serves_run_and_leases_exposes_metrics_and_sigterm_leaves_nothing() {
    let image = common::image();
    let (dir, settings) = common::small_shape_settings("vm-daemon");
    let (socket, state) = (settings.socket.clone(), settings.state_dir.clone());
    let mut daemon = common::daemon(dir, &settings);
    daemon.start(common::BOOT_DEADLINE).await.expect("the daemon listens once its pool is warm");
    let socket_arg = socket.to_str().unwrap().to_owned();

    // `firepit run`: acquire, exec, print, release, exit with the guest's exit code.
    let out = firepit(&["run", "--socket", &socket_arg, "--shape", "small", "--", "uname", "-r"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), image.kernel_version());
    let out =
        firepit(&["run", "--socket", &socket_arg, "--shape", "small", "--", "sh", "-c", "exit 3"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));

    // The API: unknown shape → 404 with a JSON message; metrics carry the shape label.
    let client = daemon.client();
    let body = br#"{"shape":"huge","wait_ms":0}"#.to_vec();
    let response = client.request(Method::POST, "/v1/leases", Some(body), &[]).await.unwrap();
    assert_eq!(response.status.as_u16(), 404, "{}", response.text());
    assert!(response.text().contains("huge"), "{}", response.text());
    let metrics = client.request(Method::GET, "/metrics", None, &[]).await.unwrap().text();
    // The engine's label is the shape's name, like the daemon's own series.
    assert!(metrics.contains(r#"firepit_pool_vms_acquired_total{shape="small"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"firepit_pool_vms_ready{shape="small"}"#), "{metrics}");
    // (The pool refills after the two runs: for a moment it may hold no VM.)
    assert!(
        common::eventually(Duration::from_secs(10), || !qemu_under(&state).is_empty()).await,
        "the daemon's VMs run with their sockets under its state dir"
    );

    // SIGTERM: the daemon stops, kills its VMs and removes its socket.
    daemon.stop(Duration::from_secs(60)).await.expect("graceful stop exits 0");
    assert!(!socket.exists(), "socket removed");
    assert!(
        common::eventually(Duration::from_secs(5), || qemu_under(&state).is_empty()).await,
        "no QEMU left"
    );
}
