//! Processes of a daemon as /proc shows them: its QEMU children.

/// The QEMU processes whose parent is `pid`.
pub fn qemu_children(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after its closing paren.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let ppid = rest.split_whitespace().nth(1).and_then(|field| field.parse::<u32>().ok());
        if ppid == Some(pid) && head.contains("(qemu") {
            children.push(child);
        }
    }
    children
}

/// Whether `pid` is a live (not zombie) QEMU process.
pub fn is_live_qemu(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some((head, rest)) = stat.rsplit_once(')') else { return false };
    head.contains("(qemu") && rest.split_whitespace().next() != Some("Z")
}
