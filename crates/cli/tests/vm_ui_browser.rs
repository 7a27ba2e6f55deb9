//! The dashboard in a real browser (headless Chromium over WebDriver) against a real daemon with
//! real VMs: login, the live lease list and its metadata filter, the live events, a lease's
//! terminal, file upload, usage and actions (pause and resume when the daemon has them), and
//! screenshots of every page under `<target>/ui-screenshots/` (look at them).

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use fantoccini::Locator;
use fantoccini::key::Key;
use firepit_api::{AcquireBody, AcquireRequest, ExecBody, Program, StartProcessBody};
use firepit_client::Method;
use firepit_tools::child_daemon::ChildDaemon;
use firepit_tools::daemon_dir::{DaemonDir, DaemonSettings, ShapeSettings};

const TOKEN_ENV: &str = "FIREPIT_UI_TEST_TOKEN";
const SHORT: Duration = Duration::from_secs(10);

/// A daemon with one snapshot shape `default` of depth 2 and a TCP listener with `token`.
async fn daemon_with_tcp(token: &str) -> (ChildDaemon, String) {
    let dir = DaemonDir::create(&std::env::temp_dir(), "ui-browser").expect("a private temp dir");
    let shape =
        ShapeSettings { depth_low: 2, depth_high: 2, ..ShapeSettings::new("default", common::image().dir()) };
    let mut settings = DaemonSettings::new(&dir, vec![shape]);
    settings.template_dir = Some(dir.path().join("templates"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    settings.tcp = Some((addr, TOKEN_ENV.to_owned()));
    let mut daemon = common::daemon(dir, &settings).with_env(TOKEN_ENV, token);
    daemon.start(common::BOOT_DEADLINE).await.unwrap_or_else(|e| panic!("{e}"));
    common::wait_full(&mut daemon).await;
    (daemon, format!("http://{addr}"))
}

fn acquire() -> AcquireRequest {
    AcquireRequest { shape: "default".into(), wait_ms: 30_000, ttl_ms: Some(600_000), snapshot: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_dashboard_works_in_a_real_browser() {
    let token = format!("ui-{:032x}", rand::random::<u128>());
    let (mut daemon, base) = daemon_with_tcp(&token).await;
    let api = daemon.client();
    let browser = Browser::start(1280, 900).await;
    let page = |path: &str| format!("{base}{path}");

    // Without a session every page goes to the login, which refuses a wrong token.
    browser.client.goto(&page("/ui/leases")).await.unwrap();
    browser.wait_for("input#token", SHORT).await;
    assert!(browser.path().await.starts_with("/ui/login?next=%2Fui%2Fleases"), "{}", browser.path().await);
    browser.screenshot("login").await;
    let field = browser.wait_for("input#token", SHORT).await;
    field.send_keys("not-the-right-token-at-all").await.unwrap();
    field.send_keys(&Key::Enter.to_string()).await.unwrap();
    browser.wait_for_text(".notice.error", SHORT, |t| t.contains("That token is wrong")).await;
    assert!(browser.path().await.starts_with("/ui/login"));

    // The right token: back to the page asked for.
    let field = browser.wait_for("input#token", SHORT).await;
    field.send_keys(&token).await.unwrap();
    field.send_keys(&Key::Enter.to_string()).await.unwrap();
    browser.wait_for("table.leases", SHORT).await;
    assert_eq!(browser.path().await, "/ui/leases");

    // A lease acquired through the API appears without a reload within 2 s; released, it shows
    // as ended with its reason.
    browser.wait_for("tbody#lease-rows", SHORT).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the live stream is connected
    let lease = api.acquire(&acquire(), None).await.unwrap();
    let acquired = Instant::now();
    let row = format!("tr#lease-{}", lease.lease_id);
    browser.wait_for(&row, Duration::from_secs(2)).await;
    let appeared_ms = acquired.elapsed().as_millis();
    assert!(appeared_ms <= 2000, "the lease appeared after {appeared_ms} ms");
    browser.screenshot_page("leases").await;
    api.release(&lease.lease_id).await.unwrap();
    browser.wait_for(&format!("{row}[data-state=\"ended\"]"), Duration::from_secs(5)).await;
    browser.wait_for_text(&format!("{row} .reason"), SHORT, |t| t == "released").await;

    // Keyboard: the first Tab reaches the skip link, Enter on it moves to the content, whose
    // first control (the state filter) is the next Tab; an ended lease's link opens its page.
    let tab = Key::Tab.to_string();
    browser.client.active_element().await.unwrap().send_keys(&tab).await.unwrap();
    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Skip to content");
    focused.send_keys(&Key::Enter.to_string()).await.unwrap();
    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("main"));
    focused.send_keys(&tab).await.unwrap();
    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(focused.attr("name").await.unwrap().as_deref(), Some("state"));

    // Events: the page follows the daemon's events live; a lease acquired with a label shows as
    // `lease.created` within 2 s, with its label. The lease list filters on that label.
    browser.client.goto(&page("/ui/events")).await.unwrap();
    browser.wait_for("tbody#event-rows", SHORT).await;
    browser
        .wait_for(&format!("tr[data-kind=\"lease.ended\"] a[href=\"/ui/leases/{}\"]", lease.lease_id), SHORT)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = AcquireBody {
        metadata: [("suite".to_owned(), "ui-browser".to_owned())].into(),
        ..AcquireBody::from(acquire())
    };
    let labelled = api.acquire_with(&body, None).await.unwrap();
    let acquired = Instant::now();
    let created = format!("tr[data-kind=\"lease.created\"] a[href=\"/ui/leases/{}\"]", labelled.lease_id);
    browser.wait_for(&created, Duration::from_secs(2)).await;
    let appeared_ms = acquired.elapsed().as_millis();
    assert!(appeared_ms <= 2000, "the event appeared after {appeared_ms} ms");
    browser.wait_for_text("tbody#event-rows tr:first-child", SHORT, |t| t.contains("suite=ui-browser")).await;
    browser.screenshot_page("events").await;
    browser.client.goto(&page("/ui/leases?metadata=suite%3Dui-browser")).await.unwrap();
    browser.wait_for(&format!("tr#lease-{}", labelled.lease_id), SHORT).await;
    let rows = browser.client.find_all(Locator::Css("tbody#lease-rows tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "only the labelled lease is listed");

    // Pools: the shape with its counts, and the chart of the totals after a few refreshes.
    browser.client.goto(&page("/ui/")).await.unwrap();
    browser.wait_for_text("table.pools tbody", SHORT, |t| t.contains("default")).await;
    browser.wait_for("#pool-chart canvas", SHORT).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    browser.screenshot_page("pools").await;

    // A lease's page: the terminal computes, an uploaded file reads back in the VM.
    let lease = labelled;
    browser.client.goto(&page(&format!("/ui/leases/{}", lease.lease_id))).await.unwrap();
    browser.wait_for_text("#lease-state", SHORT, |t| t == "running").await;
    browser.wait_for("a[href^=\"/ui/events?lease=\"]", SHORT).await;
    browser.wait_for("#terminal-open", SHORT).await.click().await.unwrap();
    browser.wait_for_text("#terminal-status", SHORT, |t| t.contains("Connected")).await;
    browser.wait_for_text(".xterm-rows", SHORT, |t| t.contains("# ")).await; // the shell's prompt
    browser.wait_for(".xterm-helper-textarea", SHORT).await.send_keys("echo $((6*7))\n").await.unwrap();
    browser
        .wait_for_text(".xterm-rows", Duration::from_secs(15), |t| t.lines().any(|line| line.trim() == "42"))
        .await;

    let local = tempfile::tempdir().unwrap();
    let content = format!("uploaded from the browser {:016x}\n", rand::random::<u64>());
    let file = local.path().join("from-browser.txt");
    std::fs::write(&file, &content).unwrap();
    browser.wait_for("#upload-file", SHORT).await.send_keys(&file.display().to_string()).await.unwrap();
    browser.wait_for("#upload button[type=submit]", SHORT).await.click().await.unwrap();
    browser.wait_for_text("#upload-status", SHORT, |t| t.starts_with("Uploaded")).await;
    let out = api.exec(&lease.lease_id, &ExecBody::new(["cat", "/from-browser.txt"])).await.unwrap();
    assert_eq!((out.exit_code, out.stdout.as_str()), (Some(0), content.as_str()));
    browser.wait_for_text("#files table", SHORT, |t| t.contains("from-browser.txt")).await;

    // A background process started through the API: its output, then stopped from the page.
    let program = Program::new(["sh", "-c", "echo hello from a process; exec sleep 600"]);
    let body = StartProcessBody { tag: Some("sleeper".into()), ..program.into() };
    api.start_process(&lease.lease_id, &body).await.unwrap();
    browser.wait_for("#processes button.quiet", SHORT).await.click().await.unwrap();
    browser
        .wait_for("#processes tbody tr", SHORT)
        .await
        .find(Locator::Css("button.small"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_text("#process-output pre", SHORT, |t| t.contains("hello from a process")).await;

    // Usage: charts once the daemon samples (it does when it has `GET /v1/usage`), else a note.
    let samples = api.request(Method::GET, "/v1/usage", None, &[]).await.unwrap().status.is_success();
    if samples {
        browser.wait_for("#usage-charts.ready #chart-cpu canvas", Duration::from_secs(15)).await;
        browser.wait_for("#usage-charts.ready #chart-mem canvas", SHORT).await;
    } else {
        browser.wait_for("#usage #usage-none", SHORT).await;
    }
    browser.screenshot_page("lease").await;
    browser.wait_for("#processes button.danger", SHORT).await.click().await.unwrap();
    let question = wait_for_alert(&browser).await;
    assert!(question.starts_with("Stop process"), "{question}");
    browser.client.accept_alert().await.unwrap();
    browser.wait_for_text("#processes tbody", SHORT, |t| t.contains("signal 15")).await;

    // Dark theme and a phone-sized window.
    browser.client.find(Locator::Css("#theme")).await.unwrap().click().await.unwrap();
    browser.client.find(Locator::Css("#theme")).await.unwrap().click().await.unwrap();
    browser.wait_for_text("#theme", SHORT, |t| t == "Theme: dark").await;
    browser.screenshot_page("lease-dark").await;
    browser.resize(390, 844).await;
    browser.client.goto(&page("/ui/leases")).await.unwrap();
    browser.wait_for("table.leases", SHORT).await;
    browser.screenshot_page("leases-phone-dark").await;
    browser.resize(1280, 900).await;

    // Pause and resume from the buttons (pause asks first); a daemon without them says so.
    browser.client.goto(&page(&format!("/ui/leases/{}", lease.lease_id))).await.unwrap();
    browser.wait_for("#pause", SHORT).await.click().await.unwrap();
    let question = wait_for_alert(&browser).await;
    assert!(question.starts_with(&format!("Pause lease {}?", lease.lease_id)), "{question}");
    browser.client.accept_alert().await.unwrap();
    let pause_path = format!("/v1/leases/{}/pause", lease.lease_id);
    let has_pause =
        api.request(Method::OPTIONS, &pause_path, None, &[]).await.unwrap().status.as_u16() != 404;
    if has_pause {
        browser.wait_for_text("#lease-state", Duration::from_secs(30), |t| t == "paused").await;
        browser.wait_for("#resume", SHORT).await.click().await.unwrap();
        browser.wait_for_text("#lease-state", Duration::from_secs(30), |t| t == "running").await;
    } else {
        let text = browser.wait_for_text("#action-result .notice", SHORT, |t| !t.is_empty()).await;
        assert_eq!(text, "This daemon cannot pause leases.");
        browser.wait_for_text("#lease-state", SHORT, |t| t == "running").await;
    }

    // Release from the page: it asks first, then the lease ends as released.
    browser.client.goto(&page(&format!("/ui/leases/{}", lease.lease_id))).await.unwrap();
    browser.wait_for("#release", SHORT).await.click().await.unwrap();
    let question = wait_for_alert(&browser).await;
    assert!(question.starts_with(&format!("Release lease {}?", lease.lease_id)), "{question}");
    browser.client.accept_alert().await.unwrap();
    browser.wait_for_text("#end-reason", SHORT, |t| t == "released").await;
    let view = api.lease(&lease.lease_id).await.unwrap();
    assert_eq!(view.end_reason, Some(firepit_api::EndReason::Released));

    browser.close().await;

    // The Grafana dashboard asks only for series this daemon's /metrics has.
    let metrics = api.metrics().await.unwrap();
    let exposed = exposed_series(&metrics);
    let dashboard = include_str!("../../../deploy/grafana/firepit.json");
    let used = referenced_metrics(dashboard);
    assert!(used.len() >= 15, "the dashboard uses {} series: {used:?}", used.len());
    let missing: Vec<&String> = used.iter().filter(|name| !exposed.contains(*name)).collect();
    assert!(
        missing.is_empty(),
        "deploy/grafana/firepit.json uses series /metrics lacks: {missing:?}\n{metrics}"
    );
    daemon.stop(Duration::from_secs(60)).await.unwrap();
}

/// The series names a Prometheus text exposition has, from its `# TYPE` lines (so a family
/// without samples yet counts): counters as `NAME_total`, histograms as `NAME_bucket`, `_sum`,
/// `_count`, others as `NAME`.
fn exposed_series(text: &str) -> std::collections::BTreeSet<String> {
    let mut series = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
        match kind {
            "counter" => series.extend([format!("{name}_total"), format!("{name}_created")]),
            "histogram" => series.extend(["bucket", "sum", "count"].map(|s| format!("{name}_{s}"))),
            _ => {
                series.insert(name.to_owned());
            }
        }
    }
    series
}

/// Every `firepit_…` name in the dashboard's JSON (queries, template variables).
fn referenced_metrics(dashboard: &str) -> std::collections::BTreeSet<String> {
    let json: serde_json::Value = serde_json::from_str(dashboard).expect("the dashboard is JSON");
    let text = json.to_string();
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("firepit_"))
        .map(str::to_owned)
        .collect()
}

async fn wait_for_alert(browser: &Browser) -> String {
    let started = Instant::now();
    loop {
        if let Ok(text) = browser.client.get_alert_text().await {
            return text;
        }
        assert!(started.elapsed() < SHORT, "no confirmation was asked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
