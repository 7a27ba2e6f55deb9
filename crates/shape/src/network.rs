//! A shape's network: none at all (the default), or NAT egress under a policy.
//!
//! This is the description only; `firepit-net` enforces it (a user-mode NAT per VM behind
//! firepit's own packet filter, started by `firepit-qemu` with the VM). Written in a config file as
//! `network = "nat"` (every other field at its default) or as a table:
//!
//! ```toml
//! network = { mode = "nat", egress = ["pypi.org:443", "*.pythonhosted.org:443", "10.1.0.0/16"], host_ports = [8080] }
//! ```
//!
//! ```
//! use firepit_shape::{EgressPolicy, NetworkMode, NetworkSpec};
//! let nat: NetworkSpec = serde_json::from_str("\"nat\"").unwrap();
//! assert_eq!(nat.mode, NetworkMode::Nat);
//! assert_eq!(nat.egress, EgressPolicy::Allow);
//! let listed: NetworkSpec =
//!     serde_json::from_str(r#"{"mode": "nat", "egress": ["pypi.org:443", "10.0.0.0/8"]}"#).unwrap();
//! assert_eq!(listed.egress.to_string(), "[pypi.org:443, 10.0.0.0/8]");
//! assert_eq!(NetworkSpec::default().mode, NetworkMode::None);
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::egress::{EgressPolicy, MAX_EGRESS_RULES};

/// Most host ports a shape may open to its guests.
pub const MAX_HOST_PORTS: usize = 64;

/// Whether a shape's VMs have a network interface.
///
/// ```
/// assert_eq!(firepit_shape::NetworkMode::Nat.to_string(), "nat");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// No network device at all: the guest has only `lo`.
    #[default]
    None,
    /// One virtio NIC behind a user-mode NAT (no privileges needed), egress filtered by policy.
    Nat,
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Nat => "nat",
        })
    }
}

/// A shape's network. `network = "nat"` in a config file is `NetworkSpec::nat()`.
///
/// ```
/// use firepit_shape::{EgressPolicy, NetworkSpec};
/// let spec = NetworkSpec { egress: EgressPolicy::Deny, host_ports: vec![8080], ..NetworkSpec::nat() };
/// assert!(spec.validate().is_ok());
/// assert_eq!(spec.forward_bind.to_string(), "127.0.0.1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkSpec {
    /// `none` (default) or `nat`.
    pub mode: NetworkMode,
    /// Where guests may connect: `"allow"` (default: anywhere but the host itself), `"deny"`
    /// (nowhere), or a list of `CIDR[:port]`, `IP[:port]` and `name[:port]` entries (`*.name`
    /// matches sub-domains). Names are resolved on the host, which also answers the guest's DNS
    /// queries, for listed names only. A lease can narrow it, never widen it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object, example = json!(["pypi.org:443", "10.1.0.0/16"])))]
    pub egress: EgressPolicy,
    /// TCP ports of the host's loopback the guest may reach, at its gateway address. Default none:
    /// the guest cannot reach the host's own services.
    pub host_ports: Vec<u16>,
    /// Where port forwards listen on the host. Default `127.0.0.1`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub forward_bind: IpAddr,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            mode: NetworkMode::None,
            egress: EgressPolicy::Allow,
            host_ports: Vec::new(),
            forward_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

impl NetworkSpec {
    /// NAT with every other field at its default (egress `allow`, no host ports, forwards on loopback).
    pub fn nat() -> Self {
        Self { mode: NetworkMode::Nat, ..Self::default() }
    }

    /// Whether VMs of this shape get a network device.
    pub fn is_enabled(&self) -> bool {
        self.mode == NetworkMode::Nat
    }

    /// Checks the fields: at most [`MAX_EGRESS_RULES`] rules and [`MAX_HOST_PORTS`] host ports, no
    /// port 0, and no egress settings on a shape without a network. Errors are `(field, why)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let EgressPolicy::List(rules) = &self.egress
            && rules.len() > MAX_EGRESS_RULES
        {
            return Err(("egress", format!("{} rules; at most {MAX_EGRESS_RULES}", rules.len())));
        }
        if self.host_ports.len() > MAX_HOST_PORTS {
            return Err(("host_ports", format!("{} ports; at most {MAX_HOST_PORTS}", self.host_ports.len())));
        }
        if self.host_ports.contains(&0) {
            return Err(("host_ports", "port 0 is not a port".into()));
        }
        if self.mode == NetworkMode::None
            && (self.egress != EgressPolicy::Allow || !self.host_ports.is_empty())
        {
            return Err(("mode", "`egress` and `host_ports` need mode = \"nat\"".into()));
        }
        Ok(())
    }
}

/// The table form, field by field (every field optional).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkTable {
    #[serde(default)]
    mode: NetworkMode,
    #[serde(default)]
    egress: EgressPolicy,
    #[serde(default)]
    host_ports: Vec<u16>,
    #[serde(default)]
    forward_bind: Option<IpAddr>,
}

impl<'de> Deserialize<'de> for NetworkSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;
        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = NetworkSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"none\", \"nat\" or a table { mode, egress, host_ports, forward_bind }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NetworkSpec, E> {
                let mode = NetworkMode::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(NetworkSpec { mode, ..NetworkSpec::default() })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NetworkSpec, A::Error> {
                let table = NetworkTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(NetworkSpec {
                    mode: table.mode,
                    egress: table.egress,
                    host_ports: table.host_ports,
                    forward_bind: table.forward_bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                })
            }
        }
        deserializer.deserialize_any(SpecVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_is_a_word_or_a_table_and_unknown_keys_are_refused() {
        let word: NetworkSpec =
            toml::from_str::<toml::Table>("n = \"nat\"").unwrap()["n"].clone().try_into().unwrap();
        assert_eq!(word, NetworkSpec::nat());
        let table: NetworkSpec = serde_json::from_str(
            r#"{"mode":"nat","egress":"deny","host_ports":[8080],"forward_bind":"0.0.0.0"}"#,
        )
        .unwrap();
        assert_eq!(table.egress, EgressPolicy::Deny);
        assert_eq!(table.forward_bind.to_string(), "0.0.0.0");
        let round: NetworkSpec = serde_json::from_str(&serde_json::to_string(&table).unwrap()).unwrap();
        assert_eq!(round, table);
        assert!(serde_json::from_str::<NetworkSpec>(r#"{"mode":"nat","egres":"deny"}"#).is_err());
        assert!(serde_json::from_str::<NetworkSpec>(r#""bridge""#).is_err());
        let bad =
            serde_json::from_str::<NetworkSpec>(r#"{"mode":"nat","egress":["10.1.0.0/8"]}"#).unwrap_err();
        assert!(bad.to_string().contains("host bits"), "{bad}");
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(NetworkSpec::nat().validate(), Ok(()));
        let none_with_ports = NetworkSpec { host_ports: vec![80], ..NetworkSpec::default() };
        assert_eq!(none_with_ports.validate().unwrap_err().0, "mode");
        let zero = NetworkSpec { host_ports: vec![0], ..NetworkSpec::nat() };
        assert_eq!(zero.validate().unwrap_err().0, "host_ports");
        let many = NetworkSpec { host_ports: (1..=65).collect(), ..NetworkSpec::nat() };
        assert_eq!(many.validate().unwrap_err().0, "host_ports");
    }
}
