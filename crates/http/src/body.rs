//! The request body's idle timeout: [`IdleTimeout`] wraps every request body, and fails it with
//! [`BodyIdleTimeout`] when the client sends nothing for too long while the handler waits.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// A boxed error, as axum's bodies carry them.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// The client stopped sending the request body (the error a timed-out body yields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client sent nothing of the request body for {} s", after.as_secs())]
pub struct BodyIdleTimeout {
    /// The timeout that passed.
    pub after: Duration,
}

/// Whether `error` or one of its causes is a [`BodyIdleTimeout`] (also inside `io::Error`s,
/// whose `source` skips the error they wrap).
///
/// ```
/// let timeout = firepit_http::BodyIdleTimeout { after: std::time::Duration::from_secs(30) };
/// let wrapped = std::io::Error::other(timeout);
/// assert!(firepit_http::is_body_timeout(&wrapped));
/// assert!(!firepit_http::is_body_timeout(&std::io::Error::other("other")));
/// ```
pub fn is_body_timeout(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyIdleTimeout>() {
            return true;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && is_body_timeout(inner)
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// A request body that fails with [`BodyIdleTimeout`] after `after` without a frame while it is
/// being polled. The clock runs only while the handler waits for the client: from a poll that
/// found nothing to the next frame.
pub struct IdleTimeout<B> {
    inner: B,
    after: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeout<B> {
    /// `inner` with an idle timeout of `after`.
    pub fn new(inner: B, after: Duration) -> Self {
        Self { inner, after, sleep: None }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|result| result.map_err(Into::into)))
            }
            Poll::Pending => {
                let after = this.after;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.sleep = None;
                    return Poll::Ready(Some(Err(Box::new(BodyIdleTimeout { after }))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_after_the_timeout_and_one_that_flows_does_not() {
        let (mut sender, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
        let mut body = IdleTimeout::new(body, Duration::from_secs(30));
        let feeder = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                sender.send_data(Bytes::from_static(b"x")).await.unwrap();
            }
            // Then nothing: the sender stays open but silent.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(sender);
        });
        for _ in 0..5 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        let started = tokio::time::Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(is_body_timeout(error.as_ref()), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        feeder.abort();
    }
}
