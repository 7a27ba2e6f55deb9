//! Each VM's QEMU in a cgroup of its own, on real VMs (TCG here): it joins before it runs, gets
//! the limits of its shape, a busy 1-CPU VM stays within one core, two busy VMs share the host by
//! their sizes, snapshot templates and clones get cgroups too, every cgroup goes with its VM, and a
//! host without usable cgroups still boots VMs (without them, counted).
//!
//! The tests of this binary run one at a time: they measure CPU time.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use firepit_pool::{Provider, ShapeKey};
use firepit_qemu::{
    CgroupConfig, CgroupSupport, QEMU_MEMORY_OVERHEAD_MB, QEMU_TCG_CACHE_MB, QemuProvider, QemuVm,
};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The cgroup parent's directories, or `None` (the test says it is skipped) where this host has
/// no usable cgroups.
fn parent_dirs(provider: &QemuProvider) -> Option<Vec<PathBuf>> {
    match provider.cgroups().support {
        CgroupSupport::Enabled { parent, .. } => Some(parent),
        other => {
            eprintln!("skipped: no cgroups here: {other:?}");
            None
        }
    }
}

/// Cgroups of this test process's VMs under the parent.
fn our_cgroups(parent: &[PathBuf]) -> Vec<PathBuf> {
    let prefix = format!("fp-{}-", std::process::id());
    let mut found: Vec<PathBuf> = parent
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok().map(|s| s.trim().to_owned())
}

/// A file of the VM's cgroup, from whichever hierarchy has it.
fn cgroup_file(vm: &QemuVm, file: &str) -> String {
    let cgroup = vm.cgroup().expect("the VM has a cgroup");
    cgroup.paths().find_map(|dir| read(dir, file)).unwrap_or_else(|| panic!("no {file} in {cgroup}"))
}

/// CPU time of QEMU's process from /proc (user + system), to cross-check the cgroup's account.
fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis((fields[0] + fields[1]) * 1000 / ticks)
}

fn cgroup_cpu(vm: &QemuVm) -> Duration {
    vm.cgroup().unwrap().usage().unwrap().cpu.expect("CPU accounting (cpuacct or v2 cpu.stat)")
}

/// Busy loops on every vCPU of the guest, in the background.
async fn burn(vm: &QemuVm) {
    let script = "n=$(grep -c ^processor /proc/cpuinfo); i=0; \
                  while [ $i -lt $n ]; do (while :; do :; done) >/dev/null 2>&1 & i=$((i+1)); done";
    let out = vm.exec(["sh", "-c", script]).await.unwrap();
    assert_eq!(out.exit_code, Some(0), "{out:?}");
}

/// Cores each VM used over `window` (from its cgroup; also from /proc for the first).
async fn cores_over(vms: &[&QemuVm], window: Duration) -> (Vec<f64>, f64) {
    let before: Vec<Duration> = vms.iter().map(|vm| cgroup_cpu(vm)).collect();
    let proc_before = proc_cpu(vms[0].pid());
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cores = vms.iter().zip(before).map(|(vm, b)| (cgroup_cpu(vm) - b).as_secs_f64() / elapsed).collect();
    (cores, (proc_cpu(vms[0].pid()) - proc_before).as_secs_f64() / elapsed)
}

