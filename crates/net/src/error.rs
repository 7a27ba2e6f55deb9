//! Why a network operation failed: this crate's own (addresses, sockets) and those of the VM's
//! provider that drives the NAT (a VM without a network, a port forward QEMU refused).

/// Why a network operation failed.
///
/// ```
/// let err = firepit_net::NetError::NoNetwork { vm: "fp-1-2".into() };
/// assert!(err.to_string().contains("network = \"nat\""));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The VM has no network device.
    #[error("VM {vm} has no network: its shape needs network = \"nat\" (VmSpec::network)")]
    NoNetwork {
        /// The VM's id.
        vm: String,
    },
    /// Every guest address of the NAT network is in use.
    #[error("no free guest address left for a new VM (about 65 000 VMs with a network are alive)")]
    AddressesExhausted,
    /// A shape's network description is not valid.
    #[error("invalid network.{field}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// QEMU's monitor could not run a command (QEMU exited, its monitor refused); the cause says
    /// why.
    #[error("QEMU's monitor failed")]
    Monitor(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A port forward could not be added or removed.
    #[error("port forward to guest port {guest_port}: {message}")]
    Forward {
        /// The guest port (0 when removing by host address).
        guest_port: u16,
        /// QEMU's message.
        message: String,
    },
    /// A socket of the NIC could not be bound or accepted.
    #[error("{what}: {source}")]
    Socket {
        /// What was being done, naming the path.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No forward to that guest port exists.
    #[error("no forward to guest port {guest_port}")]
    NoSuchForward {
        /// The guest port.
        guest_port: u16,
    },
}
