//! envd's `/files`: `GET` streams a file out, `POST` writes files in (multipart with one part per
//! file, or the raw bytes as `application/octet-stream`, optionally gzip-compressed), each new
//! file and directory owned by the user it was written for.
//!
//! A request carries the sandbox's access token, or a signature made with it (SDK's
//! `download_url` / `upload_url`): `v1_` and the unpadded base64 of SHA-256 over
//! `path:operation:user:token[:expiration]`, valid until `signature_expiration` if given. Errors
//! are envd's JSON `{"code": <status>, "message"}`.

use firepit_api::ErrorCode;
use std::io;

use async_compression::tokio::bufread::GzipDecoder;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as BASE64_NO_PAD;
use firepit_api::{FileKind, WriteFileQuery};
use futures_util::TryStreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, BufReader};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::call::{Call, constant_time_eq, has_token};
use crate::connect::{Code, ConnectError};
use crate::envd_fs::{chown, file_error, make_dirs, resolve};
use crate::paths;
use crate::users::User;

/// The query of `/files`.
#[derive(Debug, Default, Deserialize)]
struct FilesQuery {
    path: Option<String>,
    username: Option<String>,
    signature: Option<String>,
    signature_expiration: Option<u64>,
}

/// An envd HTTP error: `{"code": <status>, "message"}`.
#[derive(Debug)]
struct FilesError(StatusCode, String);

impl IntoResponse for FilesError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.0.as_u16(), "message": self.1 });
        (self.0, axum::Json(body)).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> FilesError {
    FilesError(status, message.into())
}

fn from_connect(error_: ConnectError) -> FilesError {
    let status = match error_.code {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument | Code::AlreadyExists => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unavailable => StatusCode::BAD_GATEWAY,
        // The guest's disk is full (as E2B's envd answers it).
        Code::ResourceExhausted => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, error_.message)
}

/// The v1 signature of a file URL.
///
/// ```
/// let signature = firepit_e2b::envd_files::signature("/home/user/a.txt", "read", "", "token", None);
/// assert!(signature.starts_with("v1_") && !signature.ends_with('='));
/// ```
pub fn signature(path: &str, operation: &str, user: &str, token: &str, expiration: Option<u64>) -> String {
    let raw = match expiration {
        Some(at) => format!("{path}:{operation}:{user}:{token}:{at}"),
        None => format!("{path}:{operation}:{user}:{token}"),
    };
    format!("v1_{}", BASE64_NO_PAD.encode(Sha256::digest(raw.as_bytes())))
}

/// The sandbox whose access token signed the file URL of `request` (a `/files` request that
/// names no sandbox, as the SDKs make them when `E2B_SANDBOX_URL` is set).
pub fn signer(state: &crate::state::AppState, request: &Request) -> Option<String> {
    let query: FilesQuery = serde_urlencoded::from_str(request.uri().query().unwrap_or_default()).ok()?;
    let given = query.signature.as_deref()?;
    let operation = if request.method() == Method::POST { "write" } else { "read" };
    state.registry.list().into_iter().find_map(|sandbox| {
        let expected = signature(
            query.path.as_deref().unwrap_or_default(),
            operation,
            query.username.as_deref().unwrap_or_default(),
            &sandbox.access_token,
            query.signature_expiration,
        );
        constant_time_eq(given.as_bytes(), expected.as_bytes()).then(|| sandbox.id.clone())
    })
}

fn authorised(
    call: &Call,
    headers: &HeaderMap,
    query: &FilesQuery,
    operation: &str,
) -> Result<(), FilesError> {
    if has_token(headers, &call.sandbox) {
        return Ok(());
    }
    let Some(given) = query.signature.as_deref() else {
        return Err(error(StatusCode::UNAUTHORIZED, "missing X-Access-Token or signature"));
    };
    if let Some(at) = query.signature_expiration {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if at < now {
            return Err(error(StatusCode::UNAUTHORIZED, "signature is already expired"));
        }
    }
    let expected = signature(
        query.path.as_deref().unwrap_or_default(),
        operation,
        query.username.as_deref().unwrap_or_default(),
        &call.sandbox.access_token,
        query.signature_expiration,
    );
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(error(StatusCode::UNAUTHORIZED, "the signature does not match"))
    }
}

