//! firepit's guest agent and its wire protocol.
//!
//! # Why
//! The host must run programs in a guest, give a restored snapshot clone its own identity, and know
//! that the guest is ready, without a network (none is configured) and without trusting the guest.
//! This crate is both ends' shared language: the library holds the messages and their framing, and
//! the `firepit-agent` binary (a static executable the guest's `/init` starts) serves them.
//!
//! # What it is not
//! - Not an RPC framework: one byte stream, a handful of message kinds, each answer carrying its
//!   request's id (execs run concurrently, so answers may come out of order). No service
//!   discovery, no versioned schema: host and agent are built from the same source.
//! - Not a shell: the agent runs an argv it is given (no shell unless the argv asks for one) and
//!   reports exit code, output and timing; it keeps no session.
//! - Not I/O: the library does no reading or writing. The host side (`firepit-qemu`) and the agent
//!   bring their own sockets and files and feed bytes through the same [`FrameDecoder`].
//!
//! # How data flows
//! The host encodes a [`RequestFrame`] with [`encode_frame`] and writes it to the VM's
//! virtio-serial port ([`AGENT_PORT_NAME`]); the agent pushes what it reads into a
//! [`FrameDecoder`], pops the request, runs it and answers with a [`ResponseFrame`] carrying the
//! same id, which the host decodes the same way. Each message is a *frame*: a 4-byte big-endian
//! length followed by that many bytes of [`postcard`]. postcard was chosen over JSON because exec
//! output is raw bytes (no base64 blow-up) and its decoder never allocates more than the frame it
//! is given. Lengths above [`MAX_FRAME_LEN`] are rejected before any allocation, so a hostile peer
//! cannot make either side allocate without bound. (The channel is a virtio-serial port because our
//! hosts have no vsock.)
//!
//! # Streams
//!
//! A *stream* is a request whose id lives on after the first response: the agent answers with any
//! number of frames for that id (output chunks, credit, a start event) and ends it with one
//! *terminal* response ([`Response::is_terminal`]). While it is open
//! the host may send frames with the same id: [`Request::Input`] (file
//! contents, a tar archive, stdin, terminal input), [`Request::Credit`],
//! [`Request::Cancel`], [`Request::Resize`] and
//! [`Request::Signal`].
//!
//! Flow control is credit-based, one window of [`STREAM_WINDOW`] bytes per direction and output
//! channel, granted implicitly when the stream opens. A sender may have at most that many payload
//! bytes sent and not yet credited back; the receiver credits bytes once it has *consumed* them
//! (written them to a file or pipe, handed them to its reader). So a reader that stops reading stops
//! the producer: the agent stops reading the child's pipe and the child blocks in `write`. Neither
//! side ever buffers more than a window per stream and channel; a peer that sends beyond its credit
//! breaks the protocol and its stream is failed.
//!
//! Each host connection starts with [`Request::Hello`]: it resets the agent's session (streams of an
//! earlier connection are cancelled; background processes live on) and lets the host skip stale
//! bytes an earlier connection left in the channel.
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

#[cfg(feature = "codec")]
mod frame;

/// Name of the virtio-serial port the agent serves (`-device virtserialport,name=...`); the guest
/// finds its device by reading `/sys/class/virtio-ports/*/name`.
pub const AGENT_PORT_NAME: &str = "firepit.agent";

/// Line the guest's init prints on the serial console once the agent has been started. The
/// provider waits for it (and then for an agent ping) before calling a VM ready.
pub const READY_LINE: &str = "FIREPIT-GUEST-READY";

mod fs_messages;
mod messages;
mod network_messages;
mod process_messages;
mod stream_messages;
#[cfg(feature = "codec")]
mod tar_tree;

#[cfg(feature = "codec")]
pub use frame::{FrameDecoder, FrameError, MAX_FRAME_LEN, encode_frame};
pub use fs_messages::{
    ChmodRequest, ChownRequest, DirEntry, DirListing, Done, DownloadTarRequest, FileKind, FileStat,
    ListDirRequest, MAX_DIR_ENTRIES, MkdirRequest, ReadFileRequest, RemoveRequest, RenameRequest,
    StatRequest, UploadTarRequest, WriteFileRequest,
};
pub use messages::{
    ExecRequest, ExecResult, IdentityApplied, IdentityRequest, Pong, Request, RequestFrame, Response,
    ResponseFrame,
};
pub use network_messages::{NetworkApplied, NetworkConfig};
pub use process_messages::{
    DEFAULT_PROCESS_OUTPUT_LIMIT, ExitStatus, MAX_OUTPUT_READ, MAX_PROCESS_OUTPUT_LIMIT, ProcessInfo,
    ProcessOutput, ProcessOutputRequest, ProcessRef, PtyRequest, SignalProcessRequest, SpawnRequest,
    StartProcessRequest, Started, WaitProcessRequest, WindowSize,
};
pub use stream_messages::{
    Channel, Credit, Failure, FailureKind, InputChunk, MAX_CHUNK, OutputChunk, STREAM_WINDOW,
};
#[cfg(feature = "codec")]
pub use tar_tree::{append_tree, pack_dir};
