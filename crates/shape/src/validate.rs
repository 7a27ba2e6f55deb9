//! What a shape may ask for: the one validation every way in runs — the library's
//! `Firepit::pool(..).build()`, the daemon's config file, `PUT /v1/shapes/{name}` (and so the
//! SDKs) — so the same shape gets the same [`InvalidShape`] whichever way it came. Each error
//! names the shape, the field, the value and what is allowed.
//!
//! A new field gets its bound here, in [`ShapeSpec::validate_vm`] when it says what one VM is
//! (its providers run that part again on specs built in code), else in [`ShapeSpec::validate`].

use std::fmt;

use crate::ShapeSpec;

/// Most vCPUs a shape may ask for.
pub const MAX_CPUS: u32 = 64;
/// Guest memory bounds per VM, in MiB.
pub const MEMORY_MB_RANGE: std::ops::RangeInclusive<u64> = 64..=65536;
/// Bounds of a shape's `disk_mb` (what one VM may write to its disk), in MiB: 16 MiB to 1 TiB.
pub const DISK_MB_RANGE: std::ops::RangeInclusive<u64> = 16..=1 << 20;
/// Largest high-water mark per shape.
pub const MAX_DEPTH: usize = 64;
/// Most arguments after the program in a shape's `warm_up_argv`.
pub const MAX_WARM_UP_ARGS: usize = 64;
/// Most bytes in a shape's `warm_up_argv`, all arguments together.
pub const MAX_WARM_UP_ARGV_BYTES: usize = 4096;
/// Longest lease TTL and VM max age, in seconds (one year): durations are added to the clocks, and
/// an unbounded one would overflow them.
pub const MAX_DURATION_SECS: u64 = 365 * 24 * 3600;

/// A field of a [`ShapeSpec`] out of range: what [`ShapeSpec::validate`] returns, and so what the
/// library, the daemon's config file and its API all report for the same shape.
///
/// ```
/// let spec = firepit_shape::ShapeSpec { cpus: 65, ..firepit_shape::ShapeSpec::new("small", "/") };
/// let error = spec.validate().unwrap_err();
/// assert_eq!((error.shape.as_str(), error.key.as_str()), ("small", "cpus"));
/// assert_eq!(error.to_string(), "shape \"small\": `cpus` = 65: must be 1..=64");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidShape {
    /// The shape's name (empty for a spec built without one).
    pub shape: String,
    /// The field, e.g. `depth.low` or `network.host_ports`.
    pub key: String,
    /// The value as written.
    pub value: String,
    /// What is allowed instead.
    pub allowed: String,
}

impl fmt::Display for InvalidShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A bad name is its own value: naming the shape by it again would say it twice.
        if !self.shape.is_empty() && self.key != "name" {
            write!(f, "shape {:?}: ", self.shape)?;
        }
        write!(f, "`{}` = {}: {}", self.key, self.value, self.allowed)
    }
}

/// Whether `image` can name an image: something that exists, or one plain path component (a
/// stored image's id).
fn names_an_image(image: &std::path::Path) -> bool {
    let mut parts = image.components();
    let bare = matches!((parts.next(), parts.next()), (Some(std::path::Component::Normal(_)), None));
    image.exists() || bare
}

