//! `firepit image build`: builds (or reuses) the guest image, drawing a progress bar on a terminal
//! and plain lines otherwise (CI logs).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use firepit_image::{ImageBuilder, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// Default agent: `$FIREPIT_AGENT`, else `firepit-agent` next to this executable, else the path
/// `scripts/build-image` builds it to.
fn default_agent() -> PathBuf {
    if let Some(path) = std::env::var_os("FIREPIT_AGENT") {
        return PathBuf::from(path);
    }
    let beside_us =
        std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join("firepit-agent")));
    match beside_us {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from("target/x86_64-unknown-linux-gnu/agent/firepit-agent"),
    }
}

/// Default output: `$FIREPIT_IMAGE_DIR`, else `$XDG_DATA_HOME/firepit/image`, else
/// `~/.local/share/firepit/image`, else `target/firepit-image`.
pub(super) fn default_out() -> PathBuf {
    if let Some(dir) = std::env::var_os("FIREPIT_IMAGE_DIR") {
        return PathBuf::from(dir);
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")));
    data_home.map_or_else(|| PathBuf::from("target/firepit-image"), |dir| dir.join("firepit/image"))
}

/// Builds the guest image.
pub fn run_build(agent: Option<PathBuf>, out: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    let agent = agent.unwrap_or_else(default_agent);
    let out = out.unwrap_or_else(default_out);
    let started = Instant::now();
    let builder = ImageBuilder::new(&out).agent(&agent);
    let image = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg} {elapsed}")?);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let result = builder.build(&mut |p: Progress| {
            bar.set_length(u64::from(p.total));
            bar.set_position(u64::from(p.step));
            bar.set_message(p.message);
        });
        bar.finish_and_clear();
        result?
    } else {
        builder.build(&mut |p: Progress| eprintln!("[{}/{}] {}", p.step, p.total, p.message))?
    };
    eprintln!(
        "image {} (kernel {}) in {} — built in {:.2} s",
        image.id(),
        image.kernel_version(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", out.display());
    Ok(())
}
