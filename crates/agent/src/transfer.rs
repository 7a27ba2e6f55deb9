//! Streamed transfers: files in and out, directories in and out as tar archives.
//!
//! Nothing is held whole in memory: input is written as it arrives (and credited once written),
//! output is read only as far as the host has credited. A failure mid-transfer ends the stream with
//! [`Response::Failed`]. Uploads become visible only once complete (see [`replace`](crate::replace)
//! for files, [`unpack`](crate::unpack) for archives): one that fails leaves what it would have
//! replaced as it was.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use firepit_agent::{
    Channel, ChunkWriter, Done, DownloadTarRequest, Failure, FailureKind, MAX_CHUNK, ReadFileRequest,
    Response, UploadTarRequest, WriteFileRequest,
};

use crate::failure::{self, absolute};
use crate::replace;
use crate::unpack::{UnpackLimits, unpack_archive};
use crate::files::file_stat;
use crate::stream::{Stream, StreamHandle};

/// Ends `handle`'s stream with `Done` or the failure.
fn conclude(handle: StreamHandle, result: Result<u64, Failure>) {
    match result {
        Ok(bytes) => handle.finish(Response::Done(Done { bytes })),
        Err(failure) => handle.fail(failure),
    }
}

/// The failure of a stream stopped by the host or a protocol violation.
fn stopped(stream: &Stream) -> Failure {
    stream.cancel_reason().unwrap_or_else(|| Failure::new(FailureKind::Cancelled, "cancelled by the host"))
}

/// [`WriteFileRequest`]: writes the stream's input to the file (call on a thread of its own).
pub fn write_file(handle: StreamHandle, request: WriteFileRequest) {
    let result = write_file_inner(&handle, &request);
    conclude(handle, result);
}

fn write_file_inner(stream: &Stream, request: &WriteFileRequest) -> Result<u64, Failure> {
    let path = absolute(&request.path)?;
    let what = || format!("write {}", path.display());
    if request.create_parents
        && let Some(parent) = path.parent()
    {
        fs::create_dir_all(parent).map_err(|e| failure::io(format!("create {}", parent.display()), &e))?;
    }
    let target = replace::follow_links(path).map_err(|e| failure::io(what(), &e))?;
    let existing = match fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => {
            let message = format!("write {}: is a directory", path.display());
            return Err(Failure::new(FailureKind::IsADirectory, message));
        }
        Ok(meta) => Some(meta),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(failure::io(what(), &error)),
    };
    let dir = target.parent().unwrap_or(Path::new("/"));
    if request.append {
        let mut append = replace::Append::open(&target, request.mode.unwrap_or(0o644))
            .map_err(|e| failure::io(what(), &e))?;
        set_mode(append.file(), request.mode).map_err(|e| failure::io(what(), &e))?;
        let total = copy_input(stream, append.file(), what)?;
        append.keep();
        return Ok(total);
    }
    let in_place = existing.as_ref().is_some_and(|meta| !meta.is_file()) || replace::is_kernel_fs(dir);
    if in_place {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(request.mode.unwrap_or(0o644) & 0o7777)
            .open(&target)
            .map_err(|e| failure::io(what(), &e))?;
        set_mode(&file, request.mode).map_err(|e| failure::io(what(), &e))?;
        return copy_input(stream, &mut file, what);
    }
    let (old_mode, owner) = match &existing {
        Some(meta) => {
            let (mode, owner) = replace::kept_attributes(meta);
            (mode, Some(owner))
        }
        None => (0o644, None),
    };
    let mut temporary = replace::Temporary::create(dir).map_err(|e| failure::io(what(), &e))?;
    let total = copy_input(stream, temporary.file(), what)?;
    temporary.commit(&target, request.mode.unwrap_or(old_mode), owner).map_err(|e| failure::io(what(), &e))?;
    Ok(total)
}

/// Sets the permission bits the request names, if any (the umask does not apply to them).
fn set_mode(file: &File, mode: Option<u32>) -> io::Result<()> {
    match mode {
        Some(mode) => file.set_permissions(fs::Permissions::from_mode(mode & 0o7777)),
        None => Ok(()),
    }
}

/// Writes the stream's input into `file` until its end-of-file; the bytes written.
fn copy_input(stream: &Stream, file: &mut File, what: impl Fn() -> String) -> Result<u64, Failure> {
    let mut total = 0u64;
    loop {
        match stream.next_input() {
            Ok(Some(chunk)) => {
                file.write_all(&chunk).map_err(|e| failure::io(what(), &e))?;
                total += chunk.len() as u64;
                stream.grant_input(chunk.len());
            }
            Ok(None) => return Ok(total),
            Err(_) => return Err(stopped(stream)),
        }
    }
}

/// [`ReadFileRequest`]: streams the file out (call on a thread of its own).
pub fn read_file(handle: StreamHandle, request: ReadFileRequest) {
    let result = read_file_inner(&handle, &request);
    conclude(handle, result);
}

