//! Forks, snapshots and port forwards across a pause, with real VMs on a NAT network: forks have
//! their own identity and share nothing written after the fork; VMs started from one snapshot see
//! its files and processes; the first request after a resume reaches the forwarded server.

mod common;

use std::collections::BTreeSet;

use firepit_agent::StartProcessRequest;
use firepit_pool::{Provider, ShapeKey};
use firepit_qemu::{NetworkSpec, QemuProvider, QemuVm, VmSpec};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

async fn provider() -> &'static QemuProvider {
    static PROVIDER: OnceCell<QemuProvider> = OnceCell::const_new();
    PROVIDER.get_or_init(|| async { common::shared_provider("fork") }).await
}

/// The test image as a snapshot shape with a NAT network.
fn nat_shape() -> (ShapeKey, VmSpec) {
    let mut spec = common::snapshot_spec(&common::image());
    spec.network = NetworkSpec::nat();
    (ShapeKey::new("nat"), spec)
}

async fn sh(vm: &QemuVm, script: &str) -> String {
    let out = vm.exec(["sh", "-c", script]).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout_lossy().trim().to_owned()
}

/// What tells one VM from another: hostname, machine id, MAC, address, fresh random bytes.
async fn identity(vm: &QemuVm) -> Vec<String> {
    let script = "hostname; cat /etc/machine-id; cat /sys/class/net/eth0/address; \
                  ip -4 -o addr show eth0 | awk '{print $4}'; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'";
    sh(vm, script).await.lines().map(str::to_owned).collect()
}

#[test]
fn four_forks_have_their_own_identity_and_share_nothing_written_after_the_fork() {
    common::run(async {
        let provider = provider().await;
        let (key, spec) = nat_shape();
        let parent = provider.create(&key, &spec).await.unwrap();
        sh(&parent, "echo before > /root/before").await;
        let counter = StartProcessRequest {
            tag: Some("counter".into()),
            ..StartProcessRequest::new(["sh", "-c", "while true; do sleep 0.2; done"])
        };
        parent.start_process(counter).await.unwrap();
        let started = std::time::Instant::now();
        let forks: Vec<QemuVm> =
            provider.fork(&parent, 4).await.unwrap().into_iter().map(Result::unwrap).collect();
        eprintln!("4 forks in {:?}", started.elapsed());
        let mut identities = vec![identity(&parent).await];
        for fork in &forks {
            identities.push(identity(fork).await);
        }
        for field in 0..5 {
            let values: BTreeSet<&String> = identities.iter().map(|id| &id[field]).collect();
            assert_eq!(values.len(), 5, "field {field} differs in parent and forks: {identities:?}");
        }
        for fork in &forks {
            assert_eq!(sh(fork, "cat /root/before").await, "before", "a fork has the parent's files");
            let processes = fork.processes().await.unwrap();
            assert!(
                processes.iter().any(|p| p.tag.as_deref() == Some("counter") && p.exit.is_none()),
                "a fork has the parent's processes: {processes:?}"
            );
        }
        sh(&forks[0], "echo mine > /root/after").await;
        for other in forks.iter().skip(1).chain([&parent]) {
            assert_eq!(sh(other, "test -e /root/after && echo there || echo absent").await, "absent");
        }
        sh(&parent, "echo parent > /root/parent-after").await;
        assert_eq!(sh(&forks[1], "cat /root/parent-after 2>/dev/null || echo absent").await, "absent");
        assert_eq!(sh(&parent, "echo alive").await, "alive", "the parent runs on");
        for vm in forks.into_iter().chain([parent]) {
            provider.destroy(vm).await;
        }
    });
}

#[test]
fn a_snapshot_starts_three_vms_that_see_its_files_and_processes() {
    common::run(async {
        let provider = provider().await;
        let saves = tempfile::tempdir().unwrap();
        let (key, spec) = nat_shape();
        let vm = provider.create(&key, &spec).await.unwrap();
        sh(&vm, "echo snapped > /root/file").await;
        let sleeper = StartProcessRequest {
            tag: Some("sleeper".into()),
            ..StartProcessRequest::new(["sleep", "3600"])
        };
        vm.start_process(sleeper).await.unwrap();
        let snapshot = provider.snapshot(&vm, &saves.path().join("snap")).await.unwrap();
        sh(&vm, "echo later > /root/file").await;
        provider.destroy(vm).await;
        let clones: Vec<QemuVm> =
            provider.clones_of(&snapshot, 3).await.unwrap().into_iter().map(Result::unwrap).collect();
        let mut hostnames = BTreeSet::new();
        for clone in &clones {
            assert_eq!(sh(clone, "cat /root/file").await, "snapped");
            let processes = clone.processes().await.unwrap();
            assert!(processes.iter().any(|p| p.tag.as_deref() == Some("sleeper") && p.exit.is_none()));
            hostnames.insert(sh(clone, "hostname").await);
        }
        assert_eq!(hostnames.len(), 3, "each its own identity");
        let single = provider.start_from_snapshot(&snapshot).await.unwrap();
        assert_eq!(sh(&single, "cat /root/file").await, "snapped");
        assert!(snapshot.dir().exists(), "a snapshot is kept until removed");
        for vm in clones.into_iter().chain([single]) {
            provider.destroy(vm).await;
        }
        snapshot.remove().unwrap();
    });
}

#[test]
fn the_first_request_after_a_resume_reaches_the_forwarded_server() {
    common::run(async {
        let provider = provider().await;
        let saves = tempfile::tempdir().unwrap();
        let (key, spec) = nat_shape();
        let vm = provider.create(&key, &spec).await.unwrap();
        sh(&vm, "mkdir -p /tmp/www && echo guest-page > /tmp/www/index.html && httpd -p 8000 -h /tmp/www")
            .await;
        let addr = vm.forward_port(8000).await.unwrap();
        assert!(common::http_get(addr).await.unwrap().contains("guest-page"));
        let address = vm.network().unwrap();
        let paused = provider.pause_to_disk(&vm, &saves.path().join("paused")).await.unwrap();
        provider.destroy(vm).await;
        assert!(TcpStream::connect(addr).await.is_err(), "a paused VM's forward does not listen");
        let vm = provider.resume_saved(&paused).await.unwrap();
        assert_eq!(vm.forwards(), [(8000, addr)], "the same host address");
        let reply = common::http_get(addr).await.expect("the first request after the resume");
        assert!(reply.contains("guest-page"), "{reply}");
        assert_eq!(vm.network().unwrap(), address, "the same MAC and address");
        provider.destroy(vm).await;
    });
}
