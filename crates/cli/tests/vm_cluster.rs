//! Past one host, on real VMs and real processes: one etcd member, two `firepit serve` daemons
//! (snapshot shape `small`, depth 2, TCP on 127.0.0.1, `[cluster]`), one `firepit gateway`. Leases
//! spread over both hosts; exec, files, the PTY WebSocket and the CLI work through the gateway;
//! `kill -9` of a daemon: its leases answer `410 host_lost`, new acquires land on the other host
//! without an error. The in-process tests of `crates/gateway` cover drain, etcd outages and
//! gateway restarts on the fake backend; `vm_cluster_full.rs` runs issue 22's whole scenario.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use firepit_api::{AcquireRequest, ExecBody, WriteFileQuery};
use firepit_client::{Client, ClientError, Method, PtyEvent, PtyOptions};
use firepit_tools::child_cluster::{CLUSTER_TOKEN, ChildCluster, ClusterSettings};
use tokio::io::AsyncReadExt;

fn small() -> AcquireRequest {
    AcquireRequest { shape: "small".into(), wait_ms: 120_000, ttl_ms: None }
}

/// The host a gateway names for a lease.
async fn host_of(client: &Client, lease_id: &str) -> String {
    let response = client.request(Method::GET, &format!("/v1/leases/{lease_id}"), None, &[]).await.unwrap();
    let view: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    view["host"].as_str().unwrap_or_else(|| panic!("no host in {view}")).to_owned()
}

/// Runs a program on a terminal through `client`; returns what it printed and its exit code.
async fn on_pty(client: &Client, lease_id: &str, script: &str) -> (String, Option<i32>) {
    let options = PtyOptions { argv: vec!["sh".into(), "-c".into(), script.into()], ..Default::default() };
    let mut pty = client.pty(lease_id, &options).await.unwrap();
    let (mut screen, mut status) = (Vec::new(), None);
    while let Some(event) =
        tokio::time::timeout(Duration::from_secs(30), pty.next_event()).await.unwrap().unwrap()
    {
        match event {
            PtyEvent::Started { .. } => {}
            PtyEvent::Output(bytes) => screen.extend(bytes),
            PtyEvent::Exit(exit) => status = exit.exit_code,
            other => panic!("{other:?}"),
        }
    }
    (String::from_utf8_lossy(&screen).into_owned(), status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_spread_work_through_the_gateway_and_a_killed_hosts_leases_are_lost() {
    let settings =
        ClusterSettings::new(env!("CARGO_BIN_EXE_firepit").into(), common::image().dir().to_owned());
    let started = Instant::now();
    let mut cluster = ChildCluster::start(&settings).await.unwrap();
    eprintln!("cluster up in {:?}", started.elapsed());
    let client = cluster.gateway_client(0);

    let mut leases: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..6 {
        let id = client.acquire(&small(), None).await.unwrap().lease_id;
        leases.insert(id.clone(), host_of(&client, &id).await);
    }
    let per_host = |host: &str| leases.values().filter(|h| *h == host).count();
    assert!(per_host("host-0") >= 2 && per_host("host-1") >= 2, "unbalanced: {leases:?}");

    for (id, host) in &leases {
        let out = client.exec(id, &ExecBody::new(["echo", host.as_str()])).await.unwrap();
        assert_eq!(out.stdout, format!("{host}\n"));
    }
    for host in ["host-0", "host-1"] {
        let id = leases.iter().find(|(_, h)| *h == host).map(|(id, _)| id.clone()).unwrap();
        let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
        let query = WriteFileQuery { path: "/tmp/blob".into(), ..Default::default() };
        client.write_file(&id, &query, std::io::Cursor::new(data.clone())).await.unwrap();
        let mut back = Vec::new();
        client.read_file(&id, "/tmp/blob").await.unwrap().read_to_end(&mut back).await.unwrap();
        assert!(back == data, "the file came back different from {host}");
        let (screen, status) = on_pty(&client, &id, "echo on-a-terminal; exit 3").await;
        assert!(screen.contains("on-a-terminal"), "{screen}");
        assert_eq!(status, Some(3));
    }

    // The CLI, unchanged, through the gateway.
    let token_file = cluster.dir().join("token");
    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_firepit"))
            .args(args)
            .env("FIREPIT_URL", format!("http://{}", cluster.gateways[0].addr()))
            .env("FIREPIT_TOKEN_FILE", &token_file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "firepit {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let status = cli(&["status"]);
    assert!(status.contains("host-0") && status.contains("host-1") && status.contains("2 hosts"), "{status}");
    let (id, _) = leases.iter().next().unwrap();
    assert_eq!(cli(&["exec", id, "--", "echo", "via-cli"]), "via-cli\n");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), CLUSTER_TOKEN);

    // kill -9 one host.
    cluster.kill_daemon(1).await;
    let killed = Instant::now();
    let mut acquires = 0;
    while cluster.hosts_seen(0).await.contains(&"host-1".to_owned()) {
        assert!(killed.elapsed() < Duration::from_secs(15), "the dead host is still placed on after 15 s");
        let id = client
            .acquire(&small(), None)
            .await
            .unwrap_or_else(|e| panic!("acquire while a host died: {e}"))
            .lease_id;
        assert_eq!(host_of(&client, &id).await, "host-0");
        client.release(&id).await.unwrap();
        acquires += 1;
    }
    eprintln!(
        "host gone from the gateway {:?} after kill -9 ({acquires} acquires meanwhile, no error)",
        killed.elapsed()
    );
    for (id, host) in &leases {
        let result = client.exec(id, &ExecBody::new(["true"])).await;
        if host == "host-1" {
            match result {
                Err(ClientError::Api { status, error, .. }) => {
                    assert_eq!((status.as_u16(), error.as_str()), (410, "host_lost"))
                }
                other => panic!("expected 410 host_lost, got {other:?}"),
            }
        } else {
            assert_eq!(result.unwrap().exit_code, Some(0));
            client.release(id).await.unwrap();
        }
    }
}
