//! Range checks for the config file and for shapes registered at run time (`PUT /v1/shapes`).
//!
//! One function per table; each error names the dotted key, the value and what is allowed.

use std::collections::HashSet;

use crate::backend::{FillStrategy, ShapeSpec};
use crate::config::{Config, ConfigError};

/// Most vCPUs a shape may ask for.
pub const MAX_CPUS: u32 = 64;
/// Guest memory bounds per VM, in MiB.
pub const MEMORY_MB_RANGE: std::ops::RangeInclusive<u64> = 64..=65536;
/// Largest high-water mark per shape.
pub const MAX_DEPTH: usize = 64;
/// Longest lease TTL and VM max age, in seconds (one year): durations are added to the clocks, and
/// an unbounded one would overflow them (a panic at the first lease or eviction).
pub const MAX_DURATION_SECS: u64 = 365 * 24 * 3600;

/// Validates the whole file.
pub fn config(config: &Config) -> Result<(), ConfigError> {
    if config.shapes.is_empty() {
        return Err(ConfigError::invalid("shape", "[]", "at least one [[shape]] table is required"));
    }
    let mut names = HashSet::new();
    let mut peak_memory_mb: u64 = 0;
    for (i, shape) in config.shapes.iter().enumerate() {
        let spec = shape.to_spec();
        shape_spec(&spec, &format!("shape[{i}]"))?;
        if !names.insert(shape.name.as_str()) {
            return Err(ConfigError::invalid(
                format!("shape[{i}].name"),
                format!("{:?}", shape.name),
                "shape names must be unique",
            ));
        }
        peak_memory_mb = peak_memory_mb.saturating_add(spec.memory_mb.saturating_mul(spec.depth_high as u64));
    }
    let limits = &config.limits;
    if limits.memory_budget_mb != 0 && peak_memory_mb > limits.memory_budget_mb {
        return Err(ConfigError::invalid(
            "limits.memory_budget_mb",
            limits.memory_budget_mb,
            format!(
                "must cover every shape at its high water mark (sum of memory_mb * depth.high = {peak_memory_mb} MiB), \
                 or be 0 for no bound"
            ),
        ));
    }
    if !(1..=64).contains(&limits.parallel_fills) {
        return Err(ConfigError::invalid("limits.parallel_fills", limits.parallel_fills, "must be 1..=64"));
    }
    if !(1024..=64 * 1024 * 1024).contains(&limits.max_body_bytes) {
        return Err(ConfigError::invalid(
            "limits.max_body_bytes",
            limits.max_body_bytes,
            "must be 1024..=67108864 (1 KiB to 64 MiB)",
        ));
    }
    let leases = &config.leases;
    if leases.default_ttl_secs == 0 {
        return Err(ConfigError::invalid("leases.default_ttl_secs", 0, "must be at least 1"));
    }
    if leases.max_ttl_secs > MAX_DURATION_SECS {
        return Err(ConfigError::invalid(
            "leases.max_ttl_secs",
            leases.max_ttl_secs,
            format!("must be at most {MAX_DURATION_SECS} (one year)"),
        ));
    }
    if leases.max_ttl_secs < leases.default_ttl_secs {
        return Err(ConfigError::invalid(
            "leases.max_ttl_secs",
            leases.max_ttl_secs,
            format!("must be at least leases.default_ttl_secs ({})", leases.default_ttl_secs),
        ));
    }
    if config.shutdown.budget_secs > 600 {
        return Err(ConfigError::invalid(
            "shutdown.budget_secs",
            config.shutdown.budget_secs,
            "must be 0..=600",
        ));
    }
    if let Some(user) = &config.qemu_user
        && (user.trim().is_empty() || user.contains('\0'))
    {
        return Err(ConfigError::invalid(
            "qemu_user",
            format!("{user:?}"),
            "must be a user name or uid[:gid]",
        ));
    }
    if config.qemu_user.is_some()
        && let Some(shape) = config.shape_specs().iter().find(|s| s.fill == FillStrategy::Snapshot)
    {
        return Err(ConfigError::invalid(
            "shape.fill",
            format!("\"snapshot\" (shape {}, the default)", shape.name),
            "\"cold\" while qemu_user is set: snapshot fill cannot run QEMU as another user yet",
        ));
    }
    if let Some(binary) = &config.qemu_binary
        && binary.as_os_str().is_empty()
    {
        return Err(ConfigError::invalid("qemu_binary", "\"\"", "must be a path or a program name in PATH"));
    }
    listen(config)
}

