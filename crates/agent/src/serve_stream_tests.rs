//! The agent's streams driven through a Unix socket pair: file and archive transfers, attached
//! processes, terminals and background processes, on real files and processes of the test machine.

use super::tests::{Client, eventually, not_running, spawn_sh};
use super::*;
use firepit_agent::{
    Channel, Credit, InputChunk, ProcessOutputRequest, ProcessRef, PtyRequest, ReadFileRequest,
    STREAM_WINDOW, SpawnRequest, StartProcessRequest, WaitProcessRequest, WindowSize, WriteFileRequest,
};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn file_written_in_credited_chunks_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/data.bin").to_string_lossy().into_owned();
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut client = Client::start();
    let write =
        WriteFileRequest { path: path.clone(), mode: Some(0o600), create_parents: true, append: false };
    client.send(1, Request::WriteFile(write));
    let (mut credit, mut sent) = (STREAM_WINDOW as usize, 0);
    while sent < data.len() {
        while credit == 0 {
            match client.recv().response {
                Response::Credit(n) => credit += n as usize,
                other => panic!("expected credit, got {other:?}"),
            }
        }
        let n = credit.min(firepit_agent::MAX_CHUNK).min(data.len() - sent);
        client.send(1, Request::Input(InputChunk { bytes: data[sent..sent + n].to_vec(), eof: false }));
        (sent, credit) = (sent + n, credit - n);
    }
    client.send(1, Request::Input(InputChunk { bytes: Vec::new(), eof: true }));
    let (_, _, events) = client.drain(1);
    assert_eq!(events, [Response::Done(firepit_agent::Done { bytes: data.len() as u64 })]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    client.send(2, Request::ReadFile(ReadFileRequest { path, offset: 0, limit: None }));
    let (out, _, events) = client.drain(2);
    assert!(matches!(&events[0], Response::Opened(stat) if stat.size == data.len() as u64), "{events:?}");
    assert_eq!(events[1], Response::Done(firepit_agent::Done { bytes: data.len() as u64 }));
    assert!(out == data, "read back {} bytes that differ", out.len());
}

#[test]
fn input_beyond_the_credit_fails_the_stream() {
    let mut client = Client::start();
    // Stdin of a process that never reads it: the agent cannot consume, the host must wait.
    let argv = vec!["sleep".into(), "5".into()];
    client.send(2, Request::Spawn(SpawnRequest { argv, stdin: true, ..SpawnRequest::default() }));
    let chunk = vec![0u8; firepit_agent::MAX_CHUNK];
    for _ in 0..(STREAM_WINDOW as usize / chunk.len()) * 3 {
        client.send(2, Request::Input(InputChunk { bytes: chunk.clone(), eof: false }));
    }
    let mut failed = None;
    while failed.is_none() {
        let frame = client.recv();
        if frame.id == 2
            && let Response::Failed(failure) = frame.response
        {
            failed = Some(failure);
        }
    }
    assert_eq!(failed.unwrap().kind, FailureKind::Protocol);
}

#[test]
fn output_nobody_credits_pauses_the_producer_and_cancel_kills_it() {
    let mut client = Client::start();
    client.send(1, spawn_sh("exec yes", 0));
    let Response::Started(started) = client.recv().response else { panic!("expected Started") };
    let mut received = 0usize;
    while let Some(frame) = client.try_recv(Duration::from_millis(500)) {
        if let Response::Output(chunk) = frame.response {
            received += chunk.bytes.len();
        }
    }
    assert_eq!(received, STREAM_WINDOW as usize, "the agent sent beyond its credit or stopped short");
    client.send(1, Request::Cancel);
    let (_, _, events) = client.drain(1);
    assert!(matches!(&events[..], [Response::Failed(f)] if f.kind == FailureKind::Cancelled), "{events:?}");
    eventually("yes to die", || not_running(started.pid));
}

