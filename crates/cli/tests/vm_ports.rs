//! Networking through the daemon's API on real VMs: a port forward to a server running in the
//! guest (a background process), closed with the lease, at most 64 per lease; `409` on a shape without a network;
//! egress narrowed at acquire (the guest loses a host server its shape allows) and widening
//! refused; traffic on `/metrics`. Also `firepit run -p` and `firepit port`.
//!
//! One daemon is shared by the binary's tests: its configured shape `default` has no network, and
//! a shape `web` (`network = {mode = "nat", egress = ["<outside address>"]}`, depth 2) is registered
//! through the API on first use. The outside address is a network namespace the binary makes
//! (`firepit_testnet::TestNet`, a veth pair on a /30 of 198.18.0.0/15): the guests' NAT reaches it
//! through the host's routing; nothing here contacts the machine's own address.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::shared_daemon::{self, Shared};
use firepit_api::{AcquireBody, AcquireRequest, ExecBody, NetworkSpec, Program, ShapeSpec, StartProcessBody};
use firepit_client::{Client, ClientError, Method};
use firepit_daemon::exposition_lint::{check_openmetrics, promtool_check};
use firepit_testnet::{HttpServer, TestNet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

/// The binary's "elsewhere", named in shape `web`'s egress list; the kernel removes it (and its
/// veth pair) when the test process ends.
fn outside() -> &'static TestNet {
    static NET: OnceLock<TestNet> = OnceLock::new();
    NET.get_or_init(|| TestNet::create().unwrap())
}

/// The shared daemon, with shape `web` registered and full.
async fn daemon() -> &'static Shared {
    static WEB: OnceCell<()> = OnceCell::const_new();
    let shared = shared_daemon::daemon("ports", 256, 1).await;
    WEB.get_or_init(|| async {
        let client = shared.daemon.client();
        let network = NetworkSpec {
            egress: serde_json::from_str(&format!(r#"["{}"]"#, outside().addr())).unwrap(),
            ..NetworkSpec::nat()
        };
        let spec = ShapeSpec {
            network,
            memory_mb: 256,
            depth: firepit_api::Depth { low: 2, high: 2 },
            ..ShapeSpec::new("web", common::image().dir())
        };
        client.register_shape("web", &spec).await.unwrap();
    })
    .await;
    shared
}

fn acquire(shape: &str, egress: Option<String>) -> AcquireBody {
    let request = AcquireRequest { shape: shape.into(), wait_ms: 120_000, ttl_ms: None, snapshot: None };
    AcquireBody { egress: egress.map(|json| serde_json::from_str(&json).unwrap()), ..request.into() }
}

/// Runs `script` with `sh -c` (30 s at most); returns (exit code, stdout, stderr).
async fn sh(client: &Client, lease: &str, script: &str) -> (Option<i32>, String, String) {
    let body = ExecBody { timeout_ms: 30_000, ..ExecBody::new(["sh", "-c", script]) };
    let out = client.exec(lease, &body).await.unwrap();
    let stderr = format!("{}; {out:?}", out.stderr);
    (out.exit_code, out.stdout, stderr)
}

/// `GET /` through `addr`; `Err` until something answers.
async fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await??;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply)).await??;
    Ok(reply)
}

