//! `firepit image build|import|ls` and the default image the other verbs need: the guest agent embedded in
//! this binary (see `build.rs`), a progress bar on a terminal and plain lines otherwise (CI logs).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use firepit_image::{DiskImage, Image, ImageBuilder, ImageStore, OciImporter, PackageDiskBuilder, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// The static guest agent, built for the guest and embedded at build time.
const EMBEDDED_AGENT: &[u8] = include_bytes!(env!("FIREPIT_EMBEDDED_AGENT"));

type ImageResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The embedded agent as a file under `<image dir>/.cache/agent/`, named by its hash and written
/// once, so the image builder's cache sees the same file (size, mtime, inode) on every build.
fn embedded_agent(image_dir: &Path) -> ImageResult<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let hash = hex::encode(&Sha256::digest(EMBEDDED_AGENT)[..8]);
    let dir = image_dir.join(".cache").join("agent");
    let path = dir.join(format!("firepit-agent-{hash}"));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let partial = dir.join(format!(".firepit-agent-{hash}.{}", std::process::id()));
    std::fs::write(&partial, EMBEDDED_AGENT)
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&partial, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Builds (or reuses, when its inputs are unchanged) the guest image in `out` — default: the
/// default image location — with `agent` or else the embedded agent. Prints the directory.
pub fn run_build(agent: Option<PathBuf>, out: Option<PathBuf>) -> ImageResult<()> {
    let out = out.unwrap_or_else(firepit_image::default_dir);
    build(agent, &out)?;
    println!("{}", out.display());
    Ok(())
}

/// The image at the default location, built first (with progress) when there is none.
pub fn ensure_default() -> ImageResult<Image> {
    match Image::open_default() {
        Ok(image) => Ok(image),
        Err(_) => {
            let dir = firepit_image::default_dir();
            eprintln!("no guest image in {} yet: building it (once; later starts reuse it)", dir.display());
            build(None, &dir)
        }
    }
}

fn build(agent: Option<PathBuf>, out: &Path) -> ImageResult<Image> {
    let agent = match agent {
        Some(path) => path,
        None => embedded_agent(out)?,
    };
    let started = Instant::now();
    let builder = ImageBuilder::new(out).agent(&agent);
    let image = with_progress(|progress| builder.build(progress))?;
    eprintln!(
        "image {} (kernel {}) in {} — built in {:.2} s",
        image.id(),
        image.kernel_version(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(image)
}

/// `firepit image build --packages ...`: a root disk in the image store. Prints its id.
pub fn build_packages(packages: Vec<String>, suite: Option<String>, rebuild: bool) -> ImageResult<()> {
    let store = ImageStore::open_default();
    let mut builder = PackageDiskBuilder::new(&store, packages).rebuild(rebuild);
    if let Some(suite) = suite {
        builder = builder.suite(suite);
    }
    let started = Instant::now();
    let disk = with_progress(|progress| builder.build(progress))?;
    report_disk(&disk, started);
    Ok(())
}

/// `firepit image build --preset NAME`: a ready-made root disk, stored under `NAME` so that a
/// shape's `image = "NAME"` finds it. Prints its id.
pub fn build_preset(name: &str, suite: Option<String>, rebuild: bool) -> ImageResult<()> {
    let (packages, customize) = match name {
        "e2b-base" => (E2B_BASE_PACKAGES, E2B_BASE_SETUP),
        other => return Err(format!("unknown preset {other:?}: the presets are e2b-base").into()),
    };
    let store = ImageStore::open_default();
    let mut builder = PackageDiskBuilder::new(&store, packages.iter().copied())
        .customize(customize.iter().copied())
        .rebuild(rebuild);
    if let Some(suite) = suite {
        builder = builder.suite(suite);
    }
    let started = Instant::now();
    let disk = with_progress(|progress| builder.build(progress))?;
    store.set_name(name, disk.id())?;
    eprintln!("named {name}: a shape's `image = \"{name}\"` finds it");
    report_disk(&disk, started);
    Ok(())
}

/// E2B's base template: Debian with Python, pip, curl, git and sudo (and what E2B's SDKs run:
/// bash for commands, procps for `ps`/`kill`, inotify-tools for directory watches).
const E2B_BASE_PACKAGES: &[&str] =
    &["bash", "ca-certificates", "curl", "git", "inotify-tools", "procps", "python3", "python3-pip", "sudo"];

/// The base template's `user` (uid 1000, home `/home/user`, passwordless sudo), and root's.
const E2B_BASE_SETUP: &[&str] = &[
    "useradd --create-home --uid 1000 --user-group --shell /bin/bash user",
    "printf 'user ALL=(ALL:ALL) NOPASSWD: ALL\\n' > /etc/sudoers.d/user && chmod 0440 /etc/sudoers.d/user",
];

/// `firepit image import PATH`: an OCI image as a root disk in the image store. Prints its id.
pub fn import(path: &Path, reference: Option<String>) -> ImageResult<()> {
    let store = ImageStore::open_default();
    let mut importer = OciImporter::new(&store);
    if let Some(reference) = reference {
        importer = importer.reference(reference);
    }
    let started = Instant::now();
    let disk = with_progress(|progress| importer.import(path, progress))?;
    report_disk(&disk, started);
    Ok(())
}

fn report_disk(disk: &DiskImage, started: Instant) {
    eprintln!(
        "image {} ({}, {} MiB on disk) in {} — {:.2} s; use it as a shape's `image = \"{}\"`",
        disk.id(),
        disk.record().source,
        disk.usage_bytes() >> 20,
        disk.dir().display(),
        started.elapsed().as_secs_f64(),
        disk.id()
    );
    println!("{}", disk.id());
}

/// `firepit image ls`.
pub fn list(json: bool) -> ImageResult<()> {
    let images = firepit_image::list_images(&firepit_image::default_dir(), &ImageStore::open_default())?;
    if json {
        for image in &images {
            println!("{}", serde_json::to_string(image)?);
        }
        return Ok(());
    }
    println!("{:<18} {:<9} {:>9}  SOURCE", "ID", "KIND", "SIZE");
    for image in &images {
        let size = format!("{:.1} MiB", image.size_bytes as f64 / (1024.0 * 1024.0));
        println!("{:<18} {:<9} {:>9}  {}", image.id, image.kind.as_str(), size, image.source);
    }
    Ok(())
}

/// Runs a build step with a progress bar on a terminal, plain `[n/m] ...` lines otherwise.
fn with_progress<T, E>(build: impl FnOnce(&mut dyn FnMut(Progress)) -> Result<T, E>) -> ImageResult<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    if !std::io::stderr().is_terminal() {
        return Ok(build(&mut |p: Progress| eprintln!("[{}/{}] {}", p.step, p.total, p.message))?);
    }
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg} {elapsed}")?);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let result = build(&mut |p: Progress| {
        bar.set_length(u64::from(p.total));
        bar.set_position(u64::from(p.step));
        bar.set_message(p.message);
    });
    bar.finish_and_clear();
    Ok(result?)
}