#[test]
fn spawn_streams_the_first_line_before_the_exit_and_reports_the_status() {
    let mut client = Client::start();
    let started = Instant::now();
    client.send(1, spawn_sh("echo first; sleep 1; echo second >&2; exit 4", 0));
    assert!(matches!(client.recv().response, Response::Started(_)));
    let Response::Output(chunk) = client.recv().response else { panic!("expected output") };
    assert_eq!(chunk.bytes, b"first\n");
    assert!(started.elapsed() < Duration::from_millis(900), "first line came late: {:?}", started.elapsed());
    client.send(1, Request::Credit(Credit { channel: Channel::Stdout, bytes: 6 }));
    let (_, err, events) = client.drain(1);
    assert_eq!(err, b"second\n");
    let Some(Response::Exited(status)) = events.last() else { panic!("{events:?}") };
    assert_eq!((status.exit_code, status.timed_out), (Some(4), false));
}

#[test]
fn spawn_timeout_kills_the_whole_group_before_reporting() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild");
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let mut client = Client::start();
    client.send(1, spawn_sh(&script, 300));
    let (_, _, events) = client.drain(1);
    let Some(Response::Exited(status)) = events.last() else { panic!("{events:?}") };
    assert!(status.timed_out && status.signal == Some(libc::SIGKILL), "{status:?}");
    let grandchild: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    eventually("the grandchild to die", || not_running(grandchild));
}

#[test]
fn pty_reports_its_size_after_a_resize_and_the_exit_status() {
    let mut client = Client::start();
    let size = WindowSize { rows: 10, cols: 40 };
    client.send(1, Request::Pty(PtyRequest { argv: vec!["/bin/sh".into()], size, ..PtyRequest::default() }));
    assert!(matches!(client.recv().response, Response::Started(_)));
    client.send(1, Request::Resize(WindowSize { rows: 33, cols: 101 }));
    thread::sleep(Duration::from_millis(100));
    client.send(1, Request::Input(InputChunk { bytes: b"stty size; exit 3\n".to_vec(), eof: false }));
    let (out, _, events) = client.drain(1);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("33 101"), "{text:?}");
    let Some(Response::Exited(status)) = events.last() else { panic!("{events:?}") };
    assert_eq!(status.exit_code, Some(3));
}

#[test]
fn background_process_outlives_its_session_and_ends_on_sigterm() {
    let (host, guest) = UnixStream::pair().unwrap();
    let processes: Arc<ProcessTable> = Arc::default();
    let agent = Agent::new(guest.try_clone().unwrap(), processes.clone());
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || done_tx.send(serve_connection(guest, &agent)));
    let mut client = Client { stream: host, decoder: FrameDecoder::new() };
    let start = StartProcessRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), "echo one; echo two; exec sleep 30".into()],
        tag: Some("sleeper".into()),
        ..StartProcessRequest::default()
    };
    client.send(1, Request::StartProcess(start));
    let Response::Process(info) = client.recv().response else { panic!("expected Process") };
    // The host goes away: the session ends, the process does not.
    drop(client);
    assert!(matches!(done_rx.recv().unwrap(), ConnectionEnd::Eof));
    let mut client = Client::start_with(processes);
    let read = ProcessOutputRequest {
        process: ProcessRef::Tag("sleeper".into()),
        channel: Channel::Stdout,
        offset: 4,
        max_bytes: 0,
        wait_ms: 5000,
    };
    client.send(2, Request::ProcessOutput(read));
    let Response::ProcessOutput(output) = client.recv().response else { panic!("expected output") };
    assert_eq!((output.offset, output.bytes.as_slice(), output.missed), (4, &b"two\n"[..], 0));
    client.send(3, Request::ListProcesses);
    let Response::Processes(list) = client.recv().response else { panic!("expected list") };
    assert!(list.iter().any(|p| p.id == info.id && p.exit.is_none()), "{list:?}");
    let signal =
        firepit_agent::SignalProcessRequest { process: ProcessRef::Id(info.id), signal: libc::SIGTERM };
    client.send(4, Request::SignalProcess(signal));
    assert_eq!(client.recv().response, Response::Ok);
    let wait = WaitProcessRequest { process: ProcessRef::Id(info.id), timeout_ms: 5000 };
    client.send(5, Request::WaitProcess(wait));
    let Response::Process(info) = client.recv().response else { panic!("expected Process") };
    assert_eq!(info.exit.and_then(|e| e.signal), Some(libc::SIGTERM));
}

