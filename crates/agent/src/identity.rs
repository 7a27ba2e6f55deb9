//! Gives a restored snapshot clone its own identity: fresh entropy, the host's clock, a hostname
//! and a machine id. Every clone of one template starts with the template's RNG state and clock,
//! so the host sends this before handing a clone out.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use firepit_agent::{IdentityApplied, IdentityRequest};

/// `RNDADDENTROPY` = `_IOW('R', 0x03, int[2])` from `<linux/random.h>`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG` = `_IO('R', 0x07)`: reseed the CRNG now, so a restored clone stops producing the
/// template's random stream at once instead of at the next scheduled reseed.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
/// Most entropy bytes accepted in one request (the kernel caps a single ioctl far above this).
const MAX_ENTROPY: usize = 4096;

/// Why part of an identity could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The machine id is not 32 lowercase hex digits.
    #[error("machine id {0:?} is not 32 hex digits")]
    BadMachineId(String),
    /// The hostname is empty, too long or has a NUL byte.
    #[error("hostname {0:?} is invalid (1..=64 bytes, no NUL)")]
    BadHostname(String),
    /// More entropy than [`MAX_ENTROPY`] bytes.
    #[error("{0} entropy bytes exceed the limit of {MAX_ENTROPY}")]
    TooMuchEntropy(usize),
    /// A system call or file write failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> IdentityError {
    move |source| IdentityError::Os { what, source }
}

/// Checks the whole request before anything is changed, so a bad request changes nothing.
pub fn validate(request: &IdentityRequest) -> Result<(), IdentityError> {
    if let Some(id) = &request.machine_id
        && (id.len() != 32 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return Err(IdentityError::BadMachineId(id.clone()));
    }
    if let Some(name) = &request.hostname
        && (name.is_empty() || name.len() > 64 || name.contains('\0'))
    {
        return Err(IdentityError::BadHostname(name.clone()));
    }
    if request.entropy.len() > MAX_ENTROPY {
        return Err(IdentityError::TooMuchEntropy(request.entropy.len()));
    }
    Ok(())
}

/// Validates then applies `request` to the running system (needs root: it is the guest's init's child).
pub fn apply(request: &IdentityRequest) -> Result<IdentityApplied, IdentityError> {
    validate(request)?;
    let mut applied = IdentityApplied::default();
    if !request.entropy.is_empty() {
        add_entropy(&request.entropy)?;
        applied.entropy_bytes = u32::try_from(request.entropy.len()).unwrap_or(u32::MAX);
    }
    if let Some(ns) = request.unix_time_ns {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(ns / 1_000_000_000).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::try_from(ns % 1_000_000_000).unwrap_or(0),
        };
        // SAFETY: `ts` is a valid timespec for the duration of the call.
        if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
            return Err(os("clock_settime")(std::io::Error::last_os_error()));
        }
        applied.clock_set = true;
    }
    if let Some(name) = &request.hostname {
        // SAFETY: pointer and length describe `name`'s bytes, valid for the call.
        if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
            return Err(os("sethostname")(std::io::Error::last_os_error()));
        }
        // Best effort: /etc may be read-only in some images; the kernel hostname is what counts.
        let _etc_hostname_is_cosmetic = std::fs::write("/etc/hostname", format!("{name}\n"));
        applied.hostname_set = true;
    }
    if let Some(id) = &request.machine_id {
        write_file(Path::new("/etc/machine-id"), format!("{id}\n").as_bytes())
            .map_err(os("writing /etc/machine-id"))?;
        applied.machine_id_set = true;
    }
    Ok(applied)
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    OpenOptions::new().write(true).create(true).truncate(true).open(path)?.write_all(bytes)
}

/// Credits `bytes` to the kernel pool (RNDADDENTROPY), also mixes them in through /dev/urandom, then
/// forces a CRNG reseed (RNDRESEEDCRNG).
fn add_entropy(bytes: &[u8]) -> Result<(), IdentityError> {
    let mut urandom =
        OpenOptions::new().write(true).open("/dev/urandom").map_err(os("opening /dev/urandom"))?;
    urandom.write_all(bytes).map_err(os("writing /dev/urandom"))?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let words = bytes.len().div_ceil(4);
    let mut info = vec![0u32; 2 + words];
    let bits = i32::try_from(bytes.len() * 8).map_err(|_| IdentityError::TooMuchEntropy(bytes.len()))?;
    let size = i32::try_from(bytes.len()).map_err(|_| IdentityError::TooMuchEntropy(bytes.len()))?;
    info[0] = bits.cast_unsigned();
    info[1] = size.cast_unsigned();
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        info[2 + i] = u32::from_ne_bytes(word);
    }
    use std::os::fd::AsRawFd;
    // SAFETY: `info` is a properly laid out rand_pool_info with `size` bytes of buffer after the header.
    let rc = unsafe { libc::ioctl(urandom.as_raw_fd(), RNDADDENTROPY as _, info.as_ptr()) };
    if rc != 0 {
        return Err(os("ioctl RNDADDENTROPY")(std::io::Error::last_os_error()));
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    if unsafe { libc::ioctl(urandom.as_raw_fd(), RNDRESEEDCRNG as _) } != 0 {
        return Err(os("ioctl RNDRESEEDCRNG")(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_identity_changes_nothing() {
        assert_eq!(apply(&IdentityRequest::default()).unwrap(), IdentityApplied::default());
    }

    #[test]
    fn invalid_identity_is_rejected_before_anything_changes() {
        let bad_id = IdentityRequest { machine_id: Some("xyz".into()), ..IdentityRequest::default() };
        assert!(matches!(apply(&bad_id), Err(IdentityError::BadMachineId(_))));
        let bad_host = IdentityRequest { hostname: Some(String::new()), ..IdentityRequest::default() };
        assert!(matches!(apply(&bad_host), Err(IdentityError::BadHostname(_))));
        let too_much = IdentityRequest { entropy: vec![0; MAX_ENTROPY + 1], ..IdentityRequest::default() };
        assert!(matches!(apply(&too_much), Err(IdentityError::TooMuchEntropy(_))));
        let good = IdentityRequest {
            machine_id: Some("0123456789abcdef0123456789abcdef".into()),
            ..Default::default()
        };
        assert!(validate(&good).is_ok());
    }
}
