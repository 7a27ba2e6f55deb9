//! A VM's migration stream to and from a file, hashed on the way.
//!
//! Saving: QEMU writes the stream (`fd:` migration) into a pipe whose other end a blocking task
//! reads, hashes (SHA-256) and writes to the file, so the hash costs no extra pass over the data.
//! Loading: QEMU reads the file itself (`fd:` incoming migration) while a blocking task hashes it;
//! a hash that differs from the manifest's fails the load as soon as it is known (QEMU 7.2 may wait
//! forever on a damaged stream instead of failing), and the caller kills that QEMU. The VM never
//! runs (`cont`) before both are done.
//!
//! QEMU's default migration bandwidth cap (128 MiB/s) is for live migration over a network; a
//! stopped VM written to a local file is lifted to [`MAX_BANDWIDTH`]. Zero pages take a few bytes
//! each in the stream, so the file holds about the memory the guest has touched.

use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::manifest::FileSum;
use crate::error::QemuError;
use crate::lifecycle_error::LifecycleError;
use crate::qmp::QmpClient;

/// The bandwidth a save may use, bytes per second (as good as unlimited: the disk sets the pace).
const MAX_BANDWIDTH: u64 = 1 << 40;
/// The name the stream's descriptor has in QEMU (`getfd`).
const OUT_FD: &str = "firepit-save";
const IN_FD: &str = "firepit-load";
/// Read and write size of the copying task.
const CHUNK: usize = 1 << 20;

/// Writes the stopped VM's migration stream into a new file at `path` (0600, must not exist),
/// hashing it; `deadline` bounds the migration. Returns the file's size and SHA-256.
pub(crate) async fn save(
    qmp: &QmpClient,
    path: &Path,
    deadline: Instant,
) -> Result<(u64, String), QemuError> {
    save_with(qmp, path, deadline, false).await
}

/// [`save`], with `x-ignore-shared` as `ignore_shared` says (on: RAM in a shared file is left
/// out, for a template's device state).
pub(crate) async fn save_with(
    qmp: &QmpClient,
    path: &Path,
    deadline: Instant,
    ignore_shared: bool,
) -> Result<(u64, String), QemuError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| LifecycleError::io(format!("creating {}", path.display()), e))?;
    let (read_end, write_end) = pipe()?;
    // A VM restored from a template has `x-ignore-shared` on; a stream for anyone must not skip RAM.
    qmp.migrate_set_capabilities(&[("x-ignore-shared", ignore_shared)]).await?;
    qmp.migrate_set_parameters(serde_json::json!({ "max-bandwidth": MAX_BANDWIDTH })).await?;
    qmp.add_fd(OUT_FD, write_end.as_fd()).await?;
    drop(write_end);
    let target = path.to_path_buf();
    let copier =
        tokio::task::spawn_blocking(move || copy_hashing(std::fs::File::from(read_end), file, &target));
    let migrated = async {
        qmp.migrate(&format!("fd:{OUT_FD}")).await.inspect_err(|_| release(qmp, OUT_FD))?;
        crate::snapshot::restore::wait_migration(qmp, "out", deadline).await
    };
    let migrated = migrated.await;
    if migrated.is_err() {
        // QEMU closes the stream's descriptor when a migration ends, failed or not; make sure.
        release(qmp, OUT_FD);
    }
    let copied =
        copier.await.map_err(|source| LifecycleError::Task { what: "writing the VM's state", source })?;
    migrated?;
    Ok(copied?)
}

/// Loads the migration stream `file` of `dir` into a QEMU started with `-incoming defer`, checking
/// its SHA-256 while QEMU reads it; `deadline` bounds the load.
pub(crate) async fn load(
    qmp: &QmpClient,
    dir: &Path,
    file: &FileSum,
    deadline: Instant,
) -> Result<(), QemuError> {
    let path = super::manifest::check_size(dir, file)?;
    let stream = std::fs::File::open(&path)
        .map_err(|e| LifecycleError::io(format!("opening {}", path.display()), e))?;
    qmp.add_fd(IN_FD, stream.as_fd()).await?;
    drop(stream);
    let hashed = path.clone();
    let mut hasher = tokio::task::spawn_blocking(move || crate::snapshot::store::file_sha256(&hashed));
    let migration = async {
        qmp.migrate_incoming(&format!("fd:{IN_FD}")).await.inspect_err(|_| release(qmp, IN_FD))?;
        crate::snapshot::restore::wait_migration(qmp, "in", deadline).await
    };
    tokio::pin!(migration);
    let check =
        |hash: Result<std::io::Result<(u64, String)>, tokio::task::JoinError>| -> Result<(), QemuError> {
            let (_, sha256) = hash
                .map_err(|source| LifecycleError::Task { what: "hashing the VM's state", source })?
                .map_err(|e| LifecycleError::io(format!("reading {}", path.display()), e))?;
            Ok(super::manifest::check_sum(dir, file, &sha256)?)
        };
    tokio::select! {
        hash = &mut hasher => {
            check(hash)?;
            migration.await
        }
        loaded = &mut migration => {
            loaded?;
            check(hasher.await)
        }
    }
}

