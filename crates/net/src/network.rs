//! One VM's network: its address, its filter, its relay tasks and counters. Owned by the VM's
//! handle; dropping it stops the relay and frees the address (QEMU, and with it the NAT and every
//! forward's listening socket, goes with the VM).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use firepit_shape::{EgressPolicy, NetworkSpec};
use tokio::task::AbortHandle;

use crate::addr::{self, AddressLease};
use crate::error::NetError;
use crate::forward::{Forwards, Monitor};
use crate::policy::EgressFilter;
use crate::relay::{self, NicSockets, Relay};
use crate::stats::{Counters, NetCounters, NetStats};

/// Where a VM is on its network.
///
/// ```
/// let info = firepit_net::NetworkInfo {
///     mac: "02:46:50:00:00:10".into(),
///     ipv4: "100.96.0.16".parse().unwrap(),
///     prefix_len: 16,
///     gateway: "100.96.0.1".parse().unwrap(),
///     dns: "100.96.0.2".parse().unwrap(),
/// };
/// println!("{} at {} via {}", info.mac, info.ipv4, info.gateway);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// The guest's MAC address (`02:46:50:...`).
    pub mac: String,
    /// The guest's IPv4 address.
    pub ipv4: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// Its gateway: the host, reachable on the shape's `host_ports` only.
    pub gateway: Ipv4Addr,
    /// Its DNS server (answered by firepit's filter).
    pub dns: Ipv4Addr,
}

/// What a VM's network was when it was paused or saved, to start it again
/// ([`VmNetwork::resume`]): its address (the guest keeps the one it was given), the narrowings of
/// its egress policy, and its port forwards.
///
/// ```
/// let state: firepit_net::NetworkState = serde_json::from_str(
///     r#"{"ipv4": "100.96.0.16", "narrowings": [["pypi.org:443"]], "forwards": [[8000, "127.0.0.1:41737"]]}"#,
/// ).unwrap();
/// assert_eq!(state.forwards[0].0, 8000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkState {
    /// The guest's IPv4 address (its MAC follows from it).
    pub ipv4: Ipv4Addr,
    /// Every narrowing of the shape's egress policy, oldest first.
    pub narrowings: Vec<EgressPolicy>,
    /// The port forwards: `(guest port, host address)`.
    pub forwards: Vec<(u16, SocketAddr)>,
}

/// One VM's network: an address and MAC of its own, the egress filter of its shape's policy (and
/// every narrowing since), the relay tasks between QEMU's NIC and its NAT, traffic counters, and
/// the port forwards its NAT holds. See the crate docs for how it is started.
#[derive(Debug)]
pub struct VmNetwork {
    lease: AddressLease,
    filter: Arc<EgressFilter>,
    counters: Arc<NetCounters>,
    forwards: Forwards,
    /// Host lookups of listed names, ahead of the guest's queries.
    lookups: Mutex<Vec<AbortHandle>>,
    _relay: Relay,
}

impl Drop for VmNetwork {
    fn drop(&mut self) {
        for lookup in self.lookups.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).iter() {
            lookup.abort();
        }
    }
}

impl VmNetwork {
    /// Starts the network of a VM of a shape with network `spec`, on the NIC's `sockets` (QEMU has
    /// connected them): allocates an address, builds the filter and starts the relay, whose
    /// traffic also counts towards `shape_counters`. Must run inside a tokio runtime.
    pub fn start(
        spec: &NetworkSpec,
        sockets: NicSockets,
        shape_counters: Arc<NetCounters>,
    ) -> Result<Self, NetError> {
        let lease = AddressLease::allocate().ok_or(NetError::AddressesExhausted)?;
        let network = Self::with_lease(spec, sockets, shape_counters, lease);
        network.resolve_listed();
        Ok(network)
    }

    /// Starts the network of a VM resumed from `state` (see [`start`](Self::start)): the same
    /// address and MAC (claimed again, shared with whoever took it meanwhile, which is harmless:
    /// every VM has a NAT of its own) and the same narrowings. The forwards are made again by
    /// [`restore_forwards`](Self::restore_forwards), once QEMU's monitor answers.
    pub fn resume(
        spec: &NetworkSpec,
        sockets: NicSockets,
        shape_counters: Arc<NetCounters>,
        state: &NetworkState,
    ) -> Result<Self, NetError> {
        let lease = AddressLease::claim(state.ipv4).ok_or_else(|| NetError::Invalid {
            field: "ipv4",
            why: format!("{} is not a guest address of the NAT's network", state.ipv4),
        })?;
        let network = Self::with_lease(spec, sockets, shape_counters, lease);
        for policy in &state.narrowings {
            network.filter.narrow(policy.clone());
        }
        network.resolve_listed();
        Ok(network)
    }