#[test]
fn reading_a_directory_or_a_relative_path_fails_clearly() {
    let mut client = Client::start();
    client.send(1, Request::ReadFile(ReadFileRequest { path: "/".into(), ..ReadFileRequest::default() }));
    let (_, _, events) = client.drain(1);
    assert!(
        matches!(&events[..], [Response::Failed(f)] if f.kind == FailureKind::IsADirectory),
        "{events:?}"
    );
    client.send(
        2,
        Request::ReadFile(ReadFileRequest { path: "etc/passwd".into(), ..ReadFileRequest::default() }),
    );
    let (_, _, events) = client.drain(2);
    assert!(
        matches!(&events[..], [Response::Failed(f)] if f.kind == FailureKind::InvalidInput),
        "{events:?}"
    );
}

#[test]
fn tar_upload_then_download_keeps_files_modes_and_symlinks() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut archive = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        header.set_cksum();
        archive.append_data(&mut header, name, data).unwrap();
    };
    add("bin", tar::EntryType::Directory, 0o755, b"", None);
    add("bin/tool", tar::EntryType::Regular, 0o750, b"#!/bin/sh\necho tool\n", None);
    add("link", tar::EntryType::Symlink, 0o777, b"", Some("bin/tool"));
    let bytes = archive.into_inner().unwrap();
    let dest = dir.path().join("up").to_string_lossy().into_owned();

    let mut client = Client::start();
    client.send(1, Request::UploadTar(firepit_agent::UploadTarRequest { path: dest.clone() }));
    for piece in bytes.chunks(4096) {
        client.send(1, Request::Input(InputChunk { bytes: piece.to_vec(), eof: false }));
    }
    client.send(1, Request::Input(InputChunk { bytes: Vec::new(), eof: true }));
    let (_, _, events) = client.drain(1);
    assert_eq!(events, [Response::Done(firepit_agent::Done { bytes: bytes.len() as u64 })]);
    let tool = std::fs::metadata(format!("{dest}/bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o777, 0o750);
    assert_eq!(std::fs::read_link(format!("{dest}/link")).unwrap().to_str(), Some("bin/tool"));

    client.send(2, Request::DownloadTar(firepit_agent::DownloadTarRequest { path: dest }));
    let (out, _, events) = client.drain(2);
    assert!(matches!(events.last(), Some(Response::Done(_))), "{events:?}");
    let mut names = Vec::new();
    for entry in tar::Archive::new(out.as_slice()).entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        names.push((entry.path().unwrap().to_string_lossy().into_owned(), header.mode().unwrap() & 0o777));
    }
    assert_eq!(names, [("bin".into(), 0o755), ("bin/tool".into(), 0o750), ("link".into(), 0o777)]);
}

#[test]
fn tar_entries_escaping_the_destination_are_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(3);
    header.set_mode(0o644);
    // `append_data` refuses `..`; write the name into the header directly, as a hostile archive would.
    header.as_old_mut().name[..13].copy_from_slice(b"../escaped.tx");
    header.set_cksum();
    archive.append(&header, &b"bad"[..]).unwrap();
    let bytes = archive.into_inner().unwrap();
    let dest = dir.path().join("d");
    let mut client = Client::start();
    client
        .send(1, Request::UploadTar(firepit_agent::UploadTarRequest { path: dest.to_string_lossy().into() }));
    client.send(1, Request::Input(InputChunk { bytes, eof: true }));
    let _ = client.drain(1);
    assert!(!dir.path().join("escaped.tx").exists(), "an entry escaped the destination");
}
