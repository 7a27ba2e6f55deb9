//! `firepit lease acquire|exec|renew|release|ls|show|pause|resume|snapshot|fork`: manage and look up
//! leases by hand or from shell scripts.

use std::io::{Read, Write};
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use firepit_api::{
    AcquireBody, Encoding, ExecBody, ForkRequest, LeaseListQuery, LeaseState, LeaseView, Metadata, Program,
    ReleaseQuery, ReleaseReason, SpawnBody, Stdin,
};
use firepit_client::Client;

use crate::CliResult;
use crate::status::ConnectArgs;

/// Subcommands of `firepit lease`.
#[derive(Debug, clap::Subcommand)]
pub enum LeaseCommand {
    /// Lease one VM; prints the lease as JSON (`lease_id`, `vm_id`, `shape`, `expires_at`).
    Acquire {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Shape to lease (see `firepit status`); default `default`, or the snapshot's with
        /// `--snapshot`.
        #[arg(long)]
        shape: Option<String>,
        /// Start the VM from this snapshot (`firepit lease snapshot`, `firepit snapshot ls`):
        /// its files and processes as they were, with an identity of its own.
        #[arg(long, value_name = "SNAPSHOT_ID")]
        snapshot: Option<String>,
        /// How long to wait for a ready VM, in ms.
        #[arg(long, default_value_t = 30_000)]
        wait_ms: u64,
        /// Lease lifetime in ms (default: the daemon's); renew before it runs out.
        #[arg(long)]
        ttl_ms: Option<u64>,
        /// Retrying with the same key returns the same lease instead of a second VM.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// A label of the lease, NAME=VALUE (repeatable): shown in its views and events, a filter
        /// of `firepit lease ls --metadata`.
        #[arg(long = "metadata", short = 'm', value_name = "NAME=VALUE")]
        metadata: Vec<String>,
    },
    /// Run a command in a leased VM; prints its output and exits with its exit code.
    Exec {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The lease id from `firepit lease acquire`.
        lease_id: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Extend a lease's lifetime, counted from now.
    Renew {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The lease id.
        lease_id: String,
        /// New lifetime in ms (default: the daemon's default TTL).
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    /// Give a VM back: it is destroyed (before this returns) and the pool refills.
    Release {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The lease id.
        lease_id: String,
        /// End it as an operator's kill (`end_reason = killed`) instead of a release.
        #[arg(long)]
        kill: bool,
        /// Why, in a few words (shown as the lease's `end_detail`).
        #[arg(long)]
        detail: Option<String>,
    },
    /// List leases: live ones (running, paused) oldest first, then recently ended ones.
    Ls {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Only leases in this state.
        #[arg(long, value_parser = ["running", "paused", "ended"])]
        state: Option<String>,
        /// Only leases of this shape.
        #[arg(long)]
        shape: Option<String>,
        /// Only leases carrying this label, NAME=VALUE (repeatable: all of them).
        #[arg(long = "metadata", short = 'm', value_name = "NAME=VALUE")]
        metadata: Vec<String>,
        /// Print the leases as JSON (an array of lease views) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one lease (live, or ended and still remembered) as JSON.
    Show {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The lease id.
        lease_id: String,
    },
    /// Pause a lease: its VM is saved to disk and stops (no CPU, no RAM, TTL stopped); prints the
    /// lease as JSON. Pausing a paused lease is fine.
    Pause(LeaseIdArgs),
    /// Resume a paused lease as it was (files, processes, address, port forwards); prints the
    /// lease as JSON. Resuming a running lease is fine.
    Resume(LeaseIdArgs),
    /// Snapshot a running lease (memory, processes, disk; it runs on); prints the snapshot as
    /// JSON. Start leases from it with `firepit lease acquire --snapshot ID` or `firepit run
    /// --snapshot ID`.
    Snapshot(LeaseIdArgs),
    /// Fork a running lease into N new leases, each a copy of it at this moment with an identity
    /// of its own; prints `{"forks": [{"lease": ...} | {"error": ...}]}` and exits with 1 when a
    /// fork failed.
    Fork(ForkArgs),
}

/// A daemon and one of its leases: the arguments of `lease pause|resume|snapshot` and of their
/// top-level shortcuts (`firepit pause|resume`, `firepit snapshot create`).
#[derive(Debug, Clone, clap::Args)]
pub struct LeaseIdArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The lease id.
    lease_id: String,
}

/// The arguments of `firepit lease fork` and `firepit fork`.
#[derive(Debug, Clone, clap::Args)]
pub struct ForkArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The lease id.
    lease_id: String,
    /// How many forks (1 to 16).
    #[arg(short = 'n', long, default_value_t = 1)]
    count: u32,
    /// Each fork's lifetime in ms (default: the daemon's).
    #[arg(long)]
    ttl_ms: Option<u64>,
}

/// What to run in the guest (shared by `lease exec` and `run`).
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// Extra environment variable for the command, as NAME=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    pub(crate) env: Vec<String>,
    /// Working directory in the guest.
    #[arg(long)]
    pub(crate) cwd: Option<String>,
    /// Send this process's stdin to the command.
    #[arg(long)]
    pub(crate) stdin: bool,
    /// Kill the command after this many ms (0: none for `firepit exec`, which streams; the
    /// agent's default of 60 s for `lease exec` and `run`).
    #[arg(long, default_value_t = 0)]
    pub(crate) timeout_ms: u64,
    /// The command and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub(crate) argv: Vec<String>,
}

