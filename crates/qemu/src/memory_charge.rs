//! What snapshot VMs cost against the pool's memory budget.
//!
//! This is the provider's [`MemoryAccounting`] (its `Provider::memory()`). A cold-booted VM is
//! charged its spec's `memory_mb`. A snapshot shape is different: its template's RAM file (one guest's memory, on tmpfs) is paid once however many
//! clones map it, and each clone pays only what it does not share — estimated from its PSS, read
//! from `/proc/PID/smaps_rollup` right after it is restored and given its identity. The pool asks
//! for an estimate before a fill starts: the largest clone PSS seen for the shape's current
//! template, or the spec's full memory while no clone has been measured yet.
//!
//! Limitation: a clone's private pages grow as its guest writes memory, so a leased clone running a
//! memory-hungry workload can cost more than the estimate (up to `memory_mb`). The estimate is what
//! an idle clone costs, which is what a pool holds most of the time.

use std::collections::HashMap;
use std::sync::Mutex;

use firepit_pool::{MemoryAccounting, ShapeKey};

use crate::vm::QemuVm;
use crate::vm_spec::VmSpec;

/// RSS and PSS of process `pid` in KiB, from `/proc/PID/smaps_rollup` (a field the kernel does not
/// report reads 0). Used for clone charges here and by firepit's benchmarks.
///
/// ```
/// let (rss, pss) = firepit_qemu::process_memory_kib(std::process::id())?;
/// assert!(rss > 0 && pss > 0 && pss <= rss);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn process_memory_kib(pid: u32) -> std::io::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    Ok((smaps_field_kib(&text, "Rss:"), smaps_field_kib(&text, "Pss:")))
}

fn smaps_field_kib(smaps_rollup: &str, name: &str) -> u64 {
    smaps_rollup
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// KiB to MiB, rounded up (a charge is never smaller than what was measured).
pub(crate) fn kib_to_mib_ceil(kib: u64) -> u64 {
    kib.div_ceil(1024)
}

#[derive(Debug, Default, Clone, Copy)]
struct ShapeCharge {
    /// The ready template's RAM, MiB (0: no template loaded).
    template_mb: u64,
    /// The largest PSS of a clone of this template, MiB (0: none measured yet).
    clone_mb: u64,
}

/// Per-shape memory charges of snapshot templates and their clones.
#[derive(Debug, Default)]
pub(crate) struct Charges {
    shapes: Mutex<HashMap<ShapeKey, ShapeCharge>>,
}

impl Charges {
    fn shapes(&self) -> std::sync::MutexGuard<'_, HashMap<ShapeKey, ShapeCharge>> {
        self.shapes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shape's template (of `template_mb` guest memory) is ready: its RAM is charged once,
    /// clones are not measured yet.
    pub(crate) fn template_ready(&self, shape: &ShapeKey, template_mb: u64) {
        self.shapes().insert(shape.clone(), ShapeCharge { template_mb, clone_mb: 0 });
    }

    /// The shape's template is gone (discarded, failed, unregistered).
    pub(crate) fn template_gone(&self, shape: &ShapeKey) {
        self.shapes().remove(shape);
    }

    /// A clone of the shape's template measured `mb`.
    pub(crate) fn clone_measured(&self, shape: &ShapeKey, mb: u64) {
        if let Some(charge) = self.shapes().get_mut(shape) {
            charge.clone_mb = charge.clone_mb.max(mb);
        }
    }
}

impl MemoryAccounting<VmSpec, QemuVm> for Charges {
    /// A VM's guest memory.
    fn full_mb(&self, spec: &VmSpec) -> u64 {
        spec.memory_mb
    }

    /// The largest PSS measured of a clone of the shape's current template, else the full memory.
    fn estimate_mb(&self, shape: &ShapeKey, spec: &VmSpec) -> u64 {
        match self.shapes().get(shape) {
            Some(charge) if charge.template_mb > 0 && charge.clone_mb > 0 => charge.clone_mb,
            _ => spec.memory_mb,
        }
    }

    /// A clone's PSS measured after its restore, else the full memory.
    fn charge_mb(&self, _shape: &ShapeKey, spec: &VmSpec, vm: &QemuVm) -> u64 {
        vm.memory_charge_mb.unwrap_or(spec.memory_mb)
    }

    /// The RAM of all ready templates.
    fn shared_mb(&self) -> u64 {
        self.shapes().values().map(|charge| charge.template_mb).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_is_read_from_smaps_rollup() {
        let text = "00400000-7ffd [rollup]\nRss:              231688 kB\nPss:              215323 kB\nPss_Anon: 1 kB\n";
        assert_eq!(smaps_field_kib(text, "Pss:"), 215_323);
        assert_eq!(smaps_field_kib(text, "Rss:"), 231_688);
        assert_eq!(smaps_field_kib("Rss: 5 kB\n", "Pss:"), 0);
        let (rss, pss) = process_memory_kib(std::process::id()).unwrap();
        assert!(rss > 0 && pss > 0 && pss <= rss, "our own memory is readable: rss {rss} pss {pss}");
        assert_eq!(kib_to_mib_ceil(1), 1);
        assert_eq!(kib_to_mib_ceil(2048), 2);
    }

    #[test]
    fn clones_are_estimated_from_the_largest_measured_and_templates_charged_once() {
        let charges = Charges::default();
        let paths = crate::config::ImagePaths::new("/k", "/i");
        let (shape, spec) = (ShapeKey::new("small"), VmSpec::new("img", paths.clone()));
        let (other, mut other_spec) = (ShapeKey::new("big"), VmSpec::new("img", paths));
        other_spec.memory_mb = 512;
        assert_eq!(charges.full_mb(&other_spec), 512);
        assert_eq!(charges.estimate_mb(&shape, &spec), 256, "no template: the full memory");
        charges.template_ready(&shape, spec.memory_mb);
        assert_eq!(charges.estimate_mb(&shape, &spec), 256, "no clone measured yet");
        charges.clone_measured(&shape, 30);
        charges.clone_measured(&shape, 36);
        charges.clone_measured(&shape, 33);
        assert_eq!(charges.estimate_mb(&shape, &spec), 36);
        charges.template_ready(&other, other_spec.memory_mb);
        assert_eq!(charges.shared_mb(), 256 + 512);
        charges.template_gone(&shape);
        assert_eq!(charges.estimate_mb(&shape, &spec), 256);
        charges.clone_measured(&shape, 10);
        assert_eq!(
            charges.estimate_mb(&shape, &spec),
            256,
            "a clone of a discarded template teaches nothing"
        );
        assert_eq!(charges.shared_mb(), 512);
    }
}
