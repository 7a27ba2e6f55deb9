//! A private network namespace joined to the host by a veth pair: the "server elsewhere" that
//! firepit's tests and `firepit bench net` need.
//!
//! Why it exists: tests and benches may send traffic only to loopback or into network namespaces
//! they create themselves — never to the machine's own non-loopback address, never anywhere else.
//! A guest behind firepit's user-mode NAT reaches a server the way any host process does, through
//! the host's routing table; so a test that needs a server *outside* the VM and outside loopback
//! (egress policy, `bench net`) makes a [`TestNet`] and runs its server there.
//!
//! What one is: a new network namespace holding one end of a veth pair, [`TestNet::addr`]
//! (`198.18.N.2/30`), with the host's end [`TestNet::host_addr`] (`198.18.N.1/30`). The addresses
//! come from 198.18.0.0/15 (RFC 2544's benchmarking range, never routed on the internet), so
//! the host routes that /30 into the namespace and nowhere else.
//!
//! Why nothing is left behind, even when a test panics or is killed:
//! - the namespace is anonymous: a thread `unshare`s into a fresh one and the [`TestNet`] keeps a
//!   descriptor of it; nothing is mounted under `/run/netns`. The kernel removes a namespace when
//!   its last reference (that descriptor, a socket bound inside) is gone — also when the process
//!   dies of `kill -9` — and a veth pair goes away with the namespace of either end;
//! - dropping the [`TestNet`] deletes the host's end at once (`ip link del`), so the route is gone
//!   even while a socket bound inside lingers.
//!
//! Why tests can run in parallel (threads of one binary, other test binaries, other checkouts on
//! the same machine): the /30 is claimed through the host interface's name, `fpt<N>h`, which is
//! unique on the host: creating a second `fpt<N>h` fails with "File exists" and the creator tries
//! the next `N`.
//!
//! Servers: [`TestNet::listen_tcp`] binds a socket *inside* the namespace (a short-lived thread
//! `setns`es into it, binds and hands the socket back; a socket stays in the namespace it was
//! made in), and the test serves it from its own runtime, so the server dies with the test.
//! [`HttpServer`] is such a server answering every request with one body.
//!
//! Needs root (`CAP_SYS_ADMIN` for the namespace, `CAP_NET_ADMIN` for the link) and iproute2's
//! `ip` (`scripts/setup` installs it). Test support only: not published, and no shipped crate
//! depends on it (`firepit-tools` only with its `dev` feature, for `bench net`).

#![warn(missing_docs)]

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

mod http;

pub use http::HttpServer;

/// /30 blocks in 198.18.0.0/15.
const SUBNETS: u32 = 1 << 15;
/// Candidates tried before giving up (each taken one is another live `fpt<N>h`).
const TRIES: u32 = 256;
/// The namespace's end of the pair (its name is private to the namespace).
const INSIDE_IF: &str = "veth0";

