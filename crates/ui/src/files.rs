//! A lease's file browser: list a directory, go into it, download a file, upload one, delete one.
//!
//! Files come from a guest, which nobody trusts: a download is always
//! `application/octet-stream`, an attachment, under `Content-Security-Policy: sandbox`, so a guest
//! file can never run as a page of the dashboard's origin. Uploads and downloads stream through
//! (nothing is held whole in memory). An upload is a `PUT` of the raw file from `app.js` (with
//! the CSRF header), not a multipart form.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use firepit_api::{DirEntry, FileKind, WriteFileQuery};
use futures_util::TryStreamExt;
use maud::{Markup, html};
use serde::Deserialize;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::error::UiError;
use crate::format;
use crate::state::UiState;

/// The guest path a request names.
#[derive(Debug, Deserialize)]
pub(crate) struct PathQuery {
    path: String,
}

impl PathQuery {
    fn checked(&self) -> Result<&str, UiError> {
        if self.path.starts_with('/') && !self.path.contains('\0') {
            Ok(&self.path)
        } else {
            Err(UiError::BadRequest(format!("`{}` is not an absolute guest path", self.path)))
        }
    }
}

/// `GET /ui/leases/{id}/files?path=`: the browser at a directory.
pub(crate) async fn list(
    State(ui): State<UiState>,
    Path(id): Path<String>,
    Query(query): Query<PathQuery>,
) -> Result<Markup, UiError> {
    let dir = query.checked()?;
    let listing = ui.client().list_dir(&id, dir).await;
    Ok(browser(&id, dir, listing.map_err(UiError::from)))
}

fn browser(lease: &str, dir: &str, listing: Result<firepit_api::DirListing, UiError>) -> Markup {
    let base = format!("/ui/leases/{lease}/files");
    html! {
        section #files aria-labelledby="files-title" {
            h2 #files-title { "Files" }
            nav.crumbs aria-label="Directory" {
                @for (name, path) in crumbs(dir) {
                    a href="#" hx-get=(format!("{base}?{}", query_of(&path))) hx-target="#files" hx-swap="outerHTML" { (name) }
                    " / "
                }
            }
            form #upload data-url={ (base) "/upload" } data-dir=(dir) data-list=(format!("{base}?{}", query_of(dir))) {
                label for="upload-file" { "Upload into " code { (dir) } }
                " "
                input #upload-file type="file" name="file" required;
                " "
                button type="submit" { "Upload" }
                " "
                output #upload-status {}
            }
            @match listing {
                Err(error) => (error.into_notice()),
                Ok(listing) => {
                    div.scroll {
                        table.files {
                            caption.visually-hidden { "Entries of " (dir) }
                            thead { tr {
                                th scope="col" { "Name" }
                                th scope="col" .num { "Size" }
                                th scope="col" { "Mode" }
                                th scope="col" { "Modified" }
                                th scope="col" { span.visually-hidden { "Actions" } }
                            } }
                            tbody {
                                @if listing.entries.is_empty() { tr { td colspan="5" .muted { "Empty directory." } } }
                                @for entry in &listing.entries { (entry_row(&base, dir, entry)) }
                            }
                        }
                    }
                    @if listing.truncated { p.muted { "The listing was cut short (too many entries)." } }
                }
            }
        }
    }
}

fn entry_row(base: &str, dir: &str, entry: &DirEntry) -> Markup {
    let path = join(dir, &entry.name);
    let query = query_of(&path);
    let confirm = match entry.stat.kind {
        FileKind::Dir => format!("Delete the directory {path} and everything in it?"),
        _ => format!("Delete {path}?"),
    };
    html! {
        tr {
            th scope="row" {
                @match entry.stat.kind {
                    FileKind::Dir => a href="#" hx-get={ (base) "?" (query) } hx-target="#files" hx-swap="outerHTML" { (entry.name) "/" },
                    FileKind::File => a href={ (base) "/download?" (query) } download=(entry.name) { (entry.name) },
                    FileKind::Symlink => span { (entry.name) " → " (entry.stat.symlink_target.as_deref().unwrap_or("?")) },
                    FileKind::Other => span { (entry.name) },
                }
            }
            td.num { @if entry.stat.kind == FileKind::File { (format::bytes(entry.stat.size)) } }
            td { code { (format!("{:o}", entry.stat.mode & 0o7777)) } }
            td { @if entry.stat.modified_unix_ms > 0 { (format::unix_ms(entry.stat.modified_unix_ms as u64)) } }
            td {
                button.danger.small type="button" hx-post={ (base) "/delete?" (query) } hx-confirm=(confirm)
                    hx-target="#files" hx-swap="outerHTML" aria-label={ "Delete " (entry.name) } { "Delete" }
            }
        }
    }
}