fn listen(config: &Config) -> Result<(), ConfigError> {
    let listen = &config.listen;
    if let Some(socket) = &listen.socket
        && (!socket.is_absolute() || socket.file_name().is_none())
    {
        return Err(ConfigError::invalid("listen.socket", socket.display(), "must be an absolute file path"));
    }
    match (&listen.tcp, &listen.token_file, &listen.token_env) {
        (Some(addr), None, None) => Err(ConfigError::invalid(
            "listen.tcp",
            addr,
            "TCP needs a bearer token: set listen.token_file or listen.token_env",
        )),
        (_, Some(file), Some(_)) => Err(ConfigError::invalid(
            "listen.token_file",
            file.display(),
            "set either listen.token_file or listen.token_env, not both",
        )),
        (None, Some(file), None) => Err(ConfigError::invalid(
            "listen.token_file",
            file.display(),
            "a token is only used with listen.tcp; set listen.tcp or remove the token",
        )),
        (None, None, Some(var)) => Err(ConfigError::invalid(
            "listen.token_env",
            format!("{var:?}"),
            "a token is only used with listen.tcp; set listen.tcp or remove the token",
        )),
        _ => Ok(()),
    }
}

/// Validates one shape; `key` prefixes the field names in errors (`shape[0]` or `body`).
pub fn shape_spec(spec: &ShapeSpec, key: &str) -> Result<(), ConfigError> {
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 63
        && spec.name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'))
        });
    if !name_ok {
        return Err(ConfigError::invalid(
            format!("{key}.name"),
            format!("{:?}", spec.name),
            "must match [a-z0-9][a-z0-9_-]* and be at most 63 characters",
        ));
    }
    if !spec.image.is_dir() {
        return Err(ConfigError::invalid(
            format!("{key}.image"),
            spec.image.display(),
            "must be an existing image directory (build one with `firepit image build`)",
        ));
    }
    if !(1..=MAX_CPUS).contains(&spec.cpus) {
        return Err(ConfigError::invalid(
            format!("{key}.cpus"),
            spec.cpus,
            format!("must be 1..={MAX_CPUS}"),
        ));
    }
    if !MEMORY_MB_RANGE.contains(&spec.memory_mb) {
        return Err(ConfigError::invalid(
            format!("{key}.memory_mb"),
            spec.memory_mb,
            format!("must be {}..={}", MEMORY_MB_RANGE.start(), MEMORY_MB_RANGE.end()),
        ));
    }
    if !(1..=MAX_DEPTH).contains(&spec.depth_high) {
        return Err(ConfigError::invalid(
            format!("{key}.depth.high"),
            spec.depth_high,
            format!("must be 1..={MAX_DEPTH}"),
        ));
    }
    if spec.depth_low > spec.depth_high {
        return Err(ConfigError::invalid(
            format!("{key}.depth.low"),
            spec.depth_low,
            format!("must be at most depth.high ({})", spec.depth_high),
        ));
    }
    if let Some(age) = spec.max_age.map(|age| age.as_secs())
        && !(1..=MAX_DURATION_SECS).contains(&age)
    {
        return Err(ConfigError::invalid(
            format!("{key}.max_age_secs"),
            age,
            format!("must be 1..={MAX_DURATION_SECS} (one year), or absent"),
        ));
    }
    Ok(())
}
