//! [`ChunkWriter`]: a blocking `Write` that hands its bytes on in chunks of at most [`MAX_CHUNK`],
//! the size of one stream frame's payload. Both ends of a transfer pack tar archives through it:
//! the agent into a stream's output (waiting for the host's credit), the host into the channel
//! that feeds an upload.

use std::io::{self, Write};

use crate::MAX_CHUNK;

/// Collects written bytes and passes each full chunk of [`MAX_CHUNK`] bytes (and, on `flush`, the
/// rest) to `send`; an error from `send` fails the write. It never holds more than one chunk.
///
/// ```
/// use std::io::Write;
/// use firepit_agent::{ChunkWriter, MAX_CHUNK};
/// let mut chunks = Vec::new();
/// let mut writer = ChunkWriter::new(|chunk: Vec<u8>| {
///     chunks.push(chunk.len());
///     Ok(())
/// });
/// writer.write_all(&vec![7u8; MAX_CHUNK + 10])?;
/// writer.flush()?;
/// assert_eq!(writer.written(), (MAX_CHUNK + 10) as u64);
/// drop(writer);
/// assert_eq!(chunks, [MAX_CHUNK, 10]);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ChunkWriter<F> {
    send: F,
    pending: Vec<u8>,
    written: u64,
}

impl<F: FnMut(Vec<u8>) -> io::Result<()>> ChunkWriter<F> {
    /// A writer passing its chunks to `send`.
    pub fn new(send: F) -> Self {
        Self { send, pending: Vec::with_capacity(MAX_CHUNK), written: 0 }
    }

    /// Bytes passed on so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn send_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(MAX_CHUNK));
        let len = chunk.len() as u64;
        (self.send)(chunk)?;
        self.written += len;
        Ok(())
    }
}

impl<F: FnMut(Vec<u8>) -> io::Result<()>> Write for ChunkWriter<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(MAX_CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == MAX_CHUNK {
            self.send_pending()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_pending()
    }
}
