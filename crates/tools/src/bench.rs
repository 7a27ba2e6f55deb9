//! `firepit bench`: measurements on real VMs, one JSON object per line with `--json`.
//!
//! Benchmarks are not tests: they print numbers and judge nothing. Everything a run compares is
//! measured side by side in that run, because the machines are noisy.

use crate::ToolResult;

/// Subcommands of `firepit bench`.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// VM benchmarks: cold boot, reserve → first console reply, exec round trip, reserve → first
    /// exec on fresh VMs (pool quiet and refilling), memory, idle CPU of pooled and leased VMs.
    Vm(crate::bench_vm::VmBenchArgs),
    /// Fill strategies side by side: cold boot vs snapshot restore (time, PSS), refill of 16.
    Fill(crate::bench_fill::FillBenchArgs),
    /// A running VM's lifecycle per guest size: pause (time, disk), resume → first exec,
    /// snapshot, start from a snapshot, fork of 1 and of 8, with memory dirtied by a workload.
    Lifecycle(crate::bench_lifecycle::LifecycleBenchArgs),
    /// The daemon's API vs in process: acquire + release and exec round trip, p50/p99.
    ///
    /// Starts `firepit serve` on a temporary Unix socket and an in-process pool of the same shape,
    /// and measures both in the same run, alternating between them. A release destroys the VM, so
    /// every timed acquire + release first waits until both pools are full again.
    Api(crate::bench_api::ApiBenchArgs),
    /// Snapshot clones of one shape filled up to a memory budget: VMs, PSS, idle host CPU, time to
    /// fill, reserve → first exec at that density.
    Density(crate::bench_density::DensityBenchArgs),
    /// Networking: guest → host TCP throughput, connect round trip, host CPU, the time a NIC adds
    /// to a snapshot restore; firepit (NAT + policy filter) next to raw QEMU with the same backend
    /// (and passt when installed), measured in the same run. The guests' "server elsewhere" is in a
    /// network namespace the bench makes (needs root and iproute2); in builds with the `dev` feature.
    #[cfg(feature = "dev")]
    Net(crate::bench_net::NetBenchArgs),
    /// E2B's Python SDK through firepit's E2B endpoint next to firepit's own SDK: create → first
    /// run, file writes, and the endpoint's own cost per call.
    E2b(crate::bench_e2b::E2bBenchArgs),
    /// Past one host: acquire and exec through a gateway vs directly on a daemon, placement
    /// balance, etcd writes, time from a host's death to the last placement attempt there.
    Cluster(crate::bench_cluster::ClusterBenchArgs),
    /// Each VM in its own cgroup: setup time added to a fill, the join's cost at spawn, snapshot
    /// restores with and without cgroups, and the CPU of sampling 300 VMs' usage every 5 s.
    Cgroup(crate::bench_cgroup::CgroupBenchArgs),
}

/// Runs `firepit bench ...`.
pub async fn run(command: BenchCommand) -> ToolResult {
    match command {
        BenchCommand::Vm(args) => crate::bench_vm::run(args).await,
        BenchCommand::Fill(args) => crate::bench_fill::run(args).await,
        BenchCommand::Lifecycle(args) => crate::bench_lifecycle::run(args).await,
        BenchCommand::Api(args) => crate::bench_api::run(args).await,
        BenchCommand::Density(args) => crate::bench_density::run(args).await,
        #[cfg(feature = "dev")]
        BenchCommand::Net(args) => crate::bench_net::run(args).await,
        BenchCommand::E2b(args) => crate::bench_e2b::run(args).await,
        BenchCommand::Cluster(args) => crate::bench_cluster::run(args).await,
        BenchCommand::Cgroup(args) => crate::bench_cgroup::run(args).await,
    }
}
