//! The advertiser, the directory and the route map against a real etcd (Debian's `etcd`, one
//! member on 127.0.0.1): registration, updates, drain, expiry, deregistration, sweeps.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firepit_cluster::{
    AdvertiseConfig, Advertiser, CapacitySource, Directory, Etcd, Keys, LeaseRoute, LocalEtcd, Lookup,
    RouteMap, ShapeCapacity,
};
use tokio::time::Instant;

#[derive(Default)]
struct FakeCapacity {
    ready: Mutex<usize>,
    leases: Mutex<BTreeSet<String>>,
}

impl CapacitySource for FakeCapacity {
    fn shapes(&self) -> Vec<ShapeCapacity> {
        let ready = *self.ready.lock().unwrap();
        let leased = self.leases.lock().unwrap().len();
        vec![ShapeCapacity { name: "small".into(), ready, filling: 0, leased, depth_high: 4 }]
    }
    fn leases(&self) -> usize {
        self.leases.lock().unwrap().len()
    }
    fn holds_lease(&self, lease_id: &str) -> bool {
        self.leases.lock().unwrap().contains(lease_id)
    }
}

fn config(etcd: &LocalEtcd, prefix: &str, host: &str) -> AdvertiseConfig {
    AdvertiseConfig {
        keys: Keys::new(prefix),
        ttl: Duration::from_secs(3),
        min_update_interval: Duration::from_millis(200),
        poll_interval: Duration::from_millis(50),
        sweep_interval: Duration::from_millis(300),
        ..AdvertiseConfig::new(etcd.endpoints(), host, &format!("http://{host}:7070"))
    }
}

async fn directory(etcd: &LocalEtcd, prefix: &str) -> Directory {
    Directory::start(Etcd::connect(&etcd.endpoints(), Keys::new(prefix)).await.unwrap())
}

/// Waits until `check` holds, polling; panics with `what` after `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

fn route(lease_id: &str, host: &str, run_id: &str, expires_at_unix_ms: u64) -> LeaseRoute {
    LeaseRoute {
        lease_id: lease_id.into(),
        host: host.into(),
        run_id: run_id.into(),
        shape: "small".into(),
        expires_at_unix_ms,
        idempotency_key: Some(format!("key-{lease_id}")),
    }
}

#[tokio::test]
async fn a_registered_host_is_seen_updated_drained_and_gone_when_stopped() {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let source = Arc::new(FakeCapacity::default());
    *source.ready.lock().unwrap() = 2;
    let advertiser = Advertiser::start(config(&etcd, "/t1", "node-a"), source.clone());
    let dir = directory(&etcd, "/t1").await;
    eventually(Duration::from_secs(10), "host registered", || dir.host("node-a").is_some()).await;
    let record = dir.host("node-a").unwrap();
    assert_eq!(
        (record.url.as_str(), record.ready("small"), record.run_id.as_str()),
        ("http://node-a:7070", 2, advertiser.run_id())
    );
    assert!(dir.health().reachable || dir.health().error.is_none());

    *source.ready.lock().unwrap() = 0;
    let took = eventually(Duration::from_secs(3), "capacity update", || {
        dir.host("node-a").unwrap().ready("small") == 0
    })
    .await;
    assert!(took < Duration::from_secs(2), "update took {took:?}");

    advertiser.set_draining(true);
    eventually(Duration::from_secs(3), "draining seen", || dir.host("node-a").unwrap().draining).await;
    assert!(dir.placement_order(Some("small")).is_empty(), "a draining host gets no placement");
    advertiser.set_draining(false);
    eventually(Duration::from_secs(3), "drain undone", || !dir.host("node-a").unwrap().draining).await;
    assert_eq!(dir.placement_order(Some("small"))[0].host, "node-a");

    let writes = advertiser.record_writes();
    assert!((3..20).contains(&writes), "{writes} record writes");
    advertiser.stop().await;
    let took =
        eventually(Duration::from_secs(2), "record deleted on stop", || dir.host("node-a").is_none()).await;
    assert!(took < Duration::from_secs(1), "deregistration took {took:?}");
}

