//! How firepit's HTTP listeners serve: the daemon's (Unix socket and TCP), the gateway's and the
//! E2B endpoint's, with one set of protections written once.
//!
//! Why not `axum::serve`: it has no timeouts and no bound on connections, so a client that sends
//! half a request head, declares a 2 GB body and sends two bytes, or opens thousands of idle
//! connections keeps them (and their memory and descriptors) as long as it likes. [`serve`] runs
//! the same axum `Router` over hyper with:
//!
//! - a head timeout ([`HttpLimits::header_read_timeout`]): a request's head must arrive within it,
//!   counted from the connection's start or the previous response, so a kept-alive connection
//!   with no request for that long is closed too (for HTTP/2, which has no heads to time, a
//!   connection with no request in flight for that long);
//! - a body idle timeout ([`HttpLimits::body_idle_timeout`]): a request body that sends nothing
//!   for that long while the handler waits for it fails with [`BodyIdleTimeout`] (the handlers
//!   answer `408 body_timeout`); a body the handler is not reading (it waits for the guest) is not
//!   timed, and neither are responses, so long streams live as long as their data flows or their
//!   handler waits;
//! - a bound on connections per client ([`HttpLimits::max_connections_per_client`]: per peer
//!   address on TCP, per listener on a Unix socket); one more is answered `429
//!   too_many_connections` and closed. A WebSocket counts until it closes.
//!
//! [`query`] refuses query strings whose percent-escapes are not UTF-8 (axum would turn them into
//! U+FFFD, so two different names would reach the same file); each listener wraps it in its own
//! error format.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let router = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
//! firepit_http::serve(listener, router, firepit_http::HttpLimits::default(), std::future::pending()).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod body;
pub mod clients;
pub mod limits;
pub mod query;
mod serve;

pub use body::{BodyIdleTimeout, is_body_timeout};
pub use clients::ClientKey;
pub use limits::HttpLimits;
pub use serve::{Listener, serve};
