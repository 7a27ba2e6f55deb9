//! How `GET /metrics` writes the registry: OpenMetrics text, or the classic Prometheus text format
//! for a scraper that asks only for that.
//!
//! Why two: `prometheus_client` writes OpenMetrics 1.0 (a counter family `foo` with samples
//! `foo_total`, `# EOF` at the end). Served as `text/plain; version=0.0.4`, a Prometheus server
//! parses it with its classic parser and loses the counters' types and help (`promtool check
//! metrics`: "no help text" for every counter). So the body is labelled for what it is,
//! `application/openmetrics-text; version=1.0.0`, which Prometheus asks for first; a client whose
//! `Accept` prefers `text/plain` (older scrapers, `promtool`-style tools) gets the same series in
//! the classic format, rewritten from the OpenMetrics text: counter families are named with their
//! `_total` suffix, `# UNIT` lines, exemplars and `# EOF` are left out, `unknown` becomes
//! `untyped`, and types the classic format lacks (`info`, `stateset`, `gaugehistogram`) are
//! described as `gauge`s or `histogram`s of the same samples.

use std::fmt;

use prometheus_client::registry::Registry;

/// Content type of OpenMetrics text (the default).
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of the classic Prometheus text format.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The text formats `GET /metrics` can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// The classic Prometheus text format (0.0.4).
    Classic,
}

impl Format {
    /// The format for a request's `Accept` header: classic only when the client ranks
    /// `text/plain` above OpenMetrics (by `q`); OpenMetrics otherwise, also without a header or
    /// when neither is acceptable.
    ///
    /// ```
    /// use firepit_daemon::exposition::Format;
    /// let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    /// assert_eq!(Format::negotiate(Some("text/plain; version=0.0.4")), Format::Classic);
    /// assert_eq!(Format::negotiate(None), Format::OpenMetrics);
    /// ```
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else { return Self::OpenMetrics };
        let (mut openmetrics, mut classic) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|param| param.strip_prefix("q=").or_else(|| param.strip_prefix("Q=")))
                .find_map(|value| value.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" | "application/*" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" => classic = classic.max(q),
                "*/*" => {
                    openmetrics = openmetrics.max(q);
                    classic = classic.max(q);
                }
                _ => {}
            }
        }
        if classic > openmetrics { Self::Classic } else { Self::OpenMetrics }
    }

    /// The `content-type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::Classic => CLASSIC_CONTENT_TYPE,
        }
    }
}

/// `registry` as text in `format`.
///
/// ```
/// use firepit_daemon::exposition::{Format, encode};
/// use prometheus_client::metrics::counter::Counter;
/// let mut registry = prometheus_client::registry::Registry::default();
/// let acquires = Counter::<u64>::default();
/// registry.register("firepit_acquires", "Acquires", acquires.clone());
/// acquires.inc();
/// let open = encode(&registry, Format::OpenMetrics).unwrap();
/// assert!(open.contains("# TYPE firepit_acquires counter\nfirepit_acquires_total 1\n") && open.ends_with("# EOF\n"));
/// let classic = encode(&registry, Format::Classic).unwrap();
/// assert!(classic.contains("# TYPE firepit_acquires_total counter\nfirepit_acquires_total 1\n"));
/// assert!(!classic.contains("# EOF"));
/// ```
pub fn encode(registry: &Registry, format: Format) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(match format {
        Format::OpenMetrics => text,
        Format::Classic => to_classic(&text),
    })
}

