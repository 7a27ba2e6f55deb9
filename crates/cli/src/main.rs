//! The `firepit` command: verbs only. Each verb parses its arguments (clap) and calls a library:
//! the `firepit` facade (`demo`), `firepit-image` (`image`), `firepit-daemon` (`serve`),
//! `firepit-client` (`status`, `lease`, `run`, `exec`, `cp`, `shell`, `port`), `firepit-ui` (`ui`),
//! `firepit-tools` (`bench`, `soak`), `firepit-gateway` (`gateway`), and the client again for `drain`.
//!
//! The `dev` feature (off by default: not in the binary users build or ship) adds the developer
//! tools of `firepit-tools`: `soak`, whose fault injection kills and stops QEMU processes and
//! makes fills fail, and `bench net`, which makes a network namespace for its server. `scripts/test`
//! builds with it; `cargo tree -e normal -p firepit-cli` without it lists no `firepit-testnet`.
//!
//! Every verb returns a `Result`; [`run`] prints the error with its whole cause chain and maps it
//! to exit code 1, so no verb panics or exits half-way. `firepit run` returns the guest command's
//! exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cp;
mod demo;
mod drain;
mod e2b;
mod events;
mod exec;
mod gateway;
mod image;
mod lease;
mod logging;
mod port;
mod progress;
mod run;
mod serve;
mod shell;
mod snapshot;
mod status;
mod terminal;
mod top;
mod ui;

/// What a subcommand returns: the process exit code, or an error whose chain is printed.
pub type CliResult = Result<ExitCode, Box<dyn std::error::Error + Send + Sync>>;

