//! The policy filter in the frame path: QEMU hands every frame between the guest's NIC and the
//! user-mode NAT to us (`filter-redirector` objects, one per direction, over Unix sockets), and we
//! hand back what may pass.
//!
//! ```text
//!  guest NIC ──rx-out──▶ [decide] ──rx-in──▶ slirp (NAT) ──tx-out──▶ [count] ──tx-in──▶ guest NIC
//!                           │ refused SYN → RST, refused datagram → ICMP, DNS query → answer ──▲
//! ```
//!
//! Each socket carries QEMU's redirector framing: a 4-byte big-endian length, then the frame.
//! QEMU writes to us from its main loop with a blocking "write all", so our readers must never wait
//! on our writers (QEMU blocked writing to us could not read what we write it: a deadlock). Readers
//! therefore only decode, decide and `try_send` into bounded queues; a full queue drops the frame
//! (counted) exactly as a congested link would, and TCP recovers. A guest flooding the network
//! costs its own tasks CPU and nothing else: every VM has its own tasks and queues.

use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;

use super::dns;
use super::packet::{self, Frame, Transport};
use super::policy::{EgressFilter, Proto};
use super::stats::{Counters, Event};

/// Largest frame accepted from QEMU (64 KiB payload plus headers); anything larger is a broken
/// stream and ends the relay.
const MAX_FRAME: usize = 65_536 + 64;
/// Frames queued per direction before new ones are dropped.
const QUEUE_FRAMES: usize = 1024;
/// DNS lookups on the host in flight per VM; more queries are answered "server failure" at once.
const MAX_LOOKUPS: usize = 8;
/// Longest a host lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The four connections QEMU made to us.
#[derive(Debug)]
pub(crate) struct NetSockets {
    /// Frames the guest sent.
    pub rx_out: UnixStream,
    /// Frames we pass on to the NAT.
    pub rx_in: UnixStream,
    /// Frames the NAT sent the guest.
    pub tx_out: UnixStream,
    /// Frames we deliver to the guest.
    pub tx_in: UnixStream,
}

/// The relay's tasks; dropping it stops them (QEMU going away ends them too).
#[derive(Debug)]
pub(crate) struct Relay {
    tasks: Vec<AbortHandle>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts relaying `sockets` through `filter`.
pub(crate) fn start(sockets: NetSockets, filter: Arc<EgressFilter>, counters: Counters) -> Relay {
    let (to_nat, from_guest) = mpsc::channel(QUEUE_FRAMES);
    let (to_guest, for_guest) = mpsc::channel(QUEUE_FRAMES);
    let (dns_tx, dns_rx) = mpsc::channel(64);
    let dns_filter = filter.clone();
    let decide =
        Decide { filter, counters: counters.clone(), to_nat, to_guest: to_guest.clone(), dns: dns_tx };
    let tasks = vec![
        tokio::spawn(read_frames(sockets.rx_out, move |frame| decide.frame(frame))).abort_handle(),
        tokio::spawn(read_frames(sockets.tx_out, {
            let (to_guest, counters) = (to_guest.clone(), counters.clone());
            move |frame| queue(&to_guest, frame, &counters)
        }))
        .abort_handle(),
        tokio::spawn(write_frames(sockets.rx_in, from_guest)).abort_handle(),
        tokio::spawn(write_frames(sockets.tx_in, for_guest)).abort_handle(),
        tokio::spawn(answer_dns(dns_rx, dns_filter, to_guest, counters)).abort_handle(),
    ];
    Relay { tasks }
}

fn queue(queue: &mpsc::Sender<Vec<u8>>, frame: Vec<u8>, counters: &Counters) {
    let len = frame.len();
    match queue.try_send(frame) {
        Ok(()) => counters.add(Event::In(len)),
        Err(_) => counters.add(Event::Dropped),
    }
}

/// What the guest-side reader does with each frame.
struct Decide {
    filter: Arc<EgressFilter>,
    counters: Counters,
    to_nat: mpsc::Sender<Vec<u8>>,
    to_guest: mpsc::Sender<Vec<u8>>,
    dns: mpsc::Sender<(Vec<u8>, dns::Query)>,
}

impl Decide {
    fn frame(&self, frame: Vec<u8>) {
        let packet = match packet::parse(&frame) {
            Frame::Arp => return self.pass(frame),
            Frame::Fragment | Frame::Other => return self.counters.add(Event::Dropped),
            Frame::Ipv4(packet) => packet,
        };
        let unicast = packet.dst.octets()[0] < 224;
        let refusal = match packet.transport {
            Transport::Tcp { dst_port, opens: true, .. } => {
                if self.filter.allows(packet.dst, Proto::Tcp, Some(dst_port)) {
                    return self.pass(frame);
                }
                packet::tcp_reset(&frame, &packet)
            }
            // Only a bare SYN makes the NAT open a host connection; the rest belongs to one it has.
            Transport::Tcp { .. } => return self.pass(frame),
            Transport::Udp { dst_port: 53, .. } if packet.dst == super::addr::DNS => {
                match dns::parse_query(packet::udp_payload(&frame, &packet)) {
                    Some(query) => {
                        if self.dns.try_send((frame, query)).is_err() {
                            self.counters.add(Event::Dropped);
                        }
                    }
                    None => self.counters.add(Event::Dropped),
                }
                return;
            }
            Transport::Udp { dst_port, .. } => {
                if self.filter.allows(packet.dst, Proto::Udp, Some(dst_port)) {
                    return self.pass(frame);
                }
                packet::icmp_unreachable(&frame, &packet, 3)
            }
            Transport::IcmpEcho => {
                if self.filter.allows(packet.dst, Proto::Icmp, None) {
                    return self.pass(frame);
                }
                packet::icmp_unreachable(&frame, &packet, 13)
            }
            Transport::Other => return self.counters.add(Event::Dropped),
        };
        self.counters.add(Event::Denied);
        if let Some(reply) = refusal.filter(|_| unicast) {
            queue(&self.to_guest, reply, &self.counters);
        }
    }

