//! The egress decision: may this guest open a connection to (or send a datagram to) that address
//! and port, and may it learn the address of that name?
//!
//! A VM's filter holds *layers*: the shape's [`EgressPolicy`] first, then one per narrowing (a
//! lease's). A destination passes only if every layer lets it through, so a narrowing can only
//! take away. Beyond the layers, fixed rules hold whatever the policy says:
//! - never: `0.0.0.0/8`, the host's loopback `127.0.0.0/8`, multicast and reserved/broadcast
//!   (`224.0.0.0/3`), and the NAT's own network (user-mode NAT maps every address in it but the
//!   DNS one to the host's loopback), except the gateway on a `host_ports` TCP port;
//! - only when the *shape's* list names that exact address (`/32`): the host's own interface
//!   addresses and link-local `169.254.0.0/16` (cloud metadata services). `allow`, a wider CIDR
//!   or a name that resolves there does not open them.
//!
//! Names: a list entry `name[:port]` lets the guest resolve `name` (the filter answers its DNS, see
//! [`crate::dns`]); the addresses the host resolved are then allowed for that entry's port.
//! A layer that is `allow`, or a list with a `0.0.0.0/0` entry, lets any name be resolved.

use std::net::Ipv4Addr;
use std::sync::{Mutex, RwLock};

use firepit_shape::{EgressPolicy, EgressRule, EgressTarget};

use crate::addr;

/// Most resolved addresses remembered per layer (a guest resolving names in a loop cannot grow
/// the host's memory without bound; the oldest are forgotten).
const MAX_RESOLVED: usize = 4096;

/// The transport a destination is reached with (ICMP has no port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Tcp,
    Udp,
    Icmp,
}

/// How one layer matches a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    No,
    /// By `allow`, a CIDR wider than one address, or a resolved name.
    Wide,
    /// By an entry naming exactly this address.
    Exact,
}

#[derive(Debug)]
struct Layer {
    policy: EgressPolicy,
    /// Addresses resolved for this layer's name entries, with the entries' ports, in insertion order.
    resolved: Mutex<Vec<(Ipv4Addr, Option<u16>)>>,
}

impl Layer {
    fn new(policy: EgressPolicy) -> Self {
        Self { policy, resolved: Mutex::new(Vec::new()) }
    }

    fn rules(&self) -> &[EgressRule] {
        match &self.policy {
            EgressPolicy::List(rules) => rules,
            _ => &[],
        }
    }

    fn matches(&self, dst: Ipv4Addr, port: Option<u16>) -> Match {
        let port_ok = |rule_port: Option<u16>| rule_port.is_none() || rule_port == port;
        match &self.policy {
            EgressPolicy::Deny => Match::No,
            EgressPolicy::Allow => Match::Wide,
            EgressPolicy::List(rules) => {
                let mut best = Match::No;
                for rule in rules {
                    if let EgressTarget::Net { prefix, .. } = rule.target
                        && rule.target.contains(dst)
                        && port_ok(rule.port)
                    {
                        best = best.max(if prefix == 32 { Match::Exact } else { Match::Wide });
                    }
                }
                let resolved = self.resolved.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if best == Match::No
                    && resolved.iter().any(|(ip, rule_port)| *ip == dst && port_ok(*rule_port))
                {
                    best = Match::Wide;
                }
                best
            }
        }
    }

    fn allows_name(&self, name: &str) -> bool {
        match &self.policy {
            EgressPolicy::Deny => false,
            EgressPolicy::Allow => true,
            EgressPolicy::List(rules) => rules.iter().any(|rule| {
                rule.target.matches_name(name) || matches!(rule.target, EgressTarget::Net { prefix: 0, .. })
            }),
        }
    }

    fn remember(&self, name: &str, addrs: &[Ipv4Addr]) {
        let ports: Vec<Option<u16>> =
            self.rules().iter().filter(|rule| rule.target.matches_name(name)).map(|rule| rule.port).collect();
        let mut resolved = self.resolved.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for addr in addrs {
            for port in &ports {
                if !resolved.contains(&(*addr, *port)) {
                    resolved.push((*addr, *port));
                }
            }
        }
        let excess = resolved.len().saturating_sub(MAX_RESOLVED);
        resolved.drain(..excess);
    }
}

/// One VM's egress filter (see the module docs).
#[derive(Debug)]
pub(crate) struct EgressFilter {
    host_ports: Vec<u16>,
    host_addrs: Vec<Ipv4Addr>,
    layers: RwLock<Vec<std::sync::Arc<Layer>>>,
}