#[tokio::test]
async fn a_dead_hosts_record_expires_and_its_leases_are_lost() {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let source = Arc::new(FakeCapacity::default());
    let advertiser = Advertiser::start(config(&etcd, "/t2", "node-b"), source.clone());
    let dir = directory(&etcd, "/t2").await;
    let routes = RouteMap::new(dir.clone());
    eventually(Duration::from_secs(10), "host registered", || dir.host("node-b").is_some()).await;
    let run_id = advertiser.run_id().to_owned();
    source.leases.lock().unwrap().insert("l-held".into());
    routes.remember(route("l-held", "node-b", &run_id, u64::MAX)).await.unwrap();
    assert!(matches!(routes.lookup("l-held").await.unwrap(), Lookup::Live { .. }));
    assert!(
        matches!(routes.by_idempotency_key("key-l-held").await.unwrap(), Some(r) if r.lease_id == "l-held")
    );
    assert_eq!(routes.lookup("l-never").await.unwrap(), Lookup::Unknown);

    advertiser.abandon(); // as if killed: nobody keeps the etcd lease alive
    let took = eventually(Duration::from_secs(8), "record expired", || dir.host("node-b").is_none()).await;
    assert!(took <= Duration::from_secs(5), "expiry took {took:?} with a 3 s TTL");
    match routes.lookup("l-held").await.unwrap() {
        Lookup::HostLost { route, restarted: false } => assert_eq!(route.host, "node-b"),
        other => panic!("expected a lost lease, got {other:?}"),
    }
    // A fresh gateway (nothing cached) reaches the same verdict from etcd.
    let fresh = RouteMap::new(directory(&etcd, "/t2").await);
    let verdict = async {
        loop {
            match fresh.lookup("l-held").await {
                Ok(lookup) => return lookup,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    let verdict = tokio::time::timeout(Duration::from_secs(5), verdict).await.unwrap();
    assert!(matches!(verdict, Lookup::HostLost { restarted: false, .. }), "{verdict:?}");

    // The host comes back as a new run: its old leases are lost, not routed to the new run.
    let again = Advertiser::start(config(&etcd, "/t2", "node-b"), Arc::new(FakeCapacity::default()));
    eventually(Duration::from_secs(10), "host back", || dir.host("node-b").is_some()).await;
    assert!(matches!(routes.lookup("l-held").await.unwrap(), Lookup::HostLost { restarted: true, .. }));
    again.stop().await;
}

#[tokio::test]
async fn the_sweep_removes_routes_of_leases_the_host_no_longer_holds() {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let source = Arc::new(FakeCapacity::default());
    let advertiser = Advertiser::start(config(&etcd, "/t3", "node-c"), source.clone());
    let dir = directory(&etcd, "/t3").await;
    let routes = RouteMap::new(dir.clone());
    eventually(Duration::from_secs(10), "host registered", || dir.host("node-c").is_some()).await;
    let run_id = advertiser.run_id().to_owned();
    source.leases.lock().unwrap().extend(["l-kept".to_owned(), "l-released".to_owned()]);
    for id in ["l-kept", "l-released"] {
        routes.remember(route(id, "node-c", &run_id, u64::MAX)).await.unwrap();
    }
    // A route of an earlier run that has expired, and one that has not.
    routes.remember(route("l-old-expired", "node-c", "earlier-run", 1)).await.unwrap();
    routes.remember(route("l-old-live", "node-c", "earlier-run", u64::MAX)).await.unwrap();
    source.leases.lock().unwrap().remove("l-released");

    let store = dir.etcd().clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    let left = loop {
        let mut left: Vec<String> =
            store.host_routes("node-c").await.unwrap().into_iter().map(|r| r.lease_id).collect();
        left.sort();
        if left.len() == 2 || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(left, ["l-kept", "l-old-live"]);
    assert_eq!(store.route("l-released").await.unwrap(), None);
    assert_eq!(store.idempotent_lease("key-l-released").await.unwrap(), None);
    advertiser.stop().await;
}
