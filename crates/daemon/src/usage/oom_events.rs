//! Where an OOM kill in a guest leaves the sampler: a log line in the lease's span, the counter
//! `firepit_vm_oom_kills_total{shape}`, and the daemon's event stream
//! (`process.oom_killed`) through an [`OomSink`].
//!
//! Every kill the guest's agent saw is reported once, whoever ran the process (an exec, a
//! background process, something a process started): the sampler reads the agent's numbered list
//! of kills with each sample. An exec or process result says `oom_killed` on its own; the event is
//! what a watcher of the whole daemon sees.

use std::sync::{Arc, RwLock};

use firepit_agent::OomKill;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use firepit_api::EventKind;

use crate::events::EventBus;
use crate::metrics::ShapeLabel;

/// A process of a lease's guest killed by the guest kernel's OOM killer (the event
/// `process.oom_killed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomEvent {
    /// The lease.
    pub lease_id: String,
    /// Its shape.
    pub shape: String,
    /// What the guest's agent saw: pid, command name, process group, memory, when.
    pub kill: OomKill,
}

/// Receives every [`OomEvent`] ([`to_event_bus`]; tests). Called on the sampler's task: it must
/// not block.
pub type OomSink = Arc<dyn Fn(&OomEvent) + Send + Sync>;

/// Logs, counts and forwards OOM kills.
pub struct OomReporter {
    kills: Family<ShapeLabel, Counter>,
    sink: RwLock<Option<OomSink>>,
}

impl OomReporter {
    /// Registers `firepit_vm_oom_kills_total`.
    pub fn register(registry: &mut Registry) -> Self {
        let kills = Family::<ShapeLabel, Counter>::default();
        registry.sub_registry_with_prefix("firepit_vm").register(
            "oom_kills",
            "Processes the guest kernels' OOM killers killed in leased VMs",
            kills.clone(),
        );
        Self { kills, sink: RwLock::new(None) }
    }

    /// Forwards every later kill to `sink` too.
    pub fn set_sink(&self, sink: OomSink) {
        *self.sink.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sink);
    }

    /// Reports one kill.
    pub fn report(&self, event: &OomEvent, span: &tracing::Span) {
        self.kills.get_or_create(&ShapeLabel { shape: event.shape.clone() }).inc();
        span.in_scope(|| {
            tracing::warn!(
                pid = event.kill.pid,
                comm = %event.kill.comm,
                process_group = ?event.kill.process_group,
                anon_rss_kb = event.kill.anon_rss_kb,
                "the guest's OOM killer killed a process (the VM goes on)"
            );
        });
        let sink = self.sink.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(sink) = sink {
            sink(event);
        }
    }
}

/// A sink that emits each kill as the event `process.oom_killed` (`lease_id`, `shape`, the guest
/// `pid`, and in `detail` the command name and its memory) on the daemon's event bus.
pub fn to_event_bus(bus: EventBus) -> OomSink {
    Arc::new(move |event: &OomEvent| {
        bus.emit(EventKind::ProcessOomKilled, |e| {
            e.lease_id = Some(event.lease_id.clone());
            e.shape = Some(event.shape.clone());
            e.pid = Some(event.kill.pid);
            e.detail = Some(format!(
                "the guest's OOM killer killed `{}` (pid {}, {} KiB anonymous memory)",
                event.kill.comm, event.kill.pid, event.kill.anon_rss_kb
            ));
        });
    })
}
