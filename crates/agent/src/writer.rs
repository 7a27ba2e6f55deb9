//! The one writer every response frame goes through, so frames never interleave, and the session
//! generation that lets it drop the frames of an ended host session.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread;

use firepit_agent::{Response, ResponseFrame, encode_frame};

/// A frame on its way to the writer thread, tagged with the session it belongs to.
pub struct Outgoing {
    generation: u64,
    frame: ResponseFrame,
}

/// Where a session's responses go: the writer thread, which drops frames of ended sessions.
#[derive(Clone)]
pub struct Sink {
    tx: Sender<Outgoing>,
    generation: u64,
}

impl Sink {
    /// Queues `response` for request `id`; false when the writer is gone.
    pub fn send(&self, id: u64, response: Response) -> bool {
        self.tx.send(Outgoing { generation: self.generation, frame: ResponseFrame { id, response } }).is_ok()
    }
}

/// The writer thread and the session generation it lets through.
pub struct Writer {
    tx: Sender<Outgoing>,
    current: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer thread: frames of the current session are written whole, in order; frames
    /// of ended sessions are dropped. The thread ends when every sender is gone or a write fails.
    pub fn spawn<W: Write + Send + 'static>(mut writer: W) -> Self {
        let (tx, rx) = mpsc::channel::<Outgoing>();
        let current = Arc::new(AtomicU64::new(0));
        let live = current.clone();
        thread::spawn(move || {
            for Outgoing { generation, frame } in rx {
                if generation != live.load(Ordering::SeqCst) {
                    continue;
                }
                let bytes = encode_frame(&frame).or_else(|error| {
                    let message = format!("response could not be encoded: {error}");
                    encode_frame(&ResponseFrame { id: frame.id, response: Response::Error { message } })
                });
                let Ok(bytes) = bytes else { continue };
                if let Err(error) = writer.write_all(&bytes).and_then(|()| writer.flush()) {
                    eprintln!("firepit-agent: writing a response failed: {error}");
                    return;
                }
            }
        });
        Self { tx, current }
    }

    /// Ends the current session (its queued frames are dropped) and returns the sink of a new one.
    pub fn new_session(&self) -> Sink {
        let generation = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        Sink { tx: self.tx.clone(), generation }
    }
}
