//! Looking leases up: `GET /v1/leases` and `GET /v1/leases/{id}`.

use firepit_api::{LeaseList, LeaseListQuery, LeaseView};
use hyper::Method;

use crate::files::segment;
use crate::{Client, ClientError};

impl Client {
    /// `GET /v1/leases`: running leases (oldest first), then recently ended ones (newest first),
    /// filtered by `query`.
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
    /// use firepit_api::{LeaseListQuery, LeaseState};
    /// let running = client.leases(&LeaseListQuery { state: Some(LeaseState::Running), shape: None }).await?;
    /// for lease in running {
    ///     println!("{} {} expires {}", lease.id, lease.shape, lease.expires_at);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn leases(&self, query: &LeaseListQuery) -> Result<Vec<LeaseView>, ClientError> {
        let query = serde_urlencoded::to_string(query)
            .map_err(|e| ClientError::Decode { status: hyper::StatusCode::OK, message: e.to_string() })?;
        let path = if query.is_empty() { "/v1/leases".to_owned() } else { format!("/v1/leases?{query}") };
        let list: LeaseList = self.call::<(), _>(Method::GET, &path, None, &[]).await?;
        Ok(list.leases)
    }

    /// `GET /v1/leases/{id}`: one lease, running or recently ended (with its end reason).
    pub async fn lease(&self, lease_id: &str) -> Result<LeaseView, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/leases/{}", segment(lease_id)), None, &[]).await
    }
}
