//! Brings the guest's network interface up as the host says: MAC, IPv4 address, default route,
//! `/etc/resolv.conf`. Sent after a cold boot and after every snapshot restore, so it must work on
//! an interface that is down (fresh boot) and on one configured by the template (a clone).
//!
//! Classic `ioctl`s on an `AF_INET` datagram socket, no netlink and no `ip` binary: the interface
//! gets the MAC (virtio-net tells the device, so QEMU follows), the address and netmask, and the
//! default route is (re)added. A down interface (a cold boot) is brought up after; an up one (a
//! clone of a configured template) is changed live. IPv6 is switched off on it: the host's NAT is
//! IPv4-only and would drop it anyway.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use firepit_agent::{NetworkApplied, NetworkConfig};

/// Why the network could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// There is no interface but `lo` (no NIC, or its driver is not loaded).
    #[error("no network interface besides lo (is the virtio_net module loaded?)")]
    NoInterface,
    /// The request is malformed.
    #[error("invalid network config: {0}")]
    Invalid(&'static str),
    /// A system call failed.
    #[error("{what} on {interface}: {source}")]
    Os {
        /// The step.
        what: &'static str,
        /// The interface.
        interface: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The first interface in `/sys/class/net` that is not `lo`, in name order.
pub fn first_interface() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "lo")
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Applies `config` to the first interface (see the module docs).
pub fn configure(config: &NetworkConfig) -> Result<NetworkApplied, NetworkError> {
    if config.prefix_len > 32 {
        return Err(NetworkError::Invalid("prefix length above 32"));
    }
    if config.mac[0] & 1 == 1 {
        return Err(NetworkError::Invalid("multicast MAC address"));
    }
    // Remembered: a snapshot clone inherits it from its template's agent, and every step it skips
    // is guest code a fresh clone under TCG would translate first (≈1–4 ms each, measured).
    static INTERFACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let interface = match INTERFACE.get() {
        Some(name) => name.clone(),
        None => INTERFACE.get_or_init(|| first_interface().unwrap_or_default()).clone(),
    };
    if interface.is_empty() {
        return Err(NetworkError::NoInterface);
    }
    let socket = Socket::open(&interface)?;
    // An interface that is up (a clone of a template whose interface was configured) changes its
    // MAC and address live: taking it down and up again would run the driver's close and open
    // (≈20 ms more per clone under TCG, measured); lo and IPv6 were set up with it.
    let live = socket.is_up(&interface)? && socket.set_mac(&interface, config.mac).is_ok();
    if !live {
        // Best effort: a kernel without IPv6 has no such file.
        let _no_ipv6_is_fine =
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6"), "1");
        socket.set_up("lo", true)?;
        socket.set_up(&interface, false)?;
        socket.set_mac(&interface, config.mac)?;
    }
    socket.set_ipv4(&interface, libc::SIOCSIFADDR, config.address, "setting the address")?;
    let mask = if config.prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(config.prefix_len)) };
    socket.set_ipv4(&interface, libc::SIOCSIFNETMASK, mask.to_be_bytes(), "setting the netmask")?;
    if !live {
        socket.set_up(&interface, true)?;
    }
    socket.add_default_route(&interface, config.gateway)?;
    let resolv_conf_written = !config.nameservers.is_empty() && write_resolv_conf(&config.nameservers);
    Ok(NetworkApplied { interface, resolv_conf_written })
}

fn write_resolv_conf(nameservers: &[[u8; 4]]) -> bool {
    let mut text = String::new();
    for ns in nameservers {
        text.push_str(&format!("nameserver {}.{}.{}.{}\n", ns[0], ns[1], ns[2], ns[3]));
    }
    text.push_str("options timeout:2 attempts:2\n");
    let written = std::fs::File::create("/etc/resolv.conf").and_then(|mut f| f.write_all(text.as_bytes()));
    written.is_ok()
}

/// `struct rtentry` of `<net/route.h>` (x86-64 layout; libc has no binding for glibc targets).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

struct Socket {
    fd: OwnedFd,
    interface: String,
}

fn sockaddr_in(ip: [u8; 4]) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip) },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes); the kernel reads it as sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

