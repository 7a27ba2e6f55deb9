//! firepit's tools: the benchmarks (`firepit bench vm|fill|api|density|net`), the soak (`firepit soak`) and the
//! one harness that runs a child `firepit serve` for them and for the end-to-end tests.
//!
//! The `dev` feature (off by default, so off in the `firepit` binary users build and ship) adds
//! what only firepit's developers run: the soak, whose fault injection `kill -9`s and stops QEMU
//! processes and makes fills fail, and `bench net`, which makes a network namespace (through
//! `firepit-testnet`, a test helper no shipped crate depends on) for its "server elsewhere".
//! `cargo run -p firepit-cli --features dev -- soak` runs it; `scripts/test` builds with it.
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
//! [`bench_api`], [`bench_density`], and with `dev` `bench_net` with `bench_net_raw`) and the soak
//! (`soak*`, with `dev`) use those; [`bench`](mod@bench) and `soak` are the entry points the CLI calls.

#![warn(missing_docs)]

pub mod bench;
pub mod bench_api;
pub mod bench_cgroup;
pub mod bench_cluster;
pub mod bench_density;
pub mod bench_e2b;
pub mod bench_fill;
pub mod bench_lifecycle;
#[cfg(feature = "dev")]
pub mod bench_net;
#[cfg(feature = "dev")]
pub mod bench_net_raw;
pub mod bench_vm;
pub mod child_cluster;
pub mod child_daemon;
pub mod daemon_dir;
mod density_idle;
pub mod pool_wait;
pub mod procfs;
pub mod scratch;
pub mod signals;
#[cfg(feature = "dev")]
pub mod soak;
#[cfg(feature = "dev")]
mod soak_chaos;
#[cfg(feature = "dev")]
mod soak_clients;
#[cfg(feature = "dev")]
mod soak_daemon;
#[cfg(feature = "dev")]
mod soak_leaks;
#[cfg(feature = "dev")]
mod soak_report;
#[cfg(feature = "dev")]
mod soak_stall;
pub mod stats;

/// Any failure of a tool, with its cause chain (printed by the CLI).
pub type ToolError = Box<dyn std::error::Error + Send + Sync>;

/// What a tool returns: the process exit code (the soak fails with 1 when a pass condition does
/// not hold), or an error.
pub type ToolResult = Result<std::process::ExitCode, ToolError>;
