//! `firepit ui`: the web dashboard for a daemon that listens on its Unix socket only (or any
//! daemon the connection arguments name), on a loopback port of this machine, with a one-time
//! login link instead of a token (as Jupyter does).
//!
//! The link is the only way in: whoever opens it first gets the session; a second use is refused.
//! The listener must be a loopback address, so the dashboard is reachable only from this machine
//! (a dashboard for others is `firepit serve`'s TCP listener with a token).

use std::net::SocketAddr;
use std::process::ExitCode;

use firepit_ui::Dashboard;
use tokio_util::sync::CancellationToken;

use crate::CliResult;
use crate::status::ConnectArgs;

/// Arguments of `firepit ui`.
#[derive(Debug, clap::Args)]
pub struct UiArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Where the dashboard listens: a loopback address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
}

/// Serves the dashboard until Ctrl-C or SIGTERM.
pub async fn run(args: UiArgs) -> CliResult {
    if !args.listen.ip().is_loopback() {
        return Err(format!(
            "--listen {}: `firepit ui` serves on a loopback address only (its login is a link); \
             for a dashboard others can reach, give `firepit serve` a TCP listener and a token",
            args.listen
        )
        .into());
    }
    let client = args.connect.client()?;
    // Fail now, with the client's advice, rather than on the first page.
    client.healthz().await?;
    let stopping = CancellationToken::new();
    let dashboard = Dashboard::new(client, None, stopping.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("firepit dashboard: http://{addr}{}", dashboard.one_time_login_path());
    println!("(the link logs one browser in, once, within 15 minutes; Ctrl-C stops the dashboard)");
    let stop = stopping.clone();
    tokio::spawn(async move {
        stop_signal().await;
        stop.cancel();
    });
    axum::serve(listener, dashboard.router()).with_graceful_shutdown(stopping.cancelled_owned()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on the first Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