impl ShapeSpec {
    /// Checks every field, and last (the one check that reads the file system) that `image`
    /// exists (a directory or a file) or is a bare name (the id of a stored image; whether the
    /// store has it is checked when the image is opened).
    ///
    /// ```
    /// use firepit_shape::ShapeSpec;
    /// let small = ShapeSpec::new("small", std::env::temp_dir());
    /// assert_eq!(small.validate(), Ok(()));
    /// let tiny = ShapeSpec { memory_mb: 32, ..small };
    /// let error = tiny.validate().unwrap_err();
    /// assert_eq!(error.to_string(), "shape \"small\": `memory_mb` = 32: must be 64..=65536");
    /// ```
    pub fn validate(&self) -> Result<(), InvalidShape> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self.name.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'))
            });
        if !name_ok {
            return Err(self.invalid(
                "name",
                format!("{:?}", self.name),
                "must match [a-z0-9][a-z0-9_-]* and be at most 63 characters",
            ));
        }
        self.validate_vm()?;
        if !(1..=MAX_DEPTH).contains(&self.depth.high) {
            return Err(self.invalid("depth.high", self.depth.high, format!("must be 1..={MAX_DEPTH}")));
        }
        if self.depth.low > self.depth.high {
            let allowed = format!("must be at most depth.high ({})", self.depth.high);
            return Err(self.invalid("depth.low", self.depth.low, allowed));
        }
        if let Some(age) = self.max_age_secs
            && !(1..=MAX_DURATION_SECS).contains(&age)
        {
            let allowed = format!("must be 1..={MAX_DURATION_SECS} (one year), or absent");
            return Err(self.invalid("max_age_secs", age, allowed));
        }
        self.validate_warm_up_argv()?;
        if !names_an_image(&self.image) {
            return Err(self.invalid(
                "image",
                self.image.display(),
                "must be an existing image directory (build one with `firepit image build`), a root disk \
                 or initramfs file, or the id of a stored image",
            ));
        }
        Ok(())
    }

    /// `warm_up_argv`: a program and at most [`MAX_WARM_UP_ARGS`] arguments, none holding NUL,
    /// [`MAX_WARM_UP_ARGV_BYTES`] in all, and `warm_up` on.
    fn validate_warm_up_argv(&self) -> Result<(), InvalidShape> {
        let argv = &self.warm_up_argv;
        if argv.is_empty() {
            return Ok(());
        }
        let value = || format!("{argv:?}");
        if !self.warm_up {
            return Err(self.invalid(
                "warm_up_argv",
                value(),
                "needs `warm_up = true` (it runs during the warm-up)",
            ));
        }
        let bytes: usize = argv.iter().map(String::len).sum();
        if argv[0].is_empty()
            || argv.len() > MAX_WARM_UP_ARGS + 1
            || bytes > MAX_WARM_UP_ARGV_BYTES
            || argv.iter().any(|arg| arg.contains('\0'))
        {
            let allowed = format!(
                "must be a program and at most {MAX_WARM_UP_ARGS} arguments, {MAX_WARM_UP_ARGV_BYTES} bytes in all, \
                 without NUL (e.g. [\"/bin/bash\", \"-lc\", \"true\"]), or absent"
            );
            return Err(self.invalid("warm_up_argv", value(), allowed));
        }
        Ok(())
    }

    /// The part of [`validate`](Self::validate) that says whether one VM of this shape can be made:
    /// vCPUs, memory, disk and network. A VM provider runs it on every spec it is handed, also on one
    /// built in code that never went through `validate`, so there is one set of bounds, not one
    /// per layer.
    ///
    /// ```
    /// use firepit_shape::ShapeSpec;
    /// let unnamed = ShapeSpec { cpus: 0, ..ShapeSpec::new("", "") };
    /// assert_eq!(unnamed.validate_vm().unwrap_err().to_string(), "`cpus` = 0: must be 1..=64");
    /// ```
    pub fn validate_vm(&self) -> Result<(), InvalidShape> {
        if !(1..=MAX_CPUS).contains(&self.cpus) {
            return Err(self.invalid("cpus", self.cpus, format!("must be 1..={MAX_CPUS}")));
        }
        if !MEMORY_MB_RANGE.contains(&self.memory_mb) {
            let allowed = format!("must be {}..={}", MEMORY_MB_RANGE.start(), MEMORY_MB_RANGE.end());
            return Err(self.invalid("memory_mb", self.memory_mb, allowed));
        }
        if let Some(disk_mb) = self.disk_mb
            && !DISK_MB_RANGE.contains(&disk_mb)
        {
            let allowed = format!("must be {}..={}, or absent", DISK_MB_RANGE.start(), DISK_MB_RANGE.end());
            return Err(self.invalid("disk_mb", disk_mb, allowed));
        }
        if let Err((field, why)) = self.network.validate() {
            return Err(self.invalid(&format!("network.{field}"), self.network.mode, why));
        }
        Ok(())
    }

    fn invalid(&self, key: &str, value: impl ToString, allowed: impl Into<String>) -> InvalidShape {
        InvalidShape {
            shape: self.name.clone(),
            key: key.to_owned(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ShapeSpec {
        ShapeSpec::new("small", std::env::temp_dir())
    }

    #[test]
    fn defaults_validate_and_each_bound_is_named() {
        assert_eq!(valid().validate(), Ok(()));
        let key = |spec: ShapeSpec| spec.validate().unwrap_err().key;
        assert_eq!(key(ShapeSpec { name: "Bad".into(), ..valid() }), "name");
        assert_eq!(key(ShapeSpec { name: "-x".into(), ..valid() }), "name");
        assert_eq!(key(ShapeSpec { image: "/nonexistent/image".into(), ..valid() }), "image");
        assert_eq!(key(ShapeSpec { image: "".into(), ..valid() }), "image");
        assert_eq!(key(ShapeSpec { image: "../x".into(), ..valid() }), "image");
        let disk_file = std::env::current_exe().unwrap();
        assert_eq!(
            ShapeSpec { image: disk_file, ..valid() }.validate(),
            Ok(()),
            "a file (a disk) may be named"
        );
        assert_eq!(
            ShapeSpec { image: "0123456789abcdef".into(), ..valid() }.validate(),
            Ok(()),
            "a store id"
        );
        assert_eq!(key(ShapeSpec { cpus: 65, ..valid() }), "cpus");
        assert_eq!(key(ShapeSpec { memory_mb: 32, ..valid() }), "memory_mb");
        assert_eq!(key(ShapeSpec { disk_mb: Some(8), ..valid() }), "disk_mb");
        assert_eq!(key(ShapeSpec { disk_mb: Some((1 << 20) + 1), ..valid() }), "disk_mb");
        assert_eq!(ShapeSpec { disk_mb: Some(64), ..valid() }.validate(), Ok(()));
        let depth = |low, high| ShapeSpec { depth: crate::Depth { low, high }, ..valid() };
        assert_eq!(key(depth(0, 0)), "depth.high");
        assert_eq!(key(depth(3, 2)), "depth.low");
        assert_eq!(depth(0, 1).validate(), Ok(()));
        assert_eq!(key(ShapeSpec { max_age_secs: Some(0), ..valid() }), "max_age_secs");
        let network = crate::NetworkSpec { host_ports: vec![0], ..crate::NetworkSpec::nat() };
        assert_eq!(key(ShapeSpec { network, ..valid() }), "network.host_ports");
    }

    #[test]
    fn a_warm_up_command_is_a_bounded_argv_and_needs_the_warm_up() {
        let argv = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        let with = |args: Vec<String>| ShapeSpec { warm_up_argv: args, ..valid() };
        assert_eq!(with(argv(&["/bin/bash", "-lc", "true"])).validate(), Ok(()));
        for bad in [
            with(argv(&[""])),
            with(argv(&["/bin/sh", "-c", "a\0b"])),
            with(vec!["x".into(); MAX_WARM_UP_ARGS + 2]),
            with(vec!["x".repeat(MAX_WARM_UP_ARGV_BYTES + 1)]),
            ShapeSpec { warm_up: false, ..with(argv(&["true"])) },
        ] {
            let error = bad.validate().unwrap_err();
            assert_eq!(error.key, "warm_up_argv", "{bad:?}");
        }
        let off = ShapeSpec { warm_up: false, ..with(argv(&["true"])) }.validate().unwrap_err();
        assert!(off.to_string().contains("needs `warm_up = true`"), "{off}");
        let json: ShapeSpec =
            serde_json::from_str(r#"{"image":"/i","warm_up_argv":["bash","-lc","true"]}"#).unwrap();
        assert_eq!(json.warm_up_argv, argv(&["bash", "-lc", "true"]));
        assert!(!serde_json::to_string(&valid()).unwrap().contains("warm_up_argv"), "absent when empty");
    }

    #[test]
    fn the_vm_part_is_the_same_bounds_and_the_message_names_the_shape_once() {
        for bad in [
            ShapeSpec { cpus: 0, ..valid() },
            ShapeSpec { cpus: MAX_CPUS + 1, ..valid() },
            ShapeSpec { memory_mb: MEMORY_MB_RANGE.start() - 1, ..valid() },
            ShapeSpec { memory_mb: MEMORY_MB_RANGE.end() + 1, ..valid() },
            ShapeSpec { disk_mb: Some(DISK_MB_RANGE.start() - 1), ..valid() },
        ] {
            assert_eq!(bad.validate_vm().unwrap_err(), bad.validate().unwrap_err(), "{bad:?}");
        }
        let elsewhere = ShapeSpec {
            name: "Bad".into(),
            image: "".into(),
            depth: crate::Depth { low: 0, high: 0 },
            ..valid()
        };
        assert_eq!(elsewhere.validate_vm(), Ok(()), "name, image and depth are not a VM's");
        let bad_name = ShapeSpec { name: "Bad".into(), ..valid() }.validate().unwrap_err();
        assert_eq!(
            bad_name.to_string(),
            "`name` = \"Bad\": must match [a-z0-9][a-z0-9_-]* and be at most 63 characters"
        );
        let too_big = ShapeSpec { cpus: 65, ..valid() }.validate().unwrap_err();
        assert_eq!(too_big.to_string(), "shape \"small\": `cpus` = 65: must be 1..=64");
    }

    #[test]
    fn unknown_fields_are_refused_and_json_and_toml_share_defaults() {
        let json: ShapeSpec = serde_json::from_str(r#"{"image":"/i"}"#).unwrap();
        let toml: ShapeSpec = toml::from_str("image = \"/i\"\n").unwrap();
        assert_eq!(json, toml);
        assert_eq!(json, ShapeSpec::new("", "/i"));
        assert!(serde_json::from_str::<ShapeSpec>(r#"{"image":"/i","depth_low":1}"#).is_err());
    }
}