impl Socket {
    fn open(interface: &str) -> Result<Self, NetworkError> {
        // SAFETY: plain socket(2); a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Self::error("opening a socket", interface));
        }
        // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) }, interface: interface.to_string() })
    }

    fn error(what: &'static str, interface: &str) -> NetworkError {
        NetworkError::Os { what, interface: interface.to_string(), source: std::io::Error::last_os_error() }
    }

    fn request(name: &str) -> libc::ifreq {
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
            *dst = src as libc::c_char;
        }
        req
    }

    fn ioctl(
        &self,
        request: libc::c_ulong,
        arg: *mut libc::c_void,
        what: &'static str,
    ) -> Result<(), NetworkError> {
        // SAFETY: `arg` points to a live, properly initialised struct of the type `request` expects.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), request as _, arg) } != 0 {
            return Err(Self::error(what, &self.interface));
        }
        Ok(())
    }

    fn is_up(&self, name: &str) -> Result<bool, NetworkError> {
        let mut req = Self::request(name);
        self.ioctl(libc::SIOCGIFFLAGS, (&raw mut req).cast(), "reading the flags")?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        Ok(unsafe { req.ifr_ifru.ifru_flags } & libc::IFF_UP as libc::c_short != 0)
    }

    fn set_up(&self, name: &str, up: bool) -> Result<(), NetworkError> {
        let mut req = Self::request(name);
        self.ioctl(libc::SIOCGIFFLAGS, (&raw mut req).cast(), "reading the flags")?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        let wanted = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        req.ifr_ifru.ifru_flags = if up { flags | wanted } else { flags & !wanted };
        self.ioctl(
            libc::SIOCSIFFLAGS,
            (&raw mut req).cast(),
            if up { "bringing it up" } else { "taking it down" },
        )
    }

    fn set_mac(&self, name: &str, mac: [u8; 6]) -> Result<(), NetworkError> {
        let mut req = Self::request(name);
        // SAFETY: sockaddr is plain old data; all zeroes is a valid value.
        let mut hw: libc::sockaddr = unsafe { std::mem::zeroed() };
        hw.sa_family = libc::ARPHRD_ETHER;
        for (dst, src) in hw.sa_data.iter_mut().zip(mac) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_hwaddr = hw;
        self.ioctl(libc::SIOCSIFHWADDR, (&raw mut req).cast(), "setting the MAC address")
    }

    fn set_ipv4(
        &self,
        name: &str,
        request: libc::c_ulong,
        ip: [u8; 4],
        what: &'static str,
    ) -> Result<(), NetworkError> {
        let mut req = Self::request(name);
        req.ifr_ifru.ifru_addr = sockaddr_in(ip);
        self.ioctl(request, (&raw mut req).cast(), what)
    }

    fn add_default_route(&self, name: &str, gateway: [u8; 4]) -> Result<(), NetworkError> {
        let device = CString::new(name).map_err(|_| NetworkError::Invalid("interface name with NUL"))?;
        let mut route = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr_in([0; 4]),
            rt_gateway: sockaddr_in(gateway),
            rt_genmask: sockaddr_in([0; 4]),
            rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            rt_dev: device.as_ptr().cast_mut(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        match self.ioctl(libc::SIOCADDRT, (&raw mut route).cast(), "adding the default route") {
            Err(NetworkError::Os { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configs_are_refused_before_anything_changes() {
        let config = NetworkConfig { prefix_len: 33, ..NetworkConfig::default() };
        assert!(matches!(configure(&config), Err(NetworkError::Invalid(_))));
        let multicast = NetworkConfig { mac: [1, 0, 0, 0, 0, 1], prefix_len: 24, ..NetworkConfig::default() };
        assert!(matches!(configure(&multicast), Err(NetworkError::Invalid(_))));
    }

    #[test]
    fn rtentry_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
        assert_eq!(std::mem::offset_of!(RtEntry, rt_flags), 56);
        assert_eq!(std::mem::offset_of!(RtEntry, rt_dev), 88);
    }

    #[test]
    fn sockaddr_in_keeps_network_byte_order() {
        let addr = sockaddr_in([100, 96, 0, 10]);
        assert_eq!(addr.sa_family, libc::AF_INET as libc::sa_family_t);
        assert_eq!(&addr.sa_data[2..6], &[100u8 as libc::c_char, 96, 0, 10]);
    }
}