#[test]
fn a_vm_joins_its_cgroup_before_it_runs_gets_its_limits_and_the_cgroup_goes_with_it() {
    common::run(async {
        let _one = ONE_AT_A_TIME.lock().await;
        let dir = common::runtime_dir("cg-limits");
        let provider = common::provider(&dir, |_| {});
        let Some(parent) = parent_dirs(&provider) else { return };
        let spec = common::cold_spec(&common::image());
        let vm = provider.cold_boot(&common::shape(), &spec).await.unwrap();
        let cgroup = vm.cgroup().expect("a cgroup for the VM");
        assert_eq!(cgroup.name(), vm.id());
        // QEMU is in it in every hierarchy: it joined between fork and exec.
        let membership = std::fs::read_to_string(format!("/proc/{}/cgroup", vm.pid())).unwrap();
        for path in cgroup.paths() {
            let name = format!("/{}", vm.id());
            assert!(path.ends_with(vm.id()) && membership.contains(&name), "{membership}");
            let procs = read(path, "cgroup.procs").unwrap();
            assert!(procs.lines().any(|p| p == vm.pid().to_string()), "{} holds {procs}", path.display());
        }
        let expected_memory = (256 + QEMU_MEMORY_OVERHEAD_MB + QEMU_TCG_CACHE_MB) << 20;
        match cgroup.version() {
            firepit_qemu::CgroupVersion::V1 => {
                assert_eq!(cgroup_file(&vm, "cpu.cfs_quota_us"), "100000", "one core");
                assert_eq!(cgroup_file(&vm, "cpu.shares"), "1024");
                assert_eq!(cgroup_file(&vm, "memory.limit_in_bytes"), expected_memory.to_string());
            }
            firepit_qemu::CgroupVersion::V2 => {
                assert_eq!(cgroup_file(&vm, "cpu.max"), "100000 100000");
                assert_eq!(cgroup_file(&vm, "memory.max"), expected_memory.to_string());
            }
        }
        assert_eq!(cgroup_file(&vm, "pids.max"), firepit_qemu::VM_PIDS_MAX.to_string());

        // What QEMU itself costs beyond guest RAM: the guest fills most of its memory, and the
        // cgroup's peak minus what the guest and TCG's cache hold is QEMU's own.
        let out =
            vm.exec(["sh", "-c", "dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>&1; sync"]).await.unwrap();
        assert_eq!(out.exit_code, Some(0), "{out:?}");
        let peak = cgroup.memory_peak().unwrap().unwrap_or(0);
        let (guest_kib, tcg_kib) = guest_and_tcg_rss_kib(vm.pid());
        let overhead_mib = (peak / 1024).saturating_sub(guest_kib + tcg_kib) / 1024;
        eprintln!(
            "memory: peak {} MiB = guest {} MiB + TCG cache {} MiB + QEMU {overhead_mib} MiB",
            peak >> 20,
            guest_kib / 1024,
            tcg_kib / 1024
        );
        assert!(peak > 200 << 20 && peak < expected_memory, "peak {peak} within the limit {expected_memory}");
        assert!(overhead_mib < QEMU_MEMORY_OVERHEAD_MB, "QEMU's own {overhead_mib} MiB fit the overhead");

        let dirs: Vec<PathBuf> = cgroup.paths().map(Path::to_path_buf).collect();
        vm.shutdown().await;
        assert!(dirs.iter().all(|d| !d.exists()), "removed with the VM: {dirs:?}");
        assert!(our_cgroups(&parent).is_empty(), "{:?}", our_cgroups(&parent));
        drop(provider);
        common::assert_removed_empty(&dir);
    });
}

/// RSS of the guest's RAM and of TCG's translation cache in QEMU `pid`, KiB: the anonymous
/// mappings of exactly 256 MiB (guest RAM) and 1 GiB (the cache) in `/proc/PID/smaps`.
fn guest_and_tcg_rss_kib(pid: u32) -> (u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let (mut guest, mut tcg, mut size) = (0, 0, 0u64);
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ')
            && let Some((start, end)) = range.split_once('-')
            && let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            size = end - start;
        } else if let Some(rss) = line.strip_prefix("Rss:") {
            let kib: u64 = rss.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
            match size {
                s if s == 256 << 20 => guest += kib,
                s if (s >> 20) == QEMU_TCG_CACHE_MB || (s + 4096) >> 20 == QEMU_TCG_CACHE_MB => tcg += kib,
                _ => {}
            }
        }
    }
    (guest, tcg)
}

