//! Attached processes: a program whose stdout and stderr stream to the host under credit, whose
//! stdin the host may feed, and whose exit status ends the stream.
//!
//! The stream ends once the program has exited *and* both pipes have closed, so no output is lost
//! to a race. A timeout, the host's cancel, or the host's session ending kills the whole process
//! group; the end is reported only after the program has been reaped, so a timed-out process is
//! never still running when the host hears about it. If a process that left the group keeps a pipe
//! open after such a kill, the pumps give up after a grace period (see [`supervise`](crate::supervise)).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use firepit_agent::{Channel, Failure, FailureKind, Response, SpawnRequest, Started};

use crate::group;
use crate::pump;
use crate::stream::{Control, StreamHandle};
use crate::supervise::{Outcome, Supervised, supervise};

/// Runs `request` on `handle`'s stream until the end (call on a thread of its own).
pub fn run(handle: StreamHandle, request: SpawnRequest) {
    let started = Instant::now();
    let mut command =
        match group::command(&request.argv, &request.env, request.cwd.as_deref(), request.user.as_deref()) {
            Ok(command) => command,
            Err(failure) => return handle.fail(failure),
        };
    command
        .stdin(if request.stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return handle.fail(group::spawn_failure(&command, &error)),
    };
    let pid = child.id();
    handle.send(Response::Started(Started { pid }));

    let stop = Arc::new(AtomicBool::new(false));
    let mut open = 0;
    let outputs = [
        (Channel::Stdout, child.stdout.take().map(OwnedFd::from)),
        (Channel::Stderr, child.stderr.take().map(OwnedFd::from)),
    ];
    for (channel, fd) in outputs {
        if let Some(fd) = fd {
            open += 1;
            let (stream, stop) = (handle.shared(), stop.clone());
            thread::spawn(move || pump::output(stream, channel, File::from(fd), stop));
        }
    }
    if let Some(stdin) = child.stdin.take() {
        let stream = handle.shared();
        thread::spawn(move || pump::input(stream, File::from(OwnedFd::from(stdin)), &|_, _| {}));
    }
    let waiter = handle.shared();
    thread::spawn(move || waiter.post(Control::Exited(child.wait())));

    let deadline = (request.timeout_ms > 0).then(|| started + Duration::from_millis(request.timeout_ms));
    let outcome = supervise(
        &handle,
        Supervised {
            pid,
            open_outputs: open,
            deadline,
            stop: &stop,
            drain_after_exit: None,
            on_resize: &|_| {},
            on_signal: &|signal| {
                let _gone_already = group::signal(pid, signal);
            },
        },
    );
    stop.store(true, Ordering::SeqCst);
    finish(handle, outcome, pid, started);
}

/// Ends an attached process's stream with its outcome.
pub fn finish(handle: StreamHandle, outcome: Outcome, pid: u32, started: Instant) {
    match outcome {
        Outcome::Cancelled => handle.fail(Failure::new(FailureKind::Cancelled, "cancelled by the host")),
        Outcome::Exited(Ok(status), timed_out) => {
            handle.finish(Response::Exited(group::exit_status(pid, status, timed_out, started)))
        }
        Outcome::Exited(Err(error), _) => {
            handle.fail(crate::failure::io(format!("waiting for pid {pid}"), &error))
        }
    }
}
