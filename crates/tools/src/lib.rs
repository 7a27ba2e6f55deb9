//! firepit's tools: the benchmarks (`firepit bench vm|fill|api|density|net`), the soak (`firepit soak`) and the
//! one harness that runs a child `firepit serve` for them and for the end-to-end tests.
//!
//! Why a crate of its own: the `firepit` binary stays thin (its verbs parse arguments and call
//! into a library), and the tools stay honest: they use the public surfaces a user has — the
//! `firepit` facade for in-process pools, `firepit-client` for the daemon, a real `firepit serve`
//! process — never the daemon's internals. It is not published (`publish = false`): it exists for
//! this repository's measurements and tests.
//!
//! What it is not: a test framework. Benchmarks print numbers and judge nothing (the soak alone
//! has pass conditions, because it is a fault-injection run); tests assert on what they measure.
//!
//! How the parts fit, bottom up: [`stats`] (percentiles, JSON lines), [`procfs`] (CPU time of
//! processes and of the host, peak RSS, the scan for our QEMU processes), [`scratch`] (private
//! directories) and [`signals`] use nothing of ours; [`pool_wait`] waits on in-process pools;
//! [`child_daemon`] starts and stops `firepit serve`; the benches ([`bench_vm`], [`bench_fill`],
//! [`bench_api`], [`bench_density`], [`bench_net`] with [`bench_net_raw`]) and the soak
//! (`soak_*`) use those; [`bench`](mod@bench) and [`soak`](mod@soak) are the entry points the CLI calls.

#![warn(missing_docs)]

pub mod bench;
pub mod bench_api;
pub mod bench_cgroup;
pub mod bench_density;
pub mod bench_fill;
pub mod bench_net;
pub mod bench_net_raw;
pub mod bench_vm;
pub mod child_daemon;
pub mod daemon_dir;
mod density_idle;
pub mod pool_wait;
pub mod procfs;
pub mod scratch;
pub mod signals;
pub mod soak;
mod soak_chaos;
mod soak_clients;
mod soak_daemon;
mod soak_leaks;
mod soak_report;
pub mod stats;

/// Any failure of a tool, with its cause chain (printed by the CLI).
pub type ToolError = Box<dyn std::error::Error + Send + Sync>;

/// What a tool returns: the process exit code (the soak fails with 1 when a pass condition does
/// not hold), or an error.
pub type ToolResult = Result<std::process::ExitCode, ToolError>;