/// The classic text of OpenMetrics `text` (see the module docs for what changes).
fn to_classic(text: &str) -> String {
    // Family name → its OpenMetrics type, from the `# TYPE` lines (they may follow `# HELP`).
    let types: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .collect();
    let type_of = |family: &str| types.iter().find(|(name, _)| *name == family).map(|(_, kind)| *kind);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (family, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = classic_name(family, type_of(family));
            // OpenMetrics escapes `"` in help text; the classic format knows only `\\` and `\n`.
            out.push_str(&format!("# HELP {name} {}\n", help.replace("\\\"", "\"")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let classic_kind = match kind {
                "counter" | "gauge" | "histogram" | "summary" => kind,
                "gaugehistogram" => "histogram",
                "info" | "stateset" => "gauge",
                _ => "untyped",
            };
            out.push_str(&format!("# TYPE {} {classic_kind}\n", classic_name(family, Some(kind))));
        } else if line.starts_with('#') {
            // `# UNIT`, `# EOF`: not in the classic format.
        } else if !line.is_empty() && !is_created_sample(line) {
            // An exemplar follows ` # ` after the value (looked for after the label set, whose
            // quoted values may contain ` # ` themselves).
            out.push_str(without_exemplar(line));
            out.push('\n');
        }
    }
    out
}

/// The classic family name: counters carry `_total`, infos `_info` (as their samples do).
fn classic_name(family: &str, kind: Option<&str>) -> String {
    match kind {
        Some("counter") => format!("{family}_total"),
        Some("info") => format!("{family}_info"),
        _ => family.to_owned(),
    }
}

/// `_created` samples (a counter's or histogram's start time) have no place in the classic format.
fn is_created_sample(line: &str) -> bool {
    let name = line.split(['{', ' ']).next().unwrap_or_default();
    name.ends_with("_created")
}

/// The sample without an exemplar (` # {labels} value [timestamp]` after the value).
fn without_exemplar(line: &str) -> &str {
    let values_start = match line.find('{') {
        Some(open) => closing_brace(line, open).map_or(line.len(), |close| close + 1),
        None => line.find(' ').unwrap_or(line.len()),
    };
    match line[values_start..].find(" # ") {
        Some(at) => &line[..values_start + at],
        None => line,
    }
}

/// Where the label set opened at `open` closes (quoted values may contain `}` and escapes).
fn closing_brace(line: &str, open: usize) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line.char_indices().skip_while(|(i, _)| *i <= open) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_pick_the_format() {
        for (accept, format) in [
            ("application/openmetrics-text; version=1.0.0", Format::OpenMetrics),
            ("text/plain", Format::Classic),
            ("text/plain;version=0.0.4;q=0.3,*/*;q=0.2", Format::Classic),
            ("*/*", Format::OpenMetrics),
            ("application/json", Format::OpenMetrics),
            ("text/plain;q=0.5, application/openmetrics-text;q=0.9", Format::OpenMetrics),
            ("application/openmetrics-text;q=0, text/plain", Format::Classic),
        ] {
            assert_eq!(Format::negotiate(Some(accept)), format, "{accept}");
        }
    }

    #[test]
    fn openmetrics_becomes_classic_text() {
        let open = "# HELP a_requests Requests by \\\"outcome\\\".\n# TYPE a_requests counter\n# UNIT a_requests requests\n\
            a_requests_total{shape=\"x } # y\"} 3 # {trace=\"1\"} 1.0\n\
            a_requests_created{shape=\"x\"} 1700000000.0\n\
            # HELP b_ready Ready.\n# TYPE b_ready gauge\nb_ready{shape=\"x\"} 2\n\
            # HELP c_build Build.\n# TYPE c_build info\nc_build_info{version=\"1\"} 1\n\
            # HELP d_odd Odd.\n# TYPE d_odd unknown\nd_odd 1\n# EOF\n";
        let classic = to_classic(open);
        assert_eq!(
            classic,
            "# HELP a_requests_total Requests by \"outcome\".\n# TYPE a_requests_total counter\n\
             a_requests_total{shape=\"x } # y\"} 3\n\
             # HELP b_ready Ready.\n# TYPE b_ready gauge\nb_ready{shape=\"x\"} 2\n\
             # HELP c_build_info Build.\n# TYPE c_build_info gauge\nc_build_info{version=\"1\"} 1\n\
             # HELP d_odd Odd.\n# TYPE d_odd untyped\nd_odd 1\n"
        );
    }

    #[test]
    fn the_daemons_registry_encodes_in_both_formats() {
        let mut registry = Registry::default();
        let metrics = crate::metrics::DaemonMetrics::register(&mut registry);
        metrics.lease_started("small");
        metrics.acquire_outcome("small", "ok");
        metrics
            .acquire_seconds
            .get_or_create(&crate::metrics::ShapeLabel { shape: "small".into() })
            .observe(0.002);
        let open = encode(&registry, Format::OpenMetrics).unwrap();
        assert!(open.contains("# TYPE firepit_daemon_acquires counter\n"), "{open}");
        assert!(open.ends_with("# EOF\n"));
        let classic = encode(&registry, Format::Classic).unwrap();
        assert!(classic.contains("# TYPE firepit_daemon_acquires_total counter\n"), "{classic}");
        assert!(
            classic.contains("firepit_daemon_acquire_seconds_bucket{le=\"+Inf\",shape=\"small\"} 1\n")
                || classic.contains("firepit_daemon_acquire_seconds_bucket{shape=\"small\",le=\"+Inf\"} 1\n"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"), "{classic}");
    }
}
