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

use crate::dns;
use crate::packet::{self, Frame, Transport};
use crate::policy::{EgressFilter, Proto};
use crate::stats::{Counters, Event};

/// Largest frame accepted from QEMU (64 KiB payload plus headers); anything larger is a broken
/// stream and ends the relay.
const MAX_FRAME: usize = 65_536 + 64;
/// Batches (the frames of one read from QEMU, up to 64 KiB) queued per direction before new ones
/// are dropped.
const QUEUE_BATCHES: usize = 64;
/// DNS lookups on the host in flight per VM; more queries are answered "server failure" at once.
const MAX_LOOKUPS: usize = 8;
/// Longest a host lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The four connections QEMU made to the NIC's sockets ([`NicListeners::accept`](crate::NicListeners::accept)),
/// what a [`VmNetwork`](crate::VmNetwork) starts its relay on.
#[derive(Debug)]
pub struct NicSockets {
    /// Frames the guest sent.
    pub(crate) rx_out: UnixStream,
    /// Frames we pass on to the NAT.
    pub(crate) rx_in: UnixStream,
    /// Frames the NAT sent the guest.
    pub(crate) tx_out: UnixStream,
    /// Frames we deliver to the guest.
    pub(crate) tx_in: UnixStream,
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

/// A batch of frames in the redirector's framing (4-byte big-endian length, frame, repeated).
type Batch = Vec<u8>;

/// Appends `frame` to `batch` in redirector framing.
fn push_framed(batch: &mut Batch, frame: &[u8]) {
    batch.extend_from_slice(&u32::try_from(frame.len()).unwrap_or(0).to_be_bytes());
    batch.extend_from_slice(frame);
}

/// The frames of `framed` (whole frames in redirector framing, as `read_batches` hands them out).
fn frames(framed: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = framed;
    std::iter::from_fn(move || {
        let header = rest.get(..4)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let frame = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(frame)
    })
}

/// Starts relaying `sockets` through `filter`.
pub(crate) fn start(sockets: NicSockets, filter: Arc<EgressFilter>, counters: Counters) -> Relay {
    let (to_nat, from_guest) = mpsc::channel(QUEUE_BATCHES);
    let (to_guest, for_guest) = mpsc::channel(QUEUE_BATCHES);
    let (dns_tx, dns_rx) = mpsc::channel(64);
    let dns_filter = filter.clone();
    let decide =
        Decide { filter, counters: counters.clone(), to_nat, to_guest: to_guest.clone(), dns: dns_tx };
    let tasks = vec![
        tokio::spawn(read_batches(sockets.rx_out, move |framed| decide.batch(framed))).abort_handle(),
        tokio::spawn(read_batches(sockets.tx_out, {
            let (to_guest, counters) = (to_guest.clone(), counters.clone());
            move |framed| forward(&to_guest, framed, &counters)
        }))
        .abort_handle(),
        tokio::spawn(write_batches(sockets.rx_in, from_guest)).abort_handle(),
        tokio::spawn(write_batches(sockets.tx_in, for_guest)).abort_handle(),
        tokio::spawn(answer_dns(dns_rx, dns_filter, to_guest, counters)).abort_handle(),
    ];
    Relay { tasks }
}

/// Queues `framed` for the guest as it is, counting its frames in (or as dropped when full).
fn forward(queue: &mpsc::Sender<Batch>, framed: &[u8], counters: &Counters) {
    let (mut count, mut bytes) = (0, 0);
    for frame in frames(framed) {
        count += 1;
        bytes += frame.len();
    }
    match queue.try_send(framed.to_vec()) {
        Ok(()) => counters.add(Event::In { frames: count, bytes }),
        Err(_) => counters.add(Event::Dropped(count)),
    }
}

/// What happens to one frame from the guest.
enum Verdict {
    Pass,
    /// Refused, with the answer to send the guest (none for multicast or broadcast).
    Refuse(Option<Vec<u8>>),
    Drop,
    Dns(dns::Query),
}

/// What the guest-side reader does with each batch.
struct Decide {
    filter: Arc<EgressFilter>,
    counters: Counters,
    to_nat: mpsc::Sender<Batch>,
    to_guest: mpsc::Sender<Batch>,
    dns: mpsc::Sender<(Vec<u8>, dns::Query)>,
}

impl Decide {
    fn batch(&self, framed: &[u8]) {
        let mut pass = Vec::with_capacity(framed.len());
        let mut replies = Vec::new();
        let (mut out_frames, mut out_bytes, mut dropped, mut denied) = (0, 0, 0, 0);
        for frame in frames(framed) {
            match self.decide(frame) {
                Verdict::Pass => {
                    push_framed(&mut pass, frame);
                    out_frames += 1;
                    out_bytes += frame.len();
                }
                Verdict::Refuse(reply) => {
                    denied += 1;
                    if let Some(reply) = reply {
                        push_framed(&mut replies, &reply);
                    }
                }
                Verdict::Drop => dropped += 1,
                Verdict::Dns(query) => {
                    if self.dns.try_send((frame.to_vec(), query)).is_err() {
                        dropped += 1;
                    }
                }
            }
        }
        if !pass.is_empty() {
            match self.to_nat.try_send(pass) {
                Ok(()) => self.counters.add(Event::Out { frames: out_frames, bytes: out_bytes }),
                Err(_) => dropped += out_frames,
            }
        }
        if denied > 0 {
            self.counters.add(Event::Denied(denied));
        }
        if dropped > 0 {
            self.counters.add(Event::Dropped(dropped));
        }
        if !replies.is_empty() {
            forward(&self.to_guest, &replies, &self.counters);
        }
    }

