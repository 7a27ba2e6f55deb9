//! Progress feedback for long steps: an indicatif spinner on a terminal, plain lines otherwise
//! (CI logs stay readable).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A running step: a spinner on a terminal, one "… done in N s" line otherwise.
pub struct Spinner {
    bar: Option<ProgressBar>,
    message: String,
    started: Instant,
}

/// Starts a spinner for `message` on stderr.
pub fn spinner(message: String) -> Spinner {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(message.clone());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    if bar.is_none() {
        eprintln!("{message} …");
    }
    Spinner { bar, message, started: Instant::now() }
}

impl Spinner {
    /// Ends the step and prints how long it took.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{} took {:.2} s", self.message, self.started.elapsed().as_secs_f64());
    }
}
