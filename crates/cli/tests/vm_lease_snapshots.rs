//! Snapshots and forks of a lease through the daemon's API, on real VMs (issue 19), sharing one
//! daemon (shape `nat`: a NAT network, so that each VM has a MAC and an address):
//! - a file and a background counting process written before a snapshot are seen by three leases
//!   started from it, the process counting on in each; deleting the snapshot frees its directory;
//!   an unknown snapshot id is `404 snapshot_not_found`;
//! - four forks differ in hostname, machine id, MAC, address and fresh random bytes; a file
//!   written in one is absent in the others and in the parent, which runs on;
//! - a shape whose image is the snapshot (`snapshot:ID`) keeps warm VMs that see its file, each
//!   with its own hostname and address, and refills; the snapshot cannot be deleted meanwhile.

mod common;

use std::time::Instant;

use common::shared_daemon::{self, Shared};
use firepit_api::{
    AcquireRequest, ErrorCode, ExecBody, ForkRequest, NetworkSpec, OutputChannel, OutputQuery, Program,
    ShapeSpec, StartProcessBody,
};
use firepit_client::Client;
use tokio::sync::OnceCell;

/// The shared daemon, with shape `nat` registered and full.
async fn daemon() -> &'static Shared {
    static NAT: OnceCell<()> = OnceCell::const_new();
    let shared = shared_daemon::daemon("snapshots", 256, 1).await;
    NAT.get_or_init(|| async {
        let spec = ShapeSpec {
            network: NetworkSpec::nat(),
            memory_mb: 256,
            depth: firepit_api::Depth { low: 2, high: 2 },
            ..ShapeSpec::new("nat", common::image().dir())
        };
        shared.daemon.client().register_shape("nat", &spec).await.unwrap();
    })
    .await;
    shared
}

fn nat() -> AcquireRequest {
    AcquireRequest { shape: "nat".into(), wait_ms: 120_000, ttl_ms: Some(600_000), snapshot: None }
}

async fn sh(client: &Client, lease: &str, script: &str) -> String {
    let out = client.exec(lease, &ExecBody::new(["sh", "-c", script])).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{script}: {}", out.stderr);
    out.stdout.trim().to_owned()
}

/// The numbers the counting process printed from `offset` on, and the next offset.
async fn counted(client: &Client, lease: &str, offset: u64) -> (u64, Vec<u64>) {
    let query =
        OutputQuery { channel: OutputChannel::Stdout, offset, wait_ms: 3000, ..OutputQuery::default() };
    let output = client.process_output(lease, "counter", &query).await.unwrap();
    let numbers = output.data.lines().filter_map(|line| line.trim().parse().ok()).collect();
    (output.next_offset, numbers)
}

/// What tells one VM from another: hostname, machine id, MAC, address, fresh random bytes.
async fn identity(client: &Client, lease: &str) -> Vec<String> {
    let script = "hostname; cat /etc/machine-id; cat /sys/class/net/eth0/address; \
                  ip -4 -o addr show eth0 | awk '{print $4}'; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'";
    sh(client, lease, script).await.lines().map(str::to_owned).collect()
}

#[test]
fn three_leases_from_a_snapshot_see_its_file_and_counting_process_and_delete_frees_it() {
    shared_daemon::run(async {
        let shared = daemon().await;
        let client = shared.daemon.client();
        let source = client.acquire(&nat(), None).await.unwrap();
        let id = source.lease_id.clone();
        sh(&client, &id, "echo from-the-snapshot > /root/note").await;
        let counter = StartProcessBody {
            tag: Some("counter".into()),
            ..Program::new(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done"]).into()
        };
        client.start_process(&id, &counter).await.unwrap();
        let (_, before) = counted(&client, &id, 0).await;
        assert!(!before.is_empty());

        let started = Instant::now();
        let snapshot = client.snapshot_lease(&id).await.unwrap();
        eprintln!("snapshot in {:?}: {} MiB", started.elapsed(), snapshot.size_bytes >> 20);
        let dir = shared.state_dir.join("snapshots").join(&snapshot.snapshot_id);
        assert!(dir.is_dir(), "{} holds the snapshot", dir.display());
        assert_eq!(sh(&client, &id, "cat /root/note").await, "from-the-snapshot", "the source runs on");

        let started = Instant::now();
        let from =
            AcquireRequest { snapshot: Some(snapshot.snapshot_id.clone()), ..AcquireRequest::default() };
        let copies = tokio::join!(
            client.acquire(&from, None),
            client.acquire(&from, None),
            client.acquire(&from, None)
        );
        let copies: Vec<String> =
            [copies.0, copies.1, copies.2].into_iter().map(|lease| lease.unwrap().lease_id).collect();
        eprintln!("3 leases from the snapshot in {:?}", started.elapsed());
        for copy in &copies {
            assert_eq!(sh(&client, copy, "cat /root/note").await, "from-the-snapshot", "{copy}");
            let (next, numbers) = counted(&client, copy, 0).await;
            let last = *numbers.last().unwrap_or_else(|| panic!("{copy}: the counter's output is kept"));
            let (_, more) = counted(&client, copy, next).await;
            assert_eq!(more.first(), Some(&(last + 1)), "{copy}: the process counts on");
        }

        client.delete_snapshot(&snapshot.snapshot_id).await.unwrap();
        assert!(!dir.exists(), "deleting the snapshot frees its directory");
        let error = client.get_snapshot(&snapshot.snapshot_id).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::SnapshotNotFound), "{error}");
        let error = client.acquire(&from, None).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::SnapshotNotFound), "{error}");
        for lease in copies.iter().chain([&id]) {
            client.release(lease).await.unwrap();
        }
    });
}

