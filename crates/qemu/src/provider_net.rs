//! The provider's network settings per shape, and traffic per shape (see [`crate::net`]).

use firepit_pool::ShapeKey;
use firepit_shape::NetworkSpec;

use crate::error::QemuError;
use crate::net::NetStats;
use crate::provider::QemuProvider;

impl QemuProvider {
    /// Gives `shape`'s VMs a network (or takes it away with `NetworkSpec::default()`, i.e. none).
    /// Set it before the shape's first fill: a snapshot template is made with or without a NIC,
    /// and a template made before the change is found stale and rebuilt.
    ///
    /// ```no_run
    /// use firepit_pool::ShapeKey;
    /// use firepit_qemu::{EgressPolicy, NetworkSpec, ProviderConfig, QemuProvider};
    /// let provider = QemuProvider::new(ProviderConfig::default())?;
    /// let shape = ShapeKey::new("img", "1", 1, 256);
    /// let egress: EgressPolicy = serde_json::from_str(r#"["pypi.org:443", "10.1.0.0/16"]"#).unwrap();
    /// provider.set_network(&shape, NetworkSpec { egress, host_ports: vec![5432], ..NetworkSpec::nat() })?;
    /// assert!(provider.network(&shape).is_enabled());
    /// # Ok::<(), firepit_qemu::QemuError>(())
    /// ```
    pub fn set_network(&self, shape: &ShapeKey, spec: NetworkSpec) -> Result<(), QemuError> {
        Ok(self.launcher().networks.set(shape, spec)?)
    }

    /// `shape`'s network (`NetworkSpec::default()`, no network, unless set).
    pub fn network(&self, shape: &ShapeKey) -> NetworkSpec {
        self.launcher().networks.get(shape)
    }

    /// Traffic of every shape that has had a VM with a network, since the provider started
    /// (counters only grow; a shape's stay after it is unregistered). For metrics: export each as
    /// a counter labelled with the shape, e.g. `firepit_vm_network_bytes_total{shape, direction}`.
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
