//! Guest paths as envd takes them: absolute, `~` for the user's home, or relative to it; `.` and
//! `..` resolved lexically (the guest's filesystem is the user's: `..` may go anywhere in it, but
//! never above `/`).

/// `path` as an absolute, normalised guest path for a user whose home is `home`; an empty path is
/// the home itself. `None` for a path with a NUL byte.
///
/// ```
/// use firepit_e2b::paths::resolve;
/// assert_eq!(resolve("notes.txt", "/home/user").as_deref(), Some("/home/user/notes.txt"));
/// assert_eq!(resolve("~/a/../b", "/home/user").as_deref(), Some("/home/user/b"));
/// assert_eq!(resolve("/../../etc/./hosts", "/home/user").as_deref(), Some("/etc/hosts"));
/// assert_eq!(resolve("", "/root").as_deref(), Some("/root"));
/// ```
pub fn resolve(path: &str, home: &str) -> Option<String> {
    if path.contains('\0') {
        return None;
    }
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else if path == "~" {
        home.to_owned()
    } else if let Some(rest) = path.strip_prefix("~/") {
        format!("{home}/{rest}")
    } else {
        format!("{home}/{path}")
    };
    Some(normalise(&joined))
}

/// Resolves `.`, `..` and repeated slashes of an absolute path.
pub fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The last component of an absolute path (`/` for the root).
pub fn file_name(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some((_, "")) | None => "/",
        Some((_, name)) => name,
    }
}

/// The parent of an absolute, normalised path (`None` for `/`).
pub fn parent(path: &str) -> Option<&str> {
    match path.rsplit_once('/') {
        Some(("", "")) | None => None,
        Some(("", _)) => Some("/"),
        Some((parent, _)) => Some(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_stops_at_the_root() {
        assert_eq!(resolve("../../../../etc/passwd", "/home/user").as_deref(), Some("/etc/passwd"));
        assert_eq!(normalise("/a//b/./c/.."), "/a/b");
        assert_eq!(resolve("a\0b", "/root"), None);
    }

    #[test]
    fn names_and_parents() {
        assert_eq!(file_name("/home/user/a.txt"), "a.txt");
        assert_eq!(file_name("/"), "/");
        assert_eq!(parent("/home/user"), Some("/home"));
        assert_eq!(parent("/home"), Some("/"));
        assert_eq!(parent("/"), None);
    }
}
