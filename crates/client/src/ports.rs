//! Port forwards of a lease, and an acquire with lease options (a narrowed egress policy).

use std::net::SocketAddr;

use firepit_api::{AcquireBody, ForwardPortBody, LeaseResponse, PortForward, PortList};
use hyper::Method;

use crate::files::lease_path;
use crate::{Client, ClientError};

impl Client {
    /// `POST /v1/leases/{id}/ports`: forwards a host port (loopback) to `guest_port` of the
    /// leased VM and returns where to connect; asking again for the same guest port returns the
    /// same address. The forward closes when the lease ends. A shape without a network answers
    /// `409 network_disabled` ([`ClientError::code`]).
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let addr = client.forward_port("l-0123", 8000).await?;
    /// let _stream = tokio::net::TcpStream::connect(addr).await?;
    /// # Ok(()) }
    /// ```
    pub async fn forward_port(&self, lease_id: &str, guest_port: u16) -> Result<SocketAddr, ClientError> {
        let body = ForwardPortBody { guest_port };
        let forward: PortForward =
            self.call(Method::POST, &lease_path(lease_id, "ports", &())?, Some(&body), &[]).await?;
        Ok(forward.host_addr)
    }

    /// `DELETE /v1/leases/{id}/ports/{guest_port}`: closes the forward to `guest_port` (`404
    /// forward_not_found` when there is none).
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
    /// client.remove_forward("l-0123", 8000).await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove_forward(&self, lease_id: &str, guest_port: u16) -> Result<(), ClientError> {
        let path = lease_path(lease_id, &format!("ports/{guest_port}"), &())?;
        self.call_empty::<()>(Method::DELETE, &path, None).await
    }

    /// `GET /v1/leases/{id}/ports`: the lease's forwards, oldest first.
    pub async fn ports(&self, lease_id: &str) -> Result<Vec<PortForward>, ClientError> {
        let list: PortList =
            self.call::<(), _>(Method::GET, &lease_path(lease_id, "ports", &())?, None, &[]).await?;
        Ok(list.ports)
    }

    /// `POST /v1/leases` with lease options: like [`Client::acquire`], and `body.egress` narrows
    /// the shape's egress policy for this lease before the VM is handed out (`400 egress_widens`
    /// when it asks for more than the shape allows; no VM is taken then).
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
    /// use firepit_api::{AcquireBody, AcquireRequest, EgressPolicy};
    /// let request = AcquireRequest { shape: "web".into(), wait_ms: 5000, ttl_ms: None, snapshot: None };
    /// let body = AcquireBody { egress: Some(EgressPolicy::Deny), ..request.into() };
    /// let lease = client.acquire_with(&body, None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire_with(
        &self,
        body: &AcquireBody,
        idempotency_key: Option<&str>,
    ) -> Result<LeaseResponse, ClientError> {
        let headers: Vec<(&str, &str)> =
            idempotency_key.map(|k| ("idempotency-key", k)).into_iter().collect();
        self.call(Method::POST, "/v1/leases", Some(body), &headers).await
    }
}
