//! Whether one egress policy only narrows another (a lease's, its shape's): next to the policy
//! type, as data, so that whoever holds two policies can ask — the daemon does at acquire, before
//! a VM is taken from the pool, so a refused request costs no VM.
//!
//! The VM enforces the intersection of both policies anyway (`firepit-net`'s filter layers every
//! narrowing over the shape's policy and can never widen it); this check exists to tell the client
//! at once that it asked for more than the shape gives, instead of handing out a VM whose guest is
//! then refused where the client expected to connect. The rules, entry by entry (a lease entry must
//! be covered by one shape entry):
//! - a network entry is covered by a network entry that contains it, on the same port or on every
//!   port; a name entry by the same name, or a `*.` wildcard above it, same port rule;
//! - a name is never covered by a network entry nor the reverse (what a name resolves to is not
//!   known until the guest asks), so a shape listing only addresses refuses lease names;
//! - `"deny"` (or an empty list) narrows every shape; `"allow"` only an `allow` shape;
//! - under an `allow` shape, entries wholly inside `127.0.0.0/8` or `169.254.0.0/16` are refused:
//!   `allow` never reaches them and a lease cannot add them.

use std::net::Ipv4Addr;

use crate::{EgressPolicy, EgressRule, EgressTarget, NetworkSpec};

/// Why a lease's egress request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NarrowingError {
    /// The shape has no network, and the request allows something.
    #[error(
        "shape `{shape}` has no network, so egress {asked} cannot be granted: give the shape \
         network = \"nat\" (in the config file, or `\"network\": \"nat\"` in PUT /v1/shapes/{shape})"
    )]
    NetworkDisabled {
        /// The shape.
        shape: String,
        /// The lease's policy, as written.
        asked: String,
    },
    /// An entry (or `allow`) is not within the shape's policy.
    #[error(
        "egress {entry} is not within shape `{shape}`'s egress policy {shape_policy}: a lease can only \
         narrow its shape's policy (ask for a subset of it, or \"deny\")"
    )]
    Widens {
        /// The shape.
        shape: String,
        /// The offending entry, or `allow`.
        entry: String,
        /// The shape's policy.
        shape_policy: String,
    },
}

impl NetworkSpec {
    /// Checks that `lease` only narrows the egress of this network, shape `shape`'s (named in the
    /// errors).
    ///
    /// ```
    /// use firepit_shape::{EgressPolicy, NetworkSpec};
    /// let shape = NetworkSpec { egress: serde_json::from_str(r#"["10.0.0.0/8:443", "*.example.com"]"#).unwrap(), ..NetworkSpec::nat() };
    /// let lease = |json: &str| -> EgressPolicy { serde_json::from_str(json).unwrap() };
    /// assert!(shape.check_narrowing("web", &lease(r#"["10.1.0.0/16:443", "api.example.com"]"#)).is_ok());
    /// assert!(shape.check_narrowing("web", &lease(r#"["10.1.0.0/16"]"#)).is_err()); // every port: wider
    /// assert!(shape.check_narrowing("web", &lease(r#""allow""#)).is_err());
    /// assert!(shape.check_narrowing("web", &EgressPolicy::Deny).is_ok());
    /// ```
    pub fn check_narrowing(&self, shape: &str, lease: &EgressPolicy) -> Result<(), NarrowingError> {
        let nothing = match lease {
            EgressPolicy::Deny => true,
            EgressPolicy::List(rules) => rules.is_empty(),
            EgressPolicy::Allow => false,
        };
        if nothing {
            return Ok(());
        }
        if !self.is_enabled() {
            return Err(NarrowingError::NetworkDisabled {
                shape: shape.to_owned(),
                asked: lease.to_string(),
            });
        }
        let widens = |entry: String| NarrowingError::Widens {
            shape: shape.to_owned(),
            entry,
            shape_policy: self.egress.to_string(),
        };
        match (&self.egress, lease) {
            (EgressPolicy::Allow, EgressPolicy::Allow) => Ok(()),
            (_, EgressPolicy::Allow) => Err(widens("\"allow\"".into())),
            (EgressPolicy::Allow, EgressPolicy::List(rules)) => {
                match rules.iter().find(|rule| never_under_allow(&rule.target)) {
                    Some(rule) => Err(widens(rule.to_string())),
                    None => Ok(()),
                }
            }
            (EgressPolicy::Deny, EgressPolicy::List(rules)) => {
                Err(widens(rules.first().map(ToString::to_string).unwrap_or_default()))
            }
            (EgressPolicy::List(allowed), EgressPolicy::List(rules)) => {
                match rules.iter().find(|rule| !allowed.iter().any(|outer| covers(outer, rule))) {
                    Some(rule) => Err(widens(rule.to_string())),
                    None => Ok(()),
                }
            }
            (_, EgressPolicy::Deny) => Ok(()),
        }
    }
}

