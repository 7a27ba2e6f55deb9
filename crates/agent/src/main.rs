//! firepit-agent: serves the host's requests on the virtio-serial port named
//! [`firepit_agent::AGENT_PORT_NAME`].
//!
//! Started in the background by the guest's `/init`. It never exits on its own: while no host is
//! connected the port reads end-of-file, so the agent waits 50 ms and reads again; on a read error it
//! reopens the port. Usage: `firepit-agent [--port /dev/vportNpM] [--ready-file PATH]`: the port is
//! found in `/sys/class/virtio-ports` when not given; the ready file is created once the port is
//! open, so `/init` can announce readiness only when the agent can answer. `firepit-agent warm-up`
//! is the host's warm-up of a new VM (see `warm_up.rs`).

#![warn(missing_docs)]

mod netprobe;
mod warm_up;

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::sleep;
use std::time::Duration;

use firepit_agent::{AGENT_PORT_NAME, Agent, ConnectionEnd, ProcessTable, serve_connection};

const RETRY: Duration = Duration::from_millis(50);
const PORTS_DIR: &str = "/sys/class/virtio-ports";

/// Finds `/dev/<entry>` for the virtio port whose `name` is [`AGENT_PORT_NAME`].
fn find_port() -> Option<PathBuf> {
    let entries = std::fs::read_dir(PORTS_DIR).ok()?;
    entries.flatten().find_map(|entry| {
        let name = std::fs::read_to_string(entry.path().join("name")).ok()?;
        (name.trim() == AGENT_PORT_NAME).then(|| PathBuf::from("/dev").join(entry.file_name()))
    })
}

/// Waits until the port exists and opens it read-write.
fn open_port(explicit: Option<&PathBuf>) -> File {
    let mut complained = false;
    loop {
        let candidate = explicit.cloned().or_else(find_port);
        match candidate.as_ref().map(|path| (path, OpenOptions::new().read(true).write(true).open(path))) {
            Some((_, Ok(file))) => return file,
            Some((path, Err(error))) if !complained => {
                eprintln!("firepit-agent: cannot open {}: {error}; retrying", path.display());
                complained = true;
            }
            None if !complained => {
                eprintln!("firepit-agent: no virtio port named {AGENT_PORT_NAME} yet; waiting");
                complained = true;
            }
            _ => {}
        }
        sleep(RETRY);
    }
}

fn main() {
    // The host's warm-up (`/proc/self/exe warm-up`), before anything else.
    if std::env::args_os().nth(1).is_some_and(|arg| arg == firepit_agent::WARM_UP_ARG) {
        warm_up::run();
    }
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().map(String::as_str) == Some("net-probe") {
        std::process::exit(netprobe::run(&all[1..]));
    }
    let mut args = std::env::args().skip(1);
    let mut explicit = None;
    let mut ready_file = None;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--port", Some(path)) => explicit = Some(PathBuf::from(path)),
            ("--ready-file", Some(path)) => ready_file = Some(PathBuf::from(path)),
            _ => {
                eprintln!("usage: firepit-agent [--port /dev/vportNpM] [--ready-file PATH]");
                std::process::exit(2);
            }
        }
    }
    // OOM kills reported per command and in the usage answers; the agent itself is spared.
    if let Err(error) = firepit_agent::watch_kernel_log() {
        eprintln!("firepit-agent: cannot watch the kernel log, OOM kills go unreported: {error}");
    }
    let processes = Arc::new(ProcessTable::default());
    loop {
        let port = open_port(explicit.as_ref());
        if let Some(path) = ready_file.take()
            && let Err(error) = std::fs::write(&path, b"")
        {
            eprintln!("firepit-agent: cannot create {}: {error}", path.display());
        }
        let writer = match port.try_clone() {
            Ok(writer) => writer,
            Err(error) => {
                eprintln!("firepit-agent: cannot duplicate the port handle: {error}");
                sleep(RETRY);
                continue;
            }
        };
        let agent = Agent::new(writer, processes.clone());
        loop {
            match serve_connection(&port, &agent) {
                // No host connected (or it went away): the same handle works once one connects.
                ConnectionEnd::Eof => sleep(RETRY),
                ConnectionEnd::Error(error) => {
                    eprintln!("firepit-agent: reading the port failed: {error}; reopening");
                    sleep(RETRY);
                    break;
                }
            }
        }
    }
}
