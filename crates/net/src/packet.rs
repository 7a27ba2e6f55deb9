//! Ethernet frames as the policy filter sees them: just enough IPv4, TCP, UDP and ICMP to decide,
//! and to build the three answers it sends the guest itself (a TCP reset, an ICMP unreachable,
//! a UDP datagram carrying a DNS answer). Pure functions over byte slices; nothing here trusts a
//! length field it has not checked against the frame.

use std::net::Ipv4Addr;

/// Ethernet header length.
pub(crate) const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;

/// What a frame from the guest is, as far as the policy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// ARP: needed to find the gateway; harmless to the NAT.
    Arp,
    /// An IPv4 packet, parsed.
    Ipv4(Ipv4),
    /// An IPv4 fragment: dropped (the NAT would reassemble it, and a first fragment may hide the
    /// TCP flags or ports in the next one).
    Fragment,
    /// Anything else (IPv6, VLAN tags, garbage): dropped.
    Other,
}

/// The fields of an IPv4 packet the filter reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub transport: Transport,
    /// Offset of the IPv4 header in the frame, and of its payload.
    pub ip_offset: usize,
    pub l4_offset: usize,
    /// End of the IP packet (the frame may carry padding after it).
    pub end: usize,
}

/// The transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// TCP; `opens` is a bare SYN, the only segment that makes the NAT open a host connection.
    Tcp { src_port: u16, dst_port: u16, seq: u32, opens: bool },
    /// UDP: every datagram may go somewhere new.
    Udp { src_port: u16, dst_port: u16 },
    /// ICMP echo request (ping).
    IcmpEcho,
    /// Other ICMP messages, other protocols, or a truncated header.
    Other,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    bytes.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn ip_at(bytes: &[u8], at: usize) -> Option<Ipv4Addr> {
    bytes.get(at..at + 4).map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

/// Parses an Ethernet frame.
pub(crate) fn parse(frame: &[u8]) -> Frame {
    match u16_at(frame, 12) {
        Some(ETHERTYPE_ARP) => Frame::Arp,
        Some(ETHERTYPE_IPV4) => parse_ipv4(frame).unwrap_or(Frame::Other),
        _ => Frame::Other,
    }
}

fn parse_ipv4(frame: &[u8]) -> Option<Frame> {
    let ip = ETH_LEN;
    let first = *frame.get(ip)?;
    let header_len = usize::from(first & 0x0f) * 4;
    let total_len = usize::from(u16_at(frame, ip + 2)?);
    if first >> 4 != 4 || header_len < 20 || total_len < header_len || ip + total_len > frame.len() {
        return None;
    }
    let flags_fragment = u16_at(frame, ip + 6)?;
    if flags_fragment & 0x3fff != 0 {
        return Some(Frame::Fragment); // more-fragments set or a non-zero offset
    }
    let protocol = *frame.get(ip + 9)?;
    let (src, dst) = (ip_at(frame, ip + 12)?, ip_at(frame, ip + 16)?);
    let l4 = ip + header_len;
    let end = ip + total_len;
    let segment = &frame[l4..end];
    let transport = match protocol {
        PROTO_TCP if segment.len() >= 20 => {
            let flags = segment[13];
            Transport::Tcp {
                src_port: u16_at(segment, 0)?,
                dst_port: u16_at(segment, 2)?,
                seq: u32_at(segment, 4)?,
                // libslirp opens a host socket exactly for this combination (tcp_input.c).
                opens: flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG | TCP_ACK) == TCP_SYN,
            }
        }
        PROTO_UDP if segment.len() >= 8 => {
            Transport::Udp { src_port: u16_at(segment, 0)?, dst_port: u16_at(segment, 2)? }
        }
        PROTO_ICMP if segment.len() >= 8 && segment[0] == 8 => Transport::IcmpEcho,
        _ => Transport::Other,
    };
    Some(Frame::Ipv4(Ipv4 { src, dst, transport, ip_offset: ip, l4_offset: l4, end }))
}

