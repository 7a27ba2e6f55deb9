//! E2B's pages of a list: `limit` items (default and most 100) from the one `nextToken` names
//! (the id of the first item of the page), and the next page's token in the `x-next-token`
//! header. Shared by the sandbox list ([`crate::listing`]) and the snapshot list
//! ([`crate::snapshots`]).

use axum::http::HeaderValue;
use axum::response::Response;

use crate::error::ApiError;

/// The page of `items` that starts at `token` (an item's id, as `id` gives it), at most `limit`
/// long, and the token of the page after it.
///
/// ```
/// let ids = vec!["a", "b", "c"];
/// let (page, next) = firepit_e2b::pages::page(ids.clone(), |s| s, None, Some(2)).unwrap();
/// assert_eq!((page, next.as_deref()), (vec!["a", "b"], Some("c")));
/// let (page, next) = firepit_e2b::pages::page(ids.clone(), |s| s, Some("c"), Some(2)).unwrap();
/// assert_eq!((page, next), (vec!["c"], None));
/// assert!(firepit_e2b::pages::page(ids, |s| s, Some("z"), None).is_err());
/// ```
pub fn page<T>(
    mut items: Vec<T>,
    id: impl Fn(&T) -> &str,
    token: Option<&str>,
    limit: Option<usize>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = match token {
        Some(token) => items
            .iter()
            .position(|item| id(item) == token)
            .ok_or_else(|| ApiError::bad_request(format!("nextToken {token:?} is not valid")))?,
        None => 0,
    };
    let limit = limit.unwrap_or(100).clamp(1, 100);
    let mut page = items.split_off(start);
    let next = page.get(limit).map(|item| id(item).to_owned());
    page.truncate(limit);
    Ok((page, next))
}

/// Names the next page in `response`'s `x-next-token` header.
pub fn set_next_token(response: &mut Response, next: Option<String>) {
    if let Some(token) = next.and_then(|token| HeaderValue::from_str(&token).ok()) {
        response.headers_mut().insert("x-next-token", token);
    }
}
