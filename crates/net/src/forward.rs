//! Inbound port forwards: a host TCP port that reaches a guest port, made at run time by the NAT
//! itself (`hostfwd_add` through QEMU's human monitor; QEMU 7.2 has no QMP command for it, so the
//! VM's owner passes the command lines on: [`Monitor`]).
//!
//! The host port is chosen by the kernel (port 0), so there is no race with other programs for a
//! port picked in advance; the port it got is read back from `info usernet`, whose listing has one
//! `TCP[HOST_FORWARD]` line per forward: `FD  bind-addr  host-port  guest-addr  guest-port ...`. A
//! forward is a listening socket of the QEMU process, so it goes away with the VM whatever happens.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use crate::error::NetError;
use crate::nic::NETDEV_ID;

/// QEMU's human monitor of the VM (`info usernet`, `hostfwd_add`, ...), however its owner reaches
/// it (`firepit-qemu`: QMP's `human-monitor-command`).
pub trait Monitor: Sync {
    /// Runs one monitor command line and returns what it printed; a failure to run it at all is
    /// [`NetError::Monitor`].
    fn run(&self, command: &str) -> impl Future<Output = Result<String, NetError>> + Send;
}

/// A VM's forwards: where they listen, the ones in place, and one change at a time.
#[derive(Debug)]
pub(crate) struct Forwards {
    bind: IpAddr,
    /// Guest port → host address of each forward.
    list: Mutex<Vec<(u16, SocketAddr)>>,
    /// Serialises changes (the new line in the listing must be ours).
    changing: tokio::sync::Mutex<()>,
}

impl Forwards {
    /// No forwards yet; new ones listen on `bind` (the shape's `forward_bind`).
    pub(crate) fn new(bind: IpAddr) -> Self {
        Self { bind, list: Mutex::new(Vec::new()), changing: tokio::sync::Mutex::new(()) }
    }

    /// The forward to `guest:guest_port`, added if there is none yet.
    pub(crate) async fn add(
        &self,
        monitor: &impl Monitor,
        guest: Ipv4Addr,
        guest_port: u16,
    ) -> Result<SocketAddr, NetError> {
        let _one_at_a_time = self.changing.lock().await;
        if let Some((_, addr)) = lock(&self.list).iter().find(|(port, _)| *port == guest_port) {
            return Ok(*addr);
        }
        let addr = add(monitor, self.bind, guest, guest_port).await?;
        lock(&self.list).push((guest_port, addr));
        Ok(addr)
    }

    /// Removes the forward to `guest_port`.
    pub(crate) async fn remove(&self, monitor: &impl Monitor, guest_port: u16) -> Result<(), NetError> {
        let _one_at_a_time = self.changing.lock().await;
        let addr = lock(&self.list)
            .iter()
            .find(|(port, _)| *port == guest_port)
            .map(|(_, addr)| *addr)
            .ok_or(NetError::NoSuchForward { guest_port })?;
        remove(monitor, addr).await?;
        lock(&self.list).retain(|(port, _)| *port != guest_port);
        Ok(())
    }

    /// Makes `forwards` (a paused VM's) again, each at its old host address when that is still
    /// free (a client holding the address reaches the resumed VM), else at a new one. Returns the
    /// forwards in place; one that cannot be made at all is logged and left out.
    pub(crate) async fn restore(
        &self,
        monitor: &impl Monitor,
        guest: Ipv4Addr,
        forwards: &[(u16, SocketAddr)],
    ) -> Vec<(u16, SocketAddr)> {
        let _one_at_a_time = self.changing.lock().await;
        for (guest_port, old) in forwards {
            if lock(&self.list).iter().any(|(port, _)| port == guest_port) {
                continue;
            }
            let made = match add_at(monitor, *old, guest, *guest_port).await {
                Ok(addr) => Ok(addr),
                Err(e) => {
                    tracing::info!(guest_port, %old, error = %e, "the old forward address is taken; forwarding from a new one");
                    add(monitor, self.bind, guest, *guest_port).await
                }
            };
            match made {
                Ok(addr) => lock(&self.list).push((*guest_port, addr)),
                Err(e) => tracing::warn!(guest_port, error = %e, "a port forward could not be made again"),
            }
        }
        self.list()
    }

