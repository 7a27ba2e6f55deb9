//! Network errors (a module of their own, like `config_error`, so that `error` and `net` both
//! sit above it).

/// Why a network operation failed.
///
/// ```
/// let err = firepit_qemu::NetError::NoNetwork { vm: "fp-1-2".into() };
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
    /// A port forward could not be added or removed.
    #[error("port forward to guest port {guest_port}: {message}")]
    Forward {
        /// The guest port (0 when removing by host address).
        guest_port: u16,
        /// QEMU's message.
        message: String,
    },
    /// No forward to that guest port exists.
    #[error("no forward to guest port {guest_port}")]
    NoSuchForward {
        /// The guest port.
        guest_port: u16,
    },
}