impl ExecArgs {
    /// The command as a streamed exec's body: its environment from `--env NAME=VALUE`, its stdin
    /// (base64) when `--stdin` asks for ours. `lease exec` and `run` send it as an [`ExecBody`].
    pub(crate) fn spawn_body(&self) -> Result<SpawnBody, Box<dyn std::error::Error + Send + Sync>> {
        let mut program = Program { argv: self.argv.clone(), cwd: self.cwd.clone(), ..Program::default() };
        for pair in &self.env {
            let (name, value) =
                pair.split_once('=').ok_or_else(|| format!("--env {pair:?}: expected NAME=VALUE"))?;
            program = program.env(name, value);
        }
        let mut input = Stdin::default();
        if self.stdin {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            input = Stdin::base64(BASE64.encode(bytes));
        }
        Ok(SpawnBody { program, input, timeout_ms: self.timeout_ms })
    }
}

/// Runs `firepit lease ...`.
pub async fn run(command: LeaseCommand) -> CliResult {
    match command {
        LeaseCommand::Acquire { connect, shape, snapshot, wait_ms, ttl_ms, idempotency_key, metadata } => {
            let default_shape = if snapshot.is_some() { "" } else { "default" };
            let body = AcquireBody {
                shape: shape.unwrap_or_else(|| default_shape.to_owned()),
                wait_ms,
                ttl_ms,
                metadata: labels(&metadata)?,
                snapshot,
                ..AcquireBody::default()
            };
            let lease = connect.client()?.acquire_with(&body, idempotency_key.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&lease)?);
            Ok(ExitCode::SUCCESS)
        }
        LeaseCommand::Exec { connect, lease_id, exec } => {
            exec_and_print(&connect.client()?, &lease_id, &exec).await
        }
        LeaseCommand::Renew { connect, lease_id, ttl_ms } => {
            let lease = connect.client()?.renew(&lease_id, ttl_ms).await?;
            println!("{}", serde_json::to_string_pretty(&lease)?);
            Ok(ExitCode::SUCCESS)
        }
        LeaseCommand::Release { connect, lease_id, kill, detail } => {
            let reason = if kill { ReleaseReason::Killed } else { ReleaseReason::Released };
            connect.client()?.end_lease(&lease_id, &ReleaseQuery { reason, detail }).await?;
            Ok(ExitCode::SUCCESS)
        }
        LeaseCommand::Ls { connect, state, shape, metadata, json } => {
            let state = match state.as_deref() {
                Some("running") => Some(LeaseState::Running),
                Some("paused") => Some(LeaseState::Paused),
                Some("ended") => Some(LeaseState::Ended),
                _ => None,
            };
            let query = LeaseListQuery { state, shape, limit: None, metadata: labels(&metadata)? };
            let leases = connect.client()?.leases(&query).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&leases)?);
            } else {
                print!("{}", table(&leases));
            }
            Ok(ExitCode::SUCCESS)
        }
        LeaseCommand::Show { connect, lease_id } => {
            let lease = connect.client()?.lease(&lease_id).await?;
            println!("{}", serde_json::to_string_pretty(&lease)?);
            Ok(ExitCode::SUCCESS)
        }
        LeaseCommand::Pause(args) => pause(args).await,
        LeaseCommand::Resume(args) => resume(args).await,
        LeaseCommand::Snapshot(args) => snapshot(args).await,
        LeaseCommand::Fork(args) => fork(args).await,
    }
}

