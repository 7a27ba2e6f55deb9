//! Range checks for the config file. Its shapes are checked by the one
//! [`ShapeSpec::validate`](firepit_shape::ShapeSpec::validate) the library and `PUT /v1/shapes`
//! run too; the rest here, each error naming the dotted key, the value and what is allowed.

use std::collections::HashSet;

use crate::config::{Config, ConfigError};
use firepit_shape::FillStrategy;

pub use firepit_shape::MAX_DURATION_SECS;

/// Validates the whole file.
pub fn config(config: &Config) -> Result<(), ConfigError> {
    if config.shapes.is_empty() {
        return Err(ConfigError::invalid("shape", "[]", "at least one [[shape]] table is required"));
    }
    let mut names = HashSet::new();
    let mut peak_memory_mb: u64 = 0;
    for (i, spec) in config.shapes.iter().enumerate() {
        spec.validate()?;
        if !names.insert(spec.name.as_str()) {
            return Err(ConfigError::invalid(
                format!("shape[{i}].name"),
                format!("{:?}", spec.name),
                "shape names must be unique",
            ));
        }
        peak_memory_mb = peak_memory_mb.saturating_add(spec.memory_mb.saturating_mul(spec.depth.high as u64));
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
    let usage = &config.usage;
    if !(100..=600_000).contains(&usage.interval_ms) {
        return Err(ConfigError::invalid("usage.interval_ms", usage.interval_ms, "must be 100..=600000"));
    }
    if !(1..=100_000).contains(&usage.samples_kept) {
        return Err(ConfigError::invalid("usage.samples_kept", usage.samples_kept, "must be 1..=100000"));
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
    if !(1..=65_535).contains(&limits.max_forwards_per_lease) {
        return Err(ConfigError::invalid(
            "limits.max_forwards_per_lease",
            limits.max_forwards_per_lease,
            "must be 1..=65535",
        ));
    }
    http(&config.http)?;
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
    let cgroups = &config.cgroups;
    if cgroups.parent.as_os_str().is_empty()
        || cgroups.parent.components().any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ConfigError::invalid(
            "cgroups.parent",
            cgroups.parent.display(),
            "must name a cgroup below the daemon's own (relative) or below the hierarchy's root (absolute), without `..`",
        ));
    }
    if cgroups.pids_max < 16 {
        return Err(ConfigError::invalid(
            "cgroups.pids_max",
            cgroups.pids_max,
            "must be at least 16 (QEMU runs ~10 threads)",
        ));
    }
    if leases.ended_retention_secs > MAX_DURATION_SECS || leases.paused_retention_secs > MAX_DURATION_SECS {
        let (key, value) = match leases.ended_retention_secs > MAX_DURATION_SECS {
            true => ("leases.ended_retention_secs", leases.ended_retention_secs),
            false => ("leases.paused_retention_secs", leases.paused_retention_secs),
        };
        return Err(ConfigError::invalid(
            key,
            value,
            format!("must be at most {MAX_DURATION_SECS} (one year)"),
        ));
    }
    if leases.paused_retention_secs == 0 {
        return Err(ConfigError::invalid("leases.paused_retention_secs", 0, "must be at least 1"));
    }
    if leases.ended_max > 1 << 20 {
        return Err(ConfigError::invalid("leases.ended_max", leases.ended_max, "must be 0..=1048576"));
    }
    if leases.health_check_secs > 3600 {
        return Err(ConfigError::invalid(
            "leases.health_check_secs",
            leases.health_check_secs,
            "must be 0..=3600 (0: no health check)",
        ));
    }
    crate::events_config::validate(config)?;
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
        && let Some(shape) = config.shapes.iter().find(|s| s.fill == FillStrategy::Snapshot)
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
    listen(config)?;
    cluster(config)
}

fn http(http: &crate::config::HttpConfig) -> Result<(), ConfigError> {
    for (key, secs) in [
        ("http.header_read_timeout_secs", http.header_read_timeout_secs),
        ("http.body_idle_timeout_secs", http.body_idle_timeout_secs),
    ] {
        if !(1..=3600).contains(&secs) {
            return Err(ConfigError::invalid(key, secs, "must be 1..=3600 (seconds)"));
        }
    }
    if !(1..=65_536).contains(&http.max_connections_per_client) {
        return Err(ConfigError::invalid(
            "http.max_connections_per_client",
            http.max_connections_per_client,
            "must be 1..=65536",
        ));
    }
    Ok(())
}

fn cluster(config: &Config) -> Result<(), ConfigError> {
    let Some(cluster) = &config.cluster else { return Ok(()) };
    if cluster.etcd.is_empty() {
        return Err(ConfigError::invalid(
            "cluster.etcd",
            "[]",
            "list at least one etcd URL (http://host:2379)",
        ));
    }
    if let Some(url) = cluster.etcd.iter().find(|u| !is_http_url(u)) {
        return Err(ConfigError::invalid(
            "cluster.etcd",
            format!("{url:?}"),
            "each entry must be http://host:port",
        ));
    }
    if !is_http_url(&cluster.advertise) {
        return Err(ConfigError::invalid(
            "cluster.advertise",
            format!("{:?}", cluster.advertise),
            "must be http://HOST:PORT, the address gateways reach listen.tcp at",
        ));
    }
    if config.listen.tcp.is_none() {
        return Err(ConfigError::invalid(
            "cluster.advertise",
            format!("{:?}", cluster.advertise),
            "needs listen.tcp (and its token): gateways reach the daemon over TCP",
        ));
    }
    let host = cluster.host_id();
    if let Err(allowed) = firepit_cluster::check_host_id(&host) {
        let key = if cluster.host.is_some() { "cluster.host" } else { "cluster.host (the hostname)" };
        return Err(ConfigError::invalid(key, format!("{host:?}"), allowed));
    }
    if !cluster.prefix.starts_with('/') || cluster.prefix.len() < 2 {
        return Err(ConfigError::invalid(
            "cluster.prefix",
            format!("{:?}", cluster.prefix),
            "must start with / (e.g. /firepit)",
        ));
    }
    if !(2..=300).contains(&cluster.ttl_secs) {
        return Err(ConfigError::invalid("cluster.ttl_secs", cluster.ttl_secs, "must be 2..=300"));
    }
    Ok(())
}

/// `http://host:port` with a non-empty authority and nothing after it but an optional `/`.
fn is_http_url(url: &str) -> bool {
    url.strip_prefix("http://").map(|rest| rest.trim_end_matches('/')).is_some_and(|authority| {
        authority.contains(':') && !authority.contains('/') && !authority.starts_with(':')
    })
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