/// Why a [`TestNet`] could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum TestNetError {
    /// `unshare(CLONE_NEWNET)` failed, or the new namespace could not be opened.
    #[error("cannot create a network namespace (tests that need one run as root): {0}")]
    Namespace(#[source] io::Error),
    /// `setns` into the namespace failed.
    #[error("cannot enter the test network namespace: {0}")]
    Enter(#[source] io::Error),
    /// `ip` could not be run at all.
    #[error("cannot run `ip {args}` (iproute2 missing? run scripts/setup): {source}")]
    IpMissing {
        /// The arguments.
        args: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `ip` ran and failed.
    #[error("`ip {args}` failed: {stderr}")]
    Ip {
        /// The arguments.
        args: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Every candidate /30 was taken.
    #[error(
        "no free /30 in 198.18.0.0/15 after {0} tries: list the claims with `ip link show type veth` (names fpt<N>h)"
    )]
    NoFreeSubnet(u32),
    /// Binding a socket (inside the namespace, or on loopback) failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddrV4,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A listener could not be handed to the tokio runtime (called outside one?).
    #[error("cannot serve a listener on the tokio runtime (call from inside one): {0}")]
    Serve(#[source] io::Error),
    /// The thread that went into the namespace panicked.
    #[error("the thread inside the test network namespace panicked")]
    ThreadPanicked,
}

/// A network namespace with a veth pair to the host; removed on drop (see the crate docs).
///
/// ```no_run
/// # async fn demo() -> Result<(), firepit_testnet::TestNetError> {
/// let net = firepit_testnet::TestNet::create()?;
/// let listener = tokio::net::TcpListener::from_std(net.listen_tcp(0)?).map_err(firepit_testnet::TestNetError::Serve)?;
/// // A guest (or any host process) connects to listener.local_addr(): 198.18.N.2, inside `net`.
/// assert_eq!(listener.local_addr().map(|a| a.ip()).ok(), Some(net.addr().into()));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestNet {
    ns: OwnedFd,
    host_if: String,
    index: u32,
}

impl TestNet {
    /// Makes a namespace, a veth pair into it on a free /30 of 198.18.0.0/15, both ends up.
    pub fn create() -> Result<Self, TestNetError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let ns = new_namespace()?;
        let peer_ns = format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd());
        // Spread processes over the range, so that they rarely collide to begin with.
        let start = std::process::id().wrapping_mul(97);
        let mut ns = Some(ns);
        for _ in 0..TRIES {
            let index = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % SUBNETS;
            let host_if = format!("fpt{index}h");
            let add = ["link", "add", &host_if, "type", "veth", "peer", "name", INSIDE_IF, "netns", &peer_ns];
            match ip(None, &add) {
                Ok(()) => {
                    let Some(ns) = ns.take() else { break };
                    // From here on, Drop removes what exists, whatever fails next.
                    let net = Self { ns, host_if, index };
                    net.configure()?;
                    return Ok(net);
                }
                Err(TestNetError::Ip { stderr, .. }) if stderr.contains("File exists") => continue,
                Err(error) => return Err(error),
            }
        }
        Err(TestNetError::NoFreeSubnet(TRIES))
    }

    fn configure(&self) -> Result<(), TestNetError> {
        let host = format!("{}/30", self.host_addr());
        let inside = format!("{}/30", self.addr());
        ip(None, &["addr", "add", &host, "dev", &self.host_if])?;
        ip(None, &["link", "set", &self.host_if, "up"])?;
        ip(Some(&self.ns), &["addr", "add", &inside, "dev", INSIDE_IF])?;
        ip(Some(&self.ns), &["link", "set", INSIDE_IF, "up"])?;
        ip(Some(&self.ns), &["link", "set", "lo", "up"])
    }

    /// The namespace's address (`198.18.N.2`): where its servers listen.
    pub fn addr(&self) -> Ipv4Addr {
        self.block_addr(2)
    }

    /// The host's end of the pair (`198.18.N.1`): an address of this host while the [`TestNet`]
    /// lives (firepit's egress filter counts it among the host's own addresses).
    pub fn host_addr(&self) -> Ipv4Addr {
        self.block_addr(1)
    }

    /// The host interface's name (`fpt<N>h`).
    pub fn host_interface(&self) -> &str {
        &self.host_if
    }

    fn block_addr(&self, host: u32) -> Ipv4Addr {
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
        Ipv4Addr::from(base + self.index * 4 + host)
    }

    /// Runs `f` on a thread inside the namespace and returns what it returned. What `f` creates
    /// there (sockets) stays in the namespace; the thread ends with `f`.
    ///
    /// ```no_run
    /// let net = firepit_testnet::TestNet::create()?;
    /// let links = net.run_inside(|| std::fs::read_to_string("/proc/thread-self/net/dev"))?;
    /// assert!(links.is_ok_and(|text| text.contains("veth0")));
    /// # Ok::<(), firepit_testnet::TestNetError>(())
    /// ```
    pub fn run_inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, TestNetError> {
        let fd = self.ns.as_raw_fd();
        std::thread::scope(|scope| {
            let inside = scope.spawn(move || {
                // SAFETY: setns on a namespace descriptor we own; it moves only this thread,
                // which ends when `f` returns.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(TestNetError::Enter(io::Error::last_os_error()));
                }
                Ok(f())
            });
            inside.join().map_err(|_| TestNetError::ThreadPanicked)?
        })
    }

    /// A TCP listener bound to [`addr`](Self::addr)`:port` inside the namespace (`port` 0: any
    /// free port), non-blocking (ready for `tokio::net::TcpListener::from_std`).
    ///
    /// ```no_run
    /// let net = firepit_testnet::TestNet::create()?;
    /// let listener = net.listen_tcp(0)?;
    /// println!("listening on {:?} inside the namespace", listener.local_addr());
    /// # Ok::<(), firepit_testnet::TestNetError>(())
    /// ```
    pub fn listen_tcp(&self, port: u16) -> Result<std::net::TcpListener, TestNetError> {
        let addr = SocketAddrV4::new(self.addr(), port);
        let bind = || {
            let listener = std::net::TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        };
        self.run_inside(bind)?.map_err(|source| TestNetError::Bind { addr, source })
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; the namespace goes when its descriptor (dropped
        // next) and the sockets bound inside are gone.
        if let Err(error) = ip(None, &["link", "del", &self.host_if]) {
            eprintln!("firepit-testnet: {error} (the kernel removes it with the namespace)");
        }
    }
}

