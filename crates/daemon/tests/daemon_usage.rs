//! `GET /v1/leases/{id}/metrics` and `GET /v1/usage` over a real Unix socket, with the fake
//! backend: its VMs' guests are the agent's own code in this process, so the guest's part of a
//! sample (memory, `/`) is real; the host's part (CPU, RSS, overlay) is `null` as the fake has no
//! QEMU.

use std::time::Duration;

use firepit_api::AcquireRequest;
use firepit_client::Method;
use firepit_daemon::config::UsageConfig;
use firepit_daemon::fake::FakeBackend;
use firepit_daemon::test_daemon::{TestDaemon, error_code};

async fn daemon(samples_kept: usize) -> TestDaemon {
    TestDaemon::start_with(FakeBackend::with_shape("small", 2), |options| {
        options.usage = UsageConfig { interval_ms: 100, samples_kept };
    })
    .await
}

#[tokio::test]
async fn a_lease_is_sampled_every_interval_and_pages_with_since() {
    let daemon = daemon(5).await;
    let client = daemon.client();
    let lease = client
        .acquire(&AcquireRequest { shape: "small".into(), wait_ms: 1000, ttl_ms: None, snapshot: None }, None)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let metrics = loop {
        let metrics = client.lease_metrics(&lease.lease_id, None).await.unwrap();
        if metrics.samples.len() >= 5 {
            break metrics;
        }
        assert!(tokio::time::Instant::now() < deadline, "samples: {:?}", metrics.samples);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (metrics.shape.as_str(), metrics.interval_ms, metrics.capacity, metrics.ended),
        ("small", 100, 5, false)
    );
    assert_eq!(metrics.samples.len(), 5, "the ring keeps `samples_kept`");
    let last = metrics.samples.last().unwrap();
    let total = last.memory_total_bytes.expect("the in-process agent reads /proc/meminfo");
    let used = last.memory_used_bytes.expect("memory used");
    assert!(total > 0 && used > 0 && used <= total, "{last:?}");
    assert!(last.disk_total_bytes.unwrap() >= last.disk_used_bytes.unwrap());
    assert_eq!((last.cpu_percent, last.host_rss_bytes), (None, None), "the fake has no QEMU to measure");
    assert!(metrics.samples.windows(2).all(|w| w[0].at_unix_ms <= w[1].at_unix_ms), "oldest first");

    let newer = client.lease_metrics(&lease.lease_id, Some(metrics.samples[2].at_unix_ms)).await.unwrap();
    assert!(newer.samples.iter().all(|s| s.at_unix_ms > metrics.samples[2].at_unix_ms));
    assert!(!newer.samples.is_empty());

    let usage = client.usage().await.unwrap();
    assert_eq!(usage.leases.len(), 1);
    assert_eq!(usage.leases[0].lease_id, lease.lease_id);
    assert!(usage.leases[0].latest.is_some());

    client.release(&lease.lease_id).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = client.lease_metrics(&lease.lease_id, None).await.unwrap();
        if metrics.ended {
            assert!(!metrics.samples.is_empty(), "an ended lease keeps its samples");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never marked ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(client.usage().await.unwrap().leases.is_empty(), "only running leases are listed");
    daemon.stop().await;
}

#[tokio::test]
async fn metrics_of_an_unknown_lease_are_404_and_a_bad_query_400() {
    let daemon = daemon(10).await;
    let response = daemon.raw(Method::GET, "/v1/leases/l-0000000000000000/metrics", "").await;
    assert_eq!((response.status.as_u16(), error_code(&response).as_str()), (404, "lease_not_found"));
    let response = daemon.raw(Method::GET, "/v1/leases/l-0000000000000000/metrics?since_unix_ms=x", "").await;
    assert_eq!(response.status.as_u16(), 400, "{}", response.text());
    let metrics = daemon.client().metrics().await.unwrap();
    assert!(metrics.contains("firepit_daemon_usage_probe_seconds"), "{metrics}");
    daemon.stop().await;
}
