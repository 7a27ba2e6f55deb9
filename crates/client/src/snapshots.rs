//! Snapshots and forks of a lease: `POST /v1/leases/{id}/snapshots`, `GET /v1/snapshots`,
//! `GET`/`DELETE /v1/snapshots/{id}`, `POST /v1/leases/{id}/fork`. A lease starts from a snapshot
//! through [`Client::acquire`] with [`AcquireRequest::snapshot`](firepit_api::AcquireRequest::snapshot).

use firepit_api::{ForkRequest, ForkResponse, SnapshotInfo, SnapshotList};
use hyper::Method;

use crate::files::segment;
use crate::{Client, ClientError};

impl Client {
    /// `POST /v1/leases/{id}/snapshots`: saves the lease's VM (memory, devices, disk) as a
    /// snapshot; the lease runs on (stopped only while its state is written). A paused lease
    /// answers `lease_paused` unless it was acquired with `auto_resume`; too little room on the
    /// host, `insufficient_storage`.
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client, lease_id: &str) -> Result<(), firepit_client::ClientError> {
    /// use firepit_api::AcquireRequest;
    /// let snapshot = client.snapshot_lease(lease_id).await?;
    /// let copy = AcquireRequest { snapshot: Some(snapshot.snapshot_id.clone()), ..AcquireRequest::default() };
    /// let lease = client.acquire(&copy, None).await?; // the same files and processes, its own identity
    /// client.release(&lease.lease_id).await?;
    /// client.delete_snapshot(&snapshot.snapshot_id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn snapshot_lease(&self, lease_id: &str) -> Result<SnapshotInfo, ClientError> {
        let path = format!("/v1/leases/{}/snapshots", segment(lease_id));
        self.call::<(), _>(Method::POST, &path, None, &[]).await
    }

    /// `GET /v1/snapshots`: every snapshot, oldest first.
    pub async fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>, ClientError> {
        let list: SnapshotList = self.call::<(), _>(Method::GET, "/v1/snapshots", None, &[]).await?;
        Ok(list.snapshots)
    }

    /// `GET /v1/snapshots/{id}`; an unknown id is `snapshot_not_found`.
    pub async fn get_snapshot(&self, snapshot_id: &str) -> Result<SnapshotInfo, ClientError> {
        let path = format!("/v1/snapshots/{}", segment(snapshot_id));
        self.call::<(), _>(Method::GET, &path, None, &[]).await
    }

    /// `DELETE /v1/snapshots/{id}`: removes its files; an unknown id is `snapshot_not_found`.
    pub async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/snapshots/{}", segment(snapshot_id));
        let response = self.request(Method::DELETE, &path, None, &[]).await?;
        if response.status.is_success() { Ok(()) } else { response.json::<()>() }
    }

    /// `POST /v1/leases/{id}/fork`: `request.count` (1 to 16) new leases, each a copy-on-write copy
    /// of the running lease's memory and disk at this moment with an identity of its own. Each
    /// fork succeeds or fails on its own: see [`ForkOutcome::result`](firepit_api::ForkOutcome::result).
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client, lease_id: &str) -> Result<(), firepit_client::ClientError> {
    /// let forks = client.fork_lease(lease_id, &firepit_api::ForkRequest { count: 4, ttl_ms: None }).await?;
    /// for fork in &forks.forks {
    ///     match fork.result() {
    ///         Ok(lease) => println!("fork {}", lease.lease_id),
    ///         Err(error) => println!("a fork failed: {}", error.message),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn fork_lease(
        &self,
        lease_id: &str,
        request: &ForkRequest,
    ) -> Result<ForkResponse, ClientError> {
        let path = format!("/v1/leases/{}/fork", segment(lease_id));
        self.call(Method::POST, &path, Some(request), &[]).await
    }
}
