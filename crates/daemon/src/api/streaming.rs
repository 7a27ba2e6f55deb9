//! What the sandbox endpoints share: finding the lease, request bodies as byte streams (never
//! collected: the guest pulls them at its pace), and response bodies that end with their lease.
//!
//! A streamed response that cannot finish must not look finished: when the lease ends (release,
//! expiry, shutdown) or the guest fails mid-way, the body ends with an error, so the client sees
//! a broken transfer, never a short file.

use std::future::Future;
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
use super::sandbox_error::lease_ended;
use crate::leases::{Lease, LeaseError};
use crate::sandbox::ByteStream;

/// Chunk size of streamed response bodies (the guest's frame size).
pub const CHUNK: usize = 64 * 1024;

/// The live lease `id`, or `lease_not_found`.
pub fn lease(state: &AppState, id: &str) -> Result<Arc<Lease>, ApiError> {
    state.leases().get(id).ok_or_else(|| LeaseError::NotFound(id.to_owned()).into())
}

/// A request body as a byte stream, read as it arrives (no size limit, no buffering).
pub fn request_bytes(body: Body) -> ByteStream {
    let chunks = body.into_data_stream().map(|chunk| chunk.map_err(io::Error::other));
    Box::pin(StreamReader::new(chunks))
}

/// Runs `work` unless `lease` ends first (then `lease_ended`).
pub async fn unless_lease_ends<T>(
    lease: &Lease,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let ended = lease.ended();
    tokio::select! {
        result = work => result,
        () = ended.cancelled() => Err(lease_ended(&lease.id)),
    }
}

/// `data` as a response body that holds the lease while it streams and fails if the lease ends.
pub fn download_body(data: ByteStream, lease: Arc<Lease>) -> Body {
    let ended = Box::pin(lease.ended().cancelled_owned());
    Body::from_stream(UntilLeaseEnds {
        inner: ReaderStream::with_capacity(data, CHUNK),
        ended,
        lease: Some(lease),
    })
}

/// A stream of body chunks that ends with an error when its lease ends.
struct UntilLeaseEnds<S> {
    inner: S,
    ended: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Keeps the VM while the body streams; dropped at the end.
    lease: Option<Arc<Lease>>,
}

impl<S: Stream<Item = io::Result<Bytes>> + Unpin> Stream for UntilLeaseEnds<S> {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(lease) = self.lease.clone() else { return Poll::Ready(None) };
        if self.ended.as_mut().poll(cx).is_ready() {
            self.lease = None;
            let message = format!("lease `{}` ended during the transfer", lease.id);
            return Poll::Ready(Some(Err(io::Error::other(message))));
        }
        let item = ready!(Pin::new(&mut self.inner).poll_next(cx));
        if !matches!(item, Some(Ok(_))) {
            self.lease = None;
        }
        Poll::Ready(item)
    }
}
