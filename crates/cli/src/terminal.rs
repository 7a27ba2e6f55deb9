//! The local terminal, for `firepit shell`: raw mode (every key goes to the guest, Ctrl-C too)
//! restored on drop, and the window size.

use std::io;

/// Raw mode on stdin while this lives; the previous settings come back on drop.
pub struct RawMode {
    original: libc::termios,
}

impl RawMode {
    /// Raw mode if stdin is a terminal (`None` if it is not: piped input stays as it is).
    pub fn enable() -> io::Result<Option<Self>> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
            return Ok(None);
        }
        // SAFETY: termios is plain data, filled in by tcgetattr before any use.
        let mut original: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a valid pointer to a termios.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut original) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut raw = original;
        // SAFETY: cfmakeraw edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: a valid descriptor and a valid termios.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(Self { original }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enable` on the same descriptor.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.original) };
    }
}

/// The terminal's size as (rows, cols), from stdout or stdin; `None` without a terminal.
pub fn window_size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        // SAFETY: winsize is plain data; TIOCGWINSZ fills it for a terminal, fails otherwise.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a pointer to a winsize, as TIOCGWINSZ expects.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0 && size.ws_row > 0 && size.ws_col > 0
        {
            return Some((size.ws_row, size.ws_col));
        }
    }
    None
}
