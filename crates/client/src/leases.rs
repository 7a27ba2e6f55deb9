//! Looking leases up (`GET /v1/leases`, `GET /v1/leases/{id}`), pausing and resuming them
//! (`POST /v1/leases/{id}/pause`, `/resume`).

use firepit_api::{LeaseList, LeaseListQuery, LeaseView};
use hyper::Method;

use crate::files::segment;
use crate::{Client, ClientError};

impl Client {
    /// `GET /v1/leases`: running leases (oldest first), then recently ended ones (newest first),
    /// filtered by `query` (state, shape, `metadata.NAME=VALUE` labels, limit).
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
    /// use firepit_api::{LeaseListQuery, LeaseState};
    /// let mut query = LeaseListQuery { state: Some(LeaseState::Running), ..LeaseListQuery::default() };
    /// query.metadata.insert("job".into(), "nightly".into());
    /// for lease in client.leases(&query).await? {
    ///     println!("{} {} expires {} {:?}", lease.id, lease.shape, lease.expires_at, lease.metadata);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn leases(&self, query: &LeaseListQuery) -> Result<Vec<LeaseView>, ClientError> {
        let path = crate::feed::with_query("/v1/leases", &query.to_pairs())?;
        let list: LeaseList = self.call::<(), _>(Method::GET, &path, None, &[]).await?;
        Ok(list.leases)
    }

    /// `GET /v1/leases/{id}`: one lease, running or recently ended (with its end reason).
    pub async fn lease(&self, lease_id: &str) -> Result<LeaseView, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/leases/{}", segment(lease_id)), None, &[]).await
    }

    /// `POST /v1/leases/{id}/pause`: saves the lease's VM to disk and stops it (no CPU, no RAM;
    /// its TTL stops). Pausing a paused lease answers its view too. Other calls on a paused lease
    /// fail with `lease_paused` unless it was acquired with `auto_resume`.
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client, lease_id: &str) -> Result<(), firepit_client::ClientError> {
    /// let view = client.pause_lease(lease_id).await?;
    /// assert_eq!(view.state, firepit_api::LeaseState::Paused);
    /// let view = client.resume_lease(lease_id).await?; // files, processes, address, forwards kept
    /// assert_eq!(view.state, firepit_api::LeaseState::Running);
    /// # Ok(()) }
    /// ```
    pub async fn pause_lease(&self, lease_id: &str) -> Result<LeaseView, ClientError> {
        let path = format!("/v1/leases/{}/pause", segment(lease_id));
        self.call::<(), _>(Method::POST, &path, None, &[]).await
    }

    /// `POST /v1/leases/{id}/resume`: runs a paused lease again, as it was; resuming a running
    /// lease answers its view.
    pub async fn resume_lease(&self, lease_id: &str) -> Result<LeaseView, ClientError> {
        let path = format!("/v1/leases/{}/resume", segment(lease_id));
        self.call::<(), _>(Method::POST, &path, None, &[]).await
    }
}
