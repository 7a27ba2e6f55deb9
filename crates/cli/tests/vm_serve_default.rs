//! `firepit serve` with no config file, as a new user runs it: `firepit serve &` and then at once
//! `firepit run -- uname -a`, with no file written and no flag given. The daemon binds the default
//! socket first and answers once its `default` shape is warm; its log, written to a file, carries
//! no colour escapes.

mod common;

use std::process::Stdio;
use std::time::Duration;

use firepit_tools::procfs::qemu_under;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_config_then_run_works_at_once_and_logs_plain_text() {
    let image = common::image();
    // The default socket and state dir live under $XDG_RUNTIME_DIR/firepit: a private one here.
    let runtime = tempfile::tempdir().unwrap();
    let log_path = runtime.path().join("serve.log");
    let firepit = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_firepit"));
        command
            .args(args)
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("FIREPIT_IMAGE_DIR", image.dir())
            .env_remove("FIREPIT_SOCKET")
            .env_remove("FIREPIT_CONFIG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        command
    };
    let mut serve = firepit(&["serve"])
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let socket = runtime.path().join("firepit").join("firepit.sock");
    assert!(
        common::eventually(Duration::from_secs(10), || socket.exists()).await,
        "the daemon binds its socket before warming up"
    );

    let run = firepit(&["run", "--", "uname", "-a"]).output();
    let out = tokio::time::timeout(common::BOOT_DEADLINE, run).await.expect("run answers").unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{log}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("Linux ") && stdout.contains(image.kernel_version()), "{stdout}");
    let status = firepit(&["status"]).output().await.unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("default"), "the shape is named `default`");

    let pid = serve.id().expect("serve runs") as libc::pid_t;
    // SAFETY: kill(2) on the daemon this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let exit = tokio::time::timeout(Duration::from_secs(60), serve.wait()).await.expect("exits").unwrap();
    assert!(exit.success(), "graceful stop: {exit:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("daemon ready"), "{log}");
    assert!(!log.contains('\x1b'), "no ANSI escapes in a log written to a file:\n{log}");
    assert!(!socket.exists(), "socket removed");
    let state = runtime.path().join("firepit").join("state");
    assert!(
        common::eventually(Duration::from_secs(5), || qemu_under(&state).is_empty()).await,
        "no QEMU left"
    );
    // The default config keeps its snapshot template in the machine's default template dir for the
    // next start; a test removes what it left there.
    let clean = firepit(&["image", "clean-templates"]).output().await.unwrap();
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
}
