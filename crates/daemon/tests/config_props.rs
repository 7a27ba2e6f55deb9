//! Property tests of the config parser and validator: random TOML documents and random mutations of
//! the annotated example config (`firepit.example.toml`) either load as a config the daemon can run
//! with, or are refused with a message that names the key; never a panic.
//!
//! "Can run with" is checked, not assumed: every duration of an accepted config can be added to
//! the clocks the daemon and the pool add them to (an unbounded TTL or max age would make those
//! additions overflow and panic at run time).
//!
//! Default: 256 cases per property. Longer: `PROPTEST_CASES=50000 cargo test --release -p firepit
//! --test config_props`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use firepit_daemon::config::{Config, ConfigError};
use proptest::prelude::*;
use toml::{Table, Value};

const EXAMPLE: &str = include_str!("../firepit.example.toml");

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// The example config with its image pointing at a directory that exists, so it is valid as is.
fn example() -> Table {
    let mut table: Table = toml::from_str(EXAMPLE).unwrap();
    let image = std::env::temp_dir().to_string_lossy().into_owned();
    let shapes = table.get_mut("shape").and_then(Value::as_array_mut).unwrap();
    shapes[0].as_table_mut().unwrap().insert("image".into(), Value::String(image));
    table
}

/// One step of a path into a TOML document.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every path to a leaf value (and to every table) of `value`.
fn paths(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match value {
        Value::Table(table) => {
            out.push(prefix.clone());
            for (key, child) in table {
                prefix.push(Step::Key(key.clone()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(Step::Index(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

fn get_mut<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |value, step| match step {
        Step::Key(key) => value.as_table_mut()?.get_mut(key),
        Step::Index(i) => value.as_array_mut()?.get_mut(*i),
    })
}

/// The last key of a path (`low` for `shape[0].depth.low`).
fn leaf_key(path: &[Step]) -> Option<&str> {
    path.iter().rev().find_map(|step| match step {
        Step::Key(key) => Some(key.as_str()),
        Step::Index(_) => None,
    })
}

fn toml_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        prop_oneof![Just(0i64), Just(1), Just(-1), Just(64), Just(65), Just(i64::MAX), Just(1 << 32)]
            .prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        ".{0,16}".prop_map(Value::String),
        prop_oneof![
            Just("cold"),
            Just("snapshot"),
            Just("127.0.0.1:7070"),
            Just("[::1]:0"),
            Just("/tmp"),
            Just("relative/path"),
            Just("small"),
            Just(""),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|map| Value::Table(map.into_iter().collect())),
        ]
    })
}

/// What to do at a chosen path.
#[derive(Debug, Clone)]
enum Mutation {
    Remove,
    Replace(Value),
    AddKey(String, Value),
}

fn mutation() -> impl Strategy<Value = (usize, Mutation)> {
    let key = prop_oneof!["[a-z_]{1,12}", Just("shape".to_owned()), Just("depth".to_owned())];
    let kind = prop_oneof![
        Just(Mutation::Remove),
        toml_value().prop_map(Mutation::Replace),
        (key, toml_value()).prop_map(|(k, v)| Mutation::AddKey(k, v)),
    ];
    (any::<usize>(), kind)
}

/// Every key inside `value` (a replacement table's own unknown keys are what an error names).
fn keys_inside(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Table(table) => {
            for (key, child) in table {
                out.push(key.clone());
                keys_inside(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| keys_inside(item, out)),
        _ => {}
    }
}

/// Applies `mutation` at the `choice`-th path of `doc`; returns the keys an error may name when the
/// mutation changed one existing key: that key and the keys inside its new value.
fn apply(doc: &mut Value, choice: usize, mutation: Mutation) -> Option<Vec<String>> {
    let mut all = Vec::new();
    paths(doc, &mut Vec::new(), &mut all);
    let path = all[choice % all.len()].clone();
    match mutation {
        Mutation::Replace(new) => {
            let mut keys = vec![leaf_key(&path)?.to_owned()];
            keys_inside(&new, &mut keys);
            *get_mut(doc, &path)? = new;
            Some(keys)
        }
        Mutation::Remove => {
            let (last, parent) = path.split_last()?;
            let parent = get_mut(doc, parent)?;
            match (last, parent) {
                (Step::Key(key), Value::Table(table)) => {
                    table.remove(key);
                    Some(vec![key.clone()])
                }
                (Step::Index(i), Value::Array(items)) => {
                    items.remove(*i);
                    None
                }
                _ => None,
            }
        }
        Mutation::AddKey(key, value) => {
            if let Some(Value::Table(table)) = get_mut(doc, &path) {
                let mut keys = vec![key.clone()];
                keys_inside(&value, &mut keys);
                table.insert(key, value);
                return Some(keys);
            }
            None
        }
    }
}

/// Keys an error may name instead of the one changed: constraints that span keys.
fn related(key: &str) -> &'static [&'static str] {
    match key {
        "memory_mb" | "high" | "depth" | "low" | "shape" => &["memory_budget_mb", "depth", "shape"],
        "default_ttl_secs" => &["max_ttl_secs"],
        "max_ttl_secs" => &["default_ttl_secs"],
        "tcp" | "token_file" | "token_env" | "listen" => {
            &["listen.tcp", "listen.token_file", "listen.token_env"]
        }
        "limits" => &["memory_budget_mb"],
        _ => &[],
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("fuzzed.toml"))
}

/// What every outcome must satisfy.
fn check(outcome: &Result<Config, ConfigError>) -> Result<(), TestCaseError> {
    match outcome {
        Ok(config) => {
            let mut durations = vec![config.default_ttl(), config.max_ttl(), config.shutdown_budget()];
            durations.extend(config.shapes.iter().filter_map(|s| s.max_age_secs.map(Duration::from_secs)));
            for duration in durations {
                prop_assert!(
                    tokio::time::Instant::now().checked_add(duration).is_some()
                        && SystemTime::now().checked_add(duration).is_some(),
                    "accepted a duration the clocks cannot hold: {duration:?}"
                );
            }
        }
        Err(error) => {
            let message = error.to_string();
            prop_assert!(!message.trim().is_empty());
            if let ConfigError::Invalid { key, allowed, .. } = error {
                prop_assert!(!key.is_empty() && !allowed.is_empty(), "{message}");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// One mutation of the example: a valid config, or an error naming the key changed (or a key
    /// it is checked against).
    #[test]
    fn one_mutation_of_the_example_loads_or_names_the_key((choice, mutation) in mutation()) {
        let mut doc = Value::Table(example());
        let changed = apply(&mut doc, choice, mutation);
        let text = toml::to_string(&doc).unwrap();
        let outcome = parse(&text);
        check(&outcome)?;
        if let (Err(error), Some(keys)) = (&outcome, changed) {
            let message = error.to_string();
            let named = keys.iter().any(|key| {
                message.contains(key.as_str()) || related(key).iter().any(|r| message.contains(r))
            });
            prop_assert!(named, "changed {keys:?}, error names none: {message}\n--- config ---\n{text}");
        }
    }

    /// Several mutations at once: never a panic, every outcome valid or explained.
    #[test]
    fn many_mutations_of_the_example_load_or_are_explained(mutations in proptest::collection::vec(mutation(), 1..8)) {
        let mut doc = Value::Table(example());
        for (choice, mutation) in mutations {
            apply(&mut doc, choice, mutation);
        }
        let text = toml::to_string(&doc).unwrap();
        check(&parse(&text))?;
    }

    /// Arbitrary TOML documents.
    #[test]
    fn random_toml_documents_load_or_are_explained(doc in proptest::collection::btree_map("[a-z_]{1,10}", toml_value(), 0..6)) {
        let text = toml::to_string(&Value::Table(doc.into_iter().collect())).unwrap();
        check(&parse(&text))?;
    }

    /// Arbitrary text, and the example with bytes edited: the TOML parser itself must not panic.
    #[test]
    fn random_text_loads_or_is_explained(
        edits in proptest::collection::vec((any::<usize>(), any::<char>(), 0u8..3), 0..12),
        noise in ".{0,200}",
    ) {
        let mut text: Vec<char> = EXAMPLE.chars().collect();
        for (at, c, kind) in edits {
            let at = at % (text.len() + 1);
            match kind {
                0 if at < text.len() => text[at] = c,
                1 if at < text.len() => { text.remove(at); }
                _ => text.insert(at, c),
            }
        }
        let text: String = text.into_iter().collect();
        check(&parse(&text))?;
        check(&parse(&noise))?;
    }
}

#[test]
fn the_example_as_used_here_is_valid() {
    let text = toml::to_string(&Value::Table(example())).unwrap();
    let config = parse(&text).unwrap();
    assert_eq!(config.shapes.len(), 1);
}

/// Found by `many_mutations_of_the_example_load_or_are_explained`: an unbounded TTL or max age was
/// accepted, and adding it to the clock at the first lease (or eviction) panics.
#[test]
fn durations_beyond_a_year_are_refused_naming_the_key() {
    for (table, key, line) in [
        ("leases", "max_ttl_secs", "max_ttl_secs = 9223372036854775807"),
        ("shape", "max_age_secs", "max_age_secs = 9223372036854775807"),
    ] {
        let mut doc = example();
        let fragment: Table = toml::from_str(line).unwrap();
        let target = match table {
            "shape" => doc["shape"].as_array_mut().unwrap()[0].as_table_mut().unwrap(),
            _ => doc[table].as_table_mut().unwrap(),
        };
        target.extend(fragment);
        let error = parse(&toml::to_string(&doc).unwrap()).expect_err("must be refused").to_string();
        assert!(error.contains(key) && error.contains("one year"), "{error}");
    }
}
