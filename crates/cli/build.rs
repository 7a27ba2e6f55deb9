//! Embeds the static guest agent in the `firepit` binary, so that `firepit image build` works from
//! an installed binary with no other file at hand.
//!
//! The agent runs inside the guest, whose userland is busybox (no glibc), so it must be a static
//! binary: it is built here for `x86_64-unknown-linux-gnu` with `+crt-static` and the workspace's
//! `agent` profile, by a nested `cargo build` into a target dir of its own under `OUT_DIR` (the
//! outer build holds the lock of the usual one). `FIREPIT_AGENT_BIN=/path/to/firepit-agent`
//! embeds a prebuilt agent instead (the scripts pass the one they built for the tests, to build it
//! once).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    println!("cargo:rerun-if-env-changed=FIREPIT_AGENT_BIN");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    let agent = match std::env::var_os("FIREPIT_AGENT_BIN").filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            assert!(path.is_file(), "FIREPIT_AGENT_BIN={} is not a file", path.display());
            path
        }
        None => build_agent(&out_dir),
    };
    println!("cargo:rustc-env=FIREPIT_EMBEDDED_AGENT={}", agent.display());
}

/// Builds the agent with a nested cargo and returns the binary's path.
fn build_agent(out_dir: &Path) -> PathBuf {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.join("../..");
    let agent_crate = workspace.join("crates/agent");
    for watched in ["src", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", agent_crate.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.lock").display());
    let target_dir = out_dir.join("agent-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--quiet",
            "--locked",
            "--profile",
            "agent",
            "-p",
            "firepit-agent",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", "-C target-feature=+crt-static");
    // The outer build's settings are not the agent's.
    for var in
        ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTC_WRAPPER"]
    {
        command.env_remove(var);
    }
    let status = command.status().expect("cannot run cargo to build the guest agent");
    assert!(
        status.success(),
        "building the static guest agent failed ({status}); see the cargo output above"
    );
    target_dir.join(TARGET).join("agent").join("firepit-agent")
}