/// Whether `outer` allows everything `inner` allows.
fn covers(outer: &EgressRule, inner: &EgressRule) -> bool {
    let port = outer.port.is_none() || outer.port == inner.port;
    port && match (&outer.target, &inner.target) {
        (EgressTarget::Net { prefix: outer_prefix, .. }, EgressTarget::Net { addr, prefix }) => {
            outer_prefix <= prefix && outer.target.contains(*addr)
        }
        (EgressTarget::Name(outer_name), EgressTarget::Name(name)) => {
            if outer_name == name {
                return true;
            }
            match name.strip_prefix("*.") {
                // A wildcard is covered by a wildcard at or above its suffix.
                Some(suffix) => outer_name
                    .strip_prefix("*.")
                    .is_some_and(|outer| suffix == outer || suffix.ends_with(&format!(".{outer}"))),
                None => outer.target.matches_name(name),
            }
        }
        _ => false,
    }
}

/// Entries `allow` never reaches (wholly inside loopback or link-local, e.g. a cloud metadata
/// service); a wider network that merely includes them is fine (its other addresses are reachable).
fn never_under_allow(target: &EgressTarget) -> bool {
    let EgressTarget::Net { addr, prefix } = target else { return false };
    let never = [(Ipv4Addr::new(127, 0, 0, 0), 8u8), (Ipv4Addr::new(169, 254, 0, 0), 16)];
    never.iter().any(|(net, bits)| {
        let top = |ip: Ipv4Addr| u32::from(ip) >> (32 - u32::from(*bits));
        prefix >= bits && top(*addr) == top(*net)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> EgressPolicy {
        serde_json::from_str(json).unwrap()
    }

    fn nat(json: &str) -> NetworkSpec {
        NetworkSpec { egress: policy(json), ..NetworkSpec::nat() }
    }

    #[test]
    fn subsets_pass_and_wider_entries_are_named() {
        let shape = nat(r#"["10.0.0.0/8:443", "1.2.3.4", "*.example.com:443", "pypi.org"]"#);
        for ok in [
            r#"["10.0.0.0/8:443"]"#,
            r#"["10.9.0.0/16:443", "1.2.3.4:80"]"#,
            r#"["a.example.com:443", "*.b.example.com:443", "pypi.org:443"]"#,
            r#""deny""#,
            "[]",
        ] {
            assert_eq!(shape.check_narrowing("s", &policy(ok)), Ok(()), "{ok}");
        }
        for (wide, entry) in [
            (r#"["10.0.0.0/8"]"#, "10.0.0.0/8"),
            (r#"["0.0.0.0/0:443"]"#, "0.0.0.0/0:443"),
            (r#"["1.2.3.0/24"]"#, "1.2.3.0/24"),
            (r#"["10.0.0.1:443", "example.com:443"]"#, "example.com:443"),
            (r#"["*.example.com"]"#, "*.example.com"),
            (r#"["files.pythonhosted.org"]"#, "files.pythonhosted.org"),
            (r#""allow""#, "\"allow\""),
        ] {
            match shape.check_narrowing("s", &policy(wide)) {
                Err(NarrowingError::Widens { entry: named, .. }) => assert_eq!(named, entry, "{wide}"),
                other => panic!("{wide}: {other:?}"),
            }
        }
    }

    #[test]
    fn deny_and_allow_shapes() {
        let deny = nat(r#""deny""#);
        assert!(deny.check_narrowing("s", &policy(r#"["1.2.3.4"]"#)).is_err());
        assert!(deny.check_narrowing("s", &EgressPolicy::Deny).is_ok());
        let allow = NetworkSpec::nat();
        assert!(allow.check_narrowing("s", &policy(r#"["8.8.8.8:53", "pypi.org"]"#)).is_ok());
        assert!(allow.check_narrowing("s", &EgressPolicy::Allow).is_ok());
        for never in [r#"["169.254.169.254"]"#, r#"["127.0.0.1:80"]"#, r#"["169.254.0.0/16"]"#] {
            assert!(allow.check_narrowing("s", &policy(never)).is_err(), "{never}");
        }
        assert!(
            allow.check_narrowing("s", &policy(r#"["0.0.0.0/0:443"]"#)).is_ok(),
            "includes, is not inside"
        );
    }

    #[test]
    fn a_shape_without_network_refuses_everything_but_deny() {
        let none = NetworkSpec::default();
        assert_eq!(none.check_narrowing("s", &EgressPolicy::Deny), Ok(()));
        let error = none.check_narrowing("plain", &policy(r#"["1.2.3.4"]"#)).unwrap_err();
        assert!(matches!(error, NarrowingError::NetworkDisabled { .. }));
        assert!(error.to_string().contains("network = \"nat\""), "{error}");
    }
}
