//! Query strings whose percent-escapes decode to bytes that are not UTF-8 (`?path=/tmp/x%80`).
//!
//! axum's `Query` decodes them lossily (each bad byte becomes U+FFFD), so `x%80` and `x%C3` would
//! name one file. Every listener refuses them instead, before any handler runs; each answers in its
//! own error format.

/// The first query parameter that is not UTF-8 once decoded, as written; `None` if all are.
///
/// ```
/// assert_eq!(firepit_http::query::non_utf8_parameter(Some("path=/tmp/x%80")), Some("path=/tmp/x%80".into()));
/// assert_eq!(firepit_http::query::non_utf8_parameter(Some("path=/tmp/caf%C3%A9&a=1")), None);
/// assert_eq!(firepit_http::query::non_utf8_parameter(None), None);
/// ```
pub fn non_utf8_parameter(query: Option<&str>) -> Option<String> {
    let query = query?;
    query
        .split('&')
        .find(|pair| {
            let plus_as_space = pair.replace('+', " ");
            let decoded: Vec<u8> = percent_encoding::percent_decode_str(&plus_as_space).collect();
            std::str::from_utf8(&decoded).is_err()
        })
        .map(str::to_owned)
}

/// The message for a refused parameter (names it, says what to do).
pub fn message(parameter: &str) -> String {
    let shown: String = parameter.chars().take(200).collect();
    format!(
        "query parameter `{shown}` is not UTF-8 once its %-escapes are decoded: paths and values must be \
         UTF-8 (percent-encode each byte of the UTF-8 text)"
    )
}
