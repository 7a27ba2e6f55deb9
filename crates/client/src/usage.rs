//! What leases use: `GET /v1/leases/{id}/metrics` and `GET /v1/usage`.

use firepit_api::{LeaseMetrics, MetricsQuery, UsageList};
use hyper::Method;

use crate::files::segment;
use crate::{Client, ClientError};

impl Client {
    /// `GET /v1/leases/{id}/metrics`: the usage samples kept for a lease, oldest first; with
    /// `since_unix_ms`, only those taken after it (pass the last sample's `at_unix_ms` to poll).
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
    /// let metrics = client.lease_metrics("l-0123456789abcdef", None).await?;
    /// for sample in &metrics.samples {
    ///     println!("{} cpu {:?}% mem {:?}", sample.at, sample.cpu_percent, sample.memory_used_bytes);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lease_metrics(
        &self,
        lease_id: &str,
        since_unix_ms: Option<u64>,
    ) -> Result<LeaseMetrics, ClientError> {
        let query = serde_urlencoded::to_string(MetricsQuery { since_unix_ms })
            .map_err(|e| ClientError::Decode { status: hyper::StatusCode::OK, message: e.to_string() })?;
        let mut path = format!("/v1/leases/{}/metrics", segment(lease_id));
        if !query.is_empty() {
            path = format!("{path}?{query}");
        }
        self.call::<(), _>(Method::GET, &path, None, &[]).await
    }

    /// `GET /v1/usage`: every running lease with its latest usage sample (what `firepit top`
    /// shows).
    pub async fn usage(&self) -> Result<UsageList, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/usage", None, &[]).await
    }
}
