//! `firepit-agent net-probe ...`: small network measurements run *in the guest*, for the network
//! benchmark and tests (busybox has no timer finer than a second and forks a process per
//! connection, which under TCG would measure process creation instead of the network).
//!
//! - `connect ADDR COUNT`: COUNT TCP connects (each closed at once); one `connect_us N` line each.
//! - `send ADDR BYTES`: one connection, BYTES zero bytes written, then waits for the peer to close;
//!   prints `sent BYTES us N`.
//! - `flood ADDR SECONDS`: connects in a loop for SECONDS; prints `connected N refused N failed N`.
//!
//! Exit code 0 when it ran (failures are counted in the output), 2 on bad arguments.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the probe named by `args` (after `net-probe`); returns the process exit code.
pub fn run(args: &[String]) -> i32 {
    let parsed = match args {
        [mode, addr, n] => {
            addr.parse::<SocketAddr>().ok().zip(n.parse::<u64>().ok()).map(|(a, n)| (mode, a, n))
        }
        _ => None,
    };
    let Some((mode, addr, n)) = parsed else {
        eprintln!("usage: firepit-agent net-probe connect|send|flood ADDR:PORT N");
        return 2;
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    let written = match mode.as_str() {
        "connect" => connect(addr, n, &mut out),
        "send" => send(addr, n, &mut out),
        "flood" => flood(addr, Duration::from_secs(n), &mut out),
        _ => {
            eprintln!("unknown probe {mode:?}: connect, send or flood");
            return 2;
        }
    };
    match written {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("net-probe: {error}");
            1
        }
    }
}

fn connect(addr: SocketAddr, count: u64, out: &mut impl Write) -> std::io::Result<()> {
    let mut failed = 0;
    for _ in 0..count {
        let started = Instant::now();
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                writeln!(out, "connect_us {}", started.elapsed().as_micros())?;
                drop(stream);
            }
            Err(_) => failed += 1,
        }
    }
    writeln!(out, "failed {failed}")
}

fn send(addr: SocketAddr, bytes: u64, out: &mut impl Write) -> std::io::Result<()> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    let chunk = vec![0u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        stream.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    writeln!(out, "sent {bytes} us {}", started.elapsed().as_micros())
}

fn flood(addr: SocketAddr, length: Duration, out: &mut impl Write) -> std::io::Result<()> {
    let (mut connected, mut refused, mut failed) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < length {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(_) => connected += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
            Err(_) => failed += 1,
        }
    }
    writeln!(out, "connected {connected} refused {refused} failed {failed}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_measure_a_local_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink);
            }
        });
        let mut out = Vec::new();
        connect(addr, 3, &mut out).unwrap();
        send(addr, 200_000, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("connect_us ").count(), 3, "{text}");
        assert!(text.contains("failed 0") && text.contains("sent 200000 us "), "{text}");
        assert_eq!(run(&["bogus".into()]), 2);
    }
}
