//! Terminal sessions: a program (a login shell by default) on a new pseudo-terminal, its output
//! streamed to the host, the host's input typed into it, resizable.
//!
//! The terminal pair is opened close-on-exec (`posix_openpt(O_CLOEXEC)`, slave `O_CLOEXEC`) so that
//! no other child the agent starts at the same moment inherits it (an inherited slave would keep
//! the terminal open after the shell exits). The child calls `setsid` and takes the slave as its
//! controlling terminal before `exec`. Signals go to the terminal's foreground process group, as a
//! keyboard's would. Once the shell exits, output still buffered is drained for up to
//! [`DRAIN_AFTER_EXIT`]; background jobs still holding the terminal do not keep the stream open.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use firepit_agent::{Channel, PtyRequest, Response, Started, WindowSize};

use crate::failure;
use crate::group;
use crate::pump;
use crate::spawn::finish;
use crate::stream::{Control, StreamHandle};
use crate::supervise::{Supervised, supervise};

/// How long the terminal's output may still drain after its program exited.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(result) }
}

/// Opens a pseudo-terminal pair of `size`, both ends close-on-exec: (master, slave).
fn open_pty(size: WindowSize) -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: plain syscalls; every descriptor returned is wrapped in an OwnedFd at once.
    unsafe {
        let master =
            OwnedFd::from_raw_fd(check(libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC))?);
        check(libc::grantpt(master.as_raw_fd()))?;
        check(libc::unlockpt(master.as_raw_fd()))?;
        let mut name = [0 as libc::c_char; 128];
        let error = libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len());
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error));
        }
        let name = CStr::from_ptr(name.as_ptr());
        let slave = check(libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC))?;
        let slave = OwnedFd::from_raw_fd(slave);
        resize(master.as_raw_fd(), size)?;
        Ok((master, slave))
    }
}

/// Sets the terminal's size (the kernel sends SIGWINCH to its foreground group).
fn resize(master: RawFd, size: WindowSize) -> io::Result<()> {
    let winsize = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call.
    check(unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &winsize) }).map(drop)
}

/// [`resize`] through the input pump's end of the terminal.
fn resize_terminal(master: &File, size: WindowSize) {
    if let Err(error) = resize(master.as_raw_fd(), size) {
        eprintln!("firepit-agent: resizing the terminal: {error}");
    }
}

/// Sends `signal` to the terminal's foreground process group (the shell's group if none).
fn signal_foreground(master: RawFd, shell: u32, signal: i32) {
    // SAFETY: plain syscall on a descriptor we own.
    let foreground = unsafe { libc::tcgetpgrp(master) };
    let target = u32::try_from(foreground).ok().filter(|&pgid| pgid > 1).unwrap_or(shell);
    let _gone_already = group::signal(target, signal);
}

/// Runs `request` on `handle`'s stream until the program exits (call on a thread of its own).
pub fn run(handle: StreamHandle, request: PtyRequest) {
    let started = Instant::now();
    let argv =
        if request.argv.is_empty() { vec!["/bin/sh".into(), "-l".into()] } else { request.argv.clone() };
    let mut env = request.env.clone();
    if !env.iter().any(|(key, _)| key == "TERM") {
        env.push(("TERM".into(), "xterm-256color".into()));
    }
    // A terminal of root starts in /root; a user's starts in their home (see `run_as`).
    let root_home = || std::path::Path::new("/root").is_dir().then(|| "/root".into());
    let cwd = request.cwd.clone().or_else(|| if request.user.is_none() { root_home() } else { None });
    let mut command = match group::command_in_group(&argv, &env, cwd.as_deref(), request.user.as_deref()) {
        Ok(command) => command,
        Err(failure) => return handle.fail(failure),
    };
    let opened = open_pty(request.size).and_then(|(master, slave)| {
        let (out, err) = (slave.try_clone()?, slave.try_clone()?);
        Ok((master, Stdio::from(slave), Stdio::from(out), Stdio::from(err)))
    });
    let (master, stdin, stdout, stderr) = match opened {
        Ok(parts) => parts,
        Err(error) => return handle.fail(failure::io("opening a pseudo-terminal", &error)),
    };
    command.stdin(stdin).stdout(stdout).stderr(stderr);
    // SAFETY: the closure only makes async-signal-safe syscalls (setsid, ioctl) in the forked child.
    unsafe {
        command.pre_exec(|| {
            check(libc::setsid())?;
            check(libc::ioctl(0, libc::TIOCSCTTY, 0))?;
            Ok(())
        });
    }
    let spawned = command.spawn().map_err(|error| group::spawn_failure(&command, &error));
    // The parent's copies of the slave end live in `command`; drop them so the terminal closes when
    // the child's side does.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(failure) => return handle.fail(failure),
    };
    let pid = child.id();
    handle.send(Response::Started(Started { pid }));

    let stop = Arc::new(AtomicBool::new(false));
    let clones = master.try_clone().and_then(|reader| Ok((reader, master.try_clone()?)));
    let Ok((reader, writer)) = clones else {
        group::kill(pid);
        let _reaped = child.wait();
        return handle.fail(failure::io("duplicating the terminal", &io::Error::last_os_error()));
    };
    {
        let (stream, stop) = (handle.shared(), stop.clone());
        thread::spawn(move || pump::output(stream, Channel::Stdout, File::from(reader), stop));
    }
    {
        let stream = handle.shared();
        thread::spawn(move || pump::input(stream, File::from(writer), &resize_terminal));
    }
    let waiter = handle.shared();
    thread::spawn(move || waiter.post(Control::Exited(child.wait())));

    let fd = master.as_raw_fd();
    let outcome = supervise(
        &handle,
        Supervised {
            pid,
            open_outputs: 1,
            deadline: None,
            stop: &stop,
            drain_after_exit: Some(DRAIN_AFTER_EXIT),
            // Resizes come through the input pump, in order; only one sent after the input's
            // end arrives here.
            on_resize: &|size| {
                if let Err(error) = resize(fd, size) {
                    eprintln!("firepit-agent: resizing the terminal: {error}");
                }
            },
            on_signal: &|signal| signal_foreground(fd, pid, signal),
        },
    );
    stop.store(true, Ordering::SeqCst);
    finish(handle, outcome, pid, started);
    drop(master);
}
