//! The short soak CI runs: `firepit soak` against a real daemon with real VMs for a few minutes,
//! every fault kind injected at least once, and its pass conditions checked one by one (so a
//! failure names the condition, not just "exit 1").

mod common;

use std::process::Stdio;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_soak_with_every_fault_kind_leaks_nothing_and_regains_depth() {
    let image = common::image();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_firepit"))
        .args(["soak", "--cycles", "300", "--clients", "3", "--depth", "3", "--chaos-interval-ms", "1000"])
        .arg("--image")
        .arg(image.dir())
        .arg("--json")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output();
    // Generous: a loaded 2-core machine boots slowly; the soak itself bounds every wait.
    let out = tokio::time::timeout(Duration::from_secs(20 * 60), run)
        .await
        .expect("the soak ends within 20 min")
        .expect("the firepit binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| panic!("no JSON line; status {:?}", out.status));
    let report: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));

    for (kind, count) in report["faults"].as_object().expect("faults by kind") {
        assert!(count.as_u64().unwrap_or(0) >= 1, "fault kind {kind} never injected: {line}");
    }
    // kill_leased_vm, kill_idle_vm, fill_failure, agent_stall, exec_timeout, dropped_request,
    // lease_expired, daemon_restart, stalled_client.
    assert_eq!(report["faults"].as_object().map(|o| o.len()), Some(9), "{line}");
    assert!(report["cycles"].as_u64().unwrap_or(0) >= 300, "{line}");
    assert!(report["cycles_ok"].as_u64().unwrap_or(0) > 0, "{line}");
    assert_eq!(report["requests_failed_unexplained"], 0, "{line}");
    assert_eq!(report["leaked_vms"], 0, "{line}");
    assert_eq!(report["leaked_files"], 0, "{line}");
    assert_eq!(report["restart_reaped_only_its_own"], true, "{line}");
    assert_eq!(report["timeouts_enforced"], true, "{line}");
    assert_eq!(report["full_depth_regained"], true, "{line}");
    assert_eq!(report["clean_stop"], true, "{line}");
    assert!(report["daemon_max_rss_kib"].as_u64().unwrap_or(0) > 0, "{line}");
    assert_eq!(report["pass"], true, "{line}");
    assert!(out.status.success(), "a passing soak exits 0: {:?}", out.status);
}