/// `firepit lease pause` / `firepit pause`: pauses the lease and prints its view as JSON.
pub async fn pause(LeaseIdArgs { connect, lease_id }: LeaseIdArgs) -> CliResult {
    let lease = connect.client()?.pause_lease(&lease_id).await?;
    println!("{}", serde_json::to_string_pretty(&lease)?);
    Ok(ExitCode::SUCCESS)
}

/// `firepit lease resume` / `firepit resume`: resumes the lease and prints its view as JSON.
pub async fn resume(LeaseIdArgs { connect, lease_id }: LeaseIdArgs) -> CliResult {
    let lease = connect.client()?.resume_lease(&lease_id).await?;
    println!("{}", serde_json::to_string_pretty(&lease)?);
    Ok(ExitCode::SUCCESS)
}

/// `firepit lease snapshot` / `firepit snapshot create`: snapshots the lease and prints the
/// snapshot as JSON.
pub async fn snapshot(LeaseIdArgs { connect, lease_id }: LeaseIdArgs) -> CliResult {
    let snapshot = connect.client()?.snapshot_lease(&lease_id).await?;
    println!("{}", serde_json::to_string_pretty(&snapshot)?);
    Ok(ExitCode::SUCCESS)
}

/// `firepit lease fork` / `firepit fork`: forks the lease, prints each fork's lease or error, and
/// exits with 1 when a fork failed.
pub async fn fork(ForkArgs { connect, lease_id, count, ttl_ms }: ForkArgs) -> CliResult {
    let forks = connect.client()?.fork_lease(&lease_id, &ForkRequest { count, ttl_ms }).await?;
    println!("{}", serde_json::to_string_pretty(&forks)?);
    let failed = forks.forks.iter().any(|fork| fork.result().is_err());
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Runs `exec` in the lease, copies its stdout / stderr to ours, and returns its exit code
/// (128 + signal when it was killed by a signal).
pub async fn exec_and_print(client: &Client, lease_id: &str, exec: &ExecArgs) -> CliResult {
    let body = ExecBody::from(exec.spawn_body()?);
    let result = client.exec(lease_id, &body).await?;
    let (stdout, stderr) = match result.encoding {
        Encoding::Utf8 => (result.stdout.into_bytes(), result.stderr.into_bytes()),
        Encoding::Base64 => (BASE64.decode(result.stdout)?, BASE64.decode(result.stderr)?),
    };
    std::io::stdout().write_all(&stdout)?;
    std::io::stdout().flush()?;
    std::io::stderr().write_all(&stderr)?;
    if result.timed_out {
        eprintln!("firepit: the command was killed after {} ms", exec.timeout_ms);
    }
    if result.truncated {
        eprintln!("firepit: output was truncated");
    }
    let code = match (result.exit_code, result.signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    Ok(ExitCode::from((code & 0xff) as u8))
}

/// `NAME=VALUE` labels as metadata (the daemon checks their sizes).
fn labels(pairs: &[String]) -> Result<Metadata, String> {
    let mut metadata = Metadata::new();
    for pair in pairs {
        let (name, value) =
            pair.split_once('=').ok_or_else(|| format!("--metadata {pair:?}: expected NAME=VALUE"))?;
        metadata.insert(name.to_owned(), value.to_owned());
    }
    Ok(metadata)
}

/// Leases as a table: id, state, shape, created, expiry or end, labels.
fn table(leases: &[LeaseView]) -> String {
    let mut out = format!(
        "{:<20} {:<8} {:<12} {:<24} {:<36} {}\n",
        "ID", "STATE", "SHAPE", "CREATED", "EXPIRES / ENDED", "METADATA"
    );
    for lease in leases {
        let until = match (&lease.ended_at, lease.end_reason) {
            (Some(at), Some(reason)) => format!("{at} {}", reason.as_str()),
            _ => lease.expires_at.clone(),
        };
        let labels: Vec<String> = lease.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "{:<20} {:<8} {:<12} {:<24} {:<36} {}\n",
            lease.id,
            lease.state.as_str(),
            lease.shape,
            lease.created_at,
            until,
            labels.join(",")
        ));
    }
    out
}