    fn with_lease(
        spec: &NetworkSpec,
        sockets: NicSockets,
        shape_counters: Arc<NetCounters>,
        lease: AddressLease,
    ) -> Self {
        let filter = Arc::new(EgressFilter::new(
            spec.egress.clone(),
            spec.host_ports.clone(),
            crate::policy::host_addresses(),
        ));
        let counters = Arc::new(NetCounters::default());
        let relay =
            relay::start(sockets, filter.clone(), Counters { vm: counters.clone(), shape: shape_counters });
        let forwards = Forwards::new(spec.forward_bind);
        Self { lease, filter, counters, forwards, lookups: Mutex::new(Vec::new()), _relay: relay }
    }

    /// What to start this network again from after a pause ([`resume`](Self::resume)).
    pub fn state(&self) -> NetworkState {
        NetworkState {
            ipv4: self.lease.ip(),
            narrowings: self.filter.narrowings(),
            forwards: self.forwards.list(),
        }
    }

    /// Makes a paused VM's `forwards` again, each at its old host address when that is free, else
    /// at a new one (logged); returns the forwards now in place.
    pub async fn restore_forwards(
        &self,
        monitor: &impl Monitor,
        forwards: &[(u16, SocketAddr)],
    ) -> Vec<(u16, SocketAddr)> {
        self.forwards.restore(monitor, self.lease.ip(), forwards).await
    }

    /// The address facts.
    pub fn info(&self) -> NetworkInfo {
        NetworkInfo {
            mac: addr::mac_string(self.lease.mac()),
            ipv4: self.lease.ip(),
            prefix_len: addr::PREFIX_LEN,
            gateway: addr::GATEWAY,
            dns: addr::DNS,
        }
    }

    /// The guest's MAC address, as bytes (what the guest's interface is given).
    pub fn mac(&self) -> [u8; 6] {
        self.lease.mac()
    }

    /// This VM's traffic so far.
    pub fn stats(&self) -> NetStats {
        self.counters.snapshot()
    }

    /// Forwards a host TCP port (on the shape's `forward_bind`, loopback by default; the port chosen
    /// by the kernel) to the guest's `guest_port`, through the VM's `monitor`; asking again for
    /// the same guest port returns the same address. The forward is a listening socket of QEMU's,
    /// gone with the VM.
    pub async fn forward_port(
        &self,
        monitor: &impl Monitor,
        guest_port: u16,
    ) -> Result<SocketAddr, NetError> {
        self.forwards.add(monitor, self.lease.ip(), guest_port).await
    }

    /// Removes the forward to `guest_port`.
    pub async fn remove_forward(&self, monitor: &impl Monitor, guest_port: u16) -> Result<(), NetError> {
        self.forwards.remove(monitor, guest_port).await
    }

    /// The forwards in place: `(guest port, host address)`, oldest first.
    pub fn forwards(&self) -> Vec<(u16, SocketAddr)> {
        self.forwards.list()
    }

    /// Narrows the egress policy: from now on a destination must pass `policy` too (it can never
    /// widen); the names it lists are resolved ahead of the guest's queries.
    pub fn narrow(&self, policy: EgressPolicy) {
        self.filter.narrow(policy);
        self.resolve_listed();
    }

    /// Resolves every listed name on the host in the background, so a guest that connects to a
    /// listed name's address without asking our DNS first is let through.
    fn resolve_listed(&self) {
        let names = self.filter.listed_names();
        if names.is_empty() {
            return;
        }
        let filter = self.filter.clone();
        let task = tokio::spawn(async move {
            for name in names {
                match relay::resolve(&name).await {
                    Ok(addrs) => {
                        filter.resolved(&name, &addrs);
                    }
                    Err(e) => tracing::debug!(%name, error = %e, "resolving a listed name failed"),
                }
            }
        });
        let mut lookups = self.lookups.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        lookups.retain(|lookup| !lookup.is_finished());
        lookups.push(task.abort_handle());
    }
}
