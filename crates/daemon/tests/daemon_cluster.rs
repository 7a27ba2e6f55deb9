//! The daemon as one host of a cluster: the `[cluster]` table, `POST/DELETE /v1/drain`, and a stop
//! that drains first (against a real etcd, Debian's `etcd` on 127.0.0.1, and the fake backend).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use firepit_api::{AcquireRequest, DrainResponse, ExecBody};
use firepit_client::Method;
use firepit_cluster::{AdvertiseConfig, Directory, Etcd, Keys, LocalEtcd};
use firepit_daemon::config::{Config, ConfigError};
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::test_daemon::{TestDaemon, error_code};

fn parse(cluster: &str) -> Result<Config, ConfigError> {
    let text = format!(
        "[listen]\ntcp = \"127.0.0.1:7070\"\ntoken_env = \"T\"\n[cluster]\n{cluster}\n[[shape]]\nname = \"small\"\nimage = {:?}\n",
        std::env::temp_dir()
    );
    Config::from_toml(&text, Path::new("test.toml"))
}

#[test]
fn the_cluster_table_is_validated() {
    let config =
        parse("etcd = [\"http://127.0.0.1:2379\"]\nadvertise = \"http://10.0.0.5:7070\"\nhost = \"node-a\"")
            .unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(
        (cluster.host_id().as_str(), cluster.prefix.as_str(), cluster.ttl_secs),
        ("node-a", "/firepit", 10)
    );
    for (table, fragment) in [
        ("etcd = []\nadvertise = \"http://h:1\"", "cluster.etcd"),
        ("etcd = [\"127.0.0.1:2379\"]\nadvertise = \"http://h:1\"", "http://host:port"),
        ("etcd = [\"http://e:2379\"]\nadvertise = \"h:1\"", "cluster.advertise"),
        ("etcd = [\"http://e:2379\"]\nadvertise = \"http://h:1\"\nhost = \"a/b\"", "cluster.host"),
        ("etcd = [\"http://e:2379\"]\nadvertise = \"http://h:1\"\nttl_secs = 1", "2..=300"),
        ("etcd = [\"http://e:2379\"]\nadvertise = \"http://h:1\"\nprefix = \"x\"", "cluster.prefix"),
        ("etcd = [\"http://e:2379\"]\nadvertise = \"http://h:1\"\nport = 3", "unknown field"),
    ] {
        let error = parse(table).expect_err(table).to_string();
        assert!(error.contains(fragment), "`{fragment}` missing from: {error}");
    }
    // SAFETY: no other test of this binary reads these variables.
    unsafe { std::env::set_var("FIREPIT_TEST_POD_IP", "10.1.2.3") };
    let config =
        parse("etcd = [\"http://e:2379\"]\nadvertise = \"http://${FIREPIT_TEST_POD_IP}:7070\"").unwrap();
    assert_eq!(config.cluster.unwrap().advertise, "http://10.1.2.3:7070");
    let error =
        parse("etcd = [\"http://e:2379\"]\nadvertise = \"http://${FIREPIT_TEST_UNSET}:7070\"").unwrap_err();
    assert!(error.to_string().contains("FIREPIT_TEST_UNSET is not set"), "{error}");
    let no_tcp = format!(
        "[cluster]\netcd = [\"http://e:2379\"]\nadvertise = \"http://h:1\"\n[[shape]]\nname = \"s\"\nimage = {:?}\n",
        std::env::temp_dir()
    );
    let error = Config::from_toml(&no_tcp, Path::new("t.toml")).unwrap_err().to_string();
    assert!(error.contains("needs listen.tcp"), "{error}");
}

fn acquire() -> AcquireRequest {
    AcquireRequest { shape: "small".into(), wait_ms: 0, ttl_ms: None, snapshot: None }
}

#[tokio::test]
async fn a_drained_daemon_refuses_new_leases_and_serves_the_old_ones() {
    let daemon = TestDaemon::start().await;
    let client = daemon.client();
    let held = client.acquire(&acquire(), None).await.unwrap();
    let response = daemon.raw(Method::POST, "/v1/drain", "").await;
    let view: DrainResponse = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(view, DrainResponse { draining: true, leases: 1 });
    let refused = daemon.raw(Method::POST, "/v1/leases", r#"{"shape":"small"}"#).await;
    assert_eq!((refused.status.as_u16(), error_code(&refused).as_str()), (503, "draining"));
    assert_eq!(
        client.exec(&held.lease_id, &ExecBody::new(["echo", "still"])).await.unwrap().stdout,
        "still\n"
    );
    let response = daemon.raw(Method::DELETE, "/v1/drain", "").await;
    let view: DrainResponse = serde_json::from_slice(&response.body).unwrap();
    assert!(!view.draining);
    client.acquire(&acquire(), None).await.unwrap();
    daemon.stop().await;
}

#[tokio::test]
async fn a_stop_in_a_cluster_drains_first_and_deregisters() {
    let etcd = LocalEtcd::start(1, &std::env::temp_dir()).await.unwrap();
    let cluster = AdvertiseConfig {
        keys: Keys::new("/drain-test"),
        min_update_interval: Duration::from_millis(100),
        ..AdvertiseConfig::new(etcd.endpoints(), "node-a", "http://127.0.0.1:1")
    };
    let daemon =
        TestDaemon::start_with(FakeBackend::with_shape("small", 2), |o| o.cluster = Some(cluster)).await;
    let directory =
        Directory::start(Etcd::connect(&etcd.endpoints(), Keys::new("/drain-test")).await.unwrap());
    let seen = |check: Arc<dyn Fn(&Directory) -> bool + Send + Sync>| {
        let directory = directory.clone();
        async move {
            for _ in 0..200 {
                if check(&directory) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("not seen within 5 s: {:?}", directory.hosts());
        }
    };
    seen(Arc::new(|d| d.host("node-a").is_some_and(|h| h.ready("small") == 2))).await;

    let client = daemon.client();
    let held = client.acquire(&acquire(), None).await.unwrap();
    daemon.controller.graceful();
    seen(Arc::new(|d| d.host("node-a").is_some_and(|h| h.draining))).await;
    let refused = daemon.raw(Method::POST, "/v1/leases", r#"{"shape":"small"}"#).await;
    assert_eq!(error_code(&refused), "draining");
    assert_eq!(client.exec(&held.lease_id, &ExecBody::new(["true"])).await.unwrap().exit_code, Some(0));
    assert!(!daemon.handle.is_finished(), "the daemon waits for its lease");

    client.release(&held.lease_id).await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), daemon.handle).await.unwrap().unwrap();
    assert_eq!(report.leases_ended, 0, "the lease ended on its own, not by the stop");
    seen(Arc::new(|d| d.host("node-a").is_none())).await;
}
