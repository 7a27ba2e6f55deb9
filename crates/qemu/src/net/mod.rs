//! A VM's network, as the QEMU side sees it: `firepit-net` enforces the policy, counts the traffic
//! and keeps the forwards; this module carries a shape's network into its launches ([`shapes`])
//! and lends `firepit-net` QEMU's monitor (over QMP) for the NAT's commands.
//!
//! A launch of a shape with a network carries a [`NetPlan`] (the spec and the shape's traffic
//! counters, kept in [`Networks`]); `boot` binds the NIC's sockets before QEMU starts, accepts
//! QEMU's connections under the boot deadline, then starts the VM's `firepit_net::VmNetwork`,
//! which the VM handle owns; the guest agent is told the address after every cold boot and restore.

pub(crate) mod shapes;

use firepit_net::{Monitor, NetError};
use serde_json::json;

pub(crate) use shapes::{NetPlan, Networks};

use crate::qmp::QmpClient;

/// The NAT's monitor commands (`hostfwd_add`, `info usernet`) go through QMP's human-monitor
/// passthrough.
impl Monitor for QmpClient {
    async fn run(&self, command: &str) -> Result<String, NetError> {
        let reply = self
            .execute("human-monitor-command", Some(json!({ "command-line": command })))
            .await
            .map_err(|e| NetError::Monitor(Box::new(e)))?;
        Ok(reply.as_str().unwrap_or_default().to_string())
    }
}