/// A new, anonymous network namespace (held only by the returned descriptor).
fn new_namespace() -> Result<OwnedFd, TestNetError> {
    let make = || {
        // SAFETY: unshare(CLONE_NEWNET) moves only the calling thread (this short-lived one).
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        std::fs::File::open("/proc/thread-self/ns/net").map(OwnedFd::from)
    };
    std::thread::spawn(make)
        .join()
        .map_err(|_| TestNetError::ThreadPanicked)?
        .map_err(TestNetError::Namespace)
}

/// Runs `ip ARGS`, inside `ns` when given.
fn ip(ns: Option<&OwnedFd>, args: &[&str]) -> Result<(), TestNetError> {
    let mut command = Command::new("ip");
    command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(ns) = ns {
        let fd = ns.as_raw_fd();
        // SAFETY: setns is a plain syscall (async-signal-safe); nothing is allocated between
        // fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let joined = args.join(" ");
    let out = command.output().map_err(|source| TestNetError::IpMissing { args: joined.clone(), source })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(TestNetError::Ip { args: joined, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_has_interface(name: &str) -> bool {
        std::path::Path::new("/sys/class/net").join(name).exists()
    }

    #[test]
    fn a_listener_inside_is_reached_through_the_pair_and_everything_goes_on_drop() {
        let net = TestNet::create().unwrap();
        let (addr, host_if) = (net.addr(), net.host_interface().to_owned());
        assert!(u32::from(addr) >> 17 == u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17, "{addr}");
        assert!(host_has_interface(&host_if));
        let listener = net.listen_tcp(0).unwrap();
        let bound = listener.local_addr().unwrap();
        assert_eq!(bound.ip(), std::net::IpAddr::V4(addr));
        // The host has no such address: the connection crosses the pair.
        let inside =
            net.run_inside(|| std::fs::read_to_string("/proc/thread-self/net/dev").unwrap()).unwrap();
        assert!(inside.contains(INSIDE_IF) && !inside.contains(&host_if), "{inside}");
        let client = std::net::TcpStream::connect(bound).unwrap();
        listener.set_nonblocking(false).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), std::net::IpAddr::V4(net.host_addr()), "the host's end connects");
        drop((client, listener));
        drop(net);
        assert!(!host_has_interface(&host_if), "{host_if} outlived its TestNet");
        assert!(std::net::TcpStream::connect(bound).is_err(), "{bound} still reachable");
    }

    #[test]
    fn two_nets_of_one_process_get_different_subnets() {
        let (a, b) = (TestNet::create().unwrap(), TestNet::create().unwrap());
        assert_ne!(a.addr(), b.addr());
        assert_ne!(a.host_interface(), b.host_interface());
    }

    #[test]
    fn a_socket_bound_inside_keeps_serving_after_the_binding_thread_ended() {
        let net = TestNet::create().unwrap();
        let listener = net.listen_tcp(0).unwrap();
        listener.set_nonblocking(false).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            use std::io::Write;
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"hi").unwrap();
        });
        let mut reply = String::new();
        use std::io::Read;
        std::net::TcpStream::connect(addr).unwrap().read_to_string(&mut reply).unwrap();
        server.join().unwrap();
        assert_eq!(reply, "hi");
    }
}
