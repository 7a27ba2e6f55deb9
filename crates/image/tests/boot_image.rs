//! Boots the image under QEMU (`-M microvm`, TCG unless told otherwise) with the command line the
//! provider uses, and checks the guest end to end: the ready line on the console, the agent's
//! ping and exec over virtio-serial, and a command typed on the console.
//!
//! Image: `$FIREPIT_IMAGE_DIR` when it holds one (scripts/test builds it first), else built into
//! the target's temp dir. The test name starts with `vm_` so nextest runs it in the one-VM-at-a-time
//! group.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firepit_agent::{
    ExecRequest, FrameDecoder, IdentityRequest, Request, RequestFrame, Response, ResponseFrame, encode_frame,
};
use firepit_image::{Image, ImageBuilder};

/// Kills QEMU when the test ends, however it ends.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn image() -> Image {
    if let Some(dir) = std::env::var_os("FIREPIT_IMAGE_DIR")
        && let Ok(image) = Image::open(Path::new(&dir))
    {
        return image;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("firepit-boot-image");
    ImageBuilder::new(out)
        .agent(common::agent_path())
        .cache_dir(common::deb_cache())
        .build(&mut |_| {})
        .unwrap()
}

fn connect(path: &Path, deadline: Instant) -> UnixStream {
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => return stream,
            Err(error) if Instant::now() > deadline => {
                panic!("cannot connect to {}: {error}", path.display())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads from `stream` until `needle` appears; returns everything read.
fn read_until(stream: &mut UnixStream, needle: &str, deadline: Instant) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} on the console; got:\n{}",
            String::from_utf8_lossy(&seen)
        );
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => panic!("console closed; got:\n{}", String::from_utf8_lossy(&seen)),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn call(agent: &mut UnixStream, decoder: &mut FrameDecoder, id: u64, request: Request) -> Response {
    agent.write_all(&encode_frame(&RequestFrame { id, request }).unwrap()).unwrap();
    agent.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(frame) = decoder.next_frame::<ResponseFrame>().unwrap() {
            assert_eq!(frame.id, id);
            return frame.response;
        }
        let n = agent.read(&mut buf).unwrap();
        assert!(n > 0, "agent socket closed");
        decoder.push(&buf[..n]);
    }
}

#[test]
fn vm_guest_boots_prints_ready_and_answers_agent_and_console() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let console_sock = dir.path().join("console.sock");
    let agent_sock = dir.path().join("agent.sock");
    let accel = std::env::var("FIREPIT_ACCEL").unwrap_or_else(|_| "tcg".into());
    let started = Instant::now();
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-M",
            &format!("microvm,accel={accel}"),
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-m",
            "256",
        ])
        .arg("-kernel")
        .arg(image.kernel())
        .arg("-initrd")
        .arg(image.initramfs())
        .args(["-append", &image.manifest().kernel_cmdline])
        .args(["-chardev", &format!("socket,id=c0,path={},server=on,wait=off", console_sock.display())])
        .args(["-serial", "chardev:c0", "-device", "virtio-serial-device"])
        .args(["-chardev", &format!("socket,id=ag,path={},server=on,wait=off", agent_sock.display())])
        .args(["-device", "virtserialport,chardev=ag,name=firepit.agent"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 not found: apt-get install qemu-system-x86");
    let _qemu = Qemu(child);
    let deadline = started + Duration::from_secs(180);

    let mut console = connect(&console_sock, deadline);
    read_until(&mut console, firepit_agent::READY_LINE, deadline);
    let ready_after = started.elapsed();

    let mut agent = connect(&agent_sock, deadline);
    let mut decoder = FrameDecoder::new();
    let Response::Pong(pong) = call(&mut agent, &mut decoder, 1, Request::Ping) else {
        panic!("ping not answered")
    };
    assert_eq!(pong.agent_version, env!("CARGO_PKG_VERSION"));
    let ping_started = Instant::now();
    call(&mut agent, &mut decoder, 2, Request::Ping);
    let ping_rtt = ping_started.elapsed();

    let exec_started = Instant::now();
    let uname = ExecRequest { argv: vec!["uname".into(), "-r".into()], ..ExecRequest::default() };
    let Response::Exec(result) = call(&mut agent, &mut decoder, 3, Request::Exec(uname)) else {
        panic!("exec failed")
    };
    let exec_rtt = exec_started.elapsed();
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(String::from_utf8_lossy(&result.stdout).trim(), image.kernel_version());

    let failing = ExecRequest {
        argv: vec!["sh".into(), "-c".into(), "cat; echo oops >&2; exit 7".into()],
        stdin: b"piped\n".to_vec(),
        ..ExecRequest::default()
    };
    let Response::Exec(result) = call(&mut agent, &mut decoder, 4, Request::Exec(failing)) else {
        panic!("exec failed")
    };
    assert_eq!(
        (result.exit_code, &result.stdout[..], &result.stderr[..]),
        (Some(7), &b"piped\n"[..], &b"oops\n"[..])
    );

    // A snapshot clone's identity: entropy, clock, hostname, machine id.
    let identity = IdentityRequest {
        entropy: vec![0x5a; 64],
        unix_time_ns: Some(1_893_456_000_000_000_000), // 2030-01-01T00:00:00Z
        hostname: Some("clone-7".into()),
        machine_id: Some("0123456789abcdef0123456789abcdef".into()),
    };
    let Response::Identity(applied) = call(&mut agent, &mut decoder, 6, Request::SetIdentity(identity))
    else {
        panic!("identity not applied")
    };
    assert_eq!(applied.entropy_bytes, 64);
    assert!(applied.clock_set && applied.hostname_set && applied.machine_id_set);
    let script = "hostname; cat /etc/machine-id; date -u +%Y";
    let check = ExecRequest { argv: vec!["sh".into(), "-c".into(), script.into()], ..ExecRequest::default() };
    let Response::Exec(result) = call(&mut agent, &mut decoder, 7, Request::Exec(check)) else {
        panic!("exec failed")
    };
    assert_eq!(String::from_utf8_lossy(&result.stdout), "clone-7\n0123456789abcdef0123456789abcdef\n2030\n");

    // The host goes away and comes back: the agent keeps serving on the same port.
    drop(agent);
    std::thread::sleep(Duration::from_millis(300));
    let mut agent = connect(&agent_sock, deadline);
    let mut decoder = FrameDecoder::new();
    assert!(matches!(call(&mut agent, &mut decoder, 5, Request::Ping), Response::Pong(_)));

    console.write_all(b"echo hel''lo\n").unwrap();
    read_until(&mut console, "hello", deadline);
    let script = "dmesg | grep -m1 'Run .init'; cat /proc/uptime";
    let timing =
        ExecRequest { argv: vec!["sh".into(), "-c".into(), script.into()], ..ExecRequest::default() };
    if let Response::Exec(result) = call(&mut agent, &mut decoder, 8, Request::Exec(timing)) {
        eprintln!("guest clock (kernel log, uptime):\n{}", String::from_utf8_lossy(&result.stdout));
    }
    eprintln!(
        "boot to ready {ready_after:?}, ping round trip {ping_rtt:?}, exec `uname -r` round trip {exec_rtt:?}"
    );
}