/// `GET /ui/leases/{id}/files/download?path=`: the file, streamed, as an attachment.
pub(crate) async fn download(
    State(ui): State<UiState>,
    Path(id): Path<String>,
    Query(query): Query<PathQuery>,
) -> Result<Response, UiError> {
    let path = query.checked()?;
    let download = ui.client().read_file(&id, path).await?;
    let name = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("download");
    let disposition = format!("attachment; filename*=UTF-8''{}", percent_encode(name));
    let mut response = Body::from_stream(ReaderStream::new(download)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `PUT /ui/leases/{id}/files/upload?path=`: the request body becomes the guest file.
pub(crate) async fn upload(
    State(ui): State<UiState>,
    Path(id): Path<String>,
    Query(query): Query<PathQuery>,
    body: Body,
) -> Result<Markup, UiError> {
    let path = query.checked()?.to_owned();
    let reader = StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let write = WriteFileQuery { path: path.clone(), ..Default::default() };
    let written = ui.client().write_file(&id, &write, reader).await?;
    Ok(html! { "Uploaded " code { (path) } " (" (format::bytes(written)) ")." })
}

/// `POST /ui/leases/{id}/files/delete?path=`: removes a file or a directory with its contents,
/// then shows the directory it was in.
pub(crate) async fn delete(
    State(ui): State<UiState>,
    Path(id): Path<String>,
    Query(query): Query<PathQuery>,
) -> Result<Markup, UiError> {
    let path = query.checked()?;
    if path == "/" {
        return Err(UiError::BadRequest("the root directory cannot be deleted".into()));
    }
    ui.client().remove(&id, path, true).await?;
    let parent = match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((parent, _)) => parent,
    };
    let listing = ui.client().list_dir(&id, parent).await;
    Ok(browser(&id, parent, listing.map_err(UiError::from)))
}

/// `dir/name` without doubled slashes.
fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// The links of a path's breadcrumb: `/`, `/a`, `/a/b`.
fn crumbs(dir: &str) -> Vec<(String, String)> {
    let mut out = vec![("/".to_owned(), "/".to_owned())];
    let mut path = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        path = format!("{path}/{part}");
        out.push((part.to_owned(), path.clone()));
    }
    out
}

fn query_of(path: &str) -> String {
    serde_urlencoded::to_string([("path", path)]).unwrap_or_default()
}

/// RFC 5987 encoding of a file name for `Content-Disposition`.
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_and_break_into_crumbs() {
        assert_eq!(join("/", "etc"), "/etc");
        assert_eq!(join("/root/", "a b"), "/root/a b");
        let crumbs: Vec<String> = crumbs("/root/dir").into_iter().map(|(_, p)| p).collect();
        assert_eq!(crumbs, ["/", "/root", "/root/dir"]);
        assert_eq!(query_of("/a b&c"), "path=%2Fa+b%26c");
    }

    #[test]
    fn only_absolute_paths_are_accepted() {
        assert!(PathQuery { path: "etc/passwd".into() }.checked().is_err());
        assert!(PathQuery { path: "/etc/passwd".into() }.checked().is_ok());
    }

    #[test]
    fn download_names_cannot_break_the_header() {
        assert_eq!(percent_encode("a\"b\r\n.txt"), "a%22b%0D%0A.txt");
    }
}
