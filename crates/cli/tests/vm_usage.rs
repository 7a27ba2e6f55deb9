//! Usage of a real VM through the daemon (`firepit serve`, one cold-booted VM of 256 MiB, samples
//! every 500 ms): a guest burning its vCPU shows a high CPU %, a guest holding 64 MiB more shows
//! its memory grow, and a process allocating past the guest's RAM is killed by the guest's OOM
//! killer, its exec says `oom_killed`, the daemon counts it in `firepit_vm_oom_kills_total` and
//! emits `process.oom_killed`, and the VM goes on.

mod common;

use std::time::Duration;

use firepit_api::{AcquireRequest, EventKind, EventQuery, ExecBody, UsageSample};
use firepit_client::Client;

/// Samples of `lease` taken after `since`, waiting until `wanted` holds for one (or 60 s pass).
async fn wait_sample(
    client: &Client,
    lease: &str,
    since: u64,
    what: &str,
    wanted: impl Fn(&UsageSample) -> bool,
) -> UsageSample {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let metrics = client.lease_metrics(lease, Some(since)).await.unwrap();
        if let Some(sample) = metrics.samples.iter().find(|s| wanted(s)) {
            return sample.clone();
        }
        seen.extend(metrics.samples);
        assert!(tokio::time::Instant::now() < deadline, "no sample with {what}: {seen:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn sh(script: &str, timeout_ms: u64) -> ExecBody {
    ExecBody { timeout_ms, ..ExecBody::new(["sh", "-c", script]) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_memory_and_oom_kills_of_a_real_vm_show_in_its_samples() {
    let (dir, mut settings) = common::small_shape_settings("usage");
    settings.usage_interval_ms = Some(500);
    let mut daemon = common::daemon(dir, &settings);
    daemon.start(common::BOOT_DEADLINE).await.unwrap();
    common::wait_full(&mut daemon).await;
    let client = daemon.client();
    let request = AcquireRequest { shape: "small".into(), wait_ms: 60_000, ttl_ms: None, snapshot: None };
    let lease = client.acquire(&request, None).await.unwrap().lease_id;

    // Idle: the host's and the guest's parts are both there.
    let idle = wait_sample(&client, &lease, 0, "an idle CPU %", |s| s.cpu_percent.is_some()).await;
    let total = idle.memory_total_bytes.expect("the guest's memory");
    assert!((150 << 20..=256 << 20).contains(&total), "{idle:?}");
    assert!(idle.host_rss_bytes.is_some_and(|rss| rss > 0), "{idle:?}");
    assert!(idle.disk_total_bytes.is_some(), "{idle:?}");

    // A busy vCPU: QEMU's CPU time grows at about a core (less on a loaded host).
    let burn = sh("timeout 8 sh -c 'while :; do :; done'; true", 30_000);
    let busy = client.exec(&lease, &burn);
    let since = idle.at_unix_ms;
    let (exec, hot) = tokio::join!(busy, async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        wait_sample(&client, &lease, since, "CPU above 50 %", |s| s.cpu_percent.is_some_and(|p| p > 50.0))
            .await
    });
    exec.unwrap();
    assert!(hot.cpu_percent.unwrap() <= 110.0, "at most its one vCPU (and a little for devices): {hot:?}");

    // 64 MiB held by a process: the guest's used memory grows by about that much.
    let before =
        wait_sample(&client, &lease, hot.at_unix_ms, "memory", |s| s.memory_used_bytes.is_some()).await;
    let hold = "awk 'BEGIN { s = \"x\"; for (i = 0; i < 26; i++) s = s s; system(\"sleep 6\") }'";
    let hold = sh(hold, 30_000);
    let held = client.exec(&lease, &hold);
    let used_before = before.memory_used_bytes.unwrap();
    let (exec, grown) = tokio::join!(held, async {
        wait_sample(&client, &lease, before.at_unix_ms, "64 MiB more in use", |s| {
            s.memory_used_bytes.is_some_and(|used| used >= used_before + (60 << 20))
        })
        .await
    });
    assert_eq!(exec.unwrap().exit_code, Some(0));
    assert!(grown.memory_used_bytes <= grown.memory_total_bytes);

    // Past the guest's RAM: the OOM killer takes the allocating process, not the VM.
    let hog = client.exec(&lease, &sh("awk 'BEGIN { s = \"x\"; while (1) s = s s }'", 60_000)).await.unwrap();
    assert!(hog.oom_killed, "{hog:?}");
    assert_eq!(hog.signal, Some(9), "{hog:?}");
    let after = client.exec(&lease, &ExecBody::new(["echo", "still here"])).await.unwrap();
    assert_eq!((after.stdout.as_str(), after.oom_killed), ("still here\n", false));
    wait_sample(&client, &lease, grown.at_unix_ms, "an OOM kill counted", |s| s.oom_kills >= 1).await;
    let text = client.metrics().await.unwrap();
    assert!(text.contains("firepit_vm_oom_kills_total{shape=\"small\"} 1"), "{text}");
    // ... and the event stream has it (from its history: the sampler reported it already).
    let query = EventQuery {
        kinds: vec![EventKind::ProcessOomKilled],
        lease_id: Some(lease.clone()),
        last_event_id: Some(0),
    };
    let mut feed = client.events(&query).await.unwrap();
    let event =
        tokio::time::timeout(Duration::from_secs(30), feed.next_event()).await.unwrap().unwrap().unwrap();
    assert_eq!((event.kind, event.shape.as_deref()), (EventKind::ProcessOomKilled, Some("small")));
    assert!(event.pid.is_some() && event.detail.as_deref().is_some_and(|d| d.contains("awk")), "{event:?}");

    client.release(&lease).await.unwrap();
    daemon.stop(Duration::from_secs(60)).await.unwrap();
}
