//! Bytes from the other side of the agent channel, as both read loops decode them: the first byte
//! picks where the stream is cut into reads, the rest is the stream. Invariants (asserted, so a
//! violation is a crash libFuzzer reports): no panic, and after draining, the decoder never holds a
//! whole maximal frame.
#![no_main]

use firepit_agent::{FrameDecoder, FrameError, MAX_FRAME_LEN, RequestFrame, ResponseFrame};
use libfuzzer_sys::fuzz_target;

fn drain<T: serde::de::DeserializeOwned>(stream: &[u8], step: usize) {
    let mut decoder = FrameDecoder::new();
    for piece in stream.chunks(step) {
        decoder.push(piece);
        loop {
            match decoder.next_frame::<T>() {
                Ok(Some(_)) | Err(FrameError::Malformed(_)) => {}
                Ok(None) => break,
                Err(FrameError::TooLarge { .. }) => decoder.clear(),
            }
        }
        assert!(decoder.buffered() < 4 + MAX_FRAME_LEN);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let step = usize::from(cut).max(1);
    drain::<RequestFrame>(stream, step);
    drain::<ResponseFrame>(stream, step);
});
