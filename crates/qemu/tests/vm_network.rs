//! Networking with real VMs: egress policy against a server elsewhere, DNS answered by the host,
//! port forwards into the guest, distinct MACs and addresses across snapshot clones, no NIC for
//! `network = "none"`, and a flooding guest that does not stall the others.
//!
//! "Elsewhere" is a network namespace each test makes (`firepit_testnet::TestNet`: a veth pair on
//! a /30 of 198.18.0.0/15, removed with the test): the guest's user-mode NAT runs in QEMU on the
//! host, so the guest reaches it through the host's routing, as it would reach any remote server.
//! Nothing here contacts the machine's own address or anything outside this machine. Where a
//! refusal could also come from the destination (a reset from a closed port), the VM's `denied`
//! counter shows that the filter refused it.
//!
//! One provider for the binary (snapshot fill, templates in a private directory removed at exit);
//! the tests take turns (`TURN`): each boots several VMs and the machine has two cores.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firepit_agent::ExecRequest;
use firepit_pool::{Provider, ShapeKey};
use firepit_qemu::{EgressPolicy, FillKind, NetworkSpec, QemuProvider, QemuVm, VmSpec};
use firepit_testnet::{HttpServer, TestNet};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, OnceCell};

static TURN: Mutex<()> = Mutex::const_new(());

async fn provider() -> &'static QemuProvider {
    static PROVIDER: OnceCell<QemuProvider> = OnceCell::const_new();
    PROVIDER.get_or_init(|| async { common::shared_provider("network") }).await
}

/// A snapshot shape of the test image named `name` with `network`.
fn shape(name: &str, network: NetworkSpec) -> (ShapeKey, VmSpec) {
    let mut spec = common::snapshot_spec(&common::image());
    spec.network = network;
    (ShapeKey::new(name), spec)
}

async fn setup() -> &'static QemuProvider {
    provider().await
}

/// A VM of shape `name` with `network`.
async fn create(provider: &QemuProvider, name: &str, network: NetworkSpec) -> QemuVm {
    let (key, spec) = shape(name, network);
    provider.create(&key, &spec).await.unwrap()
}

fn policy(json: &str) -> EgressPolicy {
    serde_json::from_str(json).unwrap()
}

