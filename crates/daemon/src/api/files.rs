//! File endpoints: streamed reads and writes, metadata, directories, and tar archives in and out.
//!
//! Uploads (`PUT /files`, `PUT /archive`) take the raw body, not JSON, and are not bound by
//! `limits.max_body_bytes`: the body is handed to the guest as it arrives, at the guest's pace,
//! so the daemon holds a few 64 KiB chunks of it whatever its size. Downloads stream the same way.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use firepit_api::{
    ChmodBody, ChownBody, DirListing, FILE_KIND_HEADER, FILE_MODE_HEADER, FILE_SIZE_HEADER, FileStat,
    MkdirBody, PathQuery, ReadFileQuery, RemoveQuery, RenameBody, StatQuery, TransferResponse,
    WriteFileQuery,
};

use super::AppState;
use super::error::{ApiError, ApiJson};
use super::streaming::{download_body, on_vm, request_bytes};
use crate::sandbox::{Download, WriteOptions};

/// Content type of archives.
const TAR: &str = "application/x-tar";

/// Write a file from the request body (streamed, any size).
#[utoipa::path(
    put, path = "/v1/leases/{id}/files", tag = "files",
    params(("id" = String, Path, description = "Lease id"), WriteFileQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 200, description = "Written", body = TransferResponse),
        (status = 404, description = "No such lease, or a missing parent directory (`not_found`)", body = super::ErrorBody),
        (status = 409, description = "The path is a directory (`is_a_directory`)", body = super::ErrorBody),
    )
)]
pub async fn write_file(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<WriteFileQuery>,
    body: Body,
) -> Result<axum::Json<TransferResponse>, ApiError> {
    let mode = query.mode.as_deref().map(octal_mode).transpose()?;
    let options = WriteOptions { mode, create_parents: query.create_parents, append: query.append };
    let (_, bytes) = on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().write_file(&query.path, options, request_bytes(body)).await?) })
    })
    .await?;
    Ok(axum::Json(TransferResponse { bytes }))
}

/// Read a file (streamed); its size, mode and kind are in `x-firepit-file-*` headers.
#[utoipa::path(
    get, path = "/v1/leases/{id}/files", tag = "files",
    params(("id" = String, Path, description = "Lease id"), ReadFileQuery),
    responses(
        (status = 200, description = "The file's bytes (a transfer that fails part-way is cut, never completed short)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such lease or file", body = super::ErrorBody),
        (status = 409, description = "The path is a directory", body = super::ErrorBody),
    )
)]
pub async fn read_file(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ReadFileQuery>,
) -> Result<Response, ApiError> {
    let (lease, download) = on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().read_file(&query.path, query.offset, query.limit).await?) })
    })
    .await?;
    Ok(download_response(download, "application/octet-stream", lease))
}

/// Remove a file, symbolic link or directory.
#[utoipa::path(
    delete, path = "/v1/leases/{id}/files", tag = "files",
    params(("id" = String, Path, description = "Lease id"), RemoveQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such lease or path", body = super::ErrorBody),
        (status = 409, description = "A non-empty directory without `recursive` (`directory_not_empty`)", body = super::ErrorBody),
    )
)]
pub async fn remove_path(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().remove(&query.path, query.recursive).await?) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Metadata of a path.
#[utoipa::path(
    get, path = "/v1/leases/{id}/files/stat", tag = "files",
    params(("id" = String, Path, description = "Lease id"), StatQuery),
    responses(
        (status = 200, description = "Its metadata", body = FileStat),
        (status = 404, description = "No such lease or path", body = super::ErrorBody),
    )
)]
pub async fn stat_path(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<StatQuery>,
) -> Result<axum::Json<FileStat>, ApiError> {
    let stat = on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().stat(&query.path, query.follow_symlinks).await?) })
    })
    .await?
    .1;
    Ok(axum::Json(stat))
}

/// List a directory (sorted by name, at most 10,000 entries).
#[utoipa::path(
    get, path = "/v1/leases/{id}/files/list", tag = "files",
    params(("id" = String, Path, description = "Lease id"), PathQuery),
    responses(
        (status = 200, description = "Its entries", body = DirListing),
        (status = 404, description = "No such lease or directory", body = super::ErrorBody),
        (status = 409, description = "Not a directory", body = super::ErrorBody),
    )
)]
pub async fn list_dir(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PathQuery>,
) -> Result<axum::Json<DirListing>, ApiError> {
    let listing =
        on_vm(&state, &id, move |vm| Box::pin(async move { Ok(vm.sandbox().list_dir(&query.path).await?) }))
            .await?
            .1;
    Ok(axum::Json(listing))
}