/// Streams the stopped VM of `from` straight into the QEMU of `to` (started with `-incoming
/// defer`) through a pipe: no file in between, the two migrations run at once. `deadline` bounds
/// both. Nothing is hashed: the stream never rests anywhere.
pub(crate) async fn pipe_between(
    from: &QmpClient,
    to: &QmpClient,
    deadline: Instant,
) -> Result<(), QemuError> {
    let (read_end, write_end) = pipe()?;
    from.migrate_set_capabilities(&[("x-ignore-shared", false)]).await?;
    from.migrate_set_parameters(serde_json::json!({ "max-bandwidth": MAX_BANDWIDTH })).await?;
    to.add_fd(IN_FD, read_end.as_fd()).await?;
    drop(read_end);
    from.add_fd(OUT_FD, write_end.as_fd()).await.inspect_err(|_| release(to, IN_FD))?;
    drop(write_end);
    let incoming = async {
        to.migrate_incoming(&format!("fd:{IN_FD}")).await.inspect_err(|_| release(to, IN_FD))?;
        crate::snapshot::restore::wait_migration(to, "in", deadline).await
    };
    let outgoing = async {
        from.migrate(&format!("fd:{OUT_FD}")).await.inspect_err(|_| release(from, OUT_FD))?;
        crate::snapshot::restore::wait_migration(from, "out", deadline).await
    };
    // Both run to their end: when one side fails, QEMU closes its end of the pipe and the other
    // side fails too (end of file, or a broken pipe) rather than waiting.
    let (loaded, sent) = tokio::join!(incoming, outgoing);
    if sent.is_err() {
        release(from, OUT_FD);
    }
    sent?;
    loaded
}

/// Asks QEMU to close the descriptor `name` if it still holds it (a migration that never started).
fn release(qmp: &QmpClient, name: &'static str) {
    let qmp = qmp.clone();
    tokio::spawn(async move {
        let closed = qmp.execute("closefd", Some(serde_json::json!({ "fdname": name }))).await;
        tracing::debug!(fd = name, ?closed, "QEMU's stream descriptor released");
    });
}

/// A pipe (both ends close-on-exec), as large as the kernel lets us have it.
fn pipe() -> Result<(OwnedFd, OwnedFd), LifecycleError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(LifecycleError::io("making a pipe for the VM's state", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and ours alone.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Best effort: a bigger pipe means fewer wake-ups; the default 64 KiB works too.
    // SAFETY: F_SETPIPE_SZ on an open pipe descriptor has no memory-safety preconditions.
    let _ = unsafe { libc::fcntl(fds[0], libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
    Ok((read_end, write_end))
}

/// Copies `from` to `to` until end of file, hashing; returns the size and SHA-256 (hex).
fn copy_hashing(
    mut from: std::fs::File,
    mut to: std::fs::File,
    target: &Path,
) -> Result<(u64, String), LifecycleError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LifecycleError::io("reading the VM's state from QEMU", e)),
        };
        hasher.update(&buffer[..n]);
        to.write_all(&buffer[..n])
            .map_err(|e| LifecycleError::io(format!("writing {}", target.display()), e))?;
        total += n as u64;
    }
    Ok((total, crate::snapshot::store::hex(&hasher.finalize())))
}

/// How long saving or loading a VM of `memory_mb` may take: 30 s, plus 10 s per GiB of guest
/// memory (measured: ≈0.15 s per GiB here; the margin is for a slow disk and a loaded host).
pub(crate) fn deadline(memory_mb: u64) -> Instant {
    Instant::now() + Duration::from_secs(30 + 10 * memory_mb.div_ceil(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_copy_hashes_what_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (read_end, write_end) = pipe().unwrap();
        let writer = std::thread::spawn(move || {
            let mut write_end = std::fs::File::from(write_end);
            write_end.write_all(&vec![7u8; 3 * CHUNK + 5]).unwrap();
        });
        let target = dir.path().join("state.bin");
        let file = std::fs::File::create(&target).unwrap();
        let (bytes, sha256) = copy_hashing(std::fs::File::from(read_end), file, &target).unwrap();
        writer.join().unwrap();
        assert_eq!(bytes, 3 * CHUNK as u64 + 5);
        assert_eq!(crate::snapshot::store::file_sha256(&target).unwrap(), (bytes, sha256));
    }
}