    fn decide(&self, frame: &[u8]) -> Verdict {
        let packet = match packet::parse(frame) {
            Frame::Arp => return Verdict::Pass,
            Frame::Fragment | Frame::Other => return Verdict::Drop,
            Frame::Ipv4(packet) => packet,
        };
        let unicast = packet.dst.octets()[0] < 224;
        let refusal = match packet.transport {
            Transport::Tcp { dst_port, opens: true, .. } => {
                if self.filter.allows(packet.dst, Proto::Tcp, Some(dst_port)) {
                    return Verdict::Pass;
                }
                packet::tcp_reset(frame, &packet)
            }
            // Only a bare SYN makes the NAT open a host connection; the rest belongs to one it has.
            Transport::Tcp { .. } => return Verdict::Pass,
            Transport::Udp { dst_port: 53, .. } if packet.dst == super::addr::DNS => {
                return match dns::parse_query(packet::udp_payload(frame, &packet)) {
                    Some(query) => Verdict::Dns(query),
                    None => Verdict::Drop,
                };
            }
            Transport::Udp { dst_port, .. } => {
                if self.filter.allows(packet.dst, Proto::Udp, Some(dst_port)) {
                    return Verdict::Pass;
                }
                packet::icmp_unreachable(frame, &packet, 3)
            }
            Transport::IcmpEcho => {
                if self.filter.allows(packet.dst, Proto::Icmp, None) {
                    return Verdict::Pass;
                }
                packet::icmp_unreachable(frame, &packet, 13)
            }
            Transport::Other => return Verdict::Drop,
        };
        Verdict::Refuse(refusal.filter(|_| unicast))
    }
}

/// Reads `stream` until it closes, handing each run of whole frames (in redirector framing, as
/// many as one read completed) to `handle`.
async fn read_batches(mut stream: UnixStream, mut handle: impl FnMut(&[u8])) {
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    loop {
        buf.reserve(64 * 1024);
        match stream.read_buf(&mut buf).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "network relay: reading from qemu failed");
                return;
            }
        }
        let mut at = 0;
        while let Some(header) = buf.get(at..at + 4) {
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            if len > MAX_FRAME {
                tracing::warn!(len, "network relay: oversized frame from qemu; closing the relay");
                return;
            }
            if buf.len() < at + 4 + len {
                break;
            }
            at += 4 + len;
        }
        if at > 0 {
            handle(&buf[..at]);
            buf.drain(..at);
        }
    }
}

/// Writes queued batches to `stream`, several at a time when more are waiting.
async fn write_batches(mut stream: UnixStream, mut batches: mpsc::Receiver<Batch>) {
    let mut out = Vec::with_capacity(256 * 1024);
    while let Some(mut batch) = batches.recv().await {
        while batch.len() < 256 * 1024 {
            match batches.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        std::mem::swap(&mut out, &mut batch);
        if let Err(e) = stream.write_all(&out).await {
            tracing::debug!(error = %e, "network relay: writing to qemu failed");
            return;
        }
        out.clear();
    }
}

/// Answers the guest's DNS queries (see [`dns`]): names the policy lets it resolve are looked up
/// on the host, at most [`MAX_LOOKUPS`] at a time (more get "server failure" at once); other names
/// get "no such name"; other record types of allowed names an empty answer (the guest is IPv4-only).
async fn answer_dns(
    mut queries: mpsc::Receiver<(Vec<u8>, dns::Query)>,
    filter: Arc<EgressFilter>,
    to_guest: mpsc::Sender<Batch>,
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
                let mut framed = Vec::with_capacity(reply.len() + 4);
                push_framed(&mut framed, &reply);
                forward(&to_guest, &framed, &counters);
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
                let mut framed = Vec::with_capacity(reply.len() + 4);
                push_framed(&mut framed, &reply);
                forward(&to_guest, &framed, &counters);
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

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