impl EgressFilter {
    /// A filter for a shape's `policy` and `host_ports`; `host_addrs` are the host's own addresses.
    pub(crate) fn new(policy: EgressPolicy, host_ports: Vec<u16>, host_addrs: Vec<Ipv4Addr>) -> Self {
        let layers = RwLock::new(vec![std::sync::Arc::new(Layer::new(policy))]);
        Self { host_ports, host_addrs, layers }
    }

    /// Adds a narrowing layer (a lease's policy): from now on a destination must pass it too.
    pub(crate) fn narrow(&self, policy: EgressPolicy) {
        let mut layers = self.layers.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        layers.push(std::sync::Arc::new(Layer::new(policy)));
    }

    /// The narrowing layers' policies, oldest first (the shape's own policy left out).
    pub(crate) fn narrowings(&self) -> Vec<EgressPolicy> {
        self.layers().iter().skip(1).map(|layer| layer.policy.clone()).collect()
    }

    fn layers(&self) -> Vec<std::sync::Arc<Layer>> {
        self.layers.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Names of every layer's name entries (for resolving them ahead of the guest's queries).
    pub(crate) fn listed_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for layer in self.layers() {
            for rule in layer.rules() {
                if let EgressTarget::Name(name) = &rule.target
                    && !name.starts_with("*.")
                    && !names.contains(name)
                {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// Whether the guest may reach `dst` (`port` for TCP and UDP) over `proto`.
    pub(crate) fn allows(&self, dst: Ipv4Addr, proto: Proto, port: Option<u16>) -> bool {
        let octets = dst.octets();
        if addr::in_subnet(dst) {
            return dst == addr::GATEWAY
                && proto == Proto::Tcp
                && port.is_some_and(|port| self.host_ports.contains(&port));
        }
        if octets[0] == 0 || octets[0] == 127 || octets[0] >= 224 {
            return false;
        }
        let protected = self.host_addrs.contains(&dst) || (octets[0] == 169 && octets[1] == 254);
        let layers = self.layers();
        let matches: Vec<Match> = layers.iter().map(|layer| layer.matches(dst, port)).collect();
        if matches.contains(&Match::No) {
            return false;
        }
        !protected || matches.first() == Some(&Match::Exact)
    }

    /// Whether the guest may resolve `name` (lower case, no trailing dot).
    pub(crate) fn allows_name(&self, name: &str) -> bool {
        !name.is_empty() && self.layers().iter().all(|layer| layer.allows_name(name))
    }

    /// Records what the host resolved `name` to, and returns the addresses the guest may be told:
    /// those it may reach on some port, so its DNS answers never name a destination it cannot use.
    pub(crate) fn resolved(&self, name: &str, addrs: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
        let layers = self.layers();
        for layer in &layers {
            layer.remember(name, addrs);
        }
        // Candidate ports: any (None) and every port a rule or a host port names.
        let mut ports: Vec<Option<u16>> = vec![None];
        for layer in &layers {
            ports.extend(layer.rules().iter().filter(|rule| rule.port.is_some()).map(|rule| rule.port));
        }
        addrs
            .iter()
            .copied()
            .filter(|ip| ports.iter().any(|port| self.allows(*ip, Proto::Tcp, *port)))
            .collect()
    }
}

/// The host's own IPv4 addresses (every interface), read with `getifaddrs`.
pub(crate) fn host_addresses() -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "getifaddrs failed: host addresses unknown");
        return found;
    }
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let node = unsafe { &*entry };
        if !node.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says its real type.
            let family = i32::from(unsafe { (*node.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*node.ifa_addr.cast::<libc::sockaddr_in>() };
                found.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        entry = node.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> EgressPolicy {
        serde_json::from_str(json).unwrap()
    }

    const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn filter(json: &str, host_ports: &[u16]) -> EgressFilter {
        EgressFilter::new(policy(json), host_ports.to_vec(), vec![Ipv4Addr::LOCALHOST, HOST])
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn allow_reaches_the_world_but_never_the_host_or_the_nat() {
        let f = filter(r#""allow""#, &[]);
        assert!(f.allows(ip("8.8.8.8"), Proto::Tcp, Some(443)));
        assert!(f.allows(ip("10.1.2.3"), Proto::Udp, Some(53)));
        assert!(f.allows(ip("1.1.1.1"), Proto::Icmp, None));
        for denied in ["127.0.0.1", "127.1.2.3", "0.0.0.0", "224.0.0.1", "255.255.255.255", "169.254.169.254"]
        {
            assert!(!f.allows(ip(denied), Proto::Tcp, Some(80)), "{denied}");
        }
        assert!(!f.allows(HOST, Proto::Tcp, Some(22)), "the host's own address");
        assert!(!f.allows(addr::GATEWAY, Proto::Tcp, Some(22)), "the gateway is the host's loopback");
        assert!(!f.allows(ip("100.96.0.77"), Proto::Tcp, Some(22)), "another address of the NAT");
    }

    #[test]
    fn host_ports_open_the_gateway_on_tcp_only_whatever_the_policy() {
        let f = filter(r#""deny""#, &[8080]);
        assert!(f.allows(addr::GATEWAY, Proto::Tcp, Some(8080)));
        assert!(!f.allows(addr::GATEWAY, Proto::Tcp, Some(8081)));
        assert!(!f.allows(addr::GATEWAY, Proto::Udp, Some(8080)));
        assert!(!f.allows(ip("8.8.8.8"), Proto::Tcp, Some(443)));
    }

    #[test]
    fn lists_match_cidrs_ports_and_exact_host_addresses() {
        let f = filter(r#"["10.0.0.0/8:443", "192.0.2.2:8000", "0.0.0.0/0:25"]"#, &[]);
        assert!(f.allows(ip("10.9.9.9"), Proto::Tcp, Some(443)));
        assert!(!f.allows(ip("10.9.9.9"), Proto::Tcp, Some(80)));
        assert!(!f.allows(ip("10.9.9.9"), Proto::Icmp, None), "a port entry does not allow ping");
        assert!(f.allows(HOST, Proto::Tcp, Some(8000)), "named exactly");
        assert!(!f.allows(HOST, Proto::Tcp, Some(25)), "0.0.0.0/0 does not open the host");
        assert!(f.allows(ip("9.9.9.9"), Proto::Tcp, Some(25)));
    }

    #[test]
    fn a_narrowing_layer_only_takes_away() {
        let f = filter(r#"["10.0.0.0/8", "192.0.2.2"]"#, &[]);
        f.narrow(policy(r#"["10.1.0.0/16:443", "192.0.2.2:80", "8.8.8.8"]"#));
        assert!(f.allows(ip("10.1.2.3"), Proto::Tcp, Some(443)));
        assert!(!f.allows(ip("10.2.2.3"), Proto::Tcp, Some(443)), "outside the lease's list");
        assert!(!f.allows(ip("8.8.8.8"), Proto::Tcp, Some(53)), "outside the shape's list");
        assert!(f.allows(HOST, Proto::Tcp, Some(80)));
        let widened = filter(r#""allow""#, &[]);
        widened.narrow(policy(r#"["192.0.2.2"]"#));
        assert!(!widened.allows(HOST, Proto::Tcp, Some(80)), "a lease cannot open the host");
        widened.narrow(policy(r#""deny""#));
        assert!(!widened.allows(ip("8.8.8.8"), Proto::Tcp, Some(443)));
        assert_eq!(
            widened.narrowings(),
            [policy(r#"["192.0.2.2"]"#), policy(r#""deny""#)],
            "kept for a resume"
        );
    }

    #[test]
    fn names_resolve_only_when_listed_and_their_addresses_are_then_allowed() {
        let f = filter(r#"["example.com:443", "*.pkg.dev"]"#, &[]);
        assert!(f.allows_name("example.com") && f.allows_name("a.pkg.dev"));
        assert!(!f.allows_name("evil.com") && !f.allows_name("pkg.dev"));
        let addr = ip("93.184.216.34");
        assert!(!f.allows(addr, Proto::Tcp, Some(443)), "not before it was resolved");
        let told = f.resolved("example.com", &[addr, Ipv4Addr::LOCALHOST, HOST]);
        assert_eq!(told, [addr], "loopback and host answers are not passed on");
        assert!(f.allows(addr, Proto::Tcp, Some(443)));
        assert!(!f.allows(addr, Proto::Tcp, Some(80)), "the entry's port holds");
        assert!(!filter(r#""deny""#, &[]).allows_name("example.com"));
        assert!(filter(r#""allow""#, &[]).allows_name("anything.org"));
        assert!(filter(r#"["0.0.0.0/0:443"]"#, &[]).allows_name("anything.org"));
        assert!(!filter(r#"["10.0.0.0/8"]"#, &[]).allows_name("anything.org"));
        assert_eq!(f.listed_names(), ["example.com"]);
    }

    #[test]
    fn host_addresses_include_loopback() {
        assert!(host_addresses().contains(&Ipv4Addr::LOCALHOST));
    }
}