    /// The forwards in place: `(guest port, host address)`, oldest first.
    pub(crate) fn list(&self) -> Vec<(u16, SocketAddr)> {
        lock(&self.list).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The host ports of the NAT's forwards to `guest:guest_port`, from `info usernet` text.
fn forwarded_ports(listing: &str, guest: Ipv4Addr, guest_port: u16) -> Vec<u16> {
    listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["TCP[HOST_FORWARD]", _fd, _bind, host_port, addr, port, ..]
                    if addr.parse::<Ipv4Addr>().ok() == Some(guest)
                        && port.parse::<u16>().ok() == Some(guest_port) =>
                {
                    host_port.parse::<u16>().ok()
                }
                _ => None,
            }
        })
        .collect()
}

/// Adds a forward from `bind`:(a free port) to `guest`:`guest_port`; returns the host address.
/// The caller serialises calls per VM (so the new line in the listing is ours).
async fn add(
    monitor: &impl Monitor,
    bind: IpAddr,
    guest: Ipv4Addr,
    guest_port: u16,
) -> Result<SocketAddr, NetError> {
    let IpAddr::V4(bind4) = bind else {
        return Err(NetError::Forward { guest_port, message: format!("{bind}: the NAT forwards IPv4 only") });
    };
    let before = forwarded_ports(&monitor.run("info usernet").await?, guest, guest_port);
    let output = monitor.run(&format!("hostfwd_add {NETDEV_ID} tcp:{bind4}:0-{guest}:{guest_port}")).await?;
    if !output.trim().is_empty() {
        return Err(NetError::Forward { guest_port, message: output.trim().to_string() });
    }
    let after = forwarded_ports(&monitor.run("info usernet").await?, guest, guest_port);
    match after.into_iter().find(|port| !before.contains(port)) {
        Some(port) => Ok(SocketAddr::new(bind, port)),
        None => {
            Err(NetError::Forward { guest_port, message: "the new forward is not in `info usernet`".into() })
        }
    }
}

/// Adds a forward from exactly `host` to `guest`:`guest_port` (a resumed VM's old address).
async fn add_at(
    monitor: &impl Monitor,
    host: SocketAddr,
    guest: Ipv4Addr,
    guest_port: u16,
) -> Result<SocketAddr, NetError> {
    let IpAddr::V4(bind4) = host.ip() else {
        return Err(NetError::Forward { guest_port, message: format!("{host}: the NAT forwards IPv4 only") });
    };
    let rule = format!("hostfwd_add {NETDEV_ID} tcp:{bind4}:{}-{guest}:{guest_port}", host.port());
    let output = monitor.run(&rule).await?;
    if !output.trim().is_empty() {
        return Err(NetError::Forward { guest_port, message: output.trim().to_string() });
    }
    Ok(host)
}

/// Removes the forward listening on `host`.
async fn remove(monitor: &impl Monitor, host: SocketAddr) -> Result<(), NetError> {
    let output =
        monitor.run(&format!("hostfwd_remove {NETDEV_ID} tcp:{}:{}", host.ip(), host.port())).await?;
    if output.contains("removed") || output.trim().is_empty() {
        Ok(())
    } else {
        Err(NetError::Forward { guest_port: 0, message: output.trim().to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_are_read_from_the_usernet_listing() {
        let listing = "Hub -1 (net0):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n  \
                       TCP[HOST_FORWARD]  13       127.0.0.1 41737     100.96.0.16  8000     0     0\r\n  \
                       TCP[HOST_FORWARD]  14       127.0.0.1 41739     100.96.0.16  9000     0     0\r\n  \
                       TCP[ESTABLISHED]   15       127.0.0.1 41740     100.96.0.16  8000     0     0\r\n";
        let guest = Ipv4Addr::new(100, 96, 0, 16);
        assert_eq!(forwarded_ports(listing, guest, 8000), [41737]);
        assert_eq!(forwarded_ports(listing, guest, 9000), [41739]);
        assert!(forwarded_ports(listing, Ipv4Addr::new(100, 96, 0, 17), 8000).is_empty());
    }
}
