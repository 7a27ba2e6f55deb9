//! What the daemon parses from outside: the config file (TOML) and the API's JSON bodies. The first
//! byte picks the parser. No panic is allowed; errors are fine.
#![no_main]

use std::path::Path;

use firepit_api::{AcquireBody, ExecBody, RenewRequest, ShapeSpec};
use firepit_daemon::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else { return };
    match which % 5 {
        0 => {
            if let Ok(text) = std::str::from_utf8(input) {
                let _ = Config::from_toml(text, Path::new("fuzz.toml"));
            }
        }
        1 => drop(serde_json::from_slice::<AcquireBody>(input)),
        2 => drop(serde_json::from_slice::<ExecBody>(input)),
        3 => drop(serde_json::from_slice::<RenewRequest>(input)),
        _ => drop(serde_json::from_slice::<ShapeSpec>(input)),
    }
});
