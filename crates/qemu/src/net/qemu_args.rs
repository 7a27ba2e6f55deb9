//! The NIC on QEMU's command line, and the four sockets its frames come through.
//!
//! ```text
//! -netdev user,id=net0,ipv6=off,net=100.96.0.0/16,host=100.96.0.1,dns=100.96.0.2,dhcpstart=100.96.0.16
//! -device virtio-net-device,netdev=net0
//! -chardev socket,id=net-rx-out,path=DIR/net-rx-out.sock      (and rx-in, tx-out, tx-in)
//! -object filter-redirector,id=net-rx,netdev=net0,queue=rx,outdev=net-rx-out,indev=net-rx-in
//! -object filter-redirector,id=net-tx,netdev=net0,queue=tx,outdev=net-tx-out,indev=net-tx-in
//! ```
//!
//! No MAC on the command line: the argv must be the same for a snapshot template and its clones
//! (and a clone's device state carries the template's MAC anyway); the agent sets each VM's own MAC
//! in the guest and virtio-net passes it to the device. We listen on the sockets and QEMU connects
//! as it starts, like the console, so no frame can be missed.

use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;

use super::addr;
use super::relay::NetSockets;
use crate::error::SpawnError;
use crate::exit::ExitInfo;
use crate::process::{Credentials, QemuProcess};

/// QEMU's id of the NAT backend (named in `hostfwd_add`).
pub(crate) const NETDEV_ID: &str = "net0";
/// Socket file names: guest → us, us → NAT, NAT → us, us → guest.
const SOCKETS: [&str; 4] = ["net-rx-out", "net-rx-in", "net-tx-out", "net-tx-in"];

fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// The arguments adding the NIC, for a VM whose runtime directory is `dir`.
pub(crate) fn qemu_args(dir: &Path) -> Vec<String> {
    let netdev = format!(
        "user,id={NETDEV_ID},ipv6=off,net={}/{},host={},dns={},dhcpstart={}",
        addr::SUBNET,
        addr::PREFIX_LEN,
        addr::GATEWAY,
        addr::DNS,
        std::net::Ipv4Addr::from(u32::from(addr::SUBNET) | 16),
    );
    let mut args =
        vec!["-netdev".into(), netdev, "-device".into(), format!("virtio-net-device,netdev={NETDEV_ID}")];
    for name in SOCKETS {
        let path = socket_path(dir, name).to_string_lossy().replace(',', ",,");
        args.extend(["-chardev".into(), format!("socket,id={name},path={path}")]);
    }
    for queue in ["rx", "tx"] {
        args.push("-object".into());
        args.push(format!(
            "filter-redirector,id=net-{queue},netdev={NETDEV_ID},queue={queue},outdev=net-{queue}-out,indev=net-{queue}-in"
        ));
    }
    args
}

/// The sockets bound before QEMU starts.
#[derive(Debug)]
pub(crate) struct Listeners {
    listeners: Vec<UnixListener>,
}

impl Listeners {
    /// Binds the four sockets in `dir` (handed to `owner` when QEMU runs as another user).
    pub(crate) fn bind(dir: &Path, owner: Option<Credentials>) -> Result<Self, SpawnError> {
        let mut listeners = Vec::with_capacity(SOCKETS.len());
        for name in SOCKETS {
            let path = socket_path(dir, name);
            let listener = UnixListener::bind(&path)
                .map_err(|e| SpawnError::io(format!("listening on {}", path.display()), e))?;
            if let Some(owner) = owner {
                crate::rundir::chown(&path, owner)?;
            }
            listeners.push(listener);
        }
        Ok(Self { listeners })
    }

    /// Accepts QEMU's four connections before `deadline`, or fails as soon as it exits.
    pub(crate) async fn accept(
        self,
        process: &QemuProcess,
        deadline: Instant,
    ) -> Result<NetSockets, SpawnError> {
        let mut streams: Vec<UnixStream> = Vec::with_capacity(SOCKETS.len());
        for listener in &self.listeners {
            let timeout = deadline.saturating_duration_since(Instant::now());
            let stream = tokio::select! {
                accepted = tokio::time::timeout_at(deadline, listener.accept()) => match accepted {
                    Ok(Ok((stream, _))) => stream,
                    Ok(Err(e)) => return Err(SpawnError::io("accepting qemu's network connection", e)),
                    Err(_) => {
                        process.kill();
                        return Err(SpawnError::SocketTimeout { socket: "network", after: timeout, stderr: process.stderr_tail() });
                    }
                },
                info = process.exited() => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    return Err(SpawnError::EarlyExit { status: info.unwrap_or(ExitInfo::UNKNOWN), stderr: process.stderr_tail() });
                }
            };
            streams.push(stream);
        }
        let mut streams = streams.into_iter();
        match (streams.next(), streams.next(), streams.next(), streams.next()) {
            (Some(rx_out), Some(rx_in), Some(tx_out), Some(tx_in)) => {
                Ok(NetSockets { rx_out, rx_in, tx_out, tx_in })
            }
            _ => {
                Err(SpawnError::io("accepting qemu's network connections", std::io::Error::other("missing")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nic_goes_through_both_redirectors_and_has_no_mac() {
        let args = qemu_args(Path::new("/run/fp/vm-1"));
        let joined = args.join(" ");
        assert!(
            joined.contains("-netdev user,id=net0,ipv6=off,net=100.96.0.0/16,host=100.96.0.1,dns=100.96.0.2")
        );
        assert!(joined.contains("-device virtio-net-device,netdev=net0 "));
        assert!(!joined.contains("mac="), "the argv is shared by a template and its clones");
        assert!(joined.contains("-chardev socket,id=net-tx-in,path=/run/fp/vm-1/net-tx-in.sock"));
        assert!(
            joined.contains(
                "filter-redirector,id=net-rx,netdev=net0,queue=rx,outdev=net-rx-out,indev=net-rx-in"
            )
        );
        assert!(
            joined.contains(
                "filter-redirector,id=net-tx,netdev=net0,queue=tx,outdev=net-tx-out,indev=net-tx-in"
            )
        );
        let commas = qemu_args(Path::new("/a,b"));
        assert!(commas.iter().any(|a| a.contains("path=/a,,b/net-rx-out.sock")));
    }
}
