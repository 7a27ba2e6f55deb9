//! Egress policies: where a guest of a `network = "nat"` shape may connect, as data (parsed and
//! checked here, whether one narrows another in `narrowing`; enforced by `firepit-net`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Most entries an egress allow-list may have.
pub const MAX_EGRESS_RULES: usize = 256;

/// Where a guest may open connections (TCP), send datagrams (UDP) or ping (ICMP echo).
///
/// Whatever the policy, the guest never reaches the host's loopback (except `host_ports`), the
/// NAT's own network, multicast or broadcast; the host's own addresses and link-local ones
/// (e.g. a cloud metadata service) only through a list entry naming that exact address.
///
/// ```
/// use firepit_shape::EgressPolicy;
/// let policy: EgressPolicy = serde_json::from_str(r#"["1.2.3.0/24:443", "example.com"]"#).unwrap();
/// assert!(matches!(policy, EgressPolicy::List(ref rules) if rules.len() == 2));
/// assert_eq!(serde_json::to_string(&EgressPolicy::Deny).unwrap(), "\"deny\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum EgressPolicy {
    /// Nowhere.
    Deny,
    /// Anywhere except the host itself and the addresses listed above.
    #[default]
    Allow,
    /// Only to these destinations.
    List(Vec<EgressRule>),
}

impl fmt::Display for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deny => f.write_str("deny"),
            Self::Allow => f.write_str("allow"),
            Self::List(rules) => {
                f.write_str("[")?;
                for (i, rule) in rules.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{rule}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl Serialize for EgressPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Deny => serializer.serialize_str("deny"),
            Self::Allow => serializer.serialize_str("allow"),
            Self::List(rules) => rules.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for EgressPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PolicyVisitor;
        impl<'de> Visitor<'de> for PolicyVisitor {
            type Value = EgressPolicy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"deny\", \"allow\" or a list of \"CIDR[:port]\" / \"name[:port]\" entries")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EgressPolicy, E> {
                match v {
                    "deny" => Ok(EgressPolicy::Deny),
                    "allow" => Ok(EgressPolicy::Allow),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EgressPolicy, A::Error> {
                let mut rules = Vec::new();
                while let Some(rule) = seq.next_element::<EgressRule>()? {
                    if rules.len() == MAX_EGRESS_RULES {
                        return Err(de::Error::custom(format!("more than {MAX_EGRESS_RULES} egress rules")));
                    }
                    rules.push(rule);
                }
                Ok(EgressPolicy::List(rules))
            }
        }
        deserializer.deserialize_any(PolicyVisitor)
    }
}

/// One allow-list entry: a destination and optionally one port.
///
/// ```
/// use firepit_shape::{EgressRule, EgressTarget};
/// let rule: EgressRule = "10.0.0.0/8:443".parse().unwrap();
/// assert_eq!(rule.port, Some(443));
/// assert!(matches!(rule.target, EgressTarget::Net { prefix: 8, .. }));
/// assert!("10.0.0.1/8".parse::<EgressRule>().unwrap_err().contains("10.0.0.0/8"));
/// assert_eq!("*.Example.COM".parse::<EgressRule>().unwrap().to_string(), "*.example.com");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EgressRule {
    /// The destination.
    pub target: EgressTarget,
    /// The TCP/UDP port; `None`: every port (and ICMP echo).
    pub port: Option<u16>,
}

/// The destination of an [`EgressRule`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EgressTarget {
    /// An IPv4 network (`/32` for one address).
    Net {
        /// The network address (host bits zero).
        addr: Ipv4Addr,
        /// Prefix length, 0..=32.
        prefix: u8,
    },
    /// A host name, lower case, resolved on the host; `*.example.com` matches sub-domains only.
    Name(String),
}

impl EgressTarget {
    /// Whether `ip` is in this network (never for a name).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        match self {
            Self::Net { addr, prefix } => mask(u32::from(ip), *prefix) == u32::from(*addr),
            Self::Name(_) => false,
        }
    }

    /// Whether the query name `name` (lower case, no trailing dot) matches this name entry.
    pub fn matches_name(&self, name: &str) -> bool {
        match self {
            Self::Name(pattern) => match pattern.strip_prefix("*.") {
                Some(suffix) => name.len() > suffix.len() + 1 && name.ends_with(&format!(".{suffix}")),
                None => name == pattern,
            },
            Self::Net { .. } => false,
        }
    }
}

