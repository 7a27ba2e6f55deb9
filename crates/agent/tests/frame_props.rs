//! Property tests of the agent wire protocol's frame decoder, the code both the host and the guest
//! run on bytes from the other side.
//!
//! The strategies (in `strategies/`) cover every request and response, streams included.
//! What must hold for *any* input: decoding never panics; a length prefix above `MAX_FRAME_LEN` is
//! rejected from the 4-byte header alone; no single allocation made while decoding is larger than the
//! bytes received plus serde's 1 MiB pre-allocation cap (a hostile length inside a body cannot make the
//! decoder reserve gigabytes); valid frames round-trip whatever way the stream is split.
//!
//! The case count defaults to a CI-friendly 256 per property; a longer campaign:
//! `PROPTEST_CASES=200000 cargo test --release -p firepit-agent --test frame_props`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

mod strategies;

use firepit_agent::{
    ExecRequest, FrameDecoder, FrameError, MAX_FRAME_LEN, Request, RequestFrame, ResponseFrame, encode_frame,
};
use proptest::prelude::*;
use strategies::{bytes, request, response};

/// Counts the largest single allocation made on the current thread while tracking is on.
struct LargestAllocation;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    if TRACKING.with(Cell::get) {
        LARGEST.with(|largest| largest.set(largest.get().max(size)));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same layout the caller gave us.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Runs `f` and returns its result with the largest single allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    TRACKING.with(|tracking| tracking.set(true));
    let out = f();
    TRACKING.with(|tracking| tracking.set(false));
    (out, LARGEST.with(Cell::get))
}

