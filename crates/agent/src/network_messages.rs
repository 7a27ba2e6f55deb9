//! The network request: what the host tells the guest about its one NIC.
//!
//! The host allocates every VM its own MAC and IPv4 address and sends them after a cold boot and
//! after every snapshot restore (clones of one template would otherwise share the template's), so
//! the agent (re)configures the interface, its default route and `/etc/resolv.conf`.

use serde::{Deserialize, Serialize};

/// Configure the guest's network interface (the first one that is not `lo`).
///
/// ```
/// use firepit_agent::NetworkConfig;
/// let config = NetworkConfig {
///     mac: [0x02, 0x46, 0x50, 0, 0, 10],
///     address: [100, 96, 0, 10],
///     prefix_len: 16,
///     gateway: [100, 96, 0, 1],
///     nameservers: vec![[100, 96, 0, 2]],
/// };
/// assert_eq!(config.mac_string(), "02:46:50:00:00:0a");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// The interface's MAC address (the device follows the guest's choice).
    pub mac: [u8; 6],
    /// IPv4 address.
    pub address: [u8; 4],
    /// Prefix length of the address's network.
    pub prefix_len: u8,
    /// Default gateway.
    pub gateway: [u8; 4],
    /// Written to `/etc/resolv.conf` (nothing is written when empty).
    pub nameservers: Vec<[u8; 4]>,
}

impl NetworkConfig {
    /// The MAC as `aa:bb:cc:dd:ee:ff`.
    pub fn mac_string(&self) -> String {
        self.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    }
}

/// What [`NetworkConfig`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkApplied {
    /// The interface configured (e.g. `eth0`).
    pub interface: String,
    /// Whether `/etc/resolv.conf` was written (it may be read-only in some images).
    pub resolv_conf_written: bool,
}
