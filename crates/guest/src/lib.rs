//! firepit's client of the guest agent: everything the host asks of a guest, over any byte
//! channel.
//!
//! # Why
//! A guest is useful for what runs in it: programs (`exec`, attached processes with streamed
//! output, background processes that outlive connections, terminals), files and whole directories
//! in and out, and, for a restored snapshot clone, an identity and a network of its own. All of it
//! goes through one agent (`firepit-agent`) over one byte channel, and all of it was needed twice:
//! by the QEMU provider's VM handle and by the daemon's sandbox API. This crate is that client,
//! written once: the provider's `QemuVm` holds a [`Guest`], and the daemon serves its sandbox
//! endpoints from the same [`Guest`] (a real VM's, or one of its test double's).
//!
//! # What it is not
//! - Not a VM: it knows nothing of QEMU, consoles or pools. A channel may lead to a VM that exited
//!   or rests paused in its pool; the VM's owner says so through a [`Gate`] checked before every
//!   request.
//! - Not the wire protocol: the request and answer types ([`firepit_agent::SpawnRequest`],
//!   [`firepit_agent::FileStat`], ...) are `firepit-agent`'s; the methods here take and return
//!   them, and add what the host needs around them (streams, deadlines, reconnects).
//!
//! # How data flows
//! A [`Connector`] opens a [`ByteChannel`] (for a QEMU VM, [`UnixSocket`]: QEMU's virtio-serial port;
//! in tests, `InProcessAgent`: the real agent's request handling in this process, feature
//! `in-process`) when the first request needs it, and again after it broke. Every connection
//! starts with a hello that skips stale bytes; requests are multiplexed on it by id, so a long
//! exec does not block a ping. One-shot requests (`exec`, `stat`, `signal_process`...) wait for one
//! answer under a deadline ([`Timeouts`]); *streams* (file and archive transfers, attached
//! processes, terminals) stay open with credit-based flow control both ways, so host memory stays
//! bounded whatever the size: at most one window ([`STREAM_WINDOW`](firepit_agent::STREAM_WINDOW))
//! per stream and direction, and a consumer that stops reading stops the guest's producer.
//!
//! - Programs: [`Guest::exec`] / [`Guest::exec_request`] ([`ExecOutput`]), [`Guest::spawn`]
//!   ([`GuestProcess`]: [`GuestOutput`] and [`GuestInput`] streams, [`ProcessControl`]),
//!   [`Guest::pty`] ([`PtySession`]), background processes ([`Guest::start_process`],
//!   [`Guest::processes`], [`Guest::process_output`] by offset, [`Guest::signal_process`],
//!   [`Guest::wait_process`]). An image's environment, working directory and user
//!   ([`ExecDefaults`]) apply to each.
//! - Files: [`Guest::write_file`] ([`WriteOptions`]), [`Guest::read_file`] ([`GuestFileReader`]),
//!   `stat`, `list_dir`, `mkdir`, `remove`, `chmod`, `chown`, `rename`; tar archives
//!   ([`Guest::upload_tar`], [`Guest::download_tar`]) and host directories
//!   ([`Guest::upload_dir`], [`Guest::download_dir`]).
//! - The guest itself: [`Guest::ping`], [`Guest::set_identity`] ([`fresh_identity`]),
//!   [`Guest::configure_network`], [`Guest::usage`] (memory, `/`, OOM kills).
//!
//! Failures come back as [`GuestError`]: the guest's own (a missing file: `Failed` with a
//! [`FailureKind`](firepit_agent::FailureKind); a program that cannot start: `Remote`) or the
//! channel's (`Timeout`, `Closed`...).
//!
//! ```
//! # async fn demo() -> Result<(), firepit_guest::GuestError> {
//! use firepit_guest::{Guest, InProcessAgent};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("greeting").display().to_string();
//! let guest = Guest::new(InProcessAgent::new()); // a VM's: Guest::new(UnixSocket::new(path))
//! guest.write_file(&path, &b"hello\n"[..]).await?;
//! let out = guest.exec(["cat", path.as_str()]).await?;
//! assert_eq!(out.stdout_lossy(), "hello\n");
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

#![warn(missing_docs)]

mod agent;
mod agent_routes;
mod background;
mod channel;
mod dirs;
mod error;
mod exec;
mod exec_defaults;
mod files;
mod guest;
#[cfg(feature = "in-process")]
mod in_process;
mod process;
mod pty;
mod streams;
mod usage;

pub use channel::{BoxFuture, ByteChannel, Connector, UnixSocket};
pub use error::{BoxError, GuestError};
pub use exec::{ExecOutput, fresh_identity};
pub use exec_defaults::ExecDefaults;
pub use files::{GuestFileReader, WriteOptions};
pub use guest::{Gate, Guest, Timeouts, Wake};
#[cfg(feature = "in-process")]
pub use in_process::InProcessAgent;
pub use process::{GuestProcess, ProcessControl};
pub use pty::PtySession;
pub use streams::{GuestInput, GuestOutput};
