//! The network side of a [`QemuVm`]: its address, port forwards, egress narrowing and traffic.
//! (A module of its own above `vm` and `net`, so neither has to import the other's internals.)

use std::net::SocketAddr;

use firepit_agent::{NetworkApplied, NetworkConfig};
use firepit_guest::Guest;
use firepit_net::{NetError, NetStats, NetworkInfo, VmNetwork};
use firepit_shape::EgressPolicy;

use crate::error::QemuError;
use crate::vm::QemuVm;

impl QemuVm {
    fn net(&self) -> Result<&VmNetwork, QemuError> {
        self.network.as_ref().ok_or_else(|| NetError::NoNetwork { vm: self.id.clone() }.into())
    }

    /// The VM's MAC, address, gateway and DNS server; `None` when its shape has no network.
    pub fn network(&self) -> Option<NetworkInfo> {
        self.network.as_ref().map(VmNetwork::info)
    }

    /// This VM's traffic so far; `None` without a network.
    pub fn network_stats(&self) -> Option<NetStats> {
        self.network.as_ref().map(VmNetwork::stats)
    }

    /// Forwards a host TCP port to `guest_port`: connections to the returned address (on the
    /// shape's `forward_bind`, loopback by default, port chosen by the kernel) reach the guest's
    /// `guest_port`. Asking again for the same guest port returns the same address. The forward
    /// is gone when the VM is (the listening socket belongs to its QEMU process).
    ///
    /// ```no_run
    /// # async fn demo(vm: &firepit_qemu::QemuVm) -> Result<(), Box<dyn std::error::Error>> {
    /// vm.exec(["sh", "-c", "mkdir -p /tmp/www && httpd -p 8000 -h /tmp/www"]).await?;
    /// let addr = vm.forward_port(8000).await?;
    /// let _stream = tokio::net::TcpStream::connect(addr).await?;
    /// # Ok(()) }
    /// ```
    pub async fn forward_port(&self, guest_port: u16) -> Result<SocketAddr, QemuError> {
        let addr = self.net()?.forward_port(&self.qmp, guest_port).await?;
        tracing::debug!(vm = %self.id, guest_port, %addr, "port forward in place");
        Ok(addr)
    }

    /// Removes the forward to `guest_port`.
    pub async fn remove_forward(&self, guest_port: u16) -> Result<(), QemuError> {
        Ok(self.net()?.remove_forward(&self.qmp, guest_port).await?)
    }

    /// The forwards in place: `(guest port, host address)`.
    pub fn forwards(&self) -> Vec<(u16, SocketAddr)> {
        self.network.as_ref().map(VmNetwork::forwards).unwrap_or_default()
    }

    /// Narrows the egress policy (e.g. for one lease): from now on a destination must pass both
    /// the shape's policy and `policy` (and any earlier narrowing). It can never widen: addresses
    /// the shape does not allow stay refused. Connections already open are not cut.
    ///
    /// ```no_run
    /// # fn demo(vm: &firepit_qemu::QemuVm) -> Result<(), firepit_qemu::QemuError> {
    /// let only_pypi: firepit_shape::EgressPolicy = serde_json::from_str(r#"["pypi.org:443"]"#).unwrap();
    /// vm.narrow_egress(only_pypi)?;
    /// # Ok(()) }
    /// ```
    pub fn narrow_egress(&self, policy: EgressPolicy) -> Result<(), QemuError> {
        self.net()?.narrow(policy);
        Ok(())
    }

    /// Sends the guest its network configuration (MAC, address, route, DNS); a no-op without a
    /// network. Run after every cold boot and restore, before the VM is handed out.
    pub(crate) async fn configure_network(&self) -> Result<Option<NetworkApplied>, QemuError> {
        configure(&self.guest, self.network.as_ref()).await
    }
}

/// Sends `guest` the configuration of `network` (nothing when `None`); also used for a snapshot
/// template before it is saved, so its clones change a configured interface live.
pub(crate) async fn configure(
    guest: &Guest,
    network: Option<&VmNetwork>,
) -> Result<Option<NetworkApplied>, QemuError> {
    let Some(network) = network else { return Ok(None) };
    Ok(Some(guest.configure_network(guest_config(network)).await?))
}

/// What the guest is told about its network.
fn guest_config(network: &VmNetwork) -> NetworkConfig {
    let info = network.info();
    NetworkConfig {
        mac: network.mac(),
        address: info.ipv4.octets(),
        prefix_len: info.prefix_len,
        gateway: info.gateway.octets(),
        nameservers: vec![info.dns.octets()],
    }
}
