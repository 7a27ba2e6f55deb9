//! Network traffic per shape on `GET /metrics`: a `prometheus_client` collector that reads the
//! backend's counters at each scrape (the provider keeps them; nothing is copied in between).
//!
//! Series (counters, `shape` label; bytes and frames also `direction` = `in` / `out`):
//! `firepit_vm_network_bytes_total`, `firepit_vm_network_frames_total`,
//! `firepit_vm_network_denied_total` (connections, datagrams and pings the egress policy refused),
//! `firepit_vm_network_dropped_total` (frames the filter dropped: not IPv4/ARP, fragments, a full
//! queue) and `firepit_vm_network_dns_queries_total`. Only shapes that have had a VM with a network
//! have samples; the families are always declared (`# HELP`, `# TYPE`).

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

pub use firepit_net::NetStats;

/// Where the collector reads the traffic of every shape from.
pub type StatsSource = Box<dyn Fn() -> Vec<(String, NetStats)> + Send + Sync>;

/// The collector; register it with `Registry::register_collector`.
///
/// # Example
/// ```
/// use firepit_daemon::net_metrics::{NetStats, NetworkCollector};
/// let mut registry = prometheus_client::registry::Registry::default();
/// let stats = NetStats { bytes_out: 1500, frames_out: 1, ..NetStats::default() };
/// registry.register_collector(Box::new(NetworkCollector::new(Box::new(move || vec![("web".to_owned(), stats)]))));
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains(r#"firepit_vm_network_bytes_total{shape="web",direction="out"} 1500"#), "{text}");
/// ```
pub struct NetworkCollector {
    source: StatsSource,
}

impl NetworkCollector {
    /// A collector over `source` (called once per scrape).
    pub fn new(source: StatsSource) -> Self {
        Self { source }
    }
}

impl fmt::Debug for NetworkCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetworkCollector")
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    shape: String,
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShapeLabels {
    shape: String,
}

impl Collector for NetworkCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // The families are declared even before any shape has a network, like every other
        // family, so a dashboard or alert can rely on their names.
        let stats = (self.source)();
        let counter_type = ConstCounter::new(0u64).metric_type();
        type Split = fn(&NetStats) -> (u64, u64);
        let directed: [(&str, &str, Split); 2] = [
            ("firepit_vm_network_bytes", "Bytes of Ethernet frames to (in) and from (out) the guests", |s| {
                (s.bytes_in, s.bytes_out)
            }),
            ("firepit_vm_network_frames", "Ethernet frames to (in) and from (out) the guests", |s| {
                (s.frames_in, s.frames_out)
            }),
        ];
        for (name, help, split) in directed {
            let mut family = encoder.encode_descriptor(name, help, None, counter_type)?;
            for (shape, stat) in &stats {
                let (inbound, outbound) = split(stat);
                for (direction, value) in [("in", inbound), ("out", outbound)] {
                    let labels = DirectionLabels { shape: shape.clone(), direction };
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        type Pick = fn(&NetStats) -> u64;
        let plain: [(&str, &str, Pick); 3] = [
            (
                "firepit_vm_network_denied",
                "Connections, datagrams and pings the egress policy refused",
                |s| s.denied,
            ),
            (
                "firepit_vm_network_dropped",
                "Frames the egress filter dropped (not IPv4/ARP, fragments, full queue)",
                |s| s.dropped,
            ),
            ("firepit_vm_network_dns_queries", "DNS queries firepit answered for the guests", |s| {
                s.dns_queries
            }),
        ];
        for (name, help, pick) in plain {
            let mut family = encoder.encode_descriptor(name, help, None, counter_type)?;
            for (shape, stat) in &stats {
                let labels = ShapeLabels { shape: shape.clone() };
                ConstCounter::new(pick(stat)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_families_are_declared_before_any_shape_has_a_network() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(NetworkCollector::new(Box::new(Vec::new))));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in ["bytes", "frames", "denied", "dropped", "dns_queries"] {
            assert!(text.contains(&format!("# TYPE firepit_vm_network_{name} counter")), "{text}");
        }
        assert!(!text.contains("shape="), "no samples without a shape: {text}");
    }
}
