//! The notice box every page and action answers with when it has something to say.

use maud::{Markup, html};

/// A notice box (`kind`: `error`, announced at once to screen readers, or `info`).
pub(crate) fn notice(kind: &str, text: &str) -> Markup {
    html! { p.notice.(kind) role=(if kind == "error" { "alert" } else { "status" }) { (text) } }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_are_alerts() {
        assert!(super::notice("error", "<b>").into_string().contains(r#"role="alert">&lt;b&gt;</p>"#));
        assert!(super::notice("info", "ok").into_string().contains(r#"role="status""#));
    }
}