fn mask(ip: u32, prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { ip & (u32::MAX << (32 - u32::from(prefix.min(32)))) }
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            EgressTarget::Net { addr, prefix: 32 } => write!(f, "{addr}")?,
            EgressTarget::Net { addr, prefix } => write!(f, "{addr}/{prefix}")?,
            EgressTarget::Name(name) => f.write_str(name)?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

impl FromStr for EgressRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.contains('[') || text.matches(':').count() > 1 {
            return Err(format!("{text:?}: IPv6 is not supported (guests have IPv4 only)"));
        }
        let (dest, port) = match text.rsplit_once(':') {
            Some((dest, port)) => {
                let port: u16 =
                    port.parse().map_err(|_| format!("{text:?}: port {port:?} is not a number 1..=65535"))?;
                if port == 0 {
                    return Err(format!("{text:?}: port 0 is not a port"));
                }
                (dest, Some(port))
            }
            None => (text, None),
        };
        let target = if let Some((addr, prefix)) = dest.split_once('/') {
            let addr: Ipv4Addr =
                addr.parse().map_err(|_| format!("{text:?}: {addr:?} is not an IPv4 address"))?;
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| format!("{text:?}: prefix {prefix:?} is not 0..=32"))?;
            let network = Ipv4Addr::from(mask(u32::from(addr), prefix));
            if network != addr {
                return Err(format!("{text:?} has host bits set: write {network}/{prefix}"));
            }
            EgressTarget::Net { addr, prefix }
        } else if let Ok(addr) = dest.parse::<Ipv4Addr>() {
            EgressTarget::Net { addr, prefix: 32 }
        } else {
            EgressTarget::Name(host_name(dest).map_err(|why| format!("{text:?}: {why}"))?)
        };
        Ok(Self { target, port })
    }
}

/// A checked, lower-cased host name (optionally `*.` + name).
fn host_name(name: &str) -> Result<String, String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let plain = name.strip_prefix("*.").unwrap_or(&name);
    if plain.is_empty() || plain.len() > 253 {
        return Err("a host name has 1..=253 characters".into());
    }
    for label in plain.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("{label:?} is not a host name label (letters, digits, '-', at most 63)"));
        }
    }
    if plain.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("not an IPv4 address and not a host name".into());
    }
    Ok(name)
}

impl Serialize for EgressRule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EgressRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> EgressRule {
        text.parse().unwrap()
    }

    #[test]
    fn rules_parse_and_print_back() {
        for text in [
            "10.0.0.0/8",
            "10.0.0.0/8:443",
            "1.2.3.4",
            "1.2.3.4:80",
            "pypi.org",
            "pypi.org:443",
            "*.a.b",
            "0.0.0.0/0",
        ] {
            assert_eq!(rule(text).to_string(), text);
        }
        assert_eq!(rule("1.2.3.4/32").to_string(), "1.2.3.4");
        assert_eq!(rule("PyPI.org.").to_string(), "pypi.org");
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let err = |text: &str| text.parse::<EgressRule>().unwrap_err();
        assert!(err("::1").contains("IPv6"));
        assert!(err("[::1]:80").contains("IPv6"));
        assert!(err("a.b:0").contains("port 0"));
        assert!(err("a.b:http").contains("not a number"));
        assert!(err("1.2.3.4/33").contains("0..=32"));
        assert!(err("10.1.0.0/8").contains("write 10.0.0.0/8"));
        assert!(err("bad host").contains("label"));
        assert!(err("1.2.3").contains("not an IPv4"));
        assert!(err("").contains("1..=253"));
    }

    #[test]
    fn networks_and_names_match() {
        assert!(rule("10.0.0.0/8").target.contains("10.200.1.1".parse().unwrap()));
        assert!(!rule("10.0.0.0/8").target.contains("11.0.0.1".parse().unwrap()));
        assert!(rule("0.0.0.0/0").target.contains("8.8.8.8".parse().unwrap()));
        assert!(rule("1.2.3.4").target.contains("1.2.3.4".parse().unwrap()));
        let wild = rule("*.example.com").target;
        assert!(wild.matches_name("a.example.com") && wild.matches_name("a.b.example.com"));
        assert!(!wild.matches_name("example.com") && !wild.matches_name("badexample.com"));
        assert!(rule("example.com").target.matches_name("example.com"));
        assert!(!rule("example.com").target.matches_name("a.example.com"));
    }
}
