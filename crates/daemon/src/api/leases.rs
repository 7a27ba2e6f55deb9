//! Lease endpoints: acquire, exec, renew, release.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tracing::{Instrument, debug, info, warn};

use super::args;
use super::error::{ApiError, ApiJson, ErrorCode};
use super::{AppState, MAX_WAIT};
use crate::leases::{AcquireParams, LeaseOptions, lease_response};
use crate::sizing::{SizeRequest, smallest_fitting};
use firepit_api::{
    AcquireBody, Encoding, ExecBody, ExecResponse, LeaseResponse, RELEASE_DETAIL_MAX_BYTES, ReleaseQuery,
    RenewRequest,
};

/// Header making acquire retries return the same lease.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Header set to `true` when acquire replayed an earlier request's lease.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Largest per-stream output a client may ask the agent to keep (what one answer of the agent
/// carries: 8 MiB less 64 KiB).
const MAX_OUTPUT_BYTES: u64 = firepit_agent::MAX_EXEC_OUTPUT;

/// Lease one warm VM of a shape.
#[utoipa::path(
    post, path = "/v1/leases", tag = "leases",
    request_body = AcquireBody,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Client-chosen key (1-200 visible ASCII characters); a retry with the same key returns the same lease")),
    responses(
        (status = 201, description = "VM leased (also for an idempotent replay, with `Idempotent-Replayed: true`)", body = LeaseResponse),
        (status = 400, description = "Malformed request; `egress_widens`: the egress asked for is not within the shape's; `no_shape_fits`: no shape covers the sizes asked for; `bad_metadata`: metadata over its limits", body = super::ErrorBody),
        (status = 404, description = "Unknown shape; `snapshot_not_found`: no snapshot of that id", body = super::ErrorBody),
        (status = 409, description = "`network_disabled`: egress asked for on a shape without a network", body = super::ErrorBody),
        (status = 422, description = "Idempotency key reused for another shape", body = super::ErrorBody),
        (status = 501, description = "`on_expiry = pause` on a daemon whose backend cannot pause (`unsupported`)", body = super::ErrorBody),
        (status = 503, description = "No VM ready within `wait_ms` (see `Retry-After`), or shutting down", body = super::ErrorBody),
    )
)]
pub async fn acquire_lease(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AcquireBody>,
) -> Result<Response, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "the daemon is shutting down"));
    }
    let wait = Duration::from_millis(body.wait_ms);
    if wait > MAX_WAIT {
        return Err(ApiError::bad_request(format!(
            "wait_ms = {}: must be at most {}",
            body.wait_ms,
            MAX_WAIT.as_millis()
        )));
    }
    let idempotency_key = idempotency_key(&headers)?;
    let shape = match body.snapshot {
        // The snapshot's shape (checked against a shape given, by the lease table).
        Some(_) => body.shape.clone(),
        None => chosen_shape(&state, &body)?,
    };
    let params = AcquireParams {
        shape,
        wait,
        ttl: body.ttl_ms.map(Duration::from_millis),
        idempotency_key,
        egress: body.egress,
        options: LeaseOptions {
            metadata: body.metadata,
            auto_resume: body.auto_resume,
            on_expiry: body.on_expiry,
        },
        snapshot: body.snapshot,
    };
    let (lease, replayed) = state.leases().acquire(params).await?;
    let mut response = (StatusCode::CREATED, axum::Json(lease_response(&lease))).into_response();
    if replayed {
        response.headers_mut().insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The shape an acquire names, or the smallest registered one covering the sizes it gives
/// instead (see [`crate::sizing`]).
fn chosen_shape(state: &AppState, body: &AcquireBody) -> Result<String, ApiError> {
    let want = SizeRequest { cpus: body.cpus, memory_mb: body.memory_mb, disk_mb: body.disk_mb };
    match (body.shape.is_empty(), want.is_empty()) {
        (false, true) => Ok(body.shape.clone()),
        (false, false) => {
            Err(ApiError::bad_request("give `shape` or sizes (`cpus`, `memory_mb`, `disk_mb`), not both"))
        }
        (true, true) => Err(ApiError::bad_request(
            "give `shape`, or sizes (`cpus`, `memory_mb`, `disk_mb`) to lease the smallest shape covering them",
        )),
        (true, false) => smallest_fitting(&state.backend().status(), &want)
            .map_err(|error| ApiError::new(ErrorCode::NoShapeFits, error.to_string())),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=200).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(key) => Ok(Some(key.to_owned())),
        None => Err(ApiError::bad_request("Idempotency-Key must be 1 to 200 visible ASCII characters")),
    }
}

