//! The `firepit` binary as a client of a running daemon (`run`, `lease`, `status`) and `serve`'s
//! start-up checks. The daemon serves the fake backend, whose guests run this host's programs.

use std::process::Output;

use firepit_daemon::test_daemon::TestDaemon;

async fn firepit(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_firepit"))
        .args(args)
        .env_remove("FIREPIT_SOCKET")
        .env_remove("FIREPIT_URL")
        .env_remove("FIREPIT_TOKEN_FILE")
        .env_remove("FIREPIT_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn run_prints_output_and_exits_with_the_guest_exit_code() {
    let daemon = TestDaemon::start().await;
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let out = firepit(&["run", "--socket", &socket, "--shape", "small", "--", "echo", "hello", "-n"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello -n\n");
    let out = firepit(&["run", "--socket", &socket, "--shape", "small", "--", "sh", "-c", "exit 3"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = firepit(&["run", "--socket", &socket, "--shape", "small", "--", "no-such-program"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot start \"no-such-program\""), "{}", stderr(&out));
    assert_eq!(daemon.backend.leased("small"), 0, "every run released its VM");
    assert_eq!(daemon.backend.destroyed("small"), 3);
    daemon.stop().await;
}

#[tokio::test]
async fn run_with_an_unknown_shape_fails_with_the_daemons_message() {
    let daemon = TestDaemon::start().await;
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let out = firepit(&["run", "--socket", &socket, "--shape", "huge", "--", "true"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown shape `huge`"), "{}", stderr(&out));
    daemon.stop().await;
}

#[tokio::test]
async fn client_commands_without_a_daemon_say_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let out = firepit(&["status", "--socket", socket.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("firepit serve"), "{}", stderr(&out));
}

#[tokio::test]
async fn lease_commands_acquire_exec_renew_release() {
    let daemon = TestDaemon::start().await;
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let out =
        firepit(&["lease", "acquire", "--socket", &socket, "--shape", "small", "--ttl-ms", "60000"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lease: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = lease["lease_id"].as_str().unwrap().to_owned();

    let out = firepit(&["lease", "exec", "--socket", &socket, &id, "-e", "A=1", "--", "printenv", "A"]).await;
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "1\n"), "{}", stderr(&out));
    let out = firepit(&["lease", "exec", "--socket", &socket, &id, "--", "false"]).await;
    assert_eq!(out.status.code(), Some(1));
    let out = firepit(&["lease", "renew", "--socket", &socket, &id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = firepit(&["lease", "release", "--socket", &socket, &id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = firepit(&["lease", "release", "--socket", &socket, &id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    daemon.stop().await;
}

#[tokio::test]
async fn lease_ls_show_kill_and_events_list_what_happened() {
    let daemon = TestDaemon::start().await;
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let out =
        firepit(&["lease", "acquire", "--socket", &socket, "--shape", "small", "-m", "job=nightly"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lease: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = lease["lease_id"].as_str().unwrap().to_owned();

    let out = firepit(&["lease", "ls", "--socket", &socket, "--state", "running", "-m", "job=nightly"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed = stdout(&out);
    assert!(listed.contains(&id) && listed.contains("running") && listed.contains("job=nightly"), "{listed}");
    let out = firepit(&["lease", "ls", "--socket", &socket, "-m", "job=other", "--json"]).await;
    assert_eq!(stdout(&out).trim(), "[]", "{}", stderr(&out));

    let out = firepit(&["lease", "release", "--socket", &socket, &id, "--kill", "--detail", "runaway"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = firepit(&["lease", "show", "--socket", &socket, &id]).await;
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((view["state"].as_str(), view["end_reason"].as_str()), (Some("ended"), Some("killed")));
    assert_eq!(view["end_detail"].as_str(), Some("runaway"));

    let out = firepit(&["events", "--socket", &socket, "--lease", &id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let kinds: Vec<String> = stdout(&out)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(kinds, ["lease.created", "lease.ended"]);
    daemon.stop().await;
}

#[tokio::test]
async fn status_prints_one_line_per_shape_and_json_on_request() {
    let daemon = TestDaemon::start().await;
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let out = firepit(&["status", "--socket", &socket]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.starts_with("small ") && l.contains(" 2 ")), "{text}");
    let out = firepit(&["status", "--socket", &socket, "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["shapes"][0]["ready"], 2);
    daemon.stop().await;
}

#[tokio::test]
async fn status_over_tcp_needs_the_token_file() {
    let daemon = TestDaemon::start_tcp().await;
    let url = format!("http://{}", daemon.tcp.unwrap());
    let out = firepit(&["status", "--url", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    let token_file = daemon.dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", firepit_daemon::test_daemon::TOKEN)).unwrap();
    let out = firepit(&["status", "--url", &url, "--token-file", token_file.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    daemon.stop().await;
}

#[tokio::test]
async fn serve_refuses_a_bad_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("firepit.toml");
    std::fs::write(&config, format!("[[shape]]\nname = \"small\"\nimage = {:?}\ncpus = 0\n", dir.path()))
        .unwrap();
    let out = firepit(&["serve", "--config", config.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`cpus` = 0"), "{}", stderr(&out));
    std::fs::write(&config, format!("[[shape]]\nname = \"small\"\nimage = {:?}\n", dir.path())).unwrap();
    let out = firepit(&["serve", "--check", "--config", config.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn serve_with_a_shape_whose_image_is_missing_fails_cleanly_and_leaves_no_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("firepit.sock");
    let config = dir.path().join("firepit.toml");
    let text = format!(
        "state_dir = {:?}\n[listen]\nsocket = {socket:?}\n[[shape]]\nname = \"small\"\nimage = {:?}\n",
        dir.path().join("state"),
        dir.path()
    );
    std::fs::write(&config, text).unwrap();
    let out = firepit(&["serve", "--config", config.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("shape `small`"), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a firepit image"), "{}", stderr(&out));
    assert!(!socket.exists());
}

#[tokio::test]
async fn top_once_prints_a_table_of_running_leases_with_their_usage() {
    let daemon = TestDaemon::start().await;
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let request =
        firepit_api::AcquireRequest { shape: "small".into(), wait_ms: 1000, ttl_ms: None, snapshot: None };
    let lease = daemon.client().acquire(&request, None).await.unwrap();
    // The sampler looks every second: the first sample's guest part (the in-process agent's memory).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let usage = daemon.client().usage().await.unwrap();
        if usage.leases[0].latest.as_ref().is_some_and(|s| s.memory_used_bytes.is_some()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no sample: {usage:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let out = firepit(&["top", "--once", "--socket", &socket]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("LEASE") && lines[0].contains("CPU %"), "{table}");
    assert!(lines[1].starts_with(&lease.lease_id) && lines[1].contains("small"), "{table}");
    assert!(["K / ", "M / ", "G / "].iter().any(|unit| lines[1].contains(unit)), "guest memory: {table}");
    assert!(lines[2].starts_with("1 leases"), "{table}");
    let out = firepit(&["top", "--json", "--socket", &socket]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["leases"][0]["lease_id"], lease.lease_id.as_str());
    daemon.stop().await;
}

/// A fake daemon whose VMs pause (4 of shape `small`), its socket, and a lease acquired with the CLI.
async fn pausable_daemon_with_a_lease() -> (TestDaemon, String, String) {
    let backend = firepit_daemon::fake::FakeBackend::with_shape("small", 4);
    backend.set_pausable(true);
    let daemon = TestDaemon::start_with(backend, |_| {}).await;
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let out = firepit(&["lease", "acquire", "--socket", &socket, "--shape", "small"]).await;
    let lease: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = lease["lease_id"].as_str().unwrap().to_owned();
    (daemon, socket, id)
}

#[tokio::test]
async fn lease_snapshot_fork_and_snapshot_ls_rm_start_and_list_leases() {
    let (daemon, socket, id) = pausable_daemon_with_a_lease().await;

    let out = firepit(&["lease", "snapshot", "--socket", &socket, &id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let snapshot: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let snapshot_id = snapshot["snapshot_id"].as_str().unwrap().to_owned();
    let out = firepit(&["snapshot", "ls", "--socket", &socket]).await;
    assert!(stdout(&out).contains(&snapshot_id) && stdout(&out).contains(&id), "{}", stdout(&out));
    let out = firepit(&["lease", "acquire", "--socket", &socket, "--snapshot", &snapshot_id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let copy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(copy["shape"], "small");
    let out = firepit(&["run", "--socket", &socket, "--snapshot", &snapshot_id, "--", "echo", "hi"]).await;
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "hi\n"), "{}", stderr(&out));

    let out = firepit(&["lease", "fork", "--socket", &socket, &id, "-n", "1"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let forks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(forks["forks"][0]["lease"]["lease_id"].is_string(), "{forks}");
    // One ready VM is left: of two forks the second fails on its own, and the exit code says so.
    let out = firepit(&["lease", "fork", "--socket", &socket, &id, "-n", "2"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let forks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(forks["forks"][1]["error"]["error"], "backend_error", "{forks}");

    let out = firepit(&["snapshot", "rm", "--socket", &socket, &snapshot_id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = firepit(&["snapshot", "ls", "--socket", &socket, "--json"]).await;
    assert_eq!(stdout(&out).trim(), "[]", "{}", stderr(&out));
    let out = firepit(&["snapshot", "rm", "--socket", &socket, &snapshot_id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("snapshot_not_found"), "{}", stderr(&out));
    daemon.stop().await;
}

#[tokio::test]
async fn pause_resume_fork_and_snapshot_create_shortcuts_act_like_the_lease_verbs() {
    let (daemon, socket, id) = pausable_daemon_with_a_lease().await;

    let out = firepit(&["pause", "--socket", &socket, &id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((view["id"].as_str(), view["state"].as_str()), (Some(id.as_str()), Some("paused")), "{view}");
    let out = firepit(&["lease", "show", "--socket", &socket, &id]).await;
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["state"], "paused", "{view}");
    let out = firepit(&["resume", "--socket", &socket, &id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["state"], "running", "{view}");

    let out = firepit(&["snapshot", "create", "--socket", &socket, &id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let snapshot: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let snapshot_id = snapshot["snapshot_id"].as_str().unwrap().to_owned();
    let out = firepit(&["snapshot", "ls", "--socket", &socket]).await;
    assert!(stdout(&out).contains(&snapshot_id) && stdout(&out).contains(&id), "{}", stdout(&out));

    let out = firepit(&["fork", "--socket", &socket, &id, "-n", "2"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let forks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fork_ids: Vec<_> =
        forks["forks"].as_array().unwrap().iter().map(|f| f["lease"]["lease_id"].clone()).collect();
    assert!(
        fork_ids.len() == 2 && fork_ids.iter().all(|id| id.is_string()) && fork_ids[0] != fork_ids[1],
        "{forks}"
    );
    // A failed fork is reported as `lease fork` reports it: exit code 1.
    let out = firepit(&["fork", "--socket", &socket, "no-such-lease"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("lease_not_found"), "{}", stderr(&out));
    daemon.stop().await;
}
