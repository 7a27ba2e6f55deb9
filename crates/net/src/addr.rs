//! Addresses: the NAT's private network, and one MAC + IPv4 address per live VM.
//!
//! Every VM has its own user-mode NAT, so two VMs could even share an address without meeting on a
//! wire. They still get distinct ones (and distinct MACs), allocated here for the whole process:
//! logs, metrics and a future shared backend can tell them apart, and a snapshot clone never keeps
//! its template's. The network is `100.96.0.0/16` (inside the shared address space of RFC 6598, so
//! it rarely shadows a real destination): the gateway (the host) is `.0.1`, the DNS address
//! answered by firepit is `.0.2`, guests get `.0.16` onwards; the MAC is the locally administered
//! `02:46:50` ("FP") followed by the address's last three octets' worth of index.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// The NAT's network.
pub(crate) const SUBNET: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 0);
/// Its prefix length.
pub(crate) const PREFIX_LEN: u8 = 16;
/// The gateway: connections to it on a `host_ports` port reach the host's loopback.
pub(crate) const GATEWAY: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 1);
/// Where the guest sends DNS queries (answered by firepit's filter, never by the NAT).
pub(crate) const DNS: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 2);
/// The first guest address's index in the subnet.
const FIRST_GUEST: u32 = 16;
/// One past the last (the broadcast address is not handed out).
const END: u32 = 1 << (32 - PREFIX_LEN);

/// Whether `ip` is inside the NAT's network.
pub(crate) fn in_subnet(ip: Ipv4Addr) -> bool {
    u32::from(ip) >> (32 - PREFIX_LEN) == u32::from(SUBNET) >> (32 - PREFIX_LEN)
}

#[derive(Debug, Default)]
struct Allocator {
    /// Index → live leases of it (more than one only when a resumed VM claimed its old address
    /// while another VM had it: harmless, every VM has a NAT of its own).
    used: BTreeMap<u32, u32>,
    /// Where the next search starts: addresses are reused as late as possible.
    next: u32,
}

static ALLOCATOR: Mutex<Allocator> = Mutex::new(Allocator { used: BTreeMap::new(), next: FIRST_GUEST });

/// One VM's MAC and IPv4 address, reserved until dropped.
#[derive(Debug)]
pub(crate) struct AddressLease {
    index: u32,
}

impl AddressLease {
    /// Reserves the next free address; `None` when all ~65 000 are in use.
    pub(crate) fn allocate() -> Option<Self> {
        let mut alloc = ALLOCATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let span = END - 1 - FIRST_GUEST;
        for step in 0..span {
            let index = FIRST_GUEST + (alloc.next - FIRST_GUEST + step) % span;
            if let std::collections::btree_map::Entry::Vacant(free) = alloc.used.entry(index) {
                free.insert(1);
                alloc.next = if index + 1 >= END - 1 { FIRST_GUEST } else { index + 1 };
                return Some(Self { index });
            }
        }
        None
    }

    /// Reserves `ip` again for a VM that had it before (a paused VM resumed: its guest keeps the
    /// address it was given). Shared with a VM that holds it meanwhile, if any; `None` when `ip`
    /// is not a guest address of the NAT's network.
    pub(crate) fn claim(ip: Ipv4Addr) -> Option<Self> {
        let index = u32::from(ip) & (END - 1);
        if !in_subnet(ip) || !(FIRST_GUEST..END - 1).contains(&index) {
            return None;
        }
        let mut alloc = ALLOCATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *alloc.used.entry(index).or_insert(0) += 1;
        Some(Self { index })
    }

    /// The guest's IPv4 address.
    pub(crate) fn ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(SUBNET) | self.index)
    }

    /// The guest's MAC address.
    pub(crate) fn mac(&self) -> [u8; 6] {
        let [_, hi, mid, lo] = self.index.to_be_bytes();
        [0x02, 0x46, 0x50, hi, mid, lo]
    }
}

impl Drop for AddressLease {
    fn drop(&mut self) {
        let mut alloc = ALLOCATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = alloc.used.get_mut(&self.index) {
            *count -= 1;
            if *count == 0 {
                alloc.used.remove(&self.index);
            }
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_leases_are_distinct_and_inside_the_subnet() {
        let leases: Vec<AddressLease> = (0..300).map(|_| AddressLease::allocate().unwrap()).collect();
        let ips: std::collections::BTreeSet<Ipv4Addr> = leases.iter().map(AddressLease::ip).collect();
        let macs: std::collections::BTreeSet<[u8; 6]> = leases.iter().map(AddressLease::mac).collect();
        assert_eq!((ips.len(), macs.len()), (300, 300));
        for lease in &leases {
            assert!(in_subnet(lease.ip()));
            assert!(u32::from(lease.ip()) > u32::from(DNS));
            assert_eq!(lease.mac()[0] & 0x03, 0x02, "unicast, locally administered");
        }
        let freed = leases[0].ip();
        drop(leases);
        let next = AddressLease::allocate().unwrap();
        assert_ne!(next.ip(), freed, "a freed address is not reused at once");
        assert!(!in_subnet(Ipv4Addr::new(100, 97, 0, 1)));
        assert_eq!(mac_string(next.mac()).len(), 17);
    }

    #[test]
    fn a_claimed_address_is_the_same_and_stays_reserved_until_every_claim_is_dropped() {
        let first = AddressLease::allocate().unwrap();
        let again = AddressLease::claim(first.ip()).unwrap();
        assert_eq!((again.ip(), again.mac()), (first.ip(), first.mac()));
        drop(first);
        let index = again.index;
        assert!(ALLOCATOR.lock().unwrap().used.contains_key(&index), "still claimed");
        drop(again);
        assert!(!ALLOCATOR.lock().unwrap().used.contains_key(&index));
        for outside in [GATEWAY, DNS, Ipv4Addr::new(10, 0, 0, 16), Ipv4Addr::new(100, 96, 255, 255)] {
            assert!(AddressLease::claim(outside).is_none(), "{outside}");
        }
    }
}
