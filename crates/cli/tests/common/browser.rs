//! A real headless Chromium for the dashboard's tests: Debian's `chromium` driven by its
//! `chromium-driver` over WebDriver (fantoccini), both on loopback, both gone when the
//! [`Browser`] is dropped (chromedriver and the Chromium it starts share a process group that is
//! killed; chromedriver also dies with the test process).
//!
//! Screenshots go to `<target dir>/ui-screenshots/NAME.png` (CI keeps them as artifacts).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromium's flags here: headless, no sandbox (we run as root in CI), no GPU, and nothing that
/// talks to the internet on its own (it may only reach loopback).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
];

/// A WebDriver session on a headless Chromium, and the chromedriver serving it.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium session with a new empty profile, `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} not found: apt-get install chromium chromium-driver (scripts/setup does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        // SAFETY: prctl in the child before exec; async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let driver = command.spawn().expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("a browser profile dir");
        let mut args: Vec<String> = FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
        let url = format!("http://127.0.0.1:{port}");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let started = Instant::now();
        let client = loop {
            match ClientBuilder::new(connector.clone()).capabilities(capabilities.clone()).connect(&url).await
            {
                Ok(client) => break client,
                Err(error) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("no WebDriver session on chromedriver: {error}"),
            }
        };
        Browser { client, driver, profile }
    }

    /// Sets the viewport size (the window's inner size).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.expect("resize the window");
    }

    /// Saves a screenshot as `<target>/ui-screenshots/NAME.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }

    /// A screenshot of the whole page (the window grown to the page's height for it, then put
    /// back), saved like [`Self::screenshot`].
    pub async fn screenshot_page(&self, name: &str) -> PathBuf {
        let size = self
            .client
            .execute(
                "return [window.outerWidth, window.outerHeight, window.innerHeight, \
                 document.documentElement.scrollHeight];",
                vec![],
            )
            .await
            .expect("the page's size");
        let number = |i: usize| size[i].as_u64().unwrap_or(0) as u32;
        let (width, height, inner, page) = (number(0), number(1), number(2), number(3));
        let full = page + height.saturating_sub(inner);
        if full > height {
            self.client.set_window_size(width, full.min(8000)).await.expect("grow the window");
            tokio::time::sleep(std::time::Duration::from_millis(300)).await; // relayout
        }
        let path = self.screenshot(name).await;
        if full > height {
            self.client.set_window_size(width, height).await.expect("restore the window");
        }
        path
    }

    /// Waits up to `within` for an element matching `css`; panics naming it and the page otherwise.
    pub async fn wait_for(&self, css: &str, within: Duration) -> fantoccini::elements::Element {
        let started = Instant::now();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                return element;
            }
            if started.elapsed() > within {
                let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                let source = self.client.source().await.unwrap_or_default();
                self.screenshot("failed").await;
                panic!("no `{css}` within {within:?} on {url}:\n{}", tail(&source, 3000));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to `within` until the text of `css` satisfies `check`; returns it.
    pub async fn wait_for_text(&self, css: &str, within: Duration, check: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
            {
                if check(&text) {
                    return text;
                }
                last = text;
            }
            if started.elapsed() > within {
                let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                let source = self.client.source().await.unwrap_or_default();
                self.screenshot("failed").await;
                panic!(
                    "`{css}` did not get the expected text within {within:?} on {url}; it reads {last:?}; page:\n{}",
                    tail(&source, 3000)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The current URL's path and query.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Ends the session and the browser.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        self.kill();
    }

    fn kill(&mut self) {
        // SAFETY: kills the process group this harness created (chromedriver and its Chromium).
        unsafe { libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.driver.wait();
        let _ = &self.profile;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `<target dir>/ui-screenshots` (the target dir is the parent of cargo's test tmp dir).
pub fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("ui-screenshots")
}

fn tail(text: &str, chars: usize) -> &str {
    let start = text.len().saturating_sub(chars);
    let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    &text[start..]
}
