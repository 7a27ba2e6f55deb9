//! The relay between socket pairs standing in for QEMU's four connections.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::*;
use crate::dns::tests::query;
use crate::packet::tests::{guest_frame, tcp, udp};
use crate::packet::{PROTO_TCP, PROTO_UDP};
use crate::stats::NetCounters;

struct Qemu {
    guest_out: UnixStream,
    nat_in: UnixStream,
    nat_out: UnixStream,
    guest_in: UnixStream,
    counters: Counters,
    _relay: Relay,
}

fn relay(policy: &str) -> Qemu {
    let (guest_out, rx_out) = UnixStream::pair().unwrap();
    let (nat_in, rx_in) = UnixStream::pair().unwrap();
    let (nat_out, tx_out) = UnixStream::pair().unwrap();
    let (guest_in, tx_in) = UnixStream::pair().unwrap();
    let filter = Arc::new(EgressFilter::new(serde_json::from_str(policy).unwrap(), vec![], vec![]));
    let counters = Counters { vm: Arc::new(NetCounters::default()), shape: Arc::new(NetCounters::default()) };
    let relay = start(NicSockets { rx_out, rx_in, tx_out, tx_in }, filter, counters.clone());
    Qemu { guest_out, nat_in, nat_out, guest_in, counters, _relay: relay }
}

async fn send(stream: &mut UnixStream, frames: &[Vec<u8>]) {
    let mut batch = Vec::new();
    for frame in frames {
        push_framed(&mut batch, frame);
    }
    stream.write_all(&batch).await.unwrap();
}

async fn receive(stream: &mut UnixStream) -> Vec<u8> {
    let mut header = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header)).await.unwrap().unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut frame).await.unwrap();
    frame
}

const GUEST: [u8; 4] = [100, 96, 0, 16];

#[tokio::test]
async fn allowed_syns_pass_refused_ones_are_reset_and_nat_frames_reach_the_guest() {
    let mut qemu = relay(r#"["1.2.3.4:443"]"#);
    let allowed = guest_frame(GUEST, [1, 2, 3, 4], PROTO_TCP, &tcp(40000, 443, 0x02));
    let refused = guest_frame(GUEST, [5, 6, 7, 8], PROTO_TCP, &tcp(40001, 443, 0x02));
    send(&mut qemu.guest_out, &[refused, allowed.clone()]).await;
    assert_eq!(receive(&mut qemu.nat_in).await, allowed, "the allowed SYN goes on unchanged");
    let reset = receive(&mut qemu.guest_in).await;
    assert_eq!(&reset[26..30], &[5, 6, 7, 8], "the reset comes from the refused destination");
    assert_eq!(reset[14 + 20 + 13], 0x14, "RST+ACK");
    let from_nat = guest_frame([1, 2, 3, 4], GUEST, PROTO_TCP, &tcp(443, 40000, 0x12));
    send(&mut qemu.nat_out, std::slice::from_ref(&from_nat)).await;
    assert_eq!(receive(&mut qemu.guest_in).await, from_nat);
    let stats = qemu.counters.vm.snapshot();
    assert_eq!((stats.frames_out, stats.denied), (1, 1));
    assert_eq!(stats.frames_in, 2, "the reset and the NAT's frame");
}

#[tokio::test]
async fn dns_is_answered_by_the_relay_and_never_reaches_the_nat() {
    let mut qemu = relay(r#"["localhost"]"#);
    let ask =
        |id, name: &str| guest_frame(GUEST, [100, 96, 0, 2], PROTO_UDP, &udp(5353, 53, &query(id, name, 1)));
    send(&mut qemu.guest_out, &[ask(1, "not-listed.example"), ask(2, "localhost")]).await;
    let mut rcodes = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let answer = receive(&mut qemu.guest_in).await;
        let dns = &answer[14 + 20 + 8..];
        rcodes.insert(
            u16::from_be_bytes([dns[0], dns[1]]),
            (dns[3] & 0xf, u16::from_be_bytes([dns[6], dns[7]])),
        );
    }
    assert_eq!(rcodes[&1], (crate::dns::NXDOMAIN, 0));
    assert_eq!(rcodes[&2], (crate::dns::NOERROR, 0), "listed, but loopback is not handed out");
    let nothing = tokio::time::timeout(Duration::from_millis(200), qemu.nat_in.read_u8()).await;
    assert!(nothing.is_err(), "a DNS query reached the NAT");
}

#[tokio::test]
async fn oversized_frames_end_the_relay() {
    let mut qemu = relay(r#""allow""#);
    qemu.guest_out.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), qemu.nat_in.read(&mut byte)).await.unwrap();
    assert_eq!(closed.unwrap(), 0, "the relay dropped its end toward the NAT");
}
