//! The wire protocol between firepit (host) and `firepit-agent` (guest).
//!
//! The channel is a byte stream (a virtio-serial port on our hosts: no vsock there). Each message is
//! a *frame*: a 4-byte big-endian length followed by that many bytes of a [`postcard`]-encoded
//! [`RequestFrame`] or [`ResponseFrame`]. postcard was chosen over JSON because exec output is raw
//! bytes (no base64 blow-up) and its decoder never allocates more than the frame it is given.
//! Lengths above [`MAX_FRAME_LEN`] are rejected before any allocation, so a hostile peer cannot make
//! either side allocate without bound.
//!
//! Both sides use the same sans-IO [`FrameDecoder`]: push bytes in, pop whole frames out.
//!
//! ```
//! use firepit_agent::{encode_frame, FrameDecoder, Request, RequestFrame};
//! let bytes = encode_frame(&RequestFrame { id: 7, request: Request::Ping }).unwrap();
//! let mut decoder = FrameDecoder::new();
//! decoder.push(&bytes);
//! let frame: RequestFrame = decoder.next_frame().unwrap().unwrap();
//! assert_eq!(frame.id, 7);
//! ```

#![warn(missing_docs)]

mod frame;

/// Name of the virtio-serial port the agent serves (`-device virtserialport,name=...`); the guest
/// finds its device by reading `/sys/class/virtio-ports/*/name`.
pub const AGENT_PORT_NAME: &str = "firepit.agent";

/// Line the guest's init prints on the serial console once the agent has been started. The
/// provider waits for it (and then for an agent ping) before calling a VM ready.
pub const READY_LINE: &str = "FIREPIT-GUEST-READY";

mod messages;

pub use frame::{FrameDecoder, FrameError, MAX_FRAME_LEN, encode_frame};
pub use messages::{
    ExecRequest, ExecResult, IdentityApplied, IdentityRequest, Pong, Request, RequestFrame, Response,
    ResponseFrame,
};
