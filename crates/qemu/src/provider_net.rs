//! Traffic per shape, from the provider (see `firepit-net`; a shape's network is its
//! [`VmSpec::network`](crate::VmSpec::network)).

use firepit_pool::ShapeKey;

use crate::provider::QemuProvider;
use firepit_net::NetStats;

impl QemuProvider {
    /// Traffic of every shape that has had a VM with a network, since the provider started
    /// (counters only grow; a shape's stay after it is unregistered). For metrics: export each as
    /// counters labelled with the shape, e.g. `firepit_vm_network_bytes_total{shape, direction}`.
    ///
    /// ```no_run
    /// # fn demo(provider: &firepit_qemu::QemuProvider) {
    /// for (shape, stats) in provider.network_stats() {
    ///     println!("{shape}: {} B out, {} B in, {} refused", stats.bytes_out, stats.bytes_in, stats.denied);
    /// }
    /// # }
    /// ```
    pub fn network_stats(&self) -> Vec<(ShapeKey, NetStats)> {
        self.launcher().networks.stats()
    }
}