/// Run a command in a leased VM.
#[utoipa::path(
    post, path = "/v1/leases/{id}/exec", tag = "leases",
    params(("id" = String, Path, description = "Lease id")),
    request_body = ExecBody,
    responses(
        (status = 200, description = "The command ran (whatever its exit code)", body = ExecResponse),
        (status = 400, description = "Bad argv, env, stdin or timeout", body = super::ErrorBody),
        (status = 404, description = "No such lease", body = super::ErrorBody),
        (status = 409, description = "`lease_paused`: the lease is paused (or was paused while the command ran)", body = super::ErrorBody),
        (status = 410, description = "`lease_ended`: the lease ended while the command ran", body = super::ErrorBody),
        (status = 422, description = "The guest agent refused the command", body = super::ErrorBody),
        (status = 502, description = "The VM did not answer", body = super::ErrorBody),
    )
)]
pub async fn exec_command(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ExecBody>,
) -> Result<axum::Json<ExecResponse>, ApiError> {
    let request = exec_request(body)?;
    let lease = state.leases().lease(&id)?;
    let span = lease.span.clone();
    async move {
        // One info line per exec, when it ends (the start at debug: it matters for long commands).
        let argv0 = request.argv[0].clone();
        debug!(%argv0, "exec");
        let result = lease.on_vm(move |vm| Box::pin(async move { vm.exec(request).await })).await;
        let metrics = &state.leases().metrics();
        let result = match result {
            Ok(result) => result,
            Err(interrupted) => {
                metrics.exec_outcome(&lease.shape, "interrupted");
                info!(%argv0, %interrupted, "exec interrupted");
                return Err(interrupted.into());
            }
        };
        match result {
            Ok(result) => {
                metrics.exec_outcome(&lease.shape, "ok");
                info!(%argv0, exit_code = ?result.exit_code, duration_ms = result.duration_ms, "exec done");
                Ok(axum::Json(exec_response(result)))
            }
            Err(error) => {
                metrics.exec_outcome(&lease.shape, "error");
                warn!(%argv0, %error, "exec failed");
                Err(error.into())
            }
        }
    }
    .instrument(span)
    .await
}

/// Checks and converts an exec body into the agent's request.
fn exec_request(body: ExecBody) -> Result<firepit_agent::ExecRequest, ApiError> {
    let args::CheckedProgram { argv, env, cwd } = args::check_program(body.program)?;
    args::check_timeout(body.timeout_ms)?;
    if body.max_output_bytes > MAX_OUTPUT_BYTES {
        return Err(ApiError::bad_request(format!(
            "max_output_bytes = {}: must be at most {MAX_OUTPUT_BYTES} (8 MiB less 64 KiB); stream larger output with /exec/stream",
            body.max_output_bytes
        )));
    }
    Ok(firepit_agent::ExecRequest {
        argv,
        env,
        cwd,
        stdin: args::decode_stdin(body.input)?,
        timeout_ms: body.timeout_ms,
        max_output_bytes: body.max_output_bytes,
        // The image's default user (if any) is filled in by the provider.
        user: None,
    })
}

/// Encodes output as UTF-8 when both streams are text, else both as base64.
fn exec_response(result: firepit_agent::ExecResult) -> ExecResponse {
    let (stdout, stderr, encoding) =
        match (String::from_utf8(result.stdout), String::from_utf8(result.stderr)) {
            (Ok(out), Ok(err)) => (out, err, Encoding::Utf8),
            (out, err) => {
                let out = out.map_or_else(|e| e.into_bytes(), String::into_bytes);
                let err = err.map_or_else(|e| e.into_bytes(), String::into_bytes);
                (BASE64.encode(out), BASE64.encode(err), Encoding::Base64)
            }
        };
    ExecResponse {
        exit_code: result.exit_code,
        signal: result.signal,
        stdout,
        stderr,
        encoding,
        truncated: result.truncated,
        timed_out: result.timed_out,
        duration_ms: result.duration_ms,
        oom_killed: result.oom_killed,
    }
}

/// Extend a lease's lifetime (from now).
#[utoipa::path(
    post, path = "/v1/leases/{id}/renew", tag = "leases",
    params(("id" = String, Path, description = "Lease id")),
    request_body(content = Option<RenewRequest>, description = "Optional; an empty body renews for the default TTL"),
    responses(
        (status = 200, description = "Renewed", body = LeaseResponse),
        (status = 400, description = "TTL out of range", body = super::ErrorBody),
        (status = 404, description = "No such lease", body = super::ErrorBody),
    )
)]
pub async fn renew_lease(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenewRequest>,
) -> Result<axum::Json<LeaseResponse>, ApiError> {
    let lease = state.leases().renew(&id, body.ttl_ms.map(Duration::from_millis))?;
    Ok(axum::Json(lease_response(&lease)))
}

/// Release a lease: its VM is destroyed (before the answer) and the pool refills; every request
/// and stream still running on it ends with `lease_ended`. An operator's kill says so with
/// `?reason=killed&detail=...`.
#[utoipa::path(
    delete, path = "/v1/leases/{id}", tag = "leases",
    params(("id" = String, Path, description = "Lease id"), ReleaseQuery),
    responses(
        (status = 204, description = "Released: the VM is gone"),
        (status = 400, description = "A bad `reason` or a `detail` over 200 bytes", body = super::ErrorBody),
        (status = 404, description = "No such lease (or it ended already)", body = super::ErrorBody),
    )
)]
pub async fn release_lease(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ReleaseQuery>,
) -> Result<StatusCode, ApiError> {
    if query
        .detail
        .as_ref()
        .is_some_and(|d| d.len() > RELEASE_DETAIL_MAX_BYTES || d.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(format!(
            "detail: at most {RELEASE_DETAIL_MAX_BYTES} bytes, without control characters"
        )));
    }
    state.leases().release(&id, query.reason, query.detail).await?;
    Ok(StatusCode::NO_CONTENT)
}