/// serde pre-allocates at most 1 MiB for a sequence whose length the input claims.
const SERDE_PREALLOCATION_CAP: usize = 1024 * 1024;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Feeds `input` in pieces cut at `cuts` and pops frames after each piece, as the read loops do.
/// Returns the decoded frames and the errors; panics only if an invariant breaks.
fn decode_in_pieces<T: serde::de::DeserializeOwned>(
    input: &[u8],
    cuts: &[usize],
) -> (Vec<T>, Vec<FrameError>) {
    let mut decoder = FrameDecoder::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    let (mut frames, mut errors, mut from) = (Vec::new(), Vec::new(), 0);
    for to in points {
        decoder.push(&input[from..to]);
        from = to;
        loop {
            match decoder.next_frame::<T>() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error @ FrameError::TooLarge { .. }) => {
                    decoder.clear();
                    errors.push(error);
                }
                Err(error) => errors.push(error),
            }
        }
        assert!(decoder.buffered() < 4 + MAX_FRAME_LEN, "decoder kept {} bytes", decoder.buffered());
    }
    (frames, errors)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn request_frames_round_trip_however_the_stream_is_split(
        frames in proptest::collection::vec((any::<u64>(), request()), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let frames: Vec<RequestFrame> =
            frames.into_iter().map(|(id, request)| RequestFrame { id, request }).collect();
        let stream: Vec<u8> = frames.iter().flat_map(|f| encode_frame(f).unwrap()).collect();
        let (decoded, errors) = decode_in_pieces::<RequestFrame>(&stream, &cuts);
        prop_assert!(errors.is_empty(), "{errors:?}");
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn response_frames_round_trip_however_the_stream_is_split(
        frames in proptest::collection::vec((any::<u64>(), response()), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let frames: Vec<ResponseFrame> =
            frames.into_iter().map(|(id, response)| ResponseFrame { id, response }).collect();
        let stream: Vec<u8> = frames.iter().flat_map(|f| encode_frame(f).unwrap()).collect();
        let (decoded, errors) = decode_in_pieces::<ResponseFrame>(&stream, &cuts);
        prop_assert!(errors.is_empty(), "{errors:?}");
        prop_assert_eq!(decoded, frames);
    }

    /// Random bytes: no panic, and no allocation beyond the input plus serde's cap.
    #[test]
    fn random_bytes_never_panic_nor_allocate_beyond_the_input(
        input in bytes(2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let (_, largest) = largest_allocation(|| {
            decode_in_pieces::<RequestFrame>(&input, &cuts);
            decode_in_pieces::<ResponseFrame>(&input, &cuts);
        });
        prop_assert!(largest <= 2 * input.len() + SERDE_PREALLOCATION_CAP + 4096, "allocated {largest} bytes");
    }

    /// A well-formed length prefix with a random body is either one frame or one `Malformed` error,
    /// and the body is consumed either way (the stream stays in sync).
    #[test]
    fn random_body_behind_a_valid_prefix_is_consumed_as_one_frame_or_one_error(
        body in bytes(1024),
        id in any::<u64>(),
    ) {
        let mut input = (body.len() as u32).to_be_bytes().to_vec();
        input.extend_from_slice(&body);
        input.extend_from_slice(&encode_frame(&RequestFrame { id, request: Request::Ping }).unwrap());
        let (frames, errors) = decode_in_pieces::<RequestFrame>(&input, &[]);
        prop_assert_eq!(frames.len() + errors.len(), 2);
        prop_assert!(errors.iter().all(|e| matches!(e, FrameError::Malformed(_))), "{errors:?}");
        prop_assert_eq!(frames.last().map(|f| f.id), Some(id));
    }

    /// Valid frames with bytes flipped, cut or inserted: no panic, bounded allocation.
    #[test]
    fn mutated_valid_frames_never_panic_nor_allocate_beyond_the_input(
        frame in (any::<u64>(), request()),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut input = encode_frame(&RequestFrame { id: frame.0, request: frame.1 }).unwrap();
        for (at, byte, kind) in edits {
            let at = at % (input.len() + 1);
            match kind {
                0 if at < input.len() => input[at] = byte,
                1 if at < input.len() => { input.remove(at); }
                _ => input.insert(at, byte),
            }
        }
        let (_, largest) = largest_allocation(|| decode_in_pieces::<RequestFrame>(&input, &[]));
        prop_assert!(largest <= 2 * input.len() + SERDE_PREALLOCATION_CAP + 4096, "allocated {largest} bytes");
    }

    /// A length prefix above the limit is refused from the header alone, before any body arrives.
    #[test]
    fn oversized_length_prefix_is_refused_from_the_header_alone(len in (MAX_FRAME_LEN as u32 + 1)..=u32::MAX) {
        let mut decoder = FrameDecoder::new();
        decoder.push(&len.to_be_bytes());
        let refused =
            matches!(decoder.next_frame::<RequestFrame>(), Err(FrameError::TooLarge { len: l }) if l == len as usize);
        prop_assert!(refused);
    }
}

#[test]
fn sequence_claiming_billions_of_elements_allocates_at_most_the_serde_cap() {
    // id 1, Request::Exec (variant 1), argv: varint length u32::MAX, then nothing.
    let body = [1u8, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let mut input = (body.len() as u32).to_be_bytes().to_vec();
    input.extend_from_slice(&body);
    let ((frames, errors), largest) = largest_allocation(|| decode_in_pieces::<RequestFrame>(&input, &[]));
    assert!(frames.is_empty());
    assert!(matches!(errors.as_slice(), [FrameError::Malformed(_)]), "{errors:?}");
    assert!(largest <= SERDE_PREALLOCATION_CAP + 4096, "allocated {largest} bytes for a 7-byte body");
}

#[test]
fn allocation_tracker_sees_the_allocations_of_a_large_frame() {
    let stdin = vec![7u8; 100 * 1024];
    let request = Request::Exec(ExecRequest { stdin, ..ExecRequest::default() });
    let input = encode_frame(&RequestFrame { id: 1, request }).unwrap();
    let ((frames, _), largest) = largest_allocation(|| decode_in_pieces::<RequestFrame>(&input, &[]));
    assert_eq!(frames.len(), 1);
    assert!(largest >= 100 * 1024, "the tracker missed a 100 KiB allocation (saw {largest})");
}
