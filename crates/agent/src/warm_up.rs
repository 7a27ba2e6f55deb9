//! `firepit-agent warm-up`: what the host runs in every new VM before handing it out (see
//! [`firepit_agent::WARM_UP_ARGV`]).
//!
//! The host runs the agent *itself* (`/proc/self/exe`) through the exec path every command takes,
//! so the guest kernel's fork, exec, pipe and exit paths and the agent's exec code are translated
//! (under TCG) before the user's first command, and nothing from the VM's root is needed: a root
//! disk without `true`, or any program at all, warms up the same way.
//!
//! One step more where it is firepit's own: when the agent's root is firepit's initramfs (no root
//! disk; the file at [`AGENT`] there is the very binary running), its busybox runs every command
//! the user sends, so the warm-up becomes busybox's `true` (an `exec`, no further fork) and the
//! first command also finds busybox's code translated. In a root disk the agent runs nothing of
//! the disk's.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Where firepit's initramfs holds the agent (see `firepit-image`'s `initramfs.rs`).
const AGENT: &str = "/sbin/firepit-agent";
/// ... and its busybox.
const BUSYBOX: &str = "/bin/busybox";

/// Exits 0, or becomes firepit's busybox `true` where the root is firepit's initramfs.
pub fn run() -> ! {
    if root_is_own_image() {
        // Returns only when the exec failed; then there is nothing more to warm.
        let error = Command::new(BUSYBOX).arg("true").exec();
        eprintln!("firepit-agent warm-up: cannot run {BUSYBOX} true: {error}");
    }
    std::process::exit(0)
}

/// Whether `/sbin/firepit-agent` in this process's root is the binary running (same device and
/// inode): true in firepit's initramfs, false in a root disk (the agent runs from outside it).
fn root_is_own_image() -> bool {
    let (Ok(running), Ok(at_path)) = (std::fs::metadata("/proc/self/exe"), std::fs::metadata(AGENT)) else {
        return false;
    };
    running.dev() == at_path.dev() && running.ino() == at_path.ino()
}
