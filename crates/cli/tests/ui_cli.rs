//! `firepit ui` for a daemon on its Unix socket only (the fake backend): the one-time link logs a
//! real browser in once; a second use is refused; a non-loopback address is refused.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::browser::Browser;
use firepit_daemon::test_daemon::TestDaemon;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_time_link_logs_a_browser_in_once() {
    let daemon = TestDaemon::start().await;
    let mut ui = tokio::process::Command::new(env!("CARGO_BIN_EXE_firepit"))
        .args(["ui", "--socket", daemon.socket.to_str().unwrap()])
        .env_remove("FIREPIT_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(ui.stdout.take().unwrap()).lines();
    let first =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    let link = first.strip_prefix("firepit dashboard: ").unwrap_or_else(|| panic!("{first}")).to_owned();
    assert!(link.starts_with("http://127.0.0.1:") && link.contains("/ui/login?ticket="), "{link}");

    let browser = Browser::start(1280, 900).await;
    browser.client.goto(&link).await.unwrap();
    browser.wait_for_text("table.pools tbody", Duration::from_secs(10), |t| t.contains("small")).await;
    assert_eq!(browser.path().await, "/ui/");
    browser.screenshot("ui-command-pools").await;
    browser.client.delete_all_cookies().await.unwrap();
    browser.client.goto(&link).await.unwrap();
    browser
        .wait_for_text(".notice.error", Duration::from_secs(10), |t| {
            t.contains("used already or has expired")
        })
        .await;
    assert!(
        browser.client.find(fantoccini::Locator::Css("input#token")).await.is_err(),
        "no token login here"
    );
    browser.close().await;

    // SIGTERM stops it.
    // SAFETY: signals the child this test started.
    unsafe { libc::kill(ui.id().unwrap() as libc::pid_t, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), ui.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    daemon.stop().await;
}

#[tokio::test]
async fn only_loopback_addresses_are_served() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_firepit"))
        .args(["ui", "--socket", "/nonexistent.sock", "--listen", "0.0.0.0:0"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback address only"), "{stderr}");
}
