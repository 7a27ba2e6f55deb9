//! The config file: a valid one loads with its defaults; a bad one is refused with an error naming
//! the key, the value and what is allowed.

use std::path::Path;
use std::time::Duration;

use firepit_daemon::backend::FillStrategy;
use firepit_daemon::config::{Config, ConfigError};

fn image_dir() -> String {
    format!("{:?}", std::env::temp_dir())
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"))
}

fn shape(extra: &str) -> String {
    format!("[[shape]]\nname = \"small\"\nimage = {}\n{extra}\n", image_dir())
}

/// Asserts the text is refused and the message contains every fragment.
fn refused(text: &str, fragments: &[&str]) {
    let error = parse(text).expect_err("must be refused").to_string();
    for fragment in fragments {
        assert!(error.contains(fragment), "`{fragment}` missing from: {error}");
    }
}

#[test]
fn full_config_loads_with_every_setting() {
    let text = format!(
        r#"
state_dir = "/var/lib/firepit-test"
[listen]
socket = "/run/firepit-test/api.sock"
tcp = "127.0.0.1:7070"
token_env = "FIREPIT_TEST_TOKEN"
[limits]
memory_budget_mb = 4096
parallel_fills = 3
max_body_bytes = 2048
[leases]
default_ttl_secs = 60
max_ttl_secs = 600
[shutdown]
budget_secs = 5
[[shape]]
name = "small"
image = {image}
cpus = 2
memory_mb = 512
depth = {{ low = 2, high = 4 }}
max_age_secs = 600
fill = "cold"
health_check = false
"#,
        image = image_dir()
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.socket_path(), Path::new("/run/firepit-test/api.sock"));
    assert_eq!(config.state_dir(), Path::new("/var/lib/firepit-test"));
    assert_eq!(config.default_ttl(), Duration::from_secs(60));
    assert_eq!(config.shutdown_budget(), Duration::from_secs(5));
    let spec = &config.shapes[0];
    assert_eq!((spec.cpus, spec.memory_mb, spec.depth.low, spec.depth.high), (2, 512, 2, 4));
    assert_eq!((spec.fill, spec.health_check), (FillStrategy::ColdBoot, false));
    assert_eq!(spec.max_age(), Some(Duration::from_secs(600)));
}

#[test]
fn minimal_config_gets_defaults() {
    let config = parse(&shape("")).unwrap();
    let spec = &config.shapes[0];
    assert_eq!(
        (spec.cpus, spec.memory_mb, spec.fill, spec.health_check),
        (1, 256, FillStrategy::Snapshot, true)
    );
    assert!(config.socket_path().ends_with("firepit.sock"));
    assert_eq!(config.listen.tcp, None);
}

#[test]
fn unknown_keys_are_refused_by_name() {
    refused(&shape("colour = \"red\""), &["colour"]);
    refused(&format!("[limits]\nparalel_fills = 2\n{}", shape("")), &["paralel_fills"]);
}

#[test]
fn out_of_range_values_name_key_value_and_range() {
    refused(&shape("cpus = 0"), &["shape \"small\": `cpus` = 0: must be 1..=64"]);
    refused(&shape("memory_mb = 10"), &["shape \"small\": `memory_mb` = 10: must be 64..=65536"]);
    refused(&shape("depth = { low = 5, high = 2 }"), &["`depth.low` = 5: must be at most depth.high (2)"]);
    refused(&shape("depth = { low = 0, high = 0 }"), &["`depth.high` = 0"]);
    refused(&shape("fill = \"warm\""), &["warm", "cold", "snapshot"]);
    refused(
        &format!("[leases]\ndefault_ttl_secs = 100\nmax_ttl_secs = 10\n{}", shape("")),
        &["leases.max_ttl_secs", "10", "at least leases.default_ttl_secs (100)"],
    );
    refused(&format!("[limits]\nmemory_budget_mb = 100\n{}", shape("")), &["limits.memory_budget_mb", "100"]);
}

#[test]
fn shapes_must_exist_be_unique_and_well_named() {
    refused("", &["shape", "at least one"]);
    refused(&format!("{}{}", shape(""), shape("")), &["shape[1].name", "unique"]);
    refused(&shape("").replace("\"small\"", "\"Small One\""), &["`name` = \"Small One\""]);
    refused(
        &shape("").replace(&image_dir(), "\"/nonexistent/image\""),
        &["shape \"small\": `image` = /nonexistent/image"],
    );
}

