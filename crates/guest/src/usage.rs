//! The guest's own view of its usage: memory, its root file system, and the OOM kills its kernel
//! made ([`Guest::usage`]). One cheap request, answered inline by the agent, meant to be asked
//! every few seconds; what the host sees from outside (CPU time, QEMU's memory, the disk overlay,
//! network bytes) is measured by the VM's owner, not here.

use std::time::Duration;

use firepit_agent::{GuestUsage, Request, Response, UsageRequest};

use crate::error::GuestError;
use crate::guest::Guest;

impl Guest {
    /// The guest's memory (total, available, page cache), its `/` (size, used) and the OOM kills
    /// its agent has seen, listing those numbered above `oom_kills_after` (pass the last
    /// [`OomKill::seq`](firepit_agent::OomKill::seq) seen, 0 at first). Waits at most `timeout`.
    ///
    /// ```
    /// # async fn demo() -> Result<(), firepit_guest::GuestError> {
    /// use std::time::Duration;
    /// let guest = firepit_guest::Guest::new(firepit_guest::InProcessAgent::new());
    /// let usage = guest.usage(0, Duration::from_secs(2)).await?;
    /// assert!(usage.memory_used_bytes() <= usage.memory_total_bytes);
    /// println!("{} of {} bytes of / used", usage.disk_used_bytes, usage.disk_total_bytes);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn usage(&self, oom_kills_after: u64, timeout: Duration) -> Result<GuestUsage, GuestError> {
        match self.request(Request::Usage(UsageRequest { oom_kills_after }), timeout).await? {
            Response::Usage(usage) => Ok(usage),
            other => Err(GuestError::unexpected("usage", other)),
        }
    }
}
