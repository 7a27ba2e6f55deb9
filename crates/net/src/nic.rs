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
//! (and a clone's device state carries the template's MAC anyway); the guest agent sets each VM's
//! own MAC in the guest and virtio-net passes it to the device. We listen on the sockets and QEMU
//! connects as it starts, like the console, so no frame can be missed.

use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use crate::addr;
use crate::error::NetError;
use crate::relay::NicSockets;

/// QEMU's id of the NAT backend (named in `hostfwd_add`).
pub const NETDEV_ID: &str = "net0";
/// Socket file names: guest → us, us → NAT, NAT → us, us → guest.
const SOCKETS: [&str; 4] = ["net-rx-out", "net-rx-in", "net-tx-out", "net-tx-in"];

fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// The arguments adding the NIC, for a VM whose runtime directory is `dir`.
///
/// ```
/// let args = firepit_net::qemu_args("/run/firepit/fp-1-1".as_ref());
/// assert!(args.iter().any(|a| a.starts_with("virtio-net-device")));
/// ```
pub fn qemu_args(dir: &Path) -> Vec<String> {
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

/// The NIC's four sockets, bound before QEMU starts (QEMU connects to them as it starts).
#[derive(Debug)]
pub struct NicListeners {
    listeners: Vec<UnixListener>,
}

impl NicListeners {
    /// Binds the four sockets in `dir`, handed to `owner` (`uid`, `gid`) when QEMU runs as another
    /// user (a socket needs write permission to connect).
    pub fn bind(dir: &Path, owner: Option<(u32, u32)>) -> Result<Self, NetError> {
        let mut listeners = Vec::with_capacity(SOCKETS.len());
        for name in SOCKETS {
            let path = socket_path(dir, name);
            let what = |doing: &str| format!("{doing} {}", path.display());
            let listener = UnixListener::bind(&path)
                .map_err(|source| NetError::Socket { what: what("listening on"), source })?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|source| NetError::Socket {
                    what: what(&format!("chown {uid}:{gid}")),
                    source,
                })?;
            }
            listeners.push(listener);
        }
        Ok(Self { listeners })
    }

    /// Accepts QEMU's four connections, in order. It waits as long as it takes: the caller races it
    /// against its deadline and QEMU's exit.
    pub async fn accept(self) -> Result<NicSockets, NetError> {
        let mut streams: Vec<UnixStream> = Vec::with_capacity(SOCKETS.len());
        for listener in &self.listeners {
            let (stream, _) = listener.accept().await.map_err(|source| NetError::Socket {
                what: "accepting qemu's network connection".into(),
                source,
            })?;
            streams.push(stream);
        }
        match <[UnixStream; 4]>::try_from(streams) {
            Ok([rx_out, rx_in, tx_out, tx_in]) => Ok(NicSockets { rx_out, rx_in, tx_out, tx_in }),
            Err(_) => Err(NetError::Socket {
                what: "accepting qemu's network connections".into(),
                source: std::io::Error::other("a connection is missing"),
            }),
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
