//! [`InProcessAgent`] (feature `in-process`): the real agent's request handling, serving this
//! process over socket pairs, on the host's own files and programs. What the crate's own tests
//! run against, and what the daemon's fake backend gives each fake VM: the same code path as a
//! VM's agent, without a VM.
//!
//! It is no sandbox: a program it runs is a program of the host, as the user running the tests.
//! It runs as a *contained* agent: requests that would change the machine itself (its identity:
//! clock, hostname, entropy, machine id; its network interface) are refused.

use std::io;
use std::sync::Arc;

use firepit_agent::ProcessTable;

use crate::channel::{BoxFuture, ByteChannel, Connector};

/// An agent in this process (see the module docs). Each [`connect`](Connector::connect) is a new
/// socket pair with a serving thread of its own, as each host connection to a VM's port is a new
/// session of its agent; background processes are shared by the sessions and killed when the last
/// clone of this handle is dropped, as they die with a VM.
///
/// ```
/// # async fn demo() -> Result<(), firepit_guest::GuestError> {
/// use firepit_guest::{Guest, InProcessAgent};
/// let guest = Guest::new(InProcessAgent::new());
/// let out = guest.exec(["echo", "hello"]).await?;
/// assert_eq!(out.stdout_lossy(), "hello\n");
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct InProcessAgent {
    processes: Arc<Processes>,
}

impl InProcessAgent {
    /// An agent with no background processes yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The agent's background processes, killed with the last handle.
#[derive(Default)]
struct Processes(Arc<ProcessTable>);

impl std::fmt::Debug for Processes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Processes")
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.0.kill_all();
    }
}

impl Connector for InProcessAgent {
    fn connect(&self) -> BoxFuture<'_, io::Result<ByteChannel>> {
        Box::pin(async move {
            let (host, agent) = std::os::unix::net::UnixStream::pair()?;
            firepit_agent::serve_in_process(agent, self.processes.0.clone())?;
            host.set_nonblocking(true)?;
            Ok(ByteChannel::unix(tokio::net::UnixStream::from_std(host)?))
        })
    }
}