/// Serves `/files`.
pub async fn serve(call: Call, request: Request) -> Response {
    let query: FilesQuery = match serde_urlencoded::from_str(request.uri().query().unwrap_or_default()) {
        Ok(query) => query,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad query: {e}")).into_response(),
    };
    let operation = match *request.method() {
        Method::GET => "read",
        Method::POST => "write",
        _ => {
            return error(StatusCode::METHOD_NOT_ALLOWED, "use GET to read and POST to write")
                .into_response();
        }
    };
    if let Err(refused) = authorised(&call, request.headers(), &query, operation) {
        return refused.into_response();
    }
    let user = match call.user(query.username.as_deref()).await {
        Ok(user) => user,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e.message).into_response(),
    };
    let result = if operation == "read" {
        download(&call, &query, &user).await
    } else {
        upload(&call, &query, &user, request).await
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Whether `user` may read a file with `stat` by its permission bits (root may read anything).
fn readable(stat: &firepit_api::FileStat, user: &User) -> bool {
    let bits = if user.uid == 0 {
        return true;
    } else if stat.uid == user.uid {
        stat.mode >> 6
    } else if stat.gid == user.gid {
        stat.mode >> 3
    } else {
        stat.mode
    };
    bits & 0o4 != 0
}

async fn download(call: &Call, query: &FilesQuery, user: &User) -> Result<Response, FilesError> {
    let raw = query.path.as_deref().ok_or_else(|| error(StatusCode::BAD_REQUEST, "path is required"))?;
    let path = resolve(raw, user).map_err(from_connect)?;
    let client = &call.state.client;
    let stat =
        client.stat(&call.sandbox.id, &path, true).await.map_err(|e| from_connect(file_error(e, &path)))?;
    if stat.kind == FileKind::Dir {
        return Err(error(StatusCode::BAD_REQUEST, format!("path '{path}' is a directory")));
    }
    if !readable(&stat, user) {
        return Err(error(StatusCode::FORBIDDEN, format!("user '{}' may not read '{path}'", user.name)));
    }
    let download =
        client.read_file(&call.sandbox.id, &path).await.map_err(|e| from_connect(file_error(e, &path)))?;
    let mut response = Body::from_stream(ReaderStream::with_capacity(download, 64 * 1024)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(value) = HeaderValue::from_str(&stat.size.to_string()) {
        headers.insert(header::CONTENT_LENGTH, value);
    }
    Ok(response)
}

/// The request body as bytes, decompressed when it says `Content-Encoding: gzip`.
fn body_reader(headers: &HeaderMap, body: Body) -> Result<Box<dyn AsyncRead + Send + Unpin>, FilesError> {
    let stream = body.into_data_stream().map_err(io::Error::other);
    let reader = StreamReader::new(stream);
    match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()) {
        None | Some("identity") => Ok(Box::new(reader)),
        Some("gzip") => Ok(Box::new(GzipDecoder::new(BufReader::new(reader)))),
        Some(other) => {
            Err(error(StatusCode::BAD_REQUEST, format!("Content-Encoding {other:?} is not supported")))
        }
    }
}

async fn upload(
    call: &Call,
    query: &FilesQuery,
    user: &User,
    request: Request,
) -> Result<Response, FilesError> {
    let (parts, body) = request.into_parts();
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut written = Vec::new();
    if content_type.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(content_type)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad multipart content type: {e}")))?;
        let mut multipart = multer::Multipart::new(body.into_data_stream(), boundary);
        let mut first = true;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad multipart body: {e}")))?
        {
            let name = field.file_name().map(ToOwned::to_owned);
            let raw = match (first, query.path.as_deref(), name.as_deref()) {
                (true, Some(path), _) => path.to_owned(),
                (_, _, Some(name)) if !name.is_empty() => name.to_owned(),
                _ => return Err(error(StatusCode::BAD_REQUEST, "a file part needs a path (its filename)")),
            };
            first = false;
            let data = StreamReader::new(field.map_err(io::Error::other));
            written.push(write_one(call, &raw, user, data).await?);
        }
    } else {
        let raw = query.path.as_deref().ok_or_else(|| error(StatusCode::BAD_REQUEST, "path is required"))?;
        let data = body_reader(&parts.headers, body)?;
        written.push(write_one(call, raw, user, data).await?);
    }
    Ok(axum::Json(written).into_response())
}

/// Writes one file as `user`: missing parents made theirs, the file given to them.
async fn write_one<R: AsyncRead + Send + 'static>(
    call: &Call,
    raw: &str,
    user: &User,
    data: R,
) -> Result<serde_json::Value, FilesError> {
    let path = resolve(raw, user).map_err(from_connect)?;
    if let Some(parent) = paths::parent(&path) {
        make_dirs(call, parent, user).await.map_err(from_connect)?;
    }
    let query = WriteFileQuery { path: path.clone(), ..Default::default() };
    call.state.client.write_file(&call.sandbox.id, &query, data).await.map_err(|e| {
        if e.code() == Some(ErrorCode::IsADirectory) {
            error(StatusCode::BAD_REQUEST, format!("path '{path}' is a directory"))
        } else {
            from_connect(file_error(e, &path))
        }
    })?;
    chown(call, &path, user).await.map_err(from_connect)?;
    Ok(serde_json::json!({ "path": path, "name": paths::file_name(&path), "type": "file" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_path_operation_user_token_and_expiry() {
        let base = signature("/a", "read", "user", "t", None);
        assert_ne!(base, signature("/a", "write", "user", "t", None));
        assert_ne!(base, signature("/b", "read", "user", "t", None));
        assert_ne!(base, signature("/a", "read", "root", "t", None));
        assert_ne!(base, signature("/a", "read", "user", "u", None));
        assert_ne!(base, signature("/a", "read", "user", "t", Some(1)));
    }

    #[test]
    fn read_permission_follows_the_mode_bits() {
        let user = User { name: "user".into(), uid: 1000, gid: 1000, home: "/home/user".into() };
        let root = User { name: "root".into(), uid: 0, gid: 0, home: "/root".into() };
        let shadow = firepit_api::FileStat {
            kind: FileKind::File,
            size: 1,
            mode: 0o640,
            uid: 0,
            gid: 42,
            modified_unix_ms: 0,
            symlink_target: None,
        };
        assert!(!readable(&shadow, &user));
        assert!(readable(&shadow, &root));
        let own = firepit_api::FileStat { uid: 1000, mode: 0o600, ..shadow };
        assert!(readable(&own, &user));
    }
}