/// The value of a metric line starting with `series` (0 when absent).
fn metric(text: &str, series: &str) -> u64 {
    let line = text.lines().find(|line| line.starts_with(series));
    line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn a_forward_reaches_a_guest_server_and_closes_with_the_lease() {
    shared_daemon::run(async {
        let client = daemon().await.daemon.client();
        let lease = client.acquire_with(&acquire("web", None), None).await.unwrap().lease_id;
        let (code, _, err) = sh(&client, &lease, "mkdir -p /www && echo guest-page > /www/index.html").await;
        assert_eq!(code, Some(0), "{err}");
        let server = StartProcessBody {
            tag: Some("httpd".into()),
            ..Program::new(["httpd", "-f", "-p", "8000", "-h", "/www"]).into()
        };
        client.start_process(&lease, &server).await.unwrap();
        let started = Instant::now();
        let addr = client.forward_port(&lease, 8000).await.unwrap();
        let forward_ms = started.elapsed().as_secs_f64() * 1e3;
        assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST, "forwards bind loopback");
        let listed = client.ports(&lease).await.unwrap();
        assert_eq!(listed.iter().map(|f| (f.guest_port, f.host_addr)).collect::<Vec<_>>(), [(8000, addr)]);

        // The server may need a moment to listen: retry within a deadline.
        let deadline = Instant::now() + Duration::from_secs(30);
        let reply = loop {
            match http_get(addr).await {
                Ok(reply) if reply.ends_with("guest-page\n") => break reply,
                other if Instant::now() > deadline => panic!("no answer through {addr}: {other:?}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        assert!(reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"), "{reply}");
        let mut connects = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            let stream = TcpStream::connect(addr).await.unwrap();
            connects.push(started.elapsed().as_secs_f64() * 1e3);
            drop(stream);
            let started = Instant::now();
            http_get(addr).await.unwrap();
            connects.push(started.elapsed().as_secs_f64() * 1e3);
        }
        eprintln!("forward request {forward_ms:.1} ms; connect / GET through it (ms): {connects:.1?}");

        let metrics = client.metrics().await.unwrap();
        for direction in ["in", "out"] {
            let series = format!(r#"firepit_vm_network_bytes_total{{shape="web",direction="{direction}"}}"#);
            assert!(metric(&metrics, &series) > 0, "{series} is 0 after traffic:\n{metrics}");
        }
        assert!(metric(&metrics, r#"firepit_vm_network_frames_total{shape="web",direction="out"}"#) > 0);
        // Every VM of the shape was warmed up (the series is there, at 0, for every shape).
        for shape in ["web", "default"] {
            let series = format!(r#"firepit_vm_warm_up_failures_total{{shape="{shape}"}} 0"#);
            assert!(metrics.lines().any(|line| line == series), "no `{series}` in:\n{metrics}");
        }
        // The real backend's series, in both formats the daemon serves, pass their checks.
        check_openmetrics(&metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
        let classic =
            client.request(Method::GET, "/metrics", None, &[("accept", "text/plain")]).await.unwrap();
        promtool_check(&classic.text()).unwrap_or_else(|e| panic!("{e}\n{}", classic.text()));

        // A second forward to the same server, closed on its own: the first one stays.
        let second = client.forward_port(&lease, 8000).await.unwrap();
        assert_eq!(second, addr, "the same guest port is the same forward");
        client
            .start_process(&lease, &Program::new(["httpd", "-f", "-p", "8001", "-h", "/www"]).into())
            .await
            .unwrap();
        let other = client.forward_port(&lease, 8001).await.unwrap();
        client.remove_forward(&lease, 8001).await.unwrap();
        assert!(TcpStream::connect(other).await.is_err(), "the closed forward {other} still accepts");
        assert_eq!(client.ports(&lease).await.unwrap().len(), 1);
        assert!(http_get(addr).await.unwrap().ends_with("guest-page\n"), "the other forward still works");

        // Forwards per lease are bounded (`limits.max_forwards_per_lease`, 64 by default): the
        // one past it is 429 limit_reached, and closing one makes room again.
        for port in 1..64 {
            client.forward_port(&lease, 20_000 + port).await.unwrap();
        }
        let refused = client.forward_port(&lease, 20_064).await.unwrap_err();
        assert_eq!(refused.code(), Some(firepit_api::ErrorCode::LimitReached), "{refused}");
        client.remove_forward(&lease, 20_001).await.unwrap();
        client.forward_port(&lease, 20_064).await.unwrap();

        client.release(&lease).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "the forward {addr} outlived its lease");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn a_shape_without_network_answers_409_network_disabled() {
    shared_daemon::run(async {
        let client = daemon().await.daemon.client();
        let lease = client.acquire_with(&acquire("default", None), None).await.unwrap().lease_id;
        match client.forward_port(&lease, 8000).await {
            Err(ClientError::Api { status, error, message }) => {
                assert_eq!((status.as_u16(), error.as_str()), (409, "network_disabled"));
                assert!(message.contains("`default`") && message.contains("network = \"nat\""), "{message}");
            }
            other => panic!("expected 409 network_disabled, got {other:?}"),
        }
        client.release(&lease).await.unwrap();
    });
}

#[test]
fn egress_narrowed_at_acquire_cuts_off_what_the_shape_allows_and_widening_is_refused() {
    shared_daemon::run(async {
        let client = daemon().await.daemon.client();
        let server = HttpServer::start(outside(), "hello-from-outside").await.unwrap();
        let other = HttpServer::start(outside(), "another-port").await.unwrap();
        let fetch = format!("wget -O - http://{}/", server.addr());

        let full = client.acquire_with(&acquire("web", None), None).await.unwrap().lease_id;
        let (code, out, err) = sh(&client, &full, &fetch).await;
        assert_eq!((code, out.as_str()), (Some(0), "hello-from-outside"), "the shape allows it: {err}");
        client.release(&full).await.unwrap();

        // Narrowed to another server of the same address: this one is refused by the filter.
        let narrow = Some(format!(r#"["{}"]"#, other.addr()));
        let narrowed = client.acquire_with(&acquire("web", narrow), None).await.unwrap().lease_id;
        let started = Instant::now();
        let (code, _, err) = sh(&client, &narrowed, &fetch).await;
        assert_ne!(code, Some(0), "the lease narrowed this away");
        assert!(started.elapsed() < Duration::from_secs(10), "refused, not hung: {:?}", started.elapsed());
        assert!(err.contains("refused"), "{err}");
        // ... while what it was narrowed to still answers (the server's address is up).
        let (code, out, err) = sh(&client, &narrowed, &format!("wget -O - http://{}/", other.addr())).await;
        assert_eq!((code, out.as_str()), (Some(0), "another-port"), "{err}");
        client.release(&narrowed).await.unwrap();

        let leased_before =
            client.pools().await.unwrap().shapes.iter().find(|s| s.name == "web").unwrap().leased;
        for wider in [r#""allow""#.to_owned(), r#"["10.0.0.0/8"]"#.to_owned()] {
            match client.acquire_with(&acquire("web", Some(wider.clone())), None).await {
                Err(ClientError::Api { status, error, .. }) => {
                    assert_eq!((status.as_u16(), error.as_str()), (400, "egress_widens"), "{wider}");
                }
                other => panic!("{wider}: expected 400 egress_widens, got {other:?}"),
            }
        }
        let pools = client.pools().await.unwrap();
        let web = pools.shapes.iter().find(|s| s.name == "web").unwrap();
        assert_eq!(web.leased, leased_before, "a refused acquire leased nothing");
    });
}

#[test]
fn run_with_publish_prints_the_forward_first_and_port_lists_it() {
    shared_daemon::run(async {
        let shared = daemon().await;
        let socket = shared.daemon.socket().to_owned();
        let firepit = env!("CARGO_BIN_EXE_firepit");
        let output = tokio::process::Command::new(firepit)
            .args(["run", "--socket"])
            .arg(&socket)
            .args(["--shape", "web", "-p", "8000", "-p", "9000", "--", "echo", "ran"])
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "ran\n");
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(lines.len() >= 2, "{stderr}");
        assert!(lines[0].starts_with("guest 8000 -> 127.0.0.1:"), "{stderr}");
        assert!(lines[1].starts_with("guest 9000 -> 127.0.0.1:"), "{stderr}");

        let client = shared.daemon.client();
        let lease = client.acquire_with(&acquire("web", None), None).await.unwrap().lease_id;
        let port = |args: &[&str]| {
            let mut command = std::process::Command::new(firepit);
            command.args(["port", "--socket"]).arg(&socket).arg(&lease).args(args);
            command.output().unwrap()
        };
        let forwarded = port(&["8000"]);
        assert!(forwarded.status.success(), "{}", String::from_utf8_lossy(&forwarded.stderr));
        let addr: SocketAddr = String::from_utf8_lossy(&forwarded.stdout).trim().parse().unwrap();
        let listed = port(&[]);
        assert_eq!(String::from_utf8_lossy(&listed.stdout), format!("8000 {addr}\n"));
        assert!(port(&["8000", "--close"]).status.success());
        assert_eq!(String::from_utf8_lossy(&port(&[]).stdout), "");
        let again = port(&["8000", "--close"]);
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("forward_not_found"), "{again:?}");
        client.release(&lease).await.unwrap();
    });
}
