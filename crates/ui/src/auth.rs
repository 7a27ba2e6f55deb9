//! Logging in and out, the session guard in front of every page, and the security headers of
//! every response. The reasoning is in the crate docs ("Security").

use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::bare_page;
use crate::notice::notice;
use crate::session::{SESSION_LIFETIME, Session};
use crate::state::UiState;

/// The session cookie's name.
pub const COOKIE: &str = "firepit_session";
/// The header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

const HX_REDIRECT: header::HeaderName = header::HeaderName::from_static("hx-redirect");

/// What a wrong login costs its sender (one connection cannot try tokens quickly).
const WRONG_LOGIN_DELAY: Duration = Duration::from_millis(300);

/// The Content-Security-Policy of every response: scripts only from our own files (no inline
/// script, no eval), connections only to this origin, no framing, forms only to this origin.
/// Inline styles are allowed because xterm.js and uPlot set them.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Middleware on every `/ui` response: CSP, no sniffing, no framing, no referrer to other sites
/// (`same-origin`: with `no-referrer` browsers send `Origin: null` on our own forms), and no
/// caching unless the handler chose otherwise (pages show guest data).
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Middleware in front of every page and action: no session, no answer (a page redirects to the
/// login); a state-changing request also needs the session's CSRF token and, when the browser
/// says where it comes from, this origin; a WebSocket upgrade needs this origin.
pub(crate) async fn require_session(State(ui): State<UiState>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let Some(session) = session_cookie(headers).and_then(|secret| ui.sessions().find(secret)) else {
        return not_logged_in(request.method(), request.uri().path(), headers);
    };
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    let upgrade = headers.contains_key(header::UPGRADE);
    if (changes_state || upgrade) && !same_origin(headers) {
        return forbidden("this request comes from another site");
    }
    if changes_state {
        let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !presented.is_some_and(|token| session.csrf_matches(token)) {
            return forbidden("missing or wrong CSRF token: reload the page");
        }
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

fn forbidden(message: &'static str) -> Response {
    (StatusCode::FORBIDDEN, message).into_response()
}

/// A page request goes to the login (and back after it); htmx is told to go there; anything else
/// is a plain 401.
fn not_logged_in(method: &Method, path: &str, headers: &HeaderMap) -> Response {
    if headers.contains_key("hx-request") {
        return (StatusCode::UNAUTHORIZED, [(HX_REDIRECT, "/ui/login")], "log in first").into_response();
    }
    if *method == Method::GET && !headers.contains_key(header::UPGRADE) {
        let next = serde_urlencoded::to_string([("next", path)]).unwrap_or_default();
        return Redirect::to(&format!("/ui/login?{next}")).into_response();
    }
    (StatusCode::UNAUTHORIZED, "log in first").into_response()
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// True unless the browser says the request comes from another origin (`Origin` naming another
/// host, or `Sec-Fetch-Site` other than `same-origin` / `none`). Clients that send neither are
/// not browsers acting for another site.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
        }
        (Some(_), None) => false,
    }
}

/// A path to return to after login: only our own pages.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with("/ui/") && !path.starts_with("/ui//") && !path.contains('\\') => path,
        _ => "/ui/",
    }
}

fn set_cookie(secret: &str) -> String {
    format!("{COOKIE}={secret}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_LIFETIME.as_secs())
}

/// The query of the login page.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    ticket: Option<String>,
}

/// `GET /ui/login`: the form, or a one-time link's ticket redeemed into a session.
pub(crate) async fn login_page(State(ui): State<UiState>, Query(query): Query<LoginQuery>) -> Response {
    if let Some(ticket) = &query.ticket {
        if ui.sessions().redeem_ticket(ticket) {
            return logged_in(&ui, safe_next(query.next.as_deref()));
        }
        let message =
            "This login link was used already or has expired. Run `firepit ui` again for a new one.";
        return (StatusCode::UNAUTHORIZED, login_form(&ui, query.next.as_deref(), Some(message)))
            .into_response();
    }
    login_form(&ui, query.next.as_deref(), None).into_response()
}

/// The fields of the login form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /ui/login`: a right token starts a session.
pub(crate) async fn login(
    State(ui): State<UiState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return forbidden("this login comes from another site");
    }
    if ui.token_matches(form.token.trim()) {
        return logged_in(&ui, safe_next(form.next.as_deref()));
    }
    tokio::time::sleep(WRONG_LOGIN_DELAY).await;
    let page = login_form(&ui, form.next.as_deref(), Some("That token is wrong."));
    (StatusCode::UNAUTHORIZED, page).into_response()
}

fn logged_in(ui: &UiState, next: &str) -> Response {
    let (secret, _session) = ui.sessions().create();
    ([(header::SET_COOKIE, set_cookie(&secret))], Redirect::to(next)).into_response()
}

/// `POST /ui/logout` (behind the session guard): ends the session.
pub(crate) async fn logout(State(ui): State<UiState>, headers: HeaderMap, _: Extension<Session>) -> Response {
    if let Some(secret) = session_cookie(&headers) {
        ui.sessions().remove(secret);
    }
    let expired = format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, expired.as_str()), (HX_REDIRECT, "/ui/login")], "logged out").into_response()
}

fn login_form(ui: &UiState, next: Option<&str>, error: Option<&str>) -> Markup {
    bare_page(
        "Log in",
        html! {
            section.login {
                h1 { "firepit" }
                @if let Some(error) = error { (notice("error", error)) }
                @if ui.accepts_tokens() {
                    form method="post" action="/ui/login" {
                        input type="hidden" name="next" value=(safe_next(next));
                        label for="token" { "The daemon's API token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        button type="submit" { "Log in" }
                    }
                    p.hint { "The token of the daemon's TCP listener (" code { "listen.token_file" } " or " code { "listen.token_env" } " in its config)." }
                } @else {
                    p { "Open the one-time link that " code { "firepit ui" } " printed. Each link works once; run it again for a new one." }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let map = headers(&[("cookie", "a=1; firepit_session=abc; b=2")]);
        assert_eq!(session_cookie(&map), Some("abc"));
        assert_eq!(session_cookie(&headers(&[("cookie", "firepit_sessionx=abc")])), None);
    }

    #[test]
    fn other_origins_are_recognised() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:7070")])));
        assert!(same_origin(&headers(&[("host", "127.0.0.1:7070"), ("origin", "http://127.0.0.1:7070")])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:7070"), ("origin", "http://evil.example")])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:7070"), ("origin", "null")])));
        assert!(!same_origin(&headers(&[("host", "a"), ("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&headers(&[("host", "a"), ("sec-fetch-site", "same-origin")])));
    }

    #[test]
    fn logins_return_only_to_our_pages() {
        assert_eq!(safe_next(Some("/ui/leases?state=running")), "/ui/leases?state=running");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("//evil.example/ui/")), "/ui/");
        assert_eq!(safe_next(Some("/ui//evil.example")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }
}
