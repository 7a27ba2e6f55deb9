//! Port forwards of a lease: `POST /v1/leases/{id}/ports` opens one (a host port on loopback that
//! reaches a guest port), `GET` lists them, `DELETE /v1/leases/{id}/ports/{guest_port}` closes
//! one. A forward lives at most as long as the VM: it is closed when the lease ends (released,
//! expired, shutdown), with the VM. A lease has at most `limits.max_forwards_per_lease` open
//! (each holds a host port and a listener); one more is `429 limit_reached`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use tracing::{Instrument, info, warn};

use super::AppState;
use super::error::{ApiError, ApiJson, ErrorCode};
use crate::backend::NetworkError;
use firepit_api::{ForwardPortBody, PortForward, PortList};

/// Forward a host port (loopback) to a TCP port of the leased VM.
#[utoipa::path(
    post, path = "/v1/leases/{id}/ports", tag = "leases",
    params(("id" = String, Path, description = "Lease id")),
    request_body = ForwardPortBody,
    responses(
        (status = 200, description = "Forwarded (asking again for the same guest port returns the same forward)", body = PortForward),
        (status = 400, description = "`bad_port`: guest_port is 0; `bad_json`: not a port 1..=65535", body = super::ErrorBody),
        (status = 404, description = "No such lease", body = super::ErrorBody),
        (status = 409, description = "`network_disabled`: the lease's shape has no network", body = super::ErrorBody),
        (status = 429, description = "`limit_reached`: the lease has `limits.max_forwards_per_lease` forwards open", body = super::ErrorBody),
        (status = 502, description = "`forward_failed`: the VM's NAT refused the forward", body = super::ErrorBody),
    )
)]
pub async fn forward_port(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ForwardPortBody>,
) -> Result<axum::Json<PortForward>, ApiError> {
    if body.guest_port == 0 {
        return Err(ApiError::new(ErrorCode::BadPort, "guest_port must be 1..=65535, not 0"));
    }
    let lease = state.leases().lease(&id)?;
    let span = lease.span.clone();
    let max = state.limits().max_forwards_per_lease;
    let open = lease.on_vm(|vm| Box::pin(async move { vm.forwards() })).await?;
    let _slot = state.opening().reserve(&id, body.guest_port, open, max)?;
    async move {
        match lease.on_vm(move |vm| Box::pin(async move { vm.forward_port(body.guest_port).await })).await? {
            Ok(host_addr) => {
                info!(guest_port = body.guest_port, %host_addr, "port forwarded");
                Ok(axum::Json(PortForward { guest_port: body.guest_port, host_addr }))
            }
            Err(error) => {
                warn!(guest_port = body.guest_port, %error, "port forward failed");
                Err(network_error(&lease.shape, error))
            }
        }
    }
    .instrument(span)
    .await
}

/// The lease's port forwards.
#[utoipa::path(
    get, path = "/v1/leases/{id}/ports", tag = "leases",
    params(("id" = String, Path, description = "Lease id")),
    responses(
        (status = 200, description = "The forwards, oldest first (empty for a shape without a network)", body = PortList),
        (status = 404, description = "No such lease", body = super::ErrorBody),
    )
)]
pub async fn list_ports(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<PortList>, ApiError> {
    let lease = state.leases().lease(&id)?;
    let ports = lease.on_vm(|vm| Box::pin(std::future::ready(vm.forwards()))).await?;
    let ports =
        ports.into_iter().map(|(guest_port, host_addr)| PortForward { guest_port, host_addr }).collect();
    Ok(axum::Json(PortList { ports }))
}

/// Close the forward to a guest port.
#[utoipa::path(
    delete, path = "/v1/leases/{id}/ports/{guest_port}", tag = "leases",
    params(
        ("id" = String, Path, description = "Lease id"),
        ("guest_port" = u16, Path, description = "The guest port whose forward to close"),
    ),
    responses(
        (status = 204, description = "Closed: the host port no longer accepts connections"),
        (status = 404, description = "`lease_not_found`; `forward_not_found`: no forward to that guest port", body = super::ErrorBody),
        (status = 409, description = "`network_disabled`: the lease's shape has no network", body = super::ErrorBody),
    )
)]
pub async fn remove_port_forward(
    State(state): State<AppState>,
    Path((id, guest_port)): Path<(String, u16)>,
) -> Result<StatusCode, ApiError> {
    let lease = state.leases().lease(&id)?;
    let span = lease.span.clone();
    async move {
        let removed =
            lease.on_vm(move |vm| Box::pin(async move { vm.remove_forward(guest_port).await })).await?;
        removed.map_err(|error| network_error(&lease.shape, error))?;
        info!(guest_port, "port forward closed");
        Ok(StatusCode::NO_CONTENT)
    }
    .instrument(span)
    .await
}

/// Forwards being opened per lease: with those open, what counts against the bound.
#[derive(Debug, Default)]
pub struct Opening(std::sync::Mutex<std::collections::HashMap<String, usize>>);

impl Opening {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for one more forward of lease `id` (which has `open`), or `limit_reached` when
    /// those open and those being opened reach `max`. Asking again for a port already forwarded
    /// needs no place (it answers the same forward).
    fn reserve(
        &self,
        id: &str,
        guest_port: u16,
        open: Vec<(u16, std::net::SocketAddr)>,
        max: usize,
    ) -> Result<Option<OpeningSlot<'_>>, ApiError> {
        if open.iter().any(|(port, _)| *port == guest_port) {
            return Ok(None);
        }
        let mut opening = self.lock();
        let pending = opening.entry(id.to_owned()).or_default();
        if open.len() + *pending >= max {
            if *pending == 0 {
                opening.remove(id);
            }
            return Err(ApiError::new(
                ErrorCode::LimitReached,
                format!(
                    "lease `{id}` has {} port forwards, the most `limits.max_forwards_per_lease` allows:                      close one first (DELETE /v1/leases/{id}/ports/{{guest_port}})",
                    open.len()
                ),
            ));
        }
        *pending += 1;
        Ok(Some(OpeningSlot { opening: self, id: id.to_owned() }))
    }
}

/// One forward being opened; counted until dropped.
struct OpeningSlot<'a> {
    opening: &'a Opening,
    id: String,
}

impl Drop for OpeningSlot<'_> {
    fn drop(&mut self) {
        let mut opening = self.opening.lock();
        if let Some(pending) = opening.get_mut(&self.id) {
            *pending -= 1;
            if *pending == 0 {
                opening.remove(&self.id);
            }
        }
    }
}

/// A network failure of a lease of `shape`, for the client.
pub fn network_error(shape: &str, error: NetworkError) -> ApiError {
    match error {
        NetworkError::Disabled => ApiError::new(
            ErrorCode::NetworkDisabled,
            format!(
                "shape `{shape}` has no network, so nothing can be forwarded to its VMs: give the shape \
                 network = \"nat\" (in the config file, or `\"network\": \"nat\"` in PUT /v1/shapes/{shape})"
            ),
        ),
        missing @ NetworkError::NoSuchForward(_) => {
            ApiError::new(ErrorCode::ForwardNotFound, missing.to_string())
        }
        failed @ NetworkError::Failed(_) => ApiError::new(
            ErrorCode::ForwardFailed,
            format!("the VM's network refused the forward: {}", super::error::with_causes(&failed)),
        ),
    }
}
