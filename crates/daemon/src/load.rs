//! Reading a config file: parse (TOML, unknown keys refused) then validate, so that a [`Config`]
//! value in the daemon is always a valid one.
//!
//! It sits above both [`crate::config`] (the types) and [`crate::validate`] (the range checks).

use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::validate;

impl Config {
    /// Reads, parses and validates a config file.
    ///
    /// # Example
    /// ```no_run
    /// let config = firepit_daemon::config::Config::load("firepit.toml".as_ref())?;
    /// println!("{} shapes", config.shapes.len());
    /// # Ok::<(), firepit_daemon::config::ConfigError>(())
    /// ```
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates config text; `origin` only names the source in errors.
    ///
    /// # Example
    /// ```
    /// use firepit_daemon::config::Config;
    /// let dir = std::env::temp_dir();
    /// let text = format!("[[shape]]\nname = \"small\"\nimage = {:?}\ndepth = {{ low = 1, high = 2 }}\n", dir);
    /// let config = Config::from_toml(&text, "inline".as_ref())?;
    /// assert_eq!(config.shapes[0].cpus, 1);
    /// # Ok::<(), firepit_daemon::config::ConfigError>(())
    /// ```
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.to_owned(), message: e.to_string() })?;
        if let Some(cluster) = config.cluster.as_mut() {
            cluster.advertise = expand_env("cluster.advertise", &cluster.advertise)?;
            if let Some(host) = cluster.host.as_mut() {
                *host = expand_env("cluster.host", host)?;
            }
        }
        validate::config(&config)?;
        Ok(config)
    }

    /// The configuration `firepit serve` runs without `--config`: one shape named `default` on
    /// `image` (normally the default image, `firepit_image::default_dir()`), every other key at its
    /// default (the socket at [`crate::config::default_socket_path`]). It goes through the same
    /// parser and validation as a file, so its defaults are the file's.
    ///
    /// ```
    /// let image = std::env::temp_dir(); // any existing directory passes validation
    /// let config = firepit_daemon::config::Config::builtin(&image)?;
    /// assert_eq!(config.shapes[0].name, "default");
    /// assert_eq!(config.socket_path(), firepit_daemon::config::default_socket_path());
    /// # Ok::<(), firepit_daemon::config::ConfigError>(())
    /// ```
    pub fn builtin(image: &Path) -> Result<Self, ConfigError> {
        let text = format!(
            "[[shape]]\nname = \"default\"\nimage = {}\n",
            toml::Value::String(image.to_string_lossy().into_owned())
        );
        Self::from_toml(&text, Path::new("<built-in default config>"))
    }
}

/// Replaces every `${NAME}` in `value` with the environment variable `NAME` (for per-machine
/// values in a shared config, e.g. `advertise = "http://${POD_IP}:7070"` in a Kubernetes
/// DaemonSet); an unset variable is an error naming `key`.
fn expand_env(key: &str, value: &str) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::invalid(key, format!("{value:?}"), "`${` without a closing `}`"));
        };
        let name = &after[..end];
        let found = std::env::var(name).map_err(|_| {
            ConfigError::invalid(
                key,
                format!("{value:?}"),
                format!("the environment variable {name} is not set"),
            )
        })?;
        out.push_str(&found);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
