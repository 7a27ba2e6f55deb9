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
//! - Not I/O, without its `serve` feature: the protocol half does no reading or writing. The host
//!   side (`firepit-guest`) and the agent bring their own channels and feed bytes through the same
//!   [`FrameDecoder`]. The `serve` feature (on by default, off for crates that only speak the
//!   protocol) adds the agent's request handling itself ([`Agent`], [`serve_connection`]): what the
//!   binary runs on the guest's virtio-serial port, and what host-side tests run in-process over a
//!   socket pair ([`serve_in_process`]), on the host's own files and programs.
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

// The serving modules below name the protocol as `firepit_agent::...`, as they did when they lived
// in the binary: this alias lets them stay as they are inside the library.
#[cfg(feature = "serve")]
extern crate self as firepit_agent;

#[cfg(feature = "codec")]
mod chunks;
#[cfg(feature = "codec")]
mod frame;

/// Name of the virtio-serial port the agent serves (`-device virtserialport,name=...`); the guest
/// finds its device by reading `/sys/class/virtio-ports/*/name`.
pub const AGENT_PORT_NAME: &str = "firepit.agent";

/// Line the guest's init prints on the serial console once the agent has been started. The
/// provider waits for it (and then for an agent ping) before calling a VM ready.
pub const READY_LINE: &str = "FIREPIT-GUEST-READY";

/// The argument that makes `firepit-agent` do the warm-up and exit (see [`WARM_UP_ARGV`]).
pub const WARM_UP_ARG: &str = "warm-up";

/// The command the host runs in every new VM before handing it out: the agent executes *itself*
/// (in the exec'd child `/proc/self/exe` is the agent's own binary, which lives outside the VM's
/// root disk) with [`WARM_UP_ARG`], through the exec path every command takes. It needs nothing
/// from the user's image (a distroless root has no `true`). Where the root is firepit's own
/// initramfs, the agent then becomes its busybox `true`, which the user's commands run too.
///
/// ```
/// let request = firepit_agent::ExecRequest {
///     argv: firepit_agent::WARM_UP_ARGV.map(String::from).to_vec(),
///     ..Default::default()
/// };
/// assert_eq!(request.argv, ["/proc/self/exe", "warm-up"]);
/// ```
pub const WARM_UP_ARGV: [&str; 2] = ["/proc/self/exe", WARM_UP_ARG];

mod fs_messages;
mod messages;
mod network_messages;
mod process_messages;
mod stream_messages;
#[cfg(feature = "codec")]
mod tar_tree;
mod usage_messages;

#[cfg(feature = "codec")]
pub use chunks::ChunkWriter;
#[cfg(feature = "codec")]
pub use frame::{FrameDecoder, FrameError, MAX_FRAME_LEN, encode_frame};
pub use fs_messages::{
    ChmodRequest, ChownRequest, DirEntry, DirListing, Done, DownloadTarRequest, FileKind, FileStat,
    ListDirRequest, MAX_ARCHIVE_DEPTH, MAX_ARCHIVE_ENTRIES, MAX_ARCHIVE_HEADER_BYTES, MAX_DIR_ENTRIES,
    MAX_NAME_BYTES, MAX_PATH_BYTES, MkdirRequest, ReadFileRequest, RemoveRequest, RenameRequest, StatRequest,
    UploadTarRequest, WriteFileRequest,
};
pub use messages::{
    ExecRequest, ExecResult, IdentityApplied, IdentityRequest, MAX_EXEC_OUTPUT, Pong, Request, RequestFrame,
    Response, ResponseFrame,
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
pub use usage_messages::{GuestUsage, MAX_OOM_KILLS_LISTED, OomKill, UsageRequest};

/// Declares the serving modules, each only with the `serve` feature.
macro_rules! serving {
    ($($module:ident),* $(,)?) => {$(
        #[cfg(feature = "serve")]
        mod $module;
    )*};
}

// The agent's request handling (feature `serve`), one module per concern, layered: `serve` reads
// frames and dispatches; the handlers (`exec`, `files`, `transfer`, `spawn`, `pty`, `processes`,
// `identity`, `network`) sit below it; `unpack` (over `unpack_stage`), `replace`, `stream`,
// `pump`, `supervise`, `group`, `writer`, `ring` and `failure` below them.
serving!(
    exec,
    failure,
    files,
    group,
    identity,
    network,
    processes,
    pty,
    pump,
    replace,
    ring,
    run_as,
    serve,
    spawn,
    stream,
    supervise,
    transfer,
    unpack,
    unpack_stage,
    writer,
);
// The guest's own view of its usage and the OOM kills its kernel made (`Request::Usage`, and each
// result's `oom_killed`).
serving!(oom, usage);

#[cfg(feature = "serve")]
pub use oom::watch_kernel_log;
#[cfg(feature = "serve")]
pub use processes::ProcessTable;
#[cfg(feature = "serve")]
pub use serve::{Agent, ConnectionEnd, serve_connection, serve_in_process};
#[cfg(feature = "serve")]
pub use unpack::{UnpackLimits, unpack_archive};
