//! One VM's network: its address, its filter, its relay tasks, its forwards and counters. Owned by
//! the VM handle; dropping it stops the relay and frees the address (QEMU, and with it the NAT and
//! every forward's listening socket, goes with the VM).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use firepit_agent::NetworkConfig;
use firepit_shape::EgressPolicy;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::addr::{self, AddressLease};
use super::policy::EgressFilter;
use super::qemu_args::Listeners;
use super::relay::{self, Relay};
use super::shapes::NetPlan;
use super::stats::{Counters, NetCounters, NetStats};
use crate::error::QemuError;
use crate::net_error::NetError;
use crate::process::QemuProcess;

/// Where a VM is on its network.
///
/// ```no_run
/// # async fn demo(vm: &firepit_qemu::QemuVm) -> Result<(), firepit_qemu::QemuError> {
/// let info = vm.network().expect("a shape with network = \"nat\"");
/// println!("{} at {} via {}", info.mac, info.ipv4, info.gateway);
/// # Ok(()) }
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

/// See the module docs.
#[derive(Debug)]
pub(crate) struct VmNetwork {
    lease: AddressLease,
    pub(crate) filter: Arc<EgressFilter>,
    counters: Arc<NetCounters>,
    pub(crate) forward_bind: IpAddr,
    /// Guest port → host address of each forward.
    pub(crate) forwards: Mutex<Vec<(u16, SocketAddr)>>,
    /// Serialises forward changes (see `forward::add`).
    pub(crate) forward_lock: tokio::sync::Mutex<()>,
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

/// Accepts QEMU's network connections and starts the VM's network (address, filter, relay).
pub(crate) async fn attach(
    plan: &NetPlan,
    listeners: Listeners,
    process: &QemuProcess,
    deadline: Instant,
) -> Result<VmNetwork, QemuError> {
    let sockets = listeners.accept(process, deadline).await?;
    let lease = AddressLease::allocate().ok_or(NetError::AddressesExhausted)?;
    let filter = Arc::new(EgressFilter::new(
        plan.spec.egress.clone(),
        plan.spec.host_ports.clone(),
        super::policy::host_addresses(),
    ));
    let counters = Arc::new(NetCounters::default());
    let relay = relay::start(
        sockets,
        filter.clone(),
        Counters { vm: counters.clone(), shape: plan.shape_counters.clone() },
    );
    let network = VmNetwork {
        lease,
        filter,
        counters,
        forward_bind: plan.spec.forward_bind,
        forwards: Mutex::new(Vec::new()),
        forward_lock: tokio::sync::Mutex::new(()),
        lookups: Mutex::new(Vec::new()),
        _relay: relay,
    };
    network.resolve_listed();
    Ok(network)
}

impl VmNetwork {
    /// The address facts.
    pub(crate) fn info(&self) -> NetworkInfo {
        NetworkInfo {
            mac: addr::mac_string(self.lease.mac()),
            ipv4: self.lease.ip(),
            prefix_len: addr::PREFIX_LEN,
            gateway: addr::GATEWAY,
            dns: addr::DNS,
        }
    }

    /// What the agent is told.
    pub(crate) fn guest_config(&self) -> NetworkConfig {
        NetworkConfig {
            mac: self.lease.mac(),
            address: self.lease.ip().octets(),
            prefix_len: addr::PREFIX_LEN,
            gateway: addr::GATEWAY.octets(),
            nameservers: vec![addr::DNS.octets()],
        }
    }

    pub(crate) fn stats(&self) -> NetStats {
        self.counters.snapshot()
    }

    /// Narrows the egress policy and resolves the names it lists.
    pub(crate) fn narrow(&self, policy: EgressPolicy) {
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
