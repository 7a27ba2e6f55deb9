//! Looking leases up: `GET /v1/leases` and `GET /v1/leases/{id}`.

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
}
