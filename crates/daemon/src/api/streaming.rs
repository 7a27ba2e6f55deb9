//! What the sandbox endpoints share: finding the lease, running a call on its VM, request bodies as
//! byte streams (never collected: the guest pulls them at its pace), and response bodies that end
//! with their lease.
//!
//! A streamed response that cannot finish must not look finished: when the lease stops running
//! (ended, paused) or the guest fails mid-way, the body ends with an error, so the client sees a
//! broken transfer, never a short file. A body holds the guest's stream, never the VM: the VM of
//! an ended lease is gone at once, whoever still reads (or stopped reading) its bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio_util::io::{ReaderStream, StreamReader};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::AppState;
use super::error::ApiError;
use crate::backend::{BoxFuture, LeasedVm};
use crate::leases::Lease;
use crate::sandbox::ByteStream;

/// Chunk size of streamed response bodies (the guest's frame size).
pub const CHUNK: usize = 64 * 1024;

/// The live lease `id`, or `lease_not_found` (saying how it ended, when the daemon remembers).
pub fn lease(state: &AppState, id: &str) -> Result<Arc<Lease>, ApiError> {
    Ok(state.leases().lease(id)?)
}

/// Runs `work` on the VM of lease `id` (see [`Lease::on_vm`]): `lease_not_found` without such a
/// lease, `lease_ended` / `lease_paused` when it stops running first. Returns the lease too, for
/// a stream that outlives the call.
pub async fn on_vm<T>(
    state: &AppState,
    id: &str,
    work: impl for<'v> FnOnce(&'v dyn LeasedVm) -> BoxFuture<'v, Result<T, ApiError>>,
) -> Result<(Arc<Lease>, T), ApiError> {
    let lease = lease(state, id)?;
    let out = lease.on_vm(work).await??;
    Ok((lease, out))
}

/// A request body as a byte stream, read as it arrives (no size limit, no buffering).
pub fn request_bytes(body: Body) -> ByteStream {
    let chunks = body.into_data_stream().map(|chunk| chunk.map_err(io::Error::other));
    Box::pin(StreamReader::new(chunks))
}

/// `data` as a response body that fails if the lease stops running (ended, paused) first.
pub fn download_body(data: ByteStream, lease: Arc<Lease>) -> Body {
    let stopped = Box::pin(lease.stopped().cancelled_owned());
    Body::from_stream(UntilLeaseStops {
        inner: ReaderStream::with_capacity(data, CHUNK),
        stopped,
        lease: Some(lease),
    })
}

/// A stream of body chunks that ends with an error when its lease stops running.
struct UntilLeaseStops<S> {
    inner: S,
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The lease (not its VM), for the error's message; dropped at the end.
    lease: Option<Arc<Lease>>,
}

impl<S: Stream<Item = io::Result<Bytes>> + Unpin> Stream for UntilLeaseStops<S> {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(lease) = self.lease.clone() else { return Poll::Ready(None) };
        if self.stopped.as_mut().poll(cx).is_ready() {
            self.lease = None;
            let message = format!("{} during the transfer", lease.interruption());
            return Poll::Ready(Some(Err(io::Error::other(message))));
        }
        let item = ready!(Pin::new(&mut self.inner).poll_next(cx));
        if !matches!(item, Some(Ok(_))) {
            self.lease = None;
        }
        Poll::Ready(item)
    }
}