/// Create a directory (with its parents by default).
#[utoipa::path(
    post, path = "/v1/leases/{id}/files/mkdir", tag = "files",
    params(("id" = String, Path, description = "Lease id")),
    request_body = MkdirBody,
    responses(
        (status = 204, description = "Created (or it existed, with `parents`)"),
        (status = 409, description = "It exists (without `parents`), or a parent is a file", body = super::ErrorBody),
    )
)]
pub async fn make_dir(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MkdirBody>,
) -> Result<StatusCode, ApiError> {
    let request = firepit_agent::MkdirRequest { path: body.path, parents: body.parents, mode: body.mode };
    on_vm(&state, &id, move |vm| Box::pin(async move { Ok(vm.sandbox().mkdir(request).await?) })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a path's permission bits.
#[utoipa::path(
    post, path = "/v1/leases/{id}/files/chmod", tag = "files",
    params(("id" = String, Path, description = "Lease id")),
    request_body = ChmodBody,
    responses((status = 204, description = "Done"), (status = 404, description = "No such lease or path", body = super::ErrorBody))
)]
pub async fn change_mode(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChmodBody>,
) -> Result<StatusCode, ApiError> {
    on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().chmod(&body.path, body.mode).await?) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a path's owner and/or group.
#[utoipa::path(
    post, path = "/v1/leases/{id}/files/chown", tag = "files",
    params(("id" = String, Path, description = "Lease id")),
    request_body = ChownBody,
    responses((status = 204, description = "Done"), (status = 404, description = "No such lease or path", body = super::ErrorBody))
)]
pub async fn change_owner(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChownBody>,
) -> Result<StatusCode, ApiError> {
    on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().chown(&body.path, body.uid, body.gid).await?) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rename (move) a path within the guest.
#[utoipa::path(
    post, path = "/v1/leases/{id}/files/rename", tag = "files",
    params(("id" = String, Path, description = "Lease id")),
    request_body = RenameBody,
    responses((status = 204, description = "Done"), (status = 404, description = "No such lease or source", body = super::ErrorBody))
)]
pub async fn rename_path(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenameBody>,
) -> Result<StatusCode, ApiError> {
    on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().rename(&body.from, &body.to).await?) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unpack a tar archive (the request body, streamed) into a directory, created if missing.
#[utoipa::path(
    put, path = "/v1/leases/{id}/archive", tag = "files",
    params(("id" = String, Path, description = "Lease id"), PathQuery),
    request_body(content = Vec<u8>, content_type = "application/x-tar", description = "A tar archive; entries that would land outside the directory are refused"),
    responses(
        (status = 200, description = "Unpacked", body = TransferResponse),
        (status = 400, description = "Not a valid archive", body = super::ErrorBody),
    )
)]
pub async fn upload_archive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PathQuery>,
    body: Body,
) -> Result<axum::Json<TransferResponse>, ApiError> {
    let (_, bytes) = on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().upload_tar(&query.path, request_bytes(body)).await?) })
    })
    .await?;
    Ok(axum::Json(TransferResponse { bytes }))
}

/// A directory's contents (relative names) or one file, as a tar archive (streamed).
#[utoipa::path(
    get, path = "/v1/leases/{id}/archive", tag = "files",
    params(("id" = String, Path, description = "Lease id"), PathQuery),
    responses(
        (status = 200, description = "The archive", content_type = "application/x-tar", body = Vec<u8>),
        (status = 404, description = "No such lease or path", body = super::ErrorBody),
    )
)]
pub async fn download_archive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let (lease, download) = on_vm(&state, &id, move |vm| {
        Box::pin(async move { Ok(vm.sandbox().download_tar(&query.path).await?) })
    })
    .await?;
    Ok(download_response(download, TAR, lease))
}

fn download_response(
    download: Download,
    content_type: &'static str,
    lease: std::sync::Arc<crate::leases::Lease>,
) -> Response {
    let stat = download.stat;
    let mut response = download_body(download.data, lease).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(FILE_SIZE_HEADER, HeaderValue::from(stat.size));
    headers.insert(FILE_KIND_HEADER, HeaderValue::from_static(stat.kind.as_str()));
    if let Ok(mode) = HeaderValue::from_str(&format!("{:o}", stat.mode)) {
        headers.insert(FILE_MODE_HEADER, mode);
    }
    response
}

/// A mode given in octal (`755`, `0644`, `0o600`).
fn octal_mode(text: &str) -> Result<u32, ApiError> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    u32::from_str_radix(digits, 8).ok().filter(|mode| *mode <= 0o7777).ok_or_else(|| {
        ApiError::bad_request(format!("mode = {text:?}: give permission bits in octal, e.g. 755 or 0644"))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn modes_are_octal() {
        assert_eq!(super::octal_mode("755").unwrap(), 0o755);
        assert_eq!(super::octal_mode("0644").unwrap(), 0o644);
        assert_eq!(super::octal_mode("0o600").unwrap(), 0o600);
        assert_eq!(super::octal_mode("9").unwrap_err().code, firepit_api::ErrorCode::BadRequest);
        assert!(super::octal_mode("77777").is_err());
    }
}
