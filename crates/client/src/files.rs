//! The file endpoints: streamed uploads and downloads, metadata and directory operations, tar
//! archives, and whole local directories in and out (packed and unpacked on the fly).

use std::path::Path;

use firepit_api::{
    ChmodBody, ChownBody, DirListing, FileStat, MkdirBody, PathQuery, ReadFileQuery, RemoveQuery, RenameBody,
    StatQuery, TransferResponse, WriteFileQuery,
};
use http_body_util::BodyExt;
use hyper::Method;
use serde::Serialize;
use tokio::io::AsyncRead;

use crate::body::{self, Download};
use crate::{Client, ClientError, local_dirs};

/// `path?query` for the endpoint `/v1/leases/{lease}/{rest}`.
pub(crate) fn lease_path<Q: Serialize>(lease: &str, rest: &str, query: &Q) -> Result<String, ClientError> {
    let query = serde_urlencoded::to_string(query)
        .map_err(|e| ClientError::Decode { status: hyper::StatusCode::OK, message: e.to_string() })?;
    let separator = if query.is_empty() { "" } else { "?" };
    Ok(format!("/v1/leases/{}/{rest}{separator}{query}", segment(lease)))
}

/// Percent-encodes one path segment.
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Client {
    /// `PUT /v1/leases/{id}/files`: writes what `data` yields to a guest file, streaming it (no
    /// size limit; the guest pulls it at its pace). Returns the bytes written.
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let local = tokio::fs::File::open("big.bin").await?;
    /// let query = firepit_api::WriteFileQuery { path: "/tmp/big.bin".into(), ..Default::default() };
    /// let written = client.write_file("l-0123", &query, local).await?;
    /// # let _ = written; Ok(()) }
    /// ```
    pub async fn write_file<R: AsyncRead + Send + 'static>(
        &self,
        lease_id: &str,
        query: &WriteFileQuery,
        data: R,
    ) -> Result<u64, ClientError> {
        let path = lease_path(lease_id, "files", query)?;
        self.upload(&path, data, "application/octet-stream").await
    }

    /// `GET /v1/leases/{id}/files`: a guest file as a stream.
    pub async fn read_file(&self, lease_id: &str, path: &str) -> Result<Download, ClientError> {
        self.read_file_range(lease_id, &ReadFileQuery { path: path.into(), offset: 0, limit: None }).await
    }

    /// `GET /v1/leases/{id}/files` from an offset, at most a limit.
    pub async fn read_file_range(
        &self,
        lease_id: &str,
        query: &ReadFileQuery,
    ) -> Result<Download, ClientError> {
        self.download(&lease_path(lease_id, "files", query)?).await
    }

    /// `GET /v1/leases/{id}/files/stat` (a symbolic link's target when `follow_symlinks`).
    pub async fn stat(
        &self,
        lease_id: &str,
        path: &str,
        follow_symlinks: bool,
    ) -> Result<FileStat, ClientError> {
        let path = lease_path(lease_id, "files/stat", &StatQuery { path: path.into(), follow_symlinks })?;
        self.call::<(), _>(Method::GET, &path, None, &[]).await
    }

    /// `GET /v1/leases/{id}/files/list`.
    pub async fn list_dir(&self, lease_id: &str, path: &str) -> Result<DirListing, ClientError> {
        let path = lease_path(lease_id, "files/list", &PathQuery { path: path.into() })?;
        self.call::<(), _>(Method::GET, &path, None, &[]).await
    }

    /// `POST /v1/leases/{id}/files/mkdir`.
    pub async fn mkdir(&self, lease_id: &str, body: &MkdirBody) -> Result<(), ClientError> {
        self.call_empty(Method::POST, &lease_path(lease_id, "files/mkdir", &())?, Some(body)).await
    }

    /// `DELETE /v1/leases/{id}/files` (`recursive`: a directory with its contents).
    pub async fn remove(&self, lease_id: &str, path: &str, recursive: bool) -> Result<(), ClientError> {
        let path = lease_path(lease_id, "files", &RemoveQuery { path: path.into(), recursive })?;
        self.call_empty::<()>(Method::DELETE, &path, None).await
    }

    /// `POST /v1/leases/{id}/files/chmod`.
    pub async fn chmod(&self, lease_id: &str, path: &str, mode: u32) -> Result<(), ClientError> {
        let body = ChmodBody { path: path.into(), mode };
        self.call_empty(Method::POST, &lease_path(lease_id, "files/chmod", &())?, Some(&body)).await
    }

    /// `POST /v1/leases/{id}/files/chown`.
    pub async fn chown(&self, lease_id: &str, body: &ChownBody) -> Result<(), ClientError> {
        self.call_empty(Method::POST, &lease_path(lease_id, "files/chown", &())?, Some(body)).await
    }

    /// `POST /v1/leases/{id}/files/rename`.
    pub async fn rename(&self, lease_id: &str, from: &str, to: &str) -> Result<(), ClientError> {
        let body = RenameBody { from: from.into(), to: to.into() };
        self.call_empty(Method::POST, &lease_path(lease_id, "files/rename", &())?, Some(&body)).await
    }

    /// `PUT /v1/leases/{id}/archive`: unpacks the tar archive `data` yields into a guest directory.
    pub async fn upload_tar<R: AsyncRead + Send + 'static>(
        &self,
        lease_id: &str,
        dir: &str,
        data: R,
    ) -> Result<u64, ClientError> {
        let path = lease_path(lease_id, "archive", &PathQuery { path: dir.into() })?;
        self.upload(&path, data, "application/x-tar").await
    }

    /// `GET /v1/leases/{id}/archive`: a guest directory's contents (or a file) as a tar stream.
    pub async fn download_tar(&self, lease_id: &str, path: &str) -> Result<Download, ClientError> {
        self.download(&lease_path(lease_id, "archive", &PathQuery { path: path.into() })?).await
    }

    /// Copies the local directory `local` into the guest directory `dir` (created if missing),
    /// packing it on the fly: modes, modification times and symbolic links are kept. Returns the
    /// archive's size.
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
    /// client.upload_dir("l-0123", "./project".as_ref(), "/root/project").await?;
    /// client.download_dir("l-0123", "/root/project/out", "./out".as_ref()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn upload_dir(&self, lease_id: &str, local: &Path, dir: &str) -> Result<u64, ClientError> {
        let (archive, packer) = local_dirs::pack(local)?;
        let uploaded = self.upload_tar(lease_id, dir, archive).await;
        local_dirs::finish(packer, uploaded, &format!("packing {}", local.display())).await
    }

    /// Copies the guest directory `dir` (its contents) into the local directory `local` (created
    /// if missing). Entries that would land outside `local` are refused; setuid/setgid bits and
    /// owners are not kept. Returns the archive's size.
    pub async fn download_dir(&self, lease_id: &str, dir: &str, local: &Path) -> Result<u64, ClientError> {
        let archive = self.download_tar(lease_id, dir).await?;
        local_dirs::unpack(archive, local).await
    }

    async fn upload<R: AsyncRead + Send + 'static>(
        &self,
        path: &str,
        data: R,
        content_type: &str,
    ) -> Result<u64, ClientError> {
        let response = self.send(Method::PUT, path, body::streamed(data), Some(content_type)).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let answer: TransferResponse = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Decode { status, message: e.to_string() })?;
        Ok(answer.bytes)
    }

    async fn download(&self, path: &str) -> Result<Download, ClientError> {
        let response = self.send(Method::GET, path, body::full(Vec::new()), None).await?;
        Ok(Download::new(response))
    }
}