    fn pass(&self, frame: Vec<u8>) {
        let len = frame.len();
        match self.to_nat.try_send(frame) {
            Ok(()) => self.counters.add(Event::Out(len)),
            Err(_) => self.counters.add(Event::Dropped),
        }
    }
}

/// Reads redirector frames from `stream` until it closes, handing each to `handle`.
async fn read_frames(mut stream: UnixStream, mut handle: impl FnMut(Vec<u8>)) {
    let mut buf: Vec<u8> = Vec::with_capacity(128 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "network relay: reading from qemu failed");
                return;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Some(header) = buf.get(at..at + 4) {
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            if len > MAX_FRAME {
                tracing::warn!(len, "network relay: oversized frame from qemu; closing the relay");
                return;
            }
            let Some(frame) = buf.get(at + 4..at + 4 + len) else { break };
            handle(frame.to_vec());
            at += 4 + len;
        }
        buf.drain(..at);
    }
}

/// Writes queued frames to `stream` (batched: whatever is queued goes in one write).
async fn write_frames(mut stream: UnixStream, mut frames: mpsc::Receiver<Vec<u8>>) {
    let mut out = Vec::with_capacity(128 * 1024);
    while let Some(frame) = frames.recv().await {
        out.clear();
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            out.extend_from_slice(&u32::try_from(frame.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(&frame);
            if out.len() < 64 * 1024 {
                next = frames.try_recv().ok();
            }
        }
        if let Err(e) = stream.write_all(&out).await {
            tracing::debug!(error = %e, "network relay: writing to qemu failed");
            return;
        }
    }
}

/// Answers the guest's DNS queries (see [`dns`]): names the policy lets it resolve are looked up
/// on the host, at most [`MAX_LOOKUPS`] at a time (more get "server failure" at once); other names
/// get "no such name"; other record types of allowed names an empty answer (the guest is IPv4-only).
async fn answer_dns(
    mut queries: mpsc::Receiver<(Vec<u8>, dns::Query)>,
    filter: Arc<EgressFilter>,
    to_guest: mpsc::Sender<Vec<u8>>,
    counters: Counters,
) {
    let lookups = Arc::new(Semaphore::new(MAX_LOOKUPS));
    // Lookups still running when the VM goes are aborted with this set.
    let mut running = tokio::task::JoinSet::new();
    while let Some((frame, query)) = queries.recv().await {
        while running.try_join_next().is_some() {}
        counters.add(Event::Dns);
        let send = |rcode: u8, addrs: &[Ipv4Addr]| {
            let Frame::Ipv4(packet) = packet::parse(&frame) else { return };
            if let Some(reply) = packet::udp_reply(&frame, &packet, &dns::answer(&query, rcode, addrs)) {
                queue(&to_guest, reply, &counters);
            }
        };
        if !filter.allows_name(&query.name) {
            send(dns::NXDOMAIN, &[]);
            continue;
        }
        if query.qtype != dns::TYPE_A {
            send(dns::NOERROR, &[]);
            continue;
        }
        let Ok(permit) = lookups.clone().try_acquire_owned() else {
            send(dns::SERVFAIL, &[]);
            continue;
        };
        let (filter, to_guest, counters) = (filter.clone(), to_guest.clone(), counters.clone());
        running.spawn(async move {
            let (rcode, addrs) = match resolve(&query.name).await {
                Ok(found) => (dns::NOERROR, filter.resolved(&query.name, &found)),
                Err(e) => {
                    tracing::debug!(name = %query.name, error = %e, "host lookup for a guest failed");
                    (dns::NXDOMAIN, Vec::new())
                }
            };
            drop(permit);
            let Frame::Ipv4(packet) = packet::parse(&frame) else { return };
            if let Some(reply) = packet::udp_reply(&frame, &packet, &dns::answer(&query, rcode, &addrs)) {
                queue(&to_guest, reply, &counters);
            }
        });
    }
}

/// The IPv4 addresses `name` has on the host (its resolver, `/etc/hosts` included).
pub(crate) async fn resolve(name: &str) -> io::Result<Vec<Ipv4Addr>> {
    let lookup = tokio::net::lookup_host((name, 0));
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "host lookup timed out"))??;
    let mut addrs: Vec<Ipv4Addr> = Vec::new();
    for addr in found {
        if let std::net::IpAddr::V4(ip) = addr.ip()
            && !addrs.contains(&ip)
        {
            addrs.push(ip);
        }
    }
    Ok(addrs)
}