/// Runs `script` with `sh -c` in the guest (30 s at most); returns (exit code, stdout, stderr).
async fn sh(vm: &QemuVm, script: &str) -> (Option<i32>, String, String) {
    let request = ExecRequest {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        timeout_ms: 30_000,
        ..Default::default()
    };
    let out = vm.exec_request(request).await.unwrap();
    (out.exit_code, out.stdout_lossy(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn egress_policy_lets_a_guest_fetch_from_a_listed_server_or_refuses_at_once() {
    common::run(async {
        let _turn = TURN.lock().await;
        let provider = setup().await;
        let net = TestNet::create().unwrap();
        let outside = HttpServer::start(&net, "hello-from-outside").await.unwrap();
        let unlisted = HttpServer::start(&net, "unlisted-port").await.unwrap();
        let loopback = HttpServer::on_loopback("hello-from-loopback").await.unwrap();
        let (server, port, lo_port) = (net.addr(), outside.addr().port(), loopback.addr().port());
        let listed = NetworkSpec {
            egress: policy(&format!(r#"["{server}:{port}", "localhost"]"#)),
            host_ports: vec![lo_port],
            ..NetworkSpec::nat()
        };
        let allowed = create(provider, "egress-listed", listed).await;
        let deny = NetworkSpec { egress: EgressPolicy::Deny, ..NetworkSpec::nat() };
        let denied = create(provider, "egress-deny", deny).await;
        let everything = create(provider, "egress-allow", NetworkSpec::nat()).await;
        assert_eq!(allowed.fill(), FillKind::Snapshot);

        let fetch = |ip: String, port: u16| format!("wget -O - http://{ip}:{port}/");
        let (code, out, err) = sh(&allowed, &fetch(server.to_string(), port)).await;
        assert_eq!((code, out.as_str()), (Some(0), "hello-from-outside"), "stderr: {err}");
        let (code, out, err) = sh(&everything, &fetch(server.to_string(), unlisted.addr().port())).await;
        assert_eq!((code, out.as_str()), (Some(0), "unlisted-port"), "allow reaches any server: {err}");
        let gateway = allowed.network().unwrap().gateway.to_string();
        let (code, out, err) = sh(&allowed, &fetch(gateway.clone(), lo_port)).await;
        assert_eq!((code, out.as_str()), (Some(0), "hello-from-loopback"), "host port: {err}");

        // Refused by the filter, not hung: a reset comes back at once, and the VM counts it.
        let host_end = net.host_addr().to_string();
        for (vm, ip, port, why) in [
            (&denied, server.to_string(), port, "egress = deny"),
            (&everything, host_end, port, "allow never includes the host's own addresses"),
            (&allowed, server.to_string(), unlisted.addr().port(), "a port the list does not name"),
            (&denied, gateway.clone(), lo_port, "a host port of another shape"),
            (&allowed, "127.0.0.1".to_string(), lo_port, "loopback is the guest's own"),
        ] {
            let refused_before = vm.network_stats().unwrap().denied;
            let started = Instant::now();
            let (code, _, err) = sh(vm, &fetch(ip.clone(), port)).await;
            assert_ne!(code, Some(0), "{why}: fetching {ip}:{port} worked");
            assert!(started.elapsed() < Duration::from_secs(10), "{why}: took {:?}", started.elapsed());
            if ip != "127.0.0.1" {
                assert!(err.contains("refused"), "{why}: {err}");
                let refused = vm.network_stats().unwrap().denied - refused_before;
                assert!(refused >= 1, "{why}: the filter did not refuse it (the destination did)");
            }
        }

        // A lease narrows: the listed VM loses the server once narrowed to another address.
        allowed.narrow_egress(policy(r#"["10.9.9.9"]"#)).unwrap();
        let (code, _, err) = sh(&allowed, &fetch(server.to_string(), port)).await;
        assert_ne!(code, Some(0), "narrowed away: {err}");
        let stats = allowed.network_stats().unwrap();
        assert!(stats.bytes_out > 0 && stats.bytes_in > 0 && stats.denied >= 2, "{stats:?}");
        for vm in [allowed, denied, everything] {
            provider.destroy(vm).await;
        }
        let totals = provider.network_stats();
        assert!(totals.iter().any(|(s, t)| s.as_str() == "egress-listed" && t.bytes_out > 0), "{totals:?}");
    });
}

#[test]
fn the_host_answers_dns_for_listed_names_only() {
    common::run(async {
        let _turn = TURN.lock().await;
        let provider = setup().await;
        let spec = NetworkSpec { egress: policy(r#"["localhost", "*.allowed.test"]"#), ..NetworkSpec::nat() };
        let vm = create(provider, "dns", spec).await;
        let (_, resolv, _) = sh(&vm, "cat /etc/resolv.conf").await;
        assert!(resolv.contains(&format!("nameserver {}", vm.network().unwrap().dns)), "{resolv}");
        let started = Instant::now();
        let (code, out, err) = sh(&vm, "nslookup not-listed.example").await;
        assert_ne!(code, Some(0));
        assert!(format!("{out}{err}").contains("NXDOMAIN"), "{out}{err}");
        assert!(started.elapsed() < Duration::from_secs(10), "answered, not timed out");
        // Listed: the host resolves it (to loopback, which the guest may not reach, so the answer
        // carries no address) and says the name exists.
        let (_, out, err) = sh(&vm, "nslookup localhost").await;
        assert!(!format!("{out}{err}").contains("NXDOMAIN"), "{out}{err}");
        assert!(!out.contains("127.0.0.1"), "an address the guest cannot reach is not handed out: {out}");
        assert!(vm.network_stats().unwrap().dns_queries >= 2);
        provider.destroy(vm).await;
    });
}

#[test]
fn a_port_forward_reaches_a_guest_server_and_is_gone_with_the_vm() {
    common::run(async {
        let _turn = TURN.lock().await;
        let provider = setup().await;
        let vm = create(provider, "forward", NetworkSpec::nat()).await;
        let (code, _, err) = sh(
            &vm,
            "mkdir -p /tmp/www && echo guest-page > /tmp/www/index.html && httpd -p 8000 -h /tmp/www",
        )
        .await;
        assert_eq!(code, Some(0), "{err}");
        let addr = vm.forward_port(8000).await.unwrap();
        assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "loopback unless configured");
        assert_eq!(vm.forward_port(8000).await.unwrap(), addr, "asking again gives the same forward");
        let reply = common::http_get(addr).await.unwrap();
        assert!(reply.ends_with("guest-page\n"), "{reply}");
        let second = vm.forward_port(8001).await.unwrap();
        assert_ne!(second.port(), addr.port());
        vm.remove_forward(8001).await.unwrap();
        assert!(TcpStream::connect(second).await.is_err(), "removed forward still listens");
        assert_eq!(vm.forwards(), [(8000, addr)]);
        provider.destroy(vm).await;
        let gone = TcpStream::connect(addr).await;
        assert!(gone.is_err(), "the forward outlived its VM");
    });
}

#[test]
fn eight_clones_have_their_own_mac_and_address_and_each_its_own_forward() {
    common::run(async {
        let _turn = TURN.lock().await;
        let provider = setup().await;
        let (key, spec) = shape("clones", NetworkSpec::nat());
        let mut vms = Vec::new();
        for _ in 0..8 {
            vms.push(provider.create(&key, &spec).await.unwrap());
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, vm) in vms.iter().enumerate() {
            assert_eq!(vm.fill(), FillKind::Snapshot, "a clone of the template");
            let info = vm.network().unwrap();
            let script = format!(
                "cat /sys/class/net/eth0/address; ip -4 -o addr show eth0; ip route; \
                 mkdir -p /tmp/www && echo clone-{i} > /tmp/www/index.html && httpd -p 80 -h /tmp/www"
            );
            let (code, out, err) = sh(vm, &script).await;
            assert_eq!(code, Some(0), "{err}");
            assert!(out.starts_with(&info.mac), "guest MAC {out} vs {}", info.mac);
            assert!(out.contains(&format!("inet {}/16", info.ipv4)), "{out}");
            assert!(out.contains(&format!("default via {}", info.gateway)), "{out}");
            assert!(
                seen.insert(info.mac.clone()) && seen.insert(info.ipv4.to_string()),
                "{info:?} not unique"
            );
        }
        let forwards: Vec<SocketAddr> = {
            let mut forwards = Vec::new();
            for vm in &vms {
                forwards.push(vm.forward_port(80).await.unwrap());
            }
            forwards
        };
        for (i, addr) in forwards.iter().enumerate() {
            let reply = common::http_get(*addr).await.unwrap();
            assert!(reply.ends_with(&format!("clone-{i}\n")), "forward {i} reached {reply}");
        }
        for vm in vms {
            provider.destroy(vm).await;
        }
    });
}

#[test]
fn a_shape_without_network_has_only_lo() {
    common::run(async {
        let _turn = TURN.lock().await;
        let provider = setup().await;
        let vm = create(provider, "none", NetworkSpec::default()).await;
        let (_, out, _) = sh(&vm, "ls /sys/class/net").await;
        assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"]);
        assert!(vm.network().is_none() && vm.network_stats().is_none());
        let err = vm.forward_port(80).await.unwrap_err().to_string();
        assert!(err.contains("has no network"), "{err}");
        provider.destroy(vm).await;
    });
}

#[test]
fn a_guest_flooding_the_network_does_not_stall_the_provider_or_other_vms() {
    common::run(async {
        let _turn = TURN.lock().await;
        let provider = setup().await;
        let net = TestNet::create().unwrap();
        let server = HttpServer::start(&net, "still-here").await.unwrap();
        let spec = NetworkSpec { egress: policy(&format!(r#"["{}"]"#, server.addr())), ..NetworkSpec::nat() };
        let (key, spec) = shape("flood", spec);
        let flooder = Arc::new(provider.create(&key, &spec).await.unwrap());
        let victim = provider.create(&key, &spec).await.unwrap();
        // Denied connects (reset by the filter: a port of the namespace the list does not name)
        // and allowed ones (through the NAT), as fast as the guest can, for 20 s.
        let flood = |target: String| {
            let vm = flooder.clone();
            tokio::spawn(async move {
                sh(&vm, &format!("/sbin/firepit-agent net-probe flood {target} 20")).await.1
            })
        };
        let denied = flood(format!("{}:9", net.addr()));
        let allowed = flood(server.addr().to_string());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut slowest = Duration::ZERO;
        let flood_ends = Instant::now() + Duration::from_secs(15);
        while Instant::now() < flood_ends {
            let started = Instant::now();
            let (code, out, err) = sh(&victim, &format!("wget -O - http://{}/", server.addr())).await;
            assert_eq!((code, out.as_str()), (Some(0), "still-here"), "{err}");
            slowest = slowest.max(started.elapsed());
        }
        let started = Instant::now();
        let fresh = provider.create(&key, &spec).await.unwrap();
        let create = started.elapsed();
        let (denied, allowed) = (denied.await.unwrap(), allowed.await.unwrap());
        eprintln!(
            "flood: denied {denied:?}, allowed {allowed:?}; victim's slowest fetch {slowest:?}; a create took {create:?}"
        );
        let refused: u64 = denied.split_whitespace().nth(3).and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(refused > 100, "the flood was not much of one: {denied}");
        assert!(slowest < Duration::from_secs(10), "the other VM stalled: {slowest:?}");
        assert!(create < Duration::from_secs(30), "the provider stalled: {create:?}");
        assert!(flooder.network_stats().unwrap().denied >= refused);
        provider.destroy(fresh).await;
        provider.destroy(victim).await;
        let flooder = Arc::try_unwrap(flooder).expect("flood tasks are done");
        provider.destroy(flooder).await;
    });
}
