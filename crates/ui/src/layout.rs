//! The page shell every page shares: head (stylesheet, scripts, the CSRF token for htmx), the
//! navigation bar (skip link, sections, theme switch, logout) and the main landmark.

use maud::{DOCTYPE, Markup, html};

use crate::assets::asset_url;
use crate::session::Session;

/// Which section of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Pools,
    Leases,
    Events,
}

/// htmx settings: no `eval` (the CSP forbids it anyway), no injected indicator styles, no
/// history cache of pages (they may show guest data), and error answers swapped in like others
/// (they are notices saying what went wrong).
const HTMX_CONFIG: &str = r#"{"allowEval":false,"includeIndicatorStyles":false,"historyCacheSize":0,"refreshOnHistoryMiss":true,"responseHandling":[{"code":"204","swap":false},{"code":"[2345]..","swap":true}]}"#;

/// A full page for a logged-in session.
pub(crate) fn page(
    title: &str,
    section: Option<Section>,
    session: &Session,
    extra_head: Markup,
    body: Markup,
) -> Markup {
    let csrf_headers = serde_json::json!({ "X-CSRF-Token": session.csrf }).to_string();
    let current = |s: Section| (section == Some(s)).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (head_common(title))
                meta name="csrf-token" content=(session.csrf);
                script src=(asset_url("htmx.min.js")) defer {}
                script src=(asset_url("htmx-sse.min.js")) defer {}
                script src=(asset_url("app.js")) defer {}
                (extra_head)
            }
            body hx-headers=(csrf_headers) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav aria-label="Sections" {
                        a.brand href="/ui/" { "firepit" }
                        ul {
                            li { a href="/ui/" aria-current=[current(Section::Pools)] { "Pools" } }
                            li { a href="/ui/leases" aria-current=[current(Section::Leases)] { "Leases" } }
                            li { a href="/ui/events" aria-current=[current(Section::Events)] { "Events" } }
                        }
                    }
                    div.tools {
                        button.quiet #theme type="button" aria-label="Switch between light, dark and automatic theme" { "Theme: auto" }
                        button.quiet type="button" hx-post="/ui/logout" { "Log out" }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// A page without a session (the login page).
pub(crate) fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head_common(title)) script src=(asset_url("app.js")) defer {} }
            body.bare { main #main { (body) } }
        }
    }
}

fn head_common(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="light dark";
        meta name="htmx-config" content=(HTMX_CONFIG);
        meta name="referrer" content="same-origin";
        title { (title) " · firepit" }
        link rel="stylesheet" href=(asset_url("app.css"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_the_csrf_token_and_mark_the_current_section() {
        let session = Session { csrf: "tok\"<x>".into() };
        let html =
            page("Pools", Some(Section::Pools), &session, html! {}, html! { p { "hi" } }).into_string();
        assert!(html.contains(r#"<a href="/ui/" aria-current="page">Pools</a>"#), "{html}");
        assert!(html.contains(r#"<a href="/ui/leases">Leases</a>"#));
        assert!(html.contains("tok&quot;&lt;x&gt;"), "the token is escaped: {html}");
        assert!(!html.contains("tok\"<x>"));
    }
}
