//! `firepit cp`, `firepit exec` and `firepit shell` against a real daemon with real VMs: copies
//! both ways (files, directories, stdin/stdout), streamed output with the command's exit code,
//! and an interactive shell driven through tmux like a person at a terminal (type, read the
//! screen, resize the window, Ctrl-C, Ctrl-D).
//!
//! One daemon (one snapshot shape, depth 1) is shared by the binary's tests.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::shared_daemon::{self, Shared};
use tokio::io::{AsyncBufReadExt, BufReader};

const FIREPIT: &str = env!("CARGO_BIN_EXE_firepit");

/// The tests take turns: the shell test counts the daemon's leases.
static TURNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn daemon() -> &'static Shared {
    shared_daemon::daemon("sandbox-cli", 256, 1).await
}

async fn socket() -> String {
    daemon().await.daemon.socket().to_str().unwrap().to_owned()
}

/// Runs `firepit ARGS` (with `--socket`), feeding `stdin`.
async fn firepit(args: &[&str], stdin: &[u8]) -> Output {
    let socket = socket().await;
    // `--socket` goes after the (sub)command: `lease acquire --socket S`, `cp --socket S ...`.
    let words = if args[0] == "lease" { 2 } else { 1 };
    let (verb, rest) = args.split_at(words);
    let mut child = tokio::process::Command::new(FIREPIT)
        .args(verb)
        .args(["--socket", &socket])
        .args(rest)
        .env_remove("FIREPIT_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut input, stdin).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cp_copies_files_and_directories_both_ways_and_exec_streams_with_the_exit_code() {
    shared_daemon::run(async {
        let _turn = TURNS.lock().await;
        let lease: serde_json::Value =
            serde_json::from_str(&ok(&firepit(&["lease", "acquire"], b"").await)).unwrap();
        let id = lease["lease_id"].as_str().unwrap().to_owned();
        let local = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let file = local.path().join("data.bin");
        std::fs::write(&file, &data).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o750)).unwrap();

        // A file into an existing directory keeps its name and mode; back out to a new name.
        ok(&firepit(&["cp", file.to_str().unwrap(), &format!("{id}:/tmp")], b"").await);
        let back = local.path().join("back.bin");
        ok(&firepit(&["cp", &format!("{id}:/tmp/data.bin"), back.to_str().unwrap()], b"").await);
        assert!(std::fs::read(&back).unwrap() == data, "the file came back different");
        assert_eq!(std::fs::metadata(&back).unwrap().permissions().mode() & 0o777, 0o750);
        // stdin and stdout.
        ok(&firepit(&["cp", "-", &format!("{id}:/tmp/from-stdin")], b"piped\n").await);
        assert_eq!(ok(&firepit(&["cp", &format!("{id}:/tmp/from-stdin"), "-"], b"").await), "piped\n");

        // A directory: created under the given name, then copied into an existing local directory.
        let tree = local.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/f"), "f\n").unwrap();
        ok(&firepit(&["cp", tree.to_str().unwrap(), &format!("{id}:/root/copied")], b"").await);
        let out = ok(&firepit(&["exec", &id, "--", "cat", "/root/copied/sub/f"], b"").await);
        assert_eq!(out, "f\n");
        let into = local.path().join("into");
        std::fs::create_dir(&into).unwrap();
        ok(&firepit(&["cp", &format!("{id}:/root/copied"), into.to_str().unwrap()], b"").await);
        assert_eq!(std::fs::read_to_string(into.join("copied/sub/f")).unwrap(), "f\n");
        let missing = firepit(&["cp", &format!("{id}:/root/missing"), into.to_str().unwrap()], b"").await;
        assert_eq!(missing.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&missing.stderr).contains("not_found"));

        // exec: output as it comes, the command's exit code.
        let out = firepit(&["exec", &id, "--", "sh", "-c", "echo out; echo err >&2; exit 4"], b"").await;
        assert_eq!(
            (out.status.code(), out.stdout.as_slice(), out.stderr.as_slice()),
            (Some(4), &b"out\n"[..], &b"err\n"[..])
        );
        let first_line_early = exec_prints_before_exit(&id).await;
        assert!(
            first_line_early >= Duration::from_millis(1500),
            "first line only {first_line_early:?} before the exit"
        );
        ok(&firepit(&["lease", "release", &id], b"").await);
    });
}

