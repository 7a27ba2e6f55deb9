//! The guest's DNS, answered by the host: just enough of RFC 1035 to read one question and write
//! an answer with A records, an empty answer, or an error code.
//!
//! Why the host answers instead of forwarding: a guest limited to an allow-list must not reach a
//! resolver that would look up any name (that would be a channel out, and its answers would not
//! match what the policy lets the guest connect to). So the filter answers every query to the
//! NAT's DNS address itself, resolving on the host only the names the policy allows.

use std::net::Ipv4Addr;

/// Record type A (IPv4 address).
pub(crate) const TYPE_A: u16 = 1;
/// Answer codes.
pub(crate) const NOERROR: u8 = 0;
pub(crate) const SERVFAIL: u8 = 2;
pub(crate) const NXDOMAIN: u8 = 3;
/// Seconds a guest may cache an answer.
pub(crate) const TTL_SECS: u32 = 30;

/// One parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub id: u16,
    /// Recursion desired (echoed back).
    pub recursion: bool,
    /// Lower case, no trailing dot.
    pub name: String,
    pub qtype: u16,
    /// The question section as received, copied into the answer.
    question: Vec<u8>,
}

/// Parses a standard query with exactly one question; `None` for anything else (responses, other
/// opcodes, compressed or malformed names).
pub(crate) fn parse_query(message: &[u8]) -> Option<Query> {
    let header = message.get(..12)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let qdcount = u16::from_be_bytes([header[4], header[5]]);
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || qdcount != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*message.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // a compression pointer or a reserved label type
        }
        let label = message.get(at..at + len)?;
        if !label.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
    }
    let name = labels.join(".");
    if name.len() > 253 {
        return None;
    }
    let qtype = u16::from_be_bytes([*message.get(at)?, *message.get(at + 1)?]);
    let _class = message.get(at + 2..at + 4)?;
    Some(Query {
        id: u16::from_be_bytes([header[0], header[1]]),
        recursion: flags & 0x0100 != 0,
        name,
        qtype,
        question: message[12..at + 4].to_vec(),
    })
}

/// The answer to `query`: `rcode` and, for [`NOERROR`], these A records.
pub(crate) fn answer(query: &Query, rcode: u8, addrs: &[Ipv4Addr]) -> Vec<u8> {
    let addrs = if rcode == NOERROR { addrs } else { &[] };
    let mut out = Vec::with_capacity(12 + query.question.len() + addrs.len() * 16);
    out.extend_from_slice(&query.id.to_be_bytes());
    let mut flags: u16 = 0x8000 | 0x0080 | u16::from(rcode & 0xf); // response, recursion available
    if query.recursion {
        flags |= 0x0100;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::try_from(addrs.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query.question);
    for addr in addrs {
        out.extend_from_slice(&[0xc0, 12]); // the name of the question
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&TTL_SECS.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&addr.octets());
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A query as a stub resolver sends it.
    pub(crate) fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            out.push(u8::try_from(label.len()).unwrap());
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out
    }

    #[test]
    fn a_query_is_read_and_answered_with_its_question() {
        let parsed = parse_query(&query(0x1234, "PyPI.org", TYPE_A)).unwrap();
        assert_eq!((parsed.id, parsed.name.as_str(), parsed.qtype), (0x1234, "pypi.org", TYPE_A));
        let reply = answer(&parsed, NOERROR, &[Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8)]);
        assert_eq!(&reply[0..2], &[0x12, 0x34]);
        assert_eq!(reply[3] & 0xf, NOERROR);
        assert_eq!(&reply[6..8], &[0, 2], "two answers");
        assert_eq!(&reply[reply.len() - 4..], &[5, 6, 7, 8]);
        let refused = answer(&parsed, NXDOMAIN, &[Ipv4Addr::new(1, 2, 3, 4)]);
        assert_eq!(refused[3] & 0xf, NXDOMAIN);
        assert_eq!(&refused[6..8], &[0, 0], "no records with an error");
        assert_eq!(refused.len(), 12 + "PyPI.org".len() + 2 + 4);
    }

    #[test]
    fn responses_pointers_and_truncation_are_not_queries() {
        let mut response = query(1, "a.b", TYPE_A);
        response[2] |= 0x80;
        assert!(parse_query(&response).is_none());
        let mut pointer = query(1, "a.b", TYPE_A);
        pointer[12] = 0xc0;
        assert!(parse_query(&pointer).is_none());
        let whole = query(1, "a.b", TYPE_A);
        assert!(parse_query(&whole[..whole.len() - 1]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn random_messages_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            if let Some(query) = parse_query(&bytes) {
                let _ = answer(&query, NOERROR, &[Ipv4Addr::LOCALHOST]);
            }
        }
    }
}
