//! The dashboard on the TCP listener, over HTTP, with the fake backend: what a browser cannot be
//! made to get wrong in the browser tests (`crates/cli/tests/vm_ui_browser.rs`) — sessions,
//! CSRF, origins, and that the API keeps refusing cookies.

use std::net::SocketAddr;

use firepit_api::AcquireRequest;
use firepit_daemon::test_daemon::{TOKEN, TestDaemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 exchange on a new connection (`Connection: close`), as a browser would send it.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Answer { status, head: head.to_owned(), body: body.to_owned() }
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// Logs in with the token; returns the `Cookie` header value and the page's CSRF token.
async fn log_in(addr: SocketAddr) -> (String, String) {
    let answer = send(addr, "POST", "/ui/login", &[FORM], &format!("token={TOKEN}&next=%2Fui%2F")).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let set_cookie = answer.header("set-cookie").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page = send(addr, "GET", "/ui/", &[("Cookie", &cookie)], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.body.split(r#"name="csrf-token" content=""#).nth(1).unwrap().split('"').next().unwrap();
    (cookie, csrf.to_owned())
}

#[tokio::test]
async fn without_a_session_pages_redirect_to_the_login_and_nothing_else_answers() {
    let daemon = TestDaemon::start_tcp().await;
    let addr = daemon.tcp.unwrap();
    for path in ["/ui/", "/ui/leases", "/ui/leases/l-1", "/ui/no-such-page", "/ui/leases/l-1/files?path=/"] {
        let answer = send(addr, "GET", path, &[], "").await;
        assert_eq!(answer.status, 303, "{path}");
        assert!(answer.header("location").unwrap().starts_with("/ui/login?next="), "{path}");
    }
    let answer = send(addr, "GET", "/ui/leases/stream", &[("HX-Request", "true")], "").await;
    assert_eq!((answer.status, answer.header("hx-redirect")), (401, Some("/ui/login")));
    let answer = send(addr, "POST", "/ui/leases/l-1/release", &[], "").await;
    assert_eq!(answer.status, 401);
    let login = send(addr, "GET", "/ui/login", &[], "").await;
    assert_eq!(login.status, 200);
    let csp = login.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(login.header("x-frame-options"), Some("DENY"));
    daemon.stop().await;
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_a_right_one_starts_a_session() {
    let daemon = TestDaemon::start_tcp().await;
    let addr = daemon.tcp.unwrap();
    let wrong = send(addr, "POST", "/ui/login", &[FORM], "token=not-the-token-at-all").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    assert!(wrong.body.contains("That token is wrong."));
    let forged = send(addr, "GET", "/ui/", &[("Cookie", "firepit_session=0000")], "").await;
    assert_eq!(forged.status, 303, "an unknown session is no session");

    let (cookie, _csrf) = log_in(addr).await;
    let pools = send(addr, "GET", "/ui/pools/table", &[("Cookie", &cookie)], "").await;
    assert!(pools.body.contains("small"), "{}", pools.body);
    let logout_without_csrf = send(addr, "POST", "/ui/logout", &[("Cookie", &cookie)], "").await;
    assert_eq!(logout_without_csrf.status, 403);
    daemon.stop().await;
}

#[tokio::test]
async fn actions_need_the_csrf_token_and_this_origin() {
    let daemon = TestDaemon::start_tcp().await;
    let addr = daemon.tcp.unwrap();
    let lease = daemon
        .client()
        .acquire(&AcquireRequest { shape: "small".into(), wait_ms: 1000, ttl_ms: None, snapshot: None }, None)
        .await
        .unwrap();
    let (cookie, csrf) = log_in(addr).await;
    let release = format!("/ui/leases/{}/release", lease.lease_id);
    let origin = format!("http://{addr}");

    let answer = send(addr, "POST", &release, &[("Cookie", &cookie)], "").await;
    assert_eq!(answer.status, 403, "no CSRF token");
    let answer = send(addr, "POST", &release, &[("Cookie", &cookie), ("X-CSRF-Token", "0123")], "").await;
    assert_eq!(answer.status, 403, "a wrong CSRF token");
    let cross_site =
        [("Cookie", cookie.as_str()), ("X-CSRF-Token", &csrf), ("Origin", "http://evil.example")];
    assert_eq!(send(addr, "POST", &release, &cross_site, "").await.status, 403, "another origin");
    assert_eq!(daemon.backend.leased("small"), 1, "nothing was released so far");

    let same_site = [("Cookie", cookie.as_str()), ("X-CSRF-Token", &csrf), ("Origin", &origin)];
    let answer = send(addr, "POST", &release, &same_site, "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("hx-trigger"), Some("lease-changed"));
    assert_eq!(daemon.backend.leased("small"), 0);
    let page = send(addr, "GET", &format!("/ui/leases/{}", lease.lease_id), &[("Cookie", &cookie)], "").await;
    assert!(page.body.contains(r#"<span class="reason" id="end-reason">released</span>"#), "{}", page.body);
    daemon.stop().await;
}

#[tokio::test]
async fn the_api_takes_no_cookies_only_the_bearer_token() {
    let daemon = TestDaemon::start_tcp().await;
    let addr = daemon.tcp.unwrap();
    let (cookie, csrf) = log_in(addr).await;
    let answer = send(addr, "GET", "/v1/pools", &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], "").await;
    assert_eq!(answer.status, 401);
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(send(addr, "GET", "/v1/pools", &[("Authorization", &bearer)], "").await.status, 200);
    daemon.stop().await;
}
