//! Whether the VMs run in cgroups, on `GET /metrics`: a `prometheus_client` collector reading the
//! provider's [`CgroupStatus`] at each scrape.
//!
//! Series: `firepit_vm_cgroups_enabled` (gauge: 1 when every new VM gets a cgroup with its CPU,
//! memory and process limits, 0 when they are off or this host has none: the daemon's log says
//! why) and `firepit_vm_started_without_cgroup_total` (counter: VMs started without one although
//! `[cgroups]` asked for them). An alert on the first being 0 catches a host that silently runs
//! VMs unbounded.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

pub use firepit_qemu::CgroupStatus;

/// The collector; register it with `Registry::register_collector`.
///
/// # Example
/// ```
/// use firepit_daemon::cgroup_metrics::{CgroupCollector, CgroupStatus};
/// use firepit_qemu::CgroupSupport;
/// let status = CgroupStatus { support: CgroupSupport::Unavailable { reason: "read-only".into() }, vms_without_cgroup: 3 };
/// let mut registry = prometheus_client::registry::Registry::default();
/// registry.register_collector(Box::new(CgroupCollector::new(Box::new(move || status.clone()))));
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("firepit_vm_cgroups_enabled 0"), "{text}");
/// assert!(text.contains("firepit_vm_started_without_cgroup_total 3"), "{text}");
/// ```
pub struct CgroupCollector {
    source: Box<dyn Fn() -> CgroupStatus + Send + Sync>,
}

impl CgroupCollector {
    /// A collector over `source` (called once per scrape).
    pub fn new(source: Box<dyn Fn() -> CgroupStatus + Send + Sync>) -> Self {
        Self { source }
    }
}

impl fmt::Debug for CgroupCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CgroupCollector")
    }
}

impl Collector for CgroupCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let status = (self.source)();
        let enabled = ConstGauge::new(i64::from(status.support.is_enabled()));
        let help = "1 when every new VM runs in a cgroup of its own with CPU, memory and process limits";
        enabled.encode(encoder.encode_descriptor(
            "firepit_vm_cgroups_enabled",
            help,
            None,
            enabled.metric_type(),
        )?)?;
        let without = ConstCounter::new(status.vms_without_cgroup);
        let help = "VMs started without a cgroup although [cgroups] asked for them";
        let name = "firepit_vm_started_without_cgroup";
        without.encode(encoder.encode_descriptor(name, help, None, without.metric_type())?)?;
        Ok(())
    }
}
