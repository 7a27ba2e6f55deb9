//! The crate's one error type.

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No etcd endpoint was given, or one is not a URL etcd-client accepts.
    #[error("bad etcd endpoints {endpoints:?}: give one or more URLs such as http://127.0.0.1:2379")]
    BadEndpoints {
        /// What was given.
        endpoints: Vec<String>,
        /// The client's complaint, when it had one.
        #[source]
        source: Option<etcd_client::Error>,
    },
    /// etcd did not answer (all members down, no quorum, or a network problem) within the retry
    /// budget. Existing leases keep working through the gateways' caches; placements wait for it.
    #[error("etcd ({endpoints}) did not answer {what}")]
    Unavailable {
        /// The endpoints tried.
        endpoints: String,
        /// The operation (`"reading the host records"`, ...).
        what: &'static str,
        /// The last error.
        #[source]
        source: etcd_client::Error,
    },
    /// The gateway has not read the host records yet (etcd has not answered since it started).
    #[error("the host records have not been read from etcd yet")]
    NotSynced,
}

impl ClusterError {
    /// True when etcd could not be reached (as opposed to a configuration mistake).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::NotSynced)
    }
}
