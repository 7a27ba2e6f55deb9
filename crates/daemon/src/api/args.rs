//! Checks shared by every endpoint that starts a program (exec, streamed exec, background
//! processes, the PTY): argv, environment, timeout and stdin, each failing with its own code.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use firepit_api::{Encoding, Program, Stdin};

use super::error::{ApiError, ErrorCode};

/// Longest timeout a client may give a command.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// `bad_argv` unless `argv` names a program and has no NUL bytes.
pub fn check_argv(argv: &[String]) -> Result<(), ApiError> {
    let bad_argv = |m: &str| ApiError::new(ErrorCode::BadArgv, m.to_owned());
    match argv.first() {
        None => return Err(bad_argv("argv must name a program: it has no elements")),
        Some(program) if program.is_empty() => {
            return Err(bad_argv("argv[0] is empty: it must name a program"));
        }
        Some(_) => {}
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(bad_argv("argv elements must not contain NUL bytes"));
    }
    Ok(())
}

/// `bad_env` unless every name is non-empty without `=` and nothing has a NUL byte; the pairs.
pub fn check_env(env: BTreeMap<String, String>) -> Result<Vec<(String, String)>, ApiError> {
    for (name, value) in &env {
        if name.is_empty() || name.contains('=') || name.contains('\0') || value.contains('\0') {
            return Err(ApiError::new(
                ErrorCode::BadEnv,
                format!("env `{name}`: names must be non-empty without `=`, names and values without NUL"),
            ));
        }
    }
    Ok(env.into_iter().collect())
}

/// `bad_cwd` unless a working directory, if given, is an absolute path without NUL bytes.
pub fn check_cwd(cwd: Option<&str>) -> Result<(), ApiError> {
    let Some(cwd) = cwd else { return Ok(()) };
    let why = if cwd.contains('\0') {
        "must not contain NUL bytes"
    } else if !cwd.starts_with('/') {
        "must be an absolute path (start with /)"
    } else {
        return Ok(());
    };
    Err(ApiError::new(ErrorCode::BadCwd, format!("cwd {cwd:?}: {why}")))
}

/// A [`Program`] that passed [`check_program`], in the form the agent's requests take.
pub struct CheckedProgram {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment, as pairs.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<String>,
}

/// `bad_argv` / `bad_env` / `bad_cwd` unless the program passes [`check_argv`], [`check_env`]
/// and [`check_cwd`].
pub fn check_program(program: Program) -> Result<CheckedProgram, ApiError> {
    check_argv(&program.argv)?;
    let env = check_env(program.env)?;
    check_cwd(program.cwd.as_deref())?;
    Ok(CheckedProgram { argv: program.argv, env, cwd: program.cwd })
}

/// `bad_request` when a timeout exceeds [`MAX_TIMEOUT_MS`].
pub fn check_timeout(timeout_ms: u64) -> Result<(), ApiError> {
    if timeout_ms > MAX_TIMEOUT_MS {
        return Err(ApiError::bad_request(format!(
            "timeout_ms = {timeout_ms}: must be at most {MAX_TIMEOUT_MS}"
        )));
    }
    Ok(())
}

/// The bytes of a body's stdin (`bad_stdin` for invalid base64).
pub fn decode_stdin(input: Stdin) -> Result<Vec<u8>, ApiError> {
    match input.stdin_encoding {
        Encoding::Utf8 => Ok(input.stdin.into_bytes()),
        Encoding::Base64 => BASE64
            .decode(input.stdin.as_bytes())
            .map_err(|e| ApiError::new(ErrorCode::BadStdin, format!("stdin is not valid base64: {e}"))),
    }
}
