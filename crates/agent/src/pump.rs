//! Copying between a child's file descriptors and a stream, under the stream's flow control.
//!
//! Output pumps read only as much as the host has credited: with no credit they stop reading and
//! the child blocks in `write` once its pipe (or terminal) buffer is full. Reads wait in `poll` with
//! a short timeout so that a pump notices when it must stop even if a process that escaped its group
//! keeps the descriptor open.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use firepit_agent::{Channel, MAX_CHUNK, WindowSize};

use crate::stream::{Control, InputEvent, Stream};

/// How long one `poll` waits before the stop flag is checked again (milliseconds).
const POLL_MS: libc::c_int = 200;

/// Reads into `buf`, waiting in slices of [`POLL_MS`]; `Ok(None)` once `stop()` says so.
fn read_or_stop(source: &mut File, buf: &mut [u8], stop: &dyn Fn() -> bool) -> io::Result<Option<usize>> {
    loop {
        if stop() {
            return Ok(None);
        }
        let mut fds = libc::pollfd { fd: source.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for a descriptor we own, for the duration of the call.
        let ready = unsafe { libc::poll(&mut fds, 1, POLL_MS) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if ready == 0 {
            continue;
        }
        match source.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Copies `source` to `channel` of `stream` until end-of-file (a terminal's EIO counts as one), the
/// stream stops, or `stop` is set; then posts [`Control::OutputClosed`]. An `eof` chunk is sent only
/// at a real end of the output.
pub fn output(stream: Arc<Stream>, channel: Channel, mut source: File, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; MAX_CHUNK];
    let should_stop = || stop.load(Ordering::SeqCst) || stream.is_cancelled();
    while let Ok(credit) = stream.wait_credit(channel) {
        let want = credit.min(MAX_CHUNK);
        match read_or_stop(&mut source, &mut buf[..want], &should_stop) {
            Ok(Some(0)) => {
                stream.send_output(channel, Vec::new(), true);
                break;
            }
            Ok(Some(n)) => stream.send_output(channel, buf[..n].to_vec(), false),
            Ok(None) => break,
            Err(error) if error.raw_os_error() == Some(libc::EIO) => {
                // A pseudo-terminal's master reads EIO once no process has the terminal open.
                stream.send_output(channel, Vec::new(), true);
                break;
            }
            Err(error) => {
                eprintln!("firepit-agent: reading {}: {error}", channel.as_str());
                break;
            }
        }
    }
    stream.post(Control::OutputClosed);
}

/// Writes the stream's input into `sink` (a child's stdin or a terminal), crediting each chunk once
/// written, and hands each resize to `on_resize` in its place among the input (a terminal's size
/// changes before the input sent after the resize is typed); closes `sink` at the host's
/// end-of-file. If the child stops reading for good (broken pipe), further input is credited and
/// dropped so the host never waits for credit that cannot come.
pub fn input(stream: Arc<Stream>, sink: File, on_resize: &dyn Fn(&File, WindowSize)) {
    let mut sink = Some(sink);
    while let Ok(Some(event)) = stream.next_input_event() {
        let chunk = match event {
            InputEvent::Bytes(chunk) => chunk,
            InputEvent::Resize(size) => {
                if let Some(writer) = sink.as_ref() {
                    on_resize(writer, size);
                }
                continue;
            }
        };
        if let Some(writer) = sink.as_mut()
            && writer.write_all(&chunk).is_err()
        {
            sink = None;
        }
        stream.grant_input(chunk.len());
    }
}