fn read_file_inner(stream: &Stream, request: &ReadFileRequest) -> Result<u64, Failure> {
    let path = absolute(&request.path)?;
    let what = || format!("read {}", path.display());
    let mut file = File::open(path).map_err(|e| failure::io(what(), &e))?;
    let meta = file.metadata().map_err(|e| failure::io(what(), &e))?;
    if meta.is_dir() {
        let message = format!("read {}: is a directory (download it as an archive)", path.display());
        return Err(Failure::new(FailureKind::IsADirectory, message));
    }
    if request.offset > 0 {
        file.seek(SeekFrom::Start(request.offset)).map_err(|e| failure::io(what(), &e))?;
    }
    stream.send(Response::Opened(file_stat(path, &meta)));
    let mut remaining = request.limit.unwrap_or(u64::MAX);
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut total = 0u64;
    loop {
        let credit = stream.wait_credit(Channel::Stdout).map_err(|_| stopped(stream))?;
        let want = credit.min(MAX_CHUNK).min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n =
            if want == 0 { 0 } else { file.read(&mut buf[..want]).map_err(|e| failure::io(what(), &e))? };
        if n == 0 {
            stream.send_output(Channel::Stdout, Vec::new(), true);
            return Ok(total);
        }
        stream.send_output(Channel::Stdout, buf[..n].to_vec(), false);
        total += n as u64;
        remaining -= n as u64;
    }
}

/// Reads the stream's input as one byte stream, crediting each chunk once consumed.
struct InputReader<'a> {
    stream: &'a Stream,
    chunk: Vec<u8>,
    pos: usize,
    total: u64,
}

impl Read for InputReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.chunk.len() {
            match self.stream.next_input() {
                Ok(Some(chunk)) => (self.chunk, self.pos) = (chunk, 0),
                Ok(None) => return Ok(0),
                Err(_) => return Err(io::Error::other("stream stopped")),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        self.total += n as u64;
        if self.pos == self.chunk.len() {
            self.stream.grant_input(self.chunk.len());
        }
        Ok(n)
    }
}

/// [`UploadTarRequest`]: unpacks the stream's input into a directory (call on a thread of its own).
pub fn upload_tar(handle: StreamHandle, request: UploadTarRequest) {
    let result = upload_tar_inner(&handle, &request);
    conclude(handle, result);
}

fn upload_tar_inner(stream: &Stream, request: &UploadTarRequest) -> Result<u64, Failure> {
    let path = absolute(&request.path)?;
    let mut reader = InputReader { stream, chunk: Vec::new(), pos: 0, total: 0 };
    let limits = UnpackLimits::default();
    let unpacked = unpack_archive(&mut reader, path, &limits, &|| stream.is_cancelled());
    if stream.is_cancelled() {
        return Err(stopped(stream));
    }
    unpacked?;
    // The archive's end may come before the input's: consume the rest so the host is not left
    // waiting for credit.
    io::copy(&mut reader, &mut io::sink()).map_err(|_| stopped(stream))?;
    Ok(reader.total)
}

/// Sends `chunk` into the stream's output, in pieces as large as the host's credit allows.
fn send_output(stream: &Stream, mut chunk: Vec<u8>) -> io::Result<()> {
    while !chunk.is_empty() {
        let credit = stream.wait_credit(Channel::Stdout).map_err(|_| io::Error::other("stream stopped"))?;
        let rest = chunk.split_off(credit.min(chunk.len()));
        stream.send_output(Channel::Stdout, std::mem::replace(&mut chunk, rest), false);
    }
    Ok(())
}

/// [`DownloadTarRequest`]: streams a directory (or file) out as a tar archive (call on a thread of
/// its own).
pub fn download_tar(handle: StreamHandle, request: DownloadTarRequest) {
    let result = download_tar_inner(&handle, &request);
    conclude(handle, result);
}

fn download_tar_inner(stream: &Stream, request: &DownloadTarRequest) -> Result<u64, Failure> {
    let path = absolute(&request.path)?;
    let what = || format!("archive {}", path.display());
    let meta = fs::metadata(path).map_err(|e| failure::io(what(), &e))?;
    stream.send(Response::Opened(file_stat(path, &meta)));
    let mut builder = tar::Builder::new(ChunkWriter::new(|chunk| send_output(stream, chunk)));
    builder.follow_symlinks(false);
    let packed = if meta.is_dir() {
        firepit_agent::append_tree(&mut builder, path, Path::new(""))
    } else {
        let name = path.file_name().map(Path::new).unwrap_or(Path::new("file"));
        builder.append_path_with_name(path, name)
    };
    let finished = packed.and_then(|()| builder.into_inner()).and_then(|mut writer| {
        writer.flush()?;
        Ok(writer)
    });
    match finished {
        Ok(writer) => {
            stream.send_output(Channel::Stdout, Vec::new(), true);
            Ok(writer.written())
        }
        Err(_) if stream.is_cancelled() => Err(stopped(stream)),
        Err(error) => Err(failure::io(what(), &error)),
    }
}
