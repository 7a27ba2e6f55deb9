//! Ctrl-C and SIGTERM as a future, so a benchmark that holds many VMs can stop and clean up.

/// Resolves with the signal's name on SIGINT or SIGTERM (never, if the handlers cannot be set).
pub async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