/// firepit keeps real microVMs warm and hands one out in microseconds.
#[derive(Debug, Parser)]
#[command(name = "firepit", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Guest images: build the default image from Debian packages.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Start a pool of real VMs, use them (agent and console), print timings, shut down cleanly.
    Demo(demo::DemoArgs),
    /// Run the daemon: warm pools per shape behind an HTTP API (Unix socket by default).
    Serve(serve::ServeArgs),
    /// Show the daemon's pools: ready, filling, leased VMs per shape.
    Status(status::StatusArgs),
    /// A live table of the running leases and what each uses: CPU %, memory, disk, network
    /// (`--once` prints one table and exits).
    Top(top::TopArgs),
    /// Acquire, use and release leases through the daemon.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Pause a lease to disk (the same as `firepit lease pause`).
    Pause(lease::LeaseIdArgs),
    /// Resume a paused lease (the same as `firepit lease resume`).
    Resume(lease::LeaseIdArgs),
    /// Fork a running lease into N new leases (the same as `firepit lease fork`).
    Fork(lease::ForkArgs),
    /// Make, list, show and delete the daemon's snapshots of leases (`create` is `firepit lease
    /// snapshot`).
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Acquire a VM from the daemon, run one command in it, print its output, release the VM; exits
    /// with the guest command's exit code.
    Run(run::RunArgs),
    /// Run a command in a leased VM, printing its output as it comes; exits with its exit code.
    Exec(exec::ExecCmd),
    /// The daemon's events (lease.created, lease.ended, ...) as JSON lines; `--follow` keeps going.
    Events(events::EventsArgs),
    /// Copy files and directories between this machine and a leased VM (LEASE:/path), streamed.
    Cp(cp::CpArgs),
    /// An interactive terminal in a VM (a leased one, or one leased for the session).
    Shell(shell::ShellArgs),
    /// Forward a TCP port of a leased VM to a loopback port of this host (prints the address), or
    /// list the lease's forwards; they close when the lease ends.
    Port(port::PortArgs),
    /// The web dashboard of a daemon on its Unix socket, on a loopback port, with a one-time
    /// login link (a daemon with a TCP listener serves it itself under /ui).
    Ui(ui::UiArgs),
    /// Run a gateway: one TCP front for many daemons registered in etcd (placement, lease routing).
    Gateway(gateway::GatewayArgs),
    /// Drain a daemon: no new leases (gateways place elsewhere), existing ones run to their end.
    Drain(drain::DrainArgs),
    /// Soak with faults: cycles from concurrent clients against a real daemon while VMs are killed
    /// and stalled, fills fail, requests are dropped, leases expire and the daemon is restarted;
    /// prints one JSON line (leaks, failures, depth regained) and exits 1 if a pass condition fails.
    /// (Developer builds only: `--features dev`.)
    #[cfg(feature = "dev")]
    Soak(firepit_tools::soak::SoakArgs),
    /// Benchmarks on real VMs: numbers, no verdicts (one JSON object per line with --json).
    #[command(subcommand)]
    Bench(firepit_tools::bench::BenchCommand),
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build (or reuse, when cached) an image. Without --packages: the default guest image
    /// (Debian cloud kernel + busybox + firepit-agent). With --packages: a root disk with those
    /// Debian packages installed as Debian does it (mmdebstrap), kept in the image store; a shape
    /// names it by the id this prints.
    Build {
        /// Debian packages for a root disk, comma-separated (e.g. `python3,git`).
        #[arg(long, value_delimiter = ',', value_name = "PKG,...")]
        packages: Vec<String>,
        /// A ready-made root disk, stored under its name: `e2b-base` (E2B's base template).
        #[arg(long, conflicts_with = "packages", value_name = "NAME")]
        preset: Option<String>,
        /// The Debian suite of a package disk (default: the host's).
        #[arg(long)]
        suite: Option<String>,
        /// Build the package disk again even when one with the same inputs exists (picks up newer
        /// package versions).
        #[arg(long)]
        rebuild: bool,
        /// A static guest agent binary to use instead of the one embedded in this executable.
        #[arg(long, conflicts_with = "packages")]
        agent: Option<PathBuf>,
        /// Output directory of the default image (default: $FIREPIT_IMAGE_DIR, else
        /// $XDG_DATA_HOME/firepit/image, else /var/lib/firepit/image for root, else
        /// ~/.local/share/firepit/image).
        #[arg(long, conflicts_with = "packages")]
        out: Option<PathBuf>,
    },
    /// Import an OCI image (an OCI layout directory, an oci-archive or a `docker save` tarball)
    /// as a root disk in the image store; its Env, WorkingDir and User become exec defaults.
    Import {
        /// The layout directory or tarball.
        path: PathBuf,
        /// Which image of a layout or archive that holds several (its `org.opencontainers.image.ref.name`).
        #[arg(long)]
        reference: Option<String>,
    },
    /// List the images: the default image and every image in the store (id, kind, size, source).
    Ls {
        /// One JSON object per image instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove an image from the store.
    Rm {
        /// The image id (see `firepit image ls`).
        id: String,
    },
    /// Remove the snapshot templates kept for reuse (RAM file, state and manifest per shape).
    /// Templates outlive pools and daemons so the next start skips the template boot; a running
    /// daemon whose template is removed falls back to cold boot until it has rebuilt it.
    CleanTemplates {
        /// Template directory (default: `/dev/shm/firepit-<uid>-templates`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A reader that goes away (`firepit lease ls | head -1`) ends a command quietly, as it ends
    // `ls` or `cat`, instead of a panic on the next write to stdout. The servers keep Rust's
    // default (SIGPIPE ignored): a closed log pipe must not stop a daemon.
    if !matches!(cli.command, Command::Serve(_) | Command::Ui(_) | Command::Gateway(_)) {
        // SAFETY: restoring SIGPIPE's default action before any thread starts; no handler is set.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = dispatch(cli.command);
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> CliResult {
    if let Command::Image(command) = command {
        return image_command(command);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match command {
            Command::Image(_) => Ok(ExitCode::SUCCESS), // handled above, outside the runtime
            Command::Demo(args) => demo::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Top(args) => top::run(args).await,
            Command::Lease(command) => lease::run(command).await,
            Command::Pause(args) => lease::pause(args).await,
            Command::Resume(args) => lease::resume(args).await,
            Command::Fork(args) => lease::fork(args).await,
            Command::Snapshot(command) => snapshot::run(command).await,
            Command::Events(args) => events::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Exec(args) => exec::run(args).await,
            Command::Cp(args) => cp::run(args).await,
            Command::Shell(args) => shell::run(args).await,
            Command::Port(args) => port::run(args).await,
            Command::Ui(args) => ui::run(args).await,
            Command::Gateway(args) => gateway::run(args).await,
            Command::Drain(args) => drain::run(args).await,
            Command::Bench(command) => {
                // Results go to stdout; with RUST_LOG set, where the time went goes to stderr.
                if std::env::var_os("RUST_LOG").is_some() {
                    logging::init(false);
                }
                Ok(firepit_tools::bench::run(command).await?)
            }
            #[cfg(feature = "dev")]
            Command::Soak(args) => {
                logging::init(false);
                Ok(firepit_tools::soak::run(args).await?)
            }
        }
    })
}

/// `firepit image ...`: blocking work (apt, mmdebstrap, mkfs), no runtime needed.
fn image_command(command: ImageCommand) -> CliResult {
    match command {
        ImageCommand::Build { packages, preset, suite, rebuild, agent, out } => {
            if let Some(preset) = preset {
                image::build_preset(&preset, suite, rebuild)?;
            } else if packages.is_empty() {
                image::run_build(agent, out)?;
            } else {
                image::build_packages(packages, suite, rebuild)?;
            }
        }
        ImageCommand::Import { path, reference } => image::import(&path, reference)?,
        ImageCommand::Ls { json } => image::list(json)?,
        ImageCommand::Rm { id } => {
            firepit_image::ImageStore::open_default().remove(&id)?;
            println!("removed image {id}");
        }
        ImageCommand::CleanTemplates { dir } => {
            let template_dir = dir.unwrap_or_else(firepit_qemu::default_template_dir);
            let config =
                firepit_qemu::ProviderConfig { template_dir: template_dir.clone(), ..Default::default() };
            let removed = firepit_qemu::QemuProvider::new(config)?.remove_templates();
            println!("removed {removed} snapshot template(s) from {}", template_dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