#[test]
fn a_busy_1_cpu_vm_uses_at_most_a_core_and_busy_vms_of_1_and_2_cpus_share_by_size() {
    common::run(async {
        let _one = ONE_AT_A_TIME.lock().await;
        let dir = common::runtime_dir("cg-cpu");
        let provider = common::provider(&dir, |_| {});
        if parent_dirs(&provider).is_none() {
            return;
        }
        let one = common::cold_spec(&common::image());
        let mut two = one.clone();
        two.cpus = 2;
        let (key_one, key_two) = (ShapeKey::new("one"), ShapeKey::new("two"));
        let (small, big) =
            tokio::join!(provider.cold_boot(&key_one, &one), provider.cold_boot(&key_two, &two));
        let (small, big) = (small.unwrap(), big.unwrap());
        assert_eq!(cgroup_file(&big, "cpu.cfs_quota_us"), "200000", "two cores for two vCPUs");

        burn(&small).await;
        let (cores, from_proc) = cores_over(&[&small], Duration::from_secs(10)).await;
        eprintln!("1-CPU VM alone, all vCPUs busy: {:.2} cores (cgroup), {from_proc:.2} (/proc)", cores[0]);
        assert!(cores[0] <= 1.05 && from_proc <= 1.05, "{cores:?} / {from_proc}");
        assert!(cores[0] > 0.05, "the loop ran: {cores:?}");

        burn(&big).await;
        let (cores, _) = cores_over(&[&small, &big], Duration::from_secs(10)).await;
        let ratio = cores[1] / cores[0];
        eprintln!("both busy: 1-CPU {:.2} cores, 2-CPU {:.2} cores, ratio {ratio:.2}", cores[0], cores[1]);
        assert!(cores[0] <= 1.05 && cores[1] <= 2.1, "{cores:?}");
        // Same parent, weights 1024 and 2048 (v1) or 100 and 200 (v2): whatever else loads the
        // host, the bigger VM gets about twice the smaller one's time.
        assert!(ratio >= 1.5, "the 2-CPU VM got {ratio:.2}× the 1-CPU VM's time");
        small.shutdown().await;
        big.shutdown().await;
        drop(provider);
        common::assert_removed_empty(&dir);
    });
}

#[test]
fn snapshot_templates_and_clones_get_cgroups_too_and_none_outlives_its_vm() {
    common::run(async {
        let _one = ONE_AT_A_TIME.lock().await;
        let dir = common::runtime_dir("cg-snapshot");
        let templates = PathBuf::from(format!("/dev/shm/fpq-{}-cg-templates", std::process::id()));
        let provider = common::provider(&dir, |c| {
            c.template_dir = templates.clone();
            c.keep_templates = false;
        });
        let Some(parent) = parent_dirs(&provider) else { return };
        let spec = common::snapshot_spec(&common::image());
        let clone = provider.create(&common::shape(), &spec).await.unwrap();
        assert_eq!(clone.fill(), firepit_qemu::FillKind::Snapshot);
        let cgroup = clone.cgroup().expect("the clone has a cgroup");
        // The template was built in a cgroup of its own, removed once it quit: only the clone's
        // is left (one directory per hierarchy).
        let ours = our_cgroups(&parent);
        assert_eq!(
            ours,
            cgroup.paths().map(Path::to_path_buf).collect::<Vec<_>>(),
            "only the clone's cgroup"
        );
        let usage = cgroup.usage().unwrap();
        assert!(usage.memory_bytes > 0, "{usage:?}");
        provider.destroy(clone).await;
        assert!(our_cgroups(&parent).is_empty(), "{:?}", our_cgroups(&parent));
        provider.forget_template(&common::shape());
        drop(provider);
        common::assert_removed_empty(&dir);
        let _ = std::fs::remove_dir_all(&templates);
    });
}

#[test]
fn without_usable_cgroups_a_vm_still_boots_and_is_counted() {
    common::run(async {
        let _one = ONE_AT_A_TIME.lock().await;
        let dir = common::runtime_dir("cg-none");
        // A parent no hierarchy can hold stands for a host whose cgroups cannot be written.
        let provider = common::provider(&dir, |c| {
            c.cgroups = CgroupConfig { parent: "../outside".into(), ..CgroupConfig::default() };
        });
        let CgroupSupport::Unavailable { reason } = provider.cgroups().support else {
            panic!("{:?}", provider.cgroups())
        };
        assert!(reason.contains(".."), "{reason}");
        let vm = provider.cold_boot(&common::shape(), &common::cold_spec(&common::image())).await.unwrap();
        assert!(vm.cgroup().is_none());
        assert_eq!(vm.exec(["true"]).await.unwrap().exit_code, Some(0));
        assert_eq!(provider.cgroups().vms_without_cgroup, 1);
        vm.shutdown().await;
        drop(provider);
        common::assert_removed_empty(&dir);
    });
}
