//! A VM's network, as the QEMU side sees it: `firepit-net` enforces the policy and counts the
//! traffic; this module carries a shape's network into its launches ([`shapes`]), starts a VM's
//! network once QEMU has connected its NIC ([`Nat::start`]), and adds port forwards through QEMU's
//! monitor ([`forward`]).
//!
//! A launch of a shape with a network carries a [`NetPlan`] (the spec and the shape's traffic
//! counters, kept in [`Networks`]); `boot` binds the NIC's sockets before QEMU starts and accepts
//! QEMU's connections under the boot deadline, then [`Nat::start`]s the network. The VM handle owns
//! the resulting [`Nat`]; the guest agent is told the address after every cold boot and restore.

pub(crate) mod forward;
pub(crate) mod shapes;

use firepit_net::{NicSockets, VmNetwork};

pub(crate) use forward::Forwards;
pub(crate) use shapes::{NetPlan, Networks};

use crate::error::QemuError;

/// A VM's network: `firepit-net`'s part (address, filter, relay, counters) and the port forwards
/// QEMU's NAT holds for it.
#[derive(Debug)]
pub(crate) struct Nat {
    pub(crate) network: VmNetwork,
    pub(crate) forwards: Forwards,
}

impl Nat {
    /// Starts the network of `plan` on the sockets QEMU connected.
    pub(crate) fn start(plan: &NetPlan, sockets: NicSockets) -> Result<Self, QemuError> {
        let network = VmNetwork::start(&plan.spec, sockets, plan.shape_counters.clone())?;
        Ok(Self { network, forwards: Forwards::new(plan.spec.forward_bind) })
    }
}