#[test]
fn tcp_requires_exactly_one_token_source() {
    refused(&format!("[listen]\ntcp = \"127.0.0.1:7070\"\n{}", shape("")), &["listen.tcp", "token"]);
    refused(
        &format!("[listen]\ntcp = \"127.0.0.1:7070\"\ntoken_file = \"/t\"\ntoken_env = \"T\"\n{}", shape("")),
        &["either"],
    );
    refused(&format!("[listen]\ntoken_env = \"T\"\n{}", shape("")), &["listen.token_env"]);
    refused(&format!("[listen]\ntcp = \"not an address\"\n{}", shape("")), &["tcp"]);
}

#[test]
fn unreadable_file_names_the_path() {
    let error = Config::load(Path::new("/nonexistent/firepit.toml")).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(error.to_string().contains("/nonexistent/firepit.toml"));
}

#[test]
fn example_config_file_is_valid() {
    let text = include_str!("../firepit.example.toml").replace("\"/var/lib/firepit/image\"", &image_dir());
    let config = parse(&text).unwrap();
    assert_eq!(config.shapes.len(), 1);
    assert_eq!(config.shapes[0].depth.high, 4);
}

#[test]
fn snapshots_table_sets_the_template_dir_and_keep_flag() {
    let config = parse(&shape("")).unwrap();
    assert_eq!((config.snapshots.template_dir.clone(), config.snapshots.keep_templates), (None, true));
    let text =
        format!("[snapshots]\ntemplate_dir = \"/dev/shm/fp-t\"\nkeep_templates = false\n{}", shape(""));
    let config = parse(&text).unwrap();
    assert_eq!(config.snapshots.template_dir.as_deref(), Some(Path::new("/dev/shm/fp-t")));
    assert!(!config.snapshots.keep_templates);
    refused(&format!("[snapshots]\nkeep = true\n{}", shape("")), &["keep"]);
}

#[test]
fn qemu_binary_defaults_to_path_lookup_and_a_faults_table_is_unknown() {
    assert_eq!(parse(&shape("")).unwrap().qemu_binary, None);
    let config = parse(&format!("qemu_binary = \"/opt/qemu/bin/qemu\"\n{}", shape(""))).unwrap();
    assert_eq!(config.qemu_binary.as_deref(), Some(Path::new("/opt/qemu/bin/qemu")));
    refused(&format!("qemu_binary = \"\"\n{}", shape("")), &["qemu_binary"]);
    // Fault injection is not product configuration: the soak wraps the QEMU binary instead.
    refused(&format!("[faults]\nfail_fills_file = \"/tmp/x\"\n{}", shape("")), &["faults"]);
}

#[test]
fn qemu_user_with_a_snapshot_shape_is_refused_naming_the_key() {
    // Snapshot is the default fill, so a shape that does not say `fill = "cold"` is refused.
    refused(&format!("qemu_user = \"nobody\"\n{}", shape("")), &["shape.fill", "cold", "qemu_user"]);
    let config = parse(&format!("qemu_user = \"nobody\"\n{}", shape("fill = \"cold\"\n"))).unwrap();
    assert_eq!(config.shapes[0].fill, FillStrategy::ColdBoot);
}

#[test]
fn cgroups_table_defaults_on_and_bad_values_are_refused_by_key() {
    let config = parse(&shape("")).unwrap();
    assert_eq!(config.cgroups, firepit_qemu::CgroupConfig::default());
    let text = format!(
        "[cgroups]\nenabled = false\nparent = \"/firepit.slice\"\nmemory_overhead_mb = 64\n{}",
        shape("")
    );
    let config = parse(&text).unwrap();
    assert!(!config.cgroups.enabled);
    assert_eq!(
        (config.cgroups.parent.as_path(), config.cgroups.memory_overhead_mb),
        (Path::new("/firepit.slice"), 64)
    );
    refused(&format!("[cgroups]\nparent = \"../up\"\n{}", shape("")), &["cgroups.parent", "`..`"]);
    refused(&format!("[cgroups]\npids_max = 2\n{}", shape("")), &["cgroups.pids_max", "at least 16"]);
    refused(&format!("[cgroups]\ncpu_quota = 2\n{}", shape("")), &["cpu_quota"]);
}

#[test]
fn paused_vms_go_to_a_disk_directory_by_default_not_the_tmpfs_runtime_dir() {
    let own = parse(&format!("[leases]\npaused_dir = \"/srv/paused\"\n{}", shape(""))).unwrap();
    assert_eq!(own.paused_dir(), Path::new("/srv/paused"));
    let with_state = parse(&format!("state_dir = \"/srv/state\"\n{}", shape(""))).unwrap();
    assert_eq!(with_state.paused_dir(), Path::new("/srv/state/paused"));
    let default = parse(&shape("")).unwrap();
    assert!(!default.paused_dir().starts_with(default.runtime_dir()), "{:?}", default.paused_dir());
    assert_eq!(default.paused_dir().file_name().unwrap(), "paused");
}
