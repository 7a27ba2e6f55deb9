//! The newest `limit` bytes of one output, addressed by absolute offset, so that a reader that
//! reconnects can continue where it stopped (or learn how much it missed).

use std::collections::VecDeque;

use firepit_agent::ProcessOutput;

/// A bounded output buffer: keeps the last `limit` bytes ever appended.
#[derive(Debug)]
pub struct OutputRing {
    bytes: VecDeque<u8>,
    /// Absolute offset of `bytes[0]`.
    start: u64,
    limit: usize,
    closed: bool,
}

impl OutputRing {
    /// An empty ring keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { bytes: VecDeque::new(), start: 0, limit: limit.max(1), closed: false }
    }

    /// Appends output, dropping the oldest bytes beyond the limit.
    pub fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.limit {
            self.start += (data.len() - self.limit) as u64;
            &data[data.len() - self.limit..]
        } else {
            data
        };
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.limit);
        self.bytes.drain(..overflow);
        self.start += overflow as u64;
        self.bytes.extend(data);
    }

    /// Marks the output ended.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Total bytes ever appended (the offset after the last one).
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// Whether a read at `offset` would return something or the end.
    pub fn ready(&self, offset: u64) -> bool {
        self.closed || offset < self.end()
    }

    /// Up to `max` bytes from `offset` (or from the oldest byte kept, if `offset` was dropped).
    pub fn read(&self, offset: u64, max: usize) -> ProcessOutput {
        let from = offset.clamp(self.start, self.end());
        let skip = usize::try_from(from - self.start).unwrap_or(usize::MAX);
        let bytes: Vec<u8> = self.bytes.iter().skip(skip).take(max).copied().collect();
        let next_offset = from + bytes.len() as u64;
        ProcessOutput {
            offset: from,
            missed: from.saturating_sub(offset),
            next_offset,
            eof: self.closed && next_offset == self.end(),
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bytes_and_reports_what_a_reader_missed() {
        let mut ring = OutputRing::new(4);
        ring.push(b"abc");
        ring.push(b"def");
        assert_eq!(ring.end(), 6);
        let read = ring.read(0, 100);
        assert_eq!(
            (read.offset, read.missed, read.bytes.as_slice(), read.next_offset),
            (2, 2, &b"cdef"[..], 6)
        );
        assert!(!read.eof);
        let read = ring.read(4, 1);
        assert_eq!((read.bytes.as_slice(), read.next_offset), (&b"e"[..], 5));
        ring.push(b"0123456789");
        assert_eq!(ring.read(0, 100).bytes, b"6789");
        ring.close();
        let read = ring.read(16, 100);
        assert!(read.eof && read.bytes.is_empty());
    }

    #[test]
    fn a_read_past_the_end_is_empty_and_not_eof_while_open() {
        let mut ring = OutputRing::new(8);
        ring.push(b"ab");
        let read = ring.read(10, 5);
        assert_eq!((read.offset, read.bytes.len(), read.eof), (2, 0, false));
        assert!(!ring.ready(2) && ring.ready(1));
    }
}