/// The Internet checksum of `chunks` concatenated (each chunk of even length but the last).
pub(crate) fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in chunks {
        let mut pairs = chunk.chunks_exact(2);
        for pair in &mut pairs {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = pairs.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 header answering `request` (addresses and MACs swapped), for `payload_len`
/// bytes of `protocol` from `src`.
fn reply_headers(request: &[u8], src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_LEN + 20 + payload_len);
    out.extend_from_slice(&request[6..12]); // to the guest's MAC
    out.extend_from_slice(&request[0..6]); // from the MAC it sent to (the gateway's)
    out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let total = u16::try_from(20 + payload_len).unwrap_or(u16::MAX);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = protocol;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&ip);
    out
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> [u8; 12] {
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = protocol;
    pseudo[10..12].copy_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    pseudo
}

/// A TCP RST+ACK refusing the connection the bare SYN `packet` (in `frame`) opens: the guest's
/// `connect` fails at once with "connection refused".
pub(crate) fn tcp_reset(frame: &[u8], packet: &Ipv4) -> Option<Vec<u8>> {
    let Transport::Tcp { src_port, dst_port, seq, .. } = packet.transport else { return None };
    let header_len = usize::from(frame.get(packet.l4_offset + 12)? >> 4) * 4;
    let data_len = packet.end.checked_sub(packet.l4_offset + header_len)?;
    let ack = seq.wrapping_add(1).wrapping_add(u32::try_from(data_len).ok()?);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&dst_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&src_port.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = TCP_RST | TCP_ACK;
    let pseudo = pseudo_header(packet.dst, packet.src, PROTO_TCP, tcp.len());
    let sum = checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    let mut out = reply_headers(frame, packet.dst, packet.src, PROTO_TCP, tcp.len());
    out.extend_from_slice(&tcp);
    Some(out)
}

/// An ICMP destination-unreachable (`code` 3: port unreachable, 13: administratively prohibited)
/// for `packet`, quoting its IP header and first 8 payload bytes as RFC 792 asks.
pub(crate) fn icmp_unreachable(frame: &[u8], packet: &Ipv4, code: u8) -> Option<Vec<u8>> {
    let quoted = frame.get(packet.ip_offset..(packet.l4_offset + 8).min(packet.end))?;
    let mut icmp = vec![3, code, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quoted);
    let sum = checksum(&[&icmp]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut out = reply_headers(frame, packet.dst, packet.src, PROTO_ICMP, icmp.len());
    out.extend_from_slice(&icmp);
    Some(out)
}

/// A UDP datagram answering the datagram `packet` (ports and addresses swapped) with `payload`.
pub(crate) fn udp_reply(frame: &[u8], packet: &Ipv4, payload: &[u8]) -> Option<Vec<u8>> {
    let Transport::Udp { src_port, dst_port } = packet.transport else { return None };
    let len = 8 + payload.len();
    let mut udp = Vec::with_capacity(len);
    udp.extend_from_slice(&dst_port.to_be_bytes());
    udp.extend_from_slice(&src_port.to_be_bytes());
    udp.extend_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let pseudo = pseudo_header(packet.dst, packet.src, PROTO_UDP, len);
    let sum = match checksum(&[&pseudo, &udp]) {
        0 => 0xffff, // 0 means "no checksum" in UDP over IPv4
        sum => sum,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    let mut out = reply_headers(frame, packet.dst, packet.src, PROTO_UDP, len);
    out.extend_from_slice(&udp);
    Some(out)
}

/// The UDP payload of `packet` in `frame`.
pub(crate) fn udp_payload<'a>(frame: &'a [u8], packet: &Ipv4) -> &'a [u8] {
    frame.get(packet.l4_offset + 8..packet.end).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const GUEST_MAC: [u8; 6] = [2, 0x46, 0x50, 0, 0, 16];
    const GW_MAC: [u8; 6] = [0x52, 0x55, 100, 96, 0, 1];

    /// A frame from the guest: `protocol` with `l4` as its payload.
    pub(crate) fn guest_frame(src: [u8; 4], dst: [u8; 4], protocol: u8, l4: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&GW_MAC);
        frame.extend_from_slice(&GUEST_MAC);
        frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&u16::try_from(20 + l4.len()).unwrap().to_be_bytes());
        ip[8] = 64;
        ip[9] = protocol;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let sum = checksum(&[&ip]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(l4);
        frame
    }

    pub(crate) fn tcp(src_port: u16, dst_port: u16, flags: u8) -> Vec<u8> {
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
        tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
        tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        tcp
    }

    pub(crate) fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut udp = Vec::new();
        udp.extend_from_slice(&src_port.to_be_bytes());
        udp.extend_from_slice(&dst_port.to_be_bytes());
        udp.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        udp
    }

    fn ipv4(frame: &[u8]) -> Ipv4 {
        match parse(frame) {
            Frame::Ipv4(packet) => packet,
            other => panic!("not IPv4: {other:?}"),
        }
    }

    #[test]
    fn only_a_bare_syn_opens_a_connection() {
        let syn = guest_frame([100, 96, 0, 16], [1, 2, 3, 4], PROTO_TCP, &tcp(40000, 443, TCP_SYN));
        let packet = ipv4(&syn);
        assert_eq!(packet.dst, Ipv4Addr::new(1, 2, 3, 4));
        assert!(matches!(packet.transport, Transport::Tcp { dst_port: 443, opens: true, .. }));
        for flags in [TCP_SYN | TCP_ACK, TCP_ACK, TCP_SYN | TCP_FIN, TCP_RST] {
            let frame = guest_frame([100, 96, 0, 16], [1, 2, 3, 4], PROTO_TCP, &tcp(40000, 443, flags));
            assert!(matches!(ipv4(&frame).transport, Transport::Tcp { opens: false, .. }), "{flags:#x}");
        }
    }

    #[test]
    fn fragments_truncation_and_other_ethertypes_are_recognised() {
        let mut fragment = guest_frame([100, 96, 0, 16], [1, 2, 3, 4], PROTO_UDP, &udp(1, 2, b"x"));
        fragment[ETH_LEN + 6] = 0x20; // more fragments
        assert_eq!(parse(&fragment), Frame::Fragment);
        let whole = guest_frame([100, 96, 0, 16], [1, 2, 3, 4], PROTO_UDP, &udp(1, 2, b"x"));
        assert_eq!(parse(&whole[..whole.len() - 1]), Frame::Other, "total length beyond the frame");
        let mut ipv6 = whole.clone();
        ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(parse(&ipv6), Frame::Other);
        let short_tcp = guest_frame([100, 96, 0, 16], [1, 2, 3, 4], PROTO_TCP, &[0; 10]);
        assert_eq!(ipv4(&short_tcp).transport, Transport::Other);
    }

    #[test]
    fn reset_answers_the_syn_with_valid_checksums() {
        let syn = guest_frame([100, 96, 0, 16], [1, 2, 3, 4], PROTO_TCP, &tcp(40000, 443, TCP_SYN));
        let reset = tcp_reset(&syn, &ipv4(&syn)).unwrap();
        assert_eq!(&reset[0..6], &GUEST_MAC);
        assert_eq!(&reset[6..12], &GW_MAC);
        let packet = ipv4(&reset);
        assert_eq!((packet.src, packet.dst), (Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(100, 96, 0, 16)));
        assert_eq!(checksum(&[&reset[ETH_LEN..ETH_LEN + 20]]), 0, "IP header checksum");
        let tcp = &reset[packet.l4_offset..];
        assert_eq!(u16_at(tcp, 0), Some(443));
        assert_eq!(u16_at(tcp, 2), Some(40000));
        assert_eq!(u32_at(tcp, 8), Some(1001), "acknowledges the SYN");
        assert_eq!(tcp[13], TCP_RST | TCP_ACK);
        let pseudo = pseudo_header(packet.src, packet.dst, PROTO_TCP, tcp.len());
        assert_eq!(checksum(&[&pseudo, tcp]), 0, "TCP checksum");
    }

    #[test]
    fn unreachable_and_udp_reply_are_well_formed() {
        let query = guest_frame([100, 96, 0, 16], [100, 96, 0, 2], PROTO_UDP, &udp(5353, 53, b"abc"));
        let packet = ipv4(&query);
        assert_eq!(udp_payload(&query, &packet), b"abc");
        let reply = udp_reply(&query, &packet, b"answer").unwrap();
        let answer = ipv4(&reply);
        assert!(matches!(answer.transport, Transport::Udp { src_port: 53, dst_port: 5353 }));
        assert_eq!(udp_payload(&reply, &answer), b"answer");
        let udp = &reply[answer.l4_offset..answer.end];
        assert_eq!(checksum(&[&pseudo_header(answer.src, answer.dst, PROTO_UDP, udp.len()), udp]), 0);
        let unreachable = icmp_unreachable(&query, &packet, 3).unwrap();
        let icmp = ipv4(&unreachable);
        assert_eq!(&unreachable[icmp.l4_offset..icmp.l4_offset + 2], &[3, 3]);
        assert_eq!(checksum(&[&unreachable[icmp.l4_offset..]]), 0);
        assert_eq!(unreachable.len(), ETH_LEN + 20 + 8 + 20 + 8, "quotes the header and 8 bytes");
    }

    proptest::proptest! {
        #[test]
        fn parsing_random_bytes_never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
            // An Ethernet header announcing IPv4 and a version/IHL byte, then anything.
            let mut bytes = vec![0u8; 12];
            bytes.extend_from_slice(&[8, 0, 0x45]);
            bytes.extend_from_slice(&tail);
            if let Frame::Ipv4(packet) = parse(&bytes) {
                let _ = tcp_reset(&bytes, &packet);
                let _ = icmp_unreachable(&bytes, &packet, 3);
                let _ = udp_reply(&bytes, &packet, b"x");
                let _ = udp_payload(&bytes, &packet);
            }
        }
    }
}
