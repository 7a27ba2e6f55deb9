//! Where everything lives in etcd: one prefix (default `/firepit`) and five kinds of keys below it.
//!
//! ```text
//! {prefix}/hosts/{host}                  HostRecord (JSON), under the host's etcd lease: gone ≤ TTL after the host dies
//! {prefix}/known-hosts/{host}            "" (no lease): every host that ever registered, for cleaning up after dead ones
//! {prefix}/leases/{lease_id}             LeaseRoute (JSON): which host holds a lease placed through a gateway
//! {prefix}/host-leases/{host}/{lease_id} LeaseRoute (JSON): the same route, indexed by host (a host sweeps its own)
//! {prefix}/idempotency/{key}             lease id: an acquire's Idempotency-Key, so a retry through any gateway replays
//! ```
//!
//! Host ids are checked by [`check_host_id`]: they become a path segment, so no `/`.

/// The key layout under one prefix.
///
/// ```
/// let keys = firepit_cluster::Keys::new("/firepit");
/// assert_eq!(keys.host("node-a"), "/firepit/hosts/node-a");
/// assert_eq!(keys.host_from_key(b"/firepit/hosts/node-a"), Some("node-a"));
/// assert_eq!(keys.host_lease("node-a", "l-1"), "/firepit/host-leases/node-a/l-1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// The prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "/firepit";

impl Default for Keys {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    /// The layout under `prefix` (a trailing `/` is ignored).
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.trim_end_matches('/').to_owned() }
    }

    /// The prefix, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every host record starts with this.
    pub fn hosts_prefix(&self) -> String {
        format!("{}/hosts/", self.prefix)
    }

    /// A host's record.
    pub fn host(&self, host: &str) -> String {
        format!("{}{host}", self.hosts_prefix())
    }

    /// The host id of a record's key, if it is one.
    pub fn host_from_key<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        let key = std::str::from_utf8(key).ok()?;
        key.strip_prefix(self.hosts_prefix().as_str()).filter(|h| check_host_id(h).is_ok())
    }

    /// Every known-host marker starts with this.
    pub fn known_hosts_prefix(&self) -> String {
        format!("{}/known-hosts/", self.prefix)
    }

    /// A host's known-host marker.
    pub fn known_host(&self, host: &str) -> String {
        format!("{}{host}", self.known_hosts_prefix())
    }

    /// A lease's route.
    pub fn lease(&self, lease_id: &str) -> String {
        format!("{}/leases/{lease_id}", self.prefix)
    }

    /// Every route of one host starts with this.
    pub fn host_leases_prefix(&self, host: &str) -> String {
        format!("{}/host-leases/{host}/", self.prefix)
    }

    /// A lease's route in its host's index.
    pub fn host_lease(&self, host: &str, lease_id: &str) -> String {
        format!("{}{lease_id}", self.host_leases_prefix(host))
    }

    /// An acquire's idempotency key.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}/idempotency/{key}", self.prefix)
    }
}

/// Longest host id.
pub const MAX_HOST_ID_LEN: usize = 63;

/// Checks a host id: 1 to 63 characters of `[A-Za-z0-9._-]`, starting with a letter or digit.
///
/// ```
/// assert!(firepit_cluster::check_host_id("node-a.example").is_ok());
/// assert!(firepit_cluster::check_host_id("a/b").is_err());
/// ```
pub fn check_host_id(host: &str) -> Result<(), String> {
    let first_ok = host.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if host.len() <= MAX_HOST_ID_LEN && first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a host id: use 1 to {MAX_HOST_ID_LEN} letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_of_the_prefix_is_ignored() {
        assert_eq!(Keys::new("/x/").host("h"), "/x/hosts/h");
    }

    #[test]
    fn keys_that_are_not_host_records_have_no_host() {
        let keys = Keys::default();
        assert_eq!(keys.host_from_key(b"/firepit/leases/l-1"), None);
        assert_eq!(keys.host_from_key(b"/firepit/hosts/a/b"), None);
        assert_eq!(keys.host_from_key(b"/firepit/hosts/"), None);
    }

    #[test]
    fn host_ids_are_path_segments() {
        assert!(check_host_id("").is_err());
        assert!(check_host_id("-a").is_err());
        assert!(check_host_id(&"a".repeat(64)).is_err());
        assert!(check_host_id("A1_b-c.d").is_ok());
    }
}