/// How long before `firepit exec` exits its first line of output arrives (the command sleeps 2 s
/// between two lines).
async fn exec_prints_before_exit(id: &str) -> Duration {
    let socket = socket().await;
    let mut child = tokio::process::Command::new(FIREPIT)
        .args(["exec", "--socket", &socket, id, "--", "sh", "-c", "echo one; sleep 2; echo two"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("one"));
    let first = Instant::now();
    assert!(child.wait().await.unwrap().success());
    first.elapsed()
}

/// A private tmux server (its socket in a temp dir), killed on drop.
struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out =
            Command::new("tmux").args(["-S", &self.socket(), "-f", "/dev/null"]).args(args).output().unwrap();
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn socket(&self) -> String {
        self.dir.path().join("tmux.sock").to_string_lossy().into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "shell"])
    }

    /// Waits until the screen has a line for which `wanted` holds.
    async fn wait_for(&self, what: &str, wanted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.lines().any(|line| wanted(line.trim_end())) {
                return;
            }
            assert!(Instant::now() < deadline, "no {what} on the screen:\n{screen}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "shell"];
        args.extend(keys);
        self.run(&args);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-S", &self.socket(), "kill-server"]).output();
    }
}

#[test]
fn firepit_shell_works_in_a_real_terminal_under_tmux() {
    assert!(which_tmux(), "tmux is missing: run scripts/setup");
    shared_daemon::run(async {
        let _turn = TURNS.lock().await;
        let socket = socket().await;
        let tmux = Tmux { dir: tempfile::tempdir().unwrap() };
        let command = format!("{FIREPIT} shell --socket {socket}; echo SHELL-EXIT=$?; sleep 600");
        tmux.run(&["new-session", "-d", "-s", "shell", "-x", "100", "-y", "30", &command]);
        tmux.wait_for("prompt", |line| line.ends_with('#')).await;

        tmux.keys(&["echo hi", "Enter"]);
        tmux.wait_for("`hi`", |line| line == "hi").await;
        let size = tmux.run(&["display", "-p", "-t", "shell", "#{pane_height} #{pane_width}"]);
        tmux.keys(&["stty size", "Enter"]);
        tmux.wait_for("the pane's size", |line| line == size.trim()).await;
        tmux.run(&["resize-window", "-t", "shell", "-x", "120", "-y", "40"]);
        let size = tmux.run(&["display", "-p", "-t", "shell", "#{pane_height} #{pane_width}"]);
        assert_ne!(size.trim(), "30 100");
        tokio::time::sleep(Duration::from_millis(500)).await;
        tmux.keys(&["clear; stty size", "Enter"]);
        tmux.wait_for("the new size", |line| line == size.trim()).await;

        // Ctrl-C reaches the guest's foreground job, not the local `firepit`.
        tmux.keys(&["sleep 100", "Enter"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        tmux.keys(&["C-c"]);
        tmux.keys(&["echo after-ctrl-c", "Enter"]);
        tmux.wait_for("output after Ctrl-C", |line| line == "after-ctrl-c").await;

        tmux.keys(&["C-d"]);
        tmux.wait_for("the shell's exit status", |line| line == "SHELL-EXIT=0").await;
        let client = daemon().await.daemon.client();
        // Nothing else holds a lease now (the tests take turns).
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.pools().await.unwrap().leases != 0 {
            assert!(Instant::now() < deadline, "`firepit shell` did not release its lease");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

fn which_tmux() -> bool {
    Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
}
