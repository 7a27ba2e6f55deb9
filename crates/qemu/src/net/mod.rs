//! Networking per VM: NAT egress under a policy, port forwards, a MAC and an IPv4 address of its own.
//!
//! # Why
//! Guests need the internet (package indexes, APIs) but a sandbox must decide *where*; the host
//! must reach servers in the guest; and snapshot clones must not share their template's MAC and
//! address. Shapes without a network (`network = "none"`, the default) get no NIC at all.
//!
//! # The design, and why
//! - **Backend: QEMU's user-mode NAT (libslirp), one per VM, inside the QEMU process.** No
//!   privileges, no helper process to supervise, its state migrates with the VM (snapshot clones
//!   restore with it), and it adds and removes port forwards at run time (`hostfwd_add`). passt
//!   (QEMU 7.2 `-netdev stream`) was measured next to it (see the benchmark `firepit bench net`):
//!   it is a second process per VM that must be started, confined and reaped, and the packaged
//!   2023-03 version takes forwards only at start. Neither filters by destination.
//! - **Policy: our own filter in the frame path.** QEMU's `filter-redirector` objects send every
//!   frame between the NIC and the NAT through four Unix sockets to this process ([`relay`]),
//!   which passes, drops or answers it ([`policy`]): a refused TCP connection gets a reset at once,
//!   a refused datagram or ping an ICMP unreachable, so the guest sees "refused", not a hang. Only
//!   what makes the NAT open a host socket needs a decision (a bare SYN, a datagram, a ping), so
//!   established traffic costs one queue hop. `restrict=on` + `guestfwd` could only map fixed
//!   addresses; a userspace TCP/IP stack of our own would be far more code to trust.
//! - **DNS: answered by the filter** ([`dns`]), resolving on the host only names the policy lists,
//!   and only answering with addresses the guest may then reach: the guest's answers and its
//!   allowed destinations cannot disagree, and DNS is no way out for a guest held to a list.
//! - **Addresses** ([`addr`]): `100.96.0.0/16`, one address and MAC per live VM. They are not on
//!   QEMU's command line (a template and its clones share it): the agent sets them in the guest
//!   after a cold boot and after each restore (`Request::ConfigureNetwork`), and virtio-net passes
//!   the MAC on to the device.
//! - **Forwards** ([`forward`]): `hostfwd_add` on a kernel-chosen port of `forward_bind`
//!   (loopback by default), read back from `info usernet`; the listening socket belongs to QEMU,
//!   so it goes with the VM.
//!
//! # How the parts fit
//! A shape's network is its `VmSpec::network` (a [`firepit_shape::NetworkSpec`]). A launch of a
//! shape with one carries a [`shapes::NetPlan`] (the spec and the shape's traffic counters, kept in
//! [`shapes::Networks`]), adds [`qemu_args`] to the command line, binds the sockets before QEMU
//! starts and [`vm_network::attach`]es after: an address, an [`policy::EgressFilter`], the
//! [`relay`] tasks. The VM handle owns the resulting [`vm_network::VmNetwork`]; the agent is told
//! the address after every cold boot and restore.

pub(crate) mod addr;
pub(crate) mod dns;
pub(crate) mod forward;
pub(crate) mod packet;
pub(crate) mod policy;
pub(crate) mod qemu_args;
pub(crate) mod relay;
pub(crate) mod shapes;
mod stats;
pub(crate) mod vm_network;

pub(crate) use qemu_args::Listeners;
pub(crate) use shapes::{NetPlan, Networks};
pub use stats::NetStats;
pub use vm_network::NetworkInfo;
pub(crate) use vm_network::VmNetwork;
