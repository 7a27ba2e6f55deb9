//! [`HttpServer`]: the one server the network tests need, inside a [`TestNet`].

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::{TestNet, TestNetError};

/// An HTTP/1.0 server inside a [`TestNet`] that answers every request with `200` and one body.
/// It runs as a task of the caller's tokio runtime; dropping it stops it and closes its socket.
///
/// ```no_run
/// # async fn demo() -> Result<(), firepit_testnet::TestNetError> {
/// let net = firepit_testnet::TestNet::create()?;
/// let server = firepit_testnet::HttpServer::start(&net, "hello").await?;
/// // In a guest allowed to reach it: `wget -O - http://{server.addr()}/` prints `hello`.
/// println!("{}", server.addr());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Listens on a free port of `net`'s address; call from inside a tokio runtime.
    pub async fn start(net: &TestNet, body: &'static str) -> Result<Self, TestNetError> {
        Self::serve(net.listen_tcp(0)?, body)
    }

    /// Listens on a free port of the host's loopback (for what a guest reaches as a host port).
    pub async fn on_loopback(body: &'static str) -> Result<Self, TestNetError> {
        let addr = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0);
        let bind = || {
            let listener = std::net::TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        };
        Self::serve(bind().map_err(|source| TestNetError::Bind { addr, source })?, body)
    }

    fn serve(listener: std::net::TcpListener, body: &'static str) -> Result<Self, TestNetError> {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(TestNetError::Serve)?;
        let addr = listener.local_addr().map_err(TestNetError::Serve)?;
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let reply = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    // The client may have gone: nothing to report to anyone.
                    let _gone = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// Where it listens (inside the namespace).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_every_request_with_its_body_until_dropped() {
        let net = TestNet::create().unwrap();
        let server = HttpServer::start(&net, "from-the-namespace").await.unwrap();
        for _ in 0..2 {
            let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.unwrap();
            assert!(
                reply.starts_with("HTTP/1.0 200") && reply.ends_with("\r\n\r\nfrom-the-namespace"),
                "{reply}"
            );
        }
        let addr = server.addr();
        drop(server);
        // The aborted task (and its listener) is dropped when the runtime next gets to it.
        let closed = async {
            while tokio::net::TcpStream::connect(addr).await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), closed)
            .await
            .expect("still listening after drop");
    }
}
