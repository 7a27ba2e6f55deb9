//! A bounded byte log addressed by absolute offsets (bytes received since the start).
//!
//! Offsets never go back, so a reader's cursor stays meaningful after old bytes are dropped; a
//! cursor older than the oldest kept byte simply reads from the oldest kept byte.

/// The last `capacity` bytes of a stream.
#[derive(Debug)]
pub(crate) struct OutputRing {
    data: Vec<u8>,
    /// Absolute offset of `data[0]`.
    start: u64,
    capacity: usize,
}

impl OutputRing {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { data: Vec::new(), start: 0, capacity: capacity.max(1) }
    }

    /// Appends bytes, dropping the oldest beyond the capacity.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        if self.data.len() > self.capacity {
            let excess = self.data.len() - self.capacity;
            self.data.drain(..excess);
            self.start += excess as u64;
        }
    }

    /// Absolute offset one past the newest byte.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }

    fn index(&self, offset: u64) -> usize {
        (offset.clamp(self.start, self.end()) - self.start) as usize
    }

    /// Searches `pattern` from `cursor`; returns the effective start (the cursor, or the oldest kept
    /// byte if the cursor's bytes were dropped) and the absolute end of the first match.
    pub(crate) fn find(&self, cursor: u64, pattern: &[u8]) -> (u64, Option<u64>) {
        let from = self.index(cursor);
        let effective = self.start + from as u64;
        let haystack = &self.data[from..];
        if pattern.is_empty() {
            return (effective, Some(effective));
        }
        let found = haystack
            .windows(pattern.len())
            .position(|window| window == pattern)
            .map(|at| effective + (at + pattern.len()) as u64);
        (effective, found)
    }

    /// Bytes between two absolute offsets (clamped to what is kept).
    pub(crate) fn range(&self, from: u64, to: u64) -> Vec<u8> {
        let (a, b) = (self.index(from), self.index(to));
        self.data[a..b.max(a)].to_vec()
    }

    /// Bytes from `from` to the end.
    pub(crate) fn since(&self, from: u64) -> Vec<u8> {
        self.data[self.index(from)..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_only_capacity_bytes_and_offsets_keep_counting() {
        let mut ring = OutputRing::new(8);
        ring.push(b"0123456789");
        assert_eq!(ring.end(), 10);
        assert_eq!(ring.since(0), b"23456789");
        ring.push(b"ab");
        assert_eq!(ring.since(0), b"456789ab");
        assert_eq!(ring.range(6, 8), b"67");
    }

    #[test]
    fn find_returns_match_end_from_cursor_only() {
        let mut ring = OutputRing::new(64);
        ring.push(b"hello\r\nhello again\r\n");
        assert_eq!(ring.find(0, b"hello"), (0, Some(5)));
        assert_eq!(ring.find(5, b"hello"), (5, Some(12)));
        assert_eq!(ring.find(12, b"hello"), (12, None));
        assert_eq!(ring.find(0, b""), (0, Some(0)));
    }

    #[test]
    fn cursor_older_than_kept_bytes_reads_from_oldest_kept() {
        let mut ring = OutputRing::new(4);
        ring.push(b"abcdefgh");
        assert_eq!(ring.find(1, b"ef"), (4, Some(6)));
        assert_eq!(ring.find(1, b"ab"), (4, None));
    }
}
