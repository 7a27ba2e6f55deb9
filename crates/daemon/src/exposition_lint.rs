//! Checks of what `GET /metrics` serves, for tests (behind the `testing` feature): the classic
//! text through Debian's `promtool check metrics` (the linter a Prometheus user runs), and the
//! OpenMetrics text against the rules of its format that a scraper relies on — `promtool` 2.42
//! reads only the classic format, so OpenMetrics is checked here, line by line.

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on classic `text`; `Err` with what it said unless it passed
/// without a word.
///
/// ```no_run
/// let text = "# HELP up_total Ups.\n# TYPE up_total counter\nup_total 1\n";
/// firepit_daemon::exposition_lint::promtool_check(text).unwrap();
/// ```
pub fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run promtool ({e}): run scripts/setup (it installs Debian's promtool)")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(|e| format!("writing to promtool: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("waiting for promtool: {e}"))?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics ({}): {said}", out.status))
    }
}

/// Checks OpenMetrics `text`: it ends with `# EOF`; every family has `# HELP` and `# TYPE` before
/// its samples, once; every sample belongs to the family declared last, named as its type
/// requires (a counter's `_total`/`_created`, a histogram's `_bucket`/`_count`/`_sum`/`_created`,
/// an info's `_info`, a gauge's bare name); and every sample line is `name[{labels}] value`.
///
/// ```
/// let text = "# HELP up Ups.\n# TYPE up counter\nup_total{shape=\"a\"} 1\n# EOF\n";
/// firepit_daemon::exposition_lint::check_openmetrics(text).unwrap();
/// assert!(firepit_daemon::exposition_lint::check_openmetrics("# TYPE up counter\nup 1\n# EOF\n").is_err());
/// ```
pub fn check_openmetrics(text: &str) -> Result<(), String> {
    let body = text.strip_suffix("# EOF\n").ok_or("the text does not end with `# EOF`")?;
    let mut seen: Vec<String> = Vec::new();
    // The family being read: name, type, whether it had its HELP.
    let mut family: Option<(String, String, bool)> = None;
    for (n, line) in body.lines().enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default().to_owned();
            if seen.contains(&name) {
                return Err(at(format!("family {name} described twice")));
            }
            seen.push(name.clone());
            family = Some((name, String::new(), true));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("a TYPE without a type".into()))?;
            match &mut family {
                Some((current, current_kind, _)) if current == name && current_kind.is_empty() => {
                    *current_kind = kind.to_owned();
                }
                _ => return Err(at(format!("TYPE of {name} without its HELP right before"))),
            }
        } else if line.starts_with("# UNIT ") {
            continue;
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("not an OpenMetrics line".into()));
        } else {
            let Some((name, kind, true)) = &family else {
                return Err(at("a sample before any family".into()));
            };
            if kind.is_empty() {
                return Err(at(format!("a sample of {name} before its TYPE")));
            }
            check_sample(line, name, kind).map_err(at)?;
        }
    }
    if seen.is_empty() {
        return Err("no metric families at all".into());
    }
    Ok(())
}

fn check_sample(line: &str, family: &str, kind: &str) -> Result<(), String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    let suffix = name.strip_prefix(family).ok_or_else(|| format!("sample {name} outside family {family}"))?;
    let allowed: &[&str] = match kind {
        "counter" => &["_total", "_created"],
        "histogram" | "gaugehistogram" => &["_bucket", "_count", "_sum", "_created", "_gcount", "_gsum"],
        "summary" => &["", "_count", "_sum", "_created"],
        "info" => &["_info"],
        _ => &[""],
    };
    if !allowed.contains(&suffix) {
        return Err(format!("a {kind} sample named {name}"));
    }
    let rest = &line[name_end..];
    let value = match rest.strip_prefix('{') {
        Some(labels) => labels.rsplit_once("} ").map(|(_, value)| value).ok_or("unclosed labels")?,
        None => rest.trim_start(),
    };
    let value = value.split(" # ").next().unwrap_or_default().split(' ').next().unwrap_or_default();
    let number = matches!(value, "+Inf" | "-Inf" | "NaN") || value.parse::<f64>().is_ok();
    if !number {
        return Err(format!("value {value:?} is not a number"));
    }
    Ok(())
}
