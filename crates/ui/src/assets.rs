//! The static files, built into the binary: the dashboard's own stylesheet and script, and the
//! JavaScript libraries from npm in `assets/vendor/` (see `scripts/ui-assets` and
//! `assets/vendor/MANIFEST` for their versions, licences and checksums).
//!
//! URLs carry a digest of the file (`/ui/assets/app.css?v=1a2b3c4d`), so browsers may cache them
//! for long and a new binary's files are fetched at once. They are the same bytes for everyone and
//! come from the public repository, so they are served without a session (the login page needs
//! the stylesheet); nothing else is.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! asset {
    ($name:literal, $path:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, bytes: include_bytes!(concat!("../assets/", $path)) }
    };
}

static ASSETS: &[Asset] = &[
    asset!("app.css", "app.css", CSS),
    asset!("app.js", "app.js", JS),
    asset!("app.charts.js", "app.charts.js", JS),
    asset!("htmx.min.js", "vendor/htmx.min.js", JS),
    asset!("htmx-sse.min.js", "vendor/htmx-sse.min.js", JS),
    asset!("xterm.js", "vendor/xterm.js", JS),
    asset!("xterm.css", "vendor/xterm.css", CSS),
    asset!("xterm-addon-fit.js", "vendor/xterm-addon-fit.js", JS),
    asset!("uPlot.iife.min.js", "vendor/uPlot.iife.min.js", JS),
    asset!("uPlot.min.css", "vendor/uPlot.min.css", CSS),
];

/// The vendored files' manifest (file, package@version, licence, sha256), checked by the tests.
pub const VENDOR_MANIFEST: &str = include_str!("../assets/vendor/MANIFEST");

/// Digest prefix per asset, computed once.
static VERSIONS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|asset| hex::encode(&Sha256::digest(asset.bytes)[..6])).collect());

/// The URL of an embedded asset, with its digest (an unknown name gives a URL that answers 404).
///
/// ```
/// let url = firepit_ui::asset_url("app.css");
/// assert!(url.starts_with("/ui/assets/app.css?v="));
/// ```
pub fn asset_url(name: &str) -> String {
    match ASSETS.iter().position(|asset| asset.name == name) {
        Some(index) => format!("/ui/assets/{name}?v={}", VERSIONS[index]),
        None => format!("/ui/assets/{name}"),
    }
}

/// `GET /ui/assets/{name}`.
pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            // The URL changes with the content (see the module docs).
            (header::CACHE_CONTROL, "public, max-age=604800, immutable"),
        ],
        asset.bytes,
    )
        .into_response()
}

/// The embedded vendor files with their bytes, for the manifest check.
#[cfg(test)]
fn vendored() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    ASSETS.iter().filter(|asset| !asset.name.starts_with("app.")).map(|asset| (asset.name, asset.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vendored_file_matches_the_manifest_and_has_a_licence() {
        let mut listed = 0;
        for line in VENDOR_MANIFEST.lines().filter(|l| !l.starts_with('#')) {
            let fields: Vec<&str> = line.split('\t').collect();
            let [name, package, licence, sha256] = fields[..] else { panic!("bad manifest line {line:?}") };
            let (_, bytes) =
                vendored().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("{name} not embedded"));
            assert_eq!(hex::encode(Sha256::digest(bytes)), sha256, "{name} differs from the manifest");
            assert!(package.contains('@') && !licence.is_empty(), "{line}");
            listed += 1;
        }
        assert_eq!(listed, vendored().count(), "every embedded vendor file is in the manifest");
    }

    #[test]
    fn the_manifest_versions_are_the_lockfiles() {
        let lock: serde_json::Value =
            serde_json::from_str(include_str!("../assets/package-lock.json")).expect("package-lock.json");
        for line in VENDOR_MANIFEST.lines().filter(|l| !l.starts_with('#')) {
            let package = line.split('\t').nth(1).expect("a package column");
            let (name, version) = package.rsplit_once('@').expect("package@version");
            let locked = &lock["packages"][format!("node_modules/{name}")]["version"];
            assert_eq!(locked.as_str(), Some(version), "{name}");
        }
    }

    #[test]
    fn asset_urls_change_with_content() {
        assert_ne!(asset_url("app.css"), asset_url("app.js"));
        assert_eq!(asset_url("nope.js"), "/ui/assets/nope.js");
    }
}