#[test]
fn four_forks_have_their_own_identity_and_files_and_the_parent_runs_on() {
    shared_daemon::run(async {
        let shared = daemon().await;
        let client = shared.daemon.client();
        let parent = client.acquire(&nat(), None).await.unwrap().lease_id;
        sh(&client, &parent, "echo before > /root/before").await;

        let started = Instant::now();
        let forks =
            client.fork_lease(&parent, &ForkRequest { count: 4, ttl_ms: Some(600_000) }).await.unwrap();
        eprintln!("4 forks in {:?}", started.elapsed());
        let forks: Vec<String> =
            forks.forks.iter().map(|fork| fork.result().unwrap().lease_id.clone()).collect();
        assert_eq!(forks.len(), 4);

        let mut identities = vec![identity(&client, &parent).await];
        for fork in &forks {
            assert_eq!(sh(&client, fork, "cat /root/before").await, "before", "{fork}: the parent's disk");
            identities.push(identity(&client, fork).await);
        }
        for (field, name) in ["hostname", "machine id", "MAC", "address", "random bytes"].iter().enumerate() {
            let values: std::collections::BTreeSet<&str> =
                identities.iter().map(|identity| identity[field].as_str()).collect();
            assert_eq!(values.len(), 5, "every VM has its own {name}: {identities:?}");
        }

        sh(&client, &forks[0], "echo mine > /root/after").await;
        for other in forks[1..].iter().chain([&parent]) {
            assert_eq!(sh(&client, other, "test -e /root/after && echo seen || echo absent").await, "absent");
        }
        assert_eq!(sh(&client, &parent, "cat /root/before").await, "before", "the parent runs on");
        for lease in forks.iter().chain([&parent]) {
            client.release(lease).await.unwrap();
        }
    });
}

/// Polls `GET /v1/pools` until shape `name` holds `ready` warm VMs (at most 120 s).
async fn until_ready(client: &Client, name: &str, ready: usize) {
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let pools = client.pools().await.unwrap();
        let shape =
            pools.shapes.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("{name} is listed"));
        if shape.ready >= ready {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: {ready} ready VMs within 120 s: {shape:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[test]
fn a_shape_on_a_snapshot_keeps_warm_clones_that_see_its_file_with_their_own_identity() {
    shared_daemon::run(async {
        let shared = daemon().await;
        let client = shared.daemon.client();
        let source = client.acquire(&nat(), None).await.unwrap().lease_id;
        sh(&client, &source, "echo from-the-snapshot > /root/note").await;
        let snapshot = client.snapshot_lease(&source).await.unwrap().snapshot_id;

        let on = |image: String| ShapeSpec {
            network: NetworkSpec::nat(),
            memory_mb: 256,
            depth: firepit_api::Depth { low: 2, high: 2 },
            ..ShapeSpec::new("warm", image)
        };
        let error = client.register_shape("warm", &on("snapshot:s-none".into())).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::SnapshotNotFound), "{error}");
        let bigger = ShapeSpec { memory_mb: 512, ..on(format!("snapshot:{snapshot}")) };
        let error = client.register_shape("warm", &bigger).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::InvalidShape), "{error}");
        assert!(error.to_string().contains("memory_mb = 256"), "the snapshot's size is named: {error}");

        let started = Instant::now();
        client.register_shape("warm", &on(format!("snapshot:{snapshot}"))).await.unwrap();
        until_ready(&client, "warm", 2).await;
        eprintln!("2 warm VMs from the snapshot in {:?}", started.elapsed());

        let warm = AcquireRequest { shape: "warm".into(), ..nat() };
        let leases = [client.acquire(&warm, None).await.unwrap(), client.acquire(&warm, None).await.unwrap()];
        let mut identities = Vec::new();
        for lease in &leases {
            assert_eq!(lease.shape, "warm");
            let id = &lease.lease_id;
            assert_eq!(sh(&client, id, "cat /root/note").await, "from-the-snapshot", "{id}");
            identities.push(identity(&client, id).await);
        }
        assert_ne!(identities[0][0], identities[1][0], "hostnames differ: {identities:?}");
        assert_ne!(identities[0][3], identities[1][3], "addresses differ: {identities:?}");
        let started = Instant::now();
        until_ready(&client, "warm", 2).await;
        eprintln!("the pool refilled 2 VMs in {:?}", started.elapsed());

        let error = client.delete_snapshot(&snapshot).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::SnapshotInUse), "{error}");
        assert!(error.to_string().contains("`warm`"), "the shape is named: {error}");
        client.unregister_shape("warm").await.unwrap();
        client.delete_snapshot(&snapshot).await.unwrap();
        for lease in leases.iter().map(|lease| &lease.lease_id).chain([&source]) {
            client.release(lease).await.unwrap();
        }
    });
}
