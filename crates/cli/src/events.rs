//! `firepit events`: the daemon's events (`lease.created`, `lease.ended`, ...), one JSON object a
//! line: those it still keeps, and with `--follow` the new ones as they happen.

use std::process::ExitCode;
use std::time::Duration;

use firepit_api::{EventKind, EventQuery};

use crate::CliResult;
use crate::status::ConnectArgs;

/// Without `--follow`: the history is sent at once; a pause this long ends it.
const HISTORY_IDLE: Duration = Duration::from_millis(300);

/// Arguments of `firepit events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Keep following: print new events as they happen, until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only events of this kind (repeatable): lease.created, lease.ended, shape.fill_failed, ...
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<String>,
    /// Only events about this lease.
    #[arg(long = "lease", value_name = "LEASE_ID")]
    lease_id: Option<String>,
    /// Start after this event id (default: the oldest kept; with `--follow` alone: from now).
    #[arg(long, value_name = "ID")]
    after: Option<u64>,
}

/// Runs `firepit events`.
pub async fn run(args: EventsArgs) -> CliResult {
    let kinds = args
        .kinds
        .iter()
        .map(|name| EventKind::from_name(name).ok_or_else(|| format!("--kind {name:?}: not an event kind")))
        .collect::<Result<Vec<_>, _>>()?;
    let after = match (args.after, args.follow) {
        (Some(id), _) => Some(id),
        (None, false) => Some(0),
        (None, true) => None,
    };
    let query = EventQuery { kinds, lease_id: args.lease_id, last_event_id: after };
    let mut feed = args.connect.client()?.events(&query).await?;
    loop {
        let next = if args.follow {
            feed.next_event().await?
        } else {
            match tokio::time::timeout(HISTORY_IDLE, feed.next_event()).await {
                Ok(next) => next?,
                Err(_idle) => None,
            }
        };
        let Some(event) = next else { return Ok(ExitCode::SUCCESS) };
        println!("{}", serde_json::to_string(&event)?);
    }
}
