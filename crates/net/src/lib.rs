//! firepit's networking per VM: NAT egress under a policy, an IPv4 address and MAC of its own,
//! the guest's DNS answered by the host, traffic counters.
//!
//! # Why
//! Guests need the internet (package indexes, APIs) but a sandbox must decide *where*; the host
//! must reach servers in the guest; and snapshot clones must not share their template's MAC and
//! address. Shapes without a network (`network = "none"`, the default) get no NIC at all.
//!
//! # What it is not
//! - Not a description of the policy: what a shape allows ([`firepit_shape::NetworkSpec`], its
//!   [`EgressPolicy`](firepit_shape::EgressPolicy)) and whether a lease's policy only narrows it
//!   ([`NetworkSpec::check_narrowing`](firepit_shape::NetworkSpec::check_narrowing)) are plain data
//!   in `firepit-shape`, which the library, the config file and the API share without pulling in
//!   this crate's tasks. This crate *enforces* a policy on a VM's traffic.
//! - Not a QEMU driver: it names the NIC on QEMU's command line ([`qemu_args`]), serves the
//!   sockets QEMU connects to and writes the NAT's monitor commands (port forwards), but starting
//!   QEMU, racing its exit and carrying those commands over QMP ([`Monitor`]) are `firepit-qemu`'s.
//!
//! # The design, and why
//! - **Backend: QEMU's user-mode NAT (libslirp), one per VM, inside the QEMU process.** No
//!   privileges, no helper process to supervise, its state migrates with the VM (snapshot clones
//!   restore with it), and it adds and removes port forwards at run time (`hostfwd_add`). passt
//!   (QEMU 7.2 `-netdev stream`) was measured next to it (see the benchmark `firepit bench net`):
//!   it is a second process per VM that must be started, confined and reaped, and the packaged
//!   2023-03 version takes forwards only at start. Neither filters by destination.
//! - **Policy: our own filter in the frame path.** QEMU's `filter-redirector` objects send every
//!   frame between the NIC and the NAT through four Unix sockets to this process (`relay`), which
//!   passes, drops or answers it (`policy`): a refused TCP connection gets a reset at once, a
//!   refused datagram or ping an ICMP unreachable, so the guest sees "refused", not a hang. Only
//!   what makes the NAT open a host socket needs a decision (a bare SYN, a datagram, a ping), so
//!   established traffic costs one queue hop. `restrict=on` + `guestfwd` could only map fixed
//!   addresses; a userspace TCP/IP stack of our own would be far more code to trust.
//! - **DNS: answered by the filter** (`dns`), resolving on the host only names the policy lists,
//!   and only answering with addresses the guest may then reach: the guest's answers and its
//!   allowed destinations cannot disagree, and DNS is no way out for a guest held to a list.
//! - **Addresses** (`addr`): `100.96.0.0/16`, one address and MAC per live VM. They are not on
//!   QEMU's command line (a template and its clones share it): the guest agent sets them in the
//!   guest after a cold boot and after each restore, and virtio-net passes the MAC on to the device.
//! - **Forwards** (`forward`): `hostfwd_add` on a kernel-chosen port of `forward_bind` (loopback by
//!   default), read back from `info usernet`; the listening socket belongs to QEMU, so it goes with
//!   the VM.
//!
//! # How data flows
//! Before QEMU starts, its launcher binds the NIC's sockets ([`NicListeners::bind`]) and adds
//! [`qemu_args`] to the command line; once QEMU runs, it [accepts](NicListeners::accept) QEMU's
//! four connections and [starts](VmNetwork::start) the VM's network on them: an address, the
//! filter of the shape's policy, the relay tasks. Frames then flow
//!
//! ```text
//!  guest NIC ──rx-out──▶ [decide] ──rx-in──▶ slirp (NAT) ──tx-out──▶ [count] ──tx-in──▶ guest NIC
//!                           │ refused SYN → RST, refused datagram → ICMP, DNS query → answer ──▲
//! ```
//!
//! and are counted per VM ([`VmNetwork::stats`]) and per shape ([`NetCounters`], shared by the
//! shape's VMs). A lease narrows the policy with [`VmNetwork::narrow`]: a new layer a destination
//! must pass too. Dropping the [`VmNetwork`] stops the relay and frees the address.
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path, shape: std::sync::Arc<firepit_net::NetCounters>) -> Result<(), firepit_net::NetError> {
//! use firepit_net::{NicListeners, VmNetwork};
//! let spec = firepit_shape::NetworkSpec::nat();
//! let listeners = NicListeners::bind(dir, None)?;
//! let mut argv = vec!["-M".to_string(), "microvm".into()];
//! argv.extend(firepit_net::qemu_args(dir));
//! // ... spawn qemu-system-x86_64 with `argv` ...
//! let network = VmNetwork::start(&spec, listeners.accept().await?, shape)?;
//! println!("the guest is {}", network.info().ipv4);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod addr;
mod dns;
mod error;
mod forward;
mod network;
mod nic;
mod packet;
mod policy;
mod relay;
mod stats;

pub use error::NetError;
pub use forward::Monitor;
pub use network::{NetworkInfo, NetworkState, VmNetwork};
pub use nic::{NETDEV_ID, NicListeners, qemu_args};
pub use relay::NicSockets;
pub use stats::{NetCounters, NetStats};
