//! A [`LeaseBackend`] with no VMs behind it: for the daemon's tests, doc examples and trying the
//! API without QEMU.
//!
//! Each shape holds `depth.high` ready "VMs"; dropping a leased one destroys it and refills at once.
//! A fake VM's guest is real code: its [`Guest`] talks to the agent's own request handling running
//! in this process (`firepit_guest::InProcessAgent`), so `exec`, files, archives, attached and
//! background processes and terminals behave as in a VM, except that they act on *this* host, as
//! the user running the tests: programs are the host's, paths are the host's (tests work in
//! temporary directories of their own), and commands start in the host's temporary directory.
//! Whatever a VM started dies with it. The agent refuses to change the host itself
//! (identity, network). [`FakeBackend::make_unreachable`] makes a VM stop answering, like a VM
//! whose QEMU died. A VM of a shape with `network = "nat"` "forwards" ports by listening on a
//! loopback port of its own (connections queue there, nobody answers), closed when the VM is
//! released; it records egress narrowing (see [`FakeBackend::narrowed`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use firepit_guest::{ExecDefaults, Gate, Guest, GuestError, InProcessAgent, Wake};
use firepit_shape::Depth;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

use crate::backend::{
    AcquireError, BoxFuture, EgressPolicy, FillStrategy, LeaseBackend, LeasedVm, NetworkError, NetworkSpec,
    ShapeError, ShapeSpec, ShapeStatusView,
};
use crate::metrics::ShapeLabel;

/// The in-memory backend (cheap to clone; clones share state).
#[derive(Clone, Default)]
pub struct FakeBackend {
    state: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    shapes: Mutex<BTreeMap<String, FakeShape>>,
    refilled: Notify,
    next_id: AtomicU64,
    shut_down: std::sync::atomic::AtomicBool,
    ready_gauge: Family<ShapeLabel, Gauge>,
    narrowed: Mutex<BTreeMap<String, Vec<EgressPolicy>>>,
    /// VMs that stopped answering ([`FakeBackend::make_unreachable`]).
    unreachable: Mutex<BTreeSet<String>>,
}

struct FakeShape {
    spec: ShapeSpec,
    ready: usize,
    leased: usize,
    destroyed: u64,
}

impl FakeBackend {
    /// A backend with one shape of `depth` ready VMs.
    ///
    /// # Example
    /// ```
    /// use firepit_daemon::backend::LeaseBackend;
    /// let backend = firepit_daemon::fake::FakeBackend::with_shape("small", 3);
    /// assert_eq!(backend.status()[0].ready, 3);
    /// ```
    pub fn with_shape(name: &str, depth: usize) -> Self {
        let backend = Self::default();
        backend.insert(Self::spec(name, depth));
        backend
    }

    /// A valid spec for a fake shape of `depth` VMs (its image is the temp dir).
    pub fn spec(name: &str, depth: usize) -> ShapeSpec {
        ShapeSpec {
            memory_mb: 128,
            depth: Depth { low: depth, high: depth },
            fill: FillStrategy::ColdBoot,
            health_check: false,
            ..ShapeSpec::new(name, std::env::temp_dir())
        }
    }

    fn insert(&self, spec: ShapeSpec) {
        let ready = spec.depth.high;
        self.set_gauge(&spec.name, ready);
        self.lock().insert(spec.name.clone(), FakeShape { spec, ready, leased: 0, destroyed: 0 });
    }

    /// Adds a shape of `depth` ready VMs directly (no validation).
    pub fn insert_for_tests(&self, name: &str, depth: usize) {
        self.insert(Self::spec(name, depth));
    }

    /// Ready VMs of `shape`.
    pub fn status_ready(&self, shape: &str) -> usize {
        self.lock().get(shape).map_or(0, |s| s.ready)
    }

    /// VMs of `shape` destroyed so far (released, expired or unregistered).
    pub fn destroyed(&self, shape: &str) -> u64 {
        self.lock().get(shape).map_or(0, |s| s.destroyed)
    }

    /// VMs of `shape` currently leased.
    pub fn leased(&self, shape: &str) -> usize {
        self.lock().get(shape).map_or(0, |s| s.leased)
    }

    /// The egress narrowings applied to VM `vm_id`, in order (empty when none).
    pub fn narrowed(&self, vm_id: &str) -> Vec<EgressPolicy> {
        let narrowed = self.state.narrowed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        narrowed.get(vm_id).cloned().unwrap_or_default()
    }

    /// Makes VM `vm_id` stop answering, as a VM whose QEMU died: every guest request of it fails
    /// (the API answers `vm_unreachable`).
    pub fn make_unreachable(&self, vm_id: &str) {
        let mut unreachable =
            self.state.unreachable.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        unreachable.insert(vm_id.to_owned());
    }

    /// Whether [`LeaseBackend::shutdown`] ran.
    pub fn is_shut_down(&self) -> bool {
        self.state.shut_down.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, FakeShape>> {
        self.state.shapes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_gauge(&self, shape: &str, ready: usize) {
        self.state.ready_gauge.get_or_create(&ShapeLabel { shape: shape.to_owned() }).set(ready as i64);
    }

    fn try_take(&self, shape: &str) -> Result<Option<Box<dyn LeasedVm>>, AcquireError> {
        if self.is_shut_down() {
            return Err(AcquireError::ShuttingDown);
        }
        let mut shapes = self.lock();
        let entry = shapes.get_mut(shape).ok_or_else(|| AcquireError::UnknownShape(shape.to_owned()))?;
        if entry.ready == 0 {
            return Ok(None);
        }
        entry.ready -= 1;
        entry.leased += 1;
        let ready = entry.ready;
        let network = entry.spec.network.clone();
        drop(shapes);
        self.set_gauge(shape, ready);
        let n = self.state.next_id.fetch_add(1, Ordering::SeqCst);
        let id = format!("fake-{shape}-{n}");
        // Commands start in the temporary directory, not in the agent's default `/` of this host.
        let defaults =
            ExecDefaults { cwd: Some(std::env::temp_dir().display().to_string()), ..ExecDefaults::default() };
        let gate = Arc::new(Reachable { state: self.state.clone(), vm: id.clone() });
        let guest = Guest::new(InProcessAgent::new()).with_exec_defaults(defaults).with_gate(gate);
        Ok(Some(Box::new(FakeVm {
            id,
            shape: shape.to_owned(),
            backend: self.clone(),
            guest,
            network,
            forwards: Mutex::default(),
        })))
    }
}

/// A fake VM's gate: it answers until [`FakeBackend::make_unreachable`] says otherwise.
struct Reachable {
    state: Arc<Shared>,
    vm: String,
}

impl std::fmt::Debug for Reachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reachable").field("vm", &self.vm).finish()
    }
}

impl Gate for Reachable {
    fn check(&self) -> Result<Option<Wake>, GuestError> {
        let unreachable = self.state.unreachable.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if unreachable.contains(&self.vm) { Err(GuestError::Closed) } else { Ok(None) }
    }
}

impl LeaseBackend for FakeBackend {
    fn acquire<'a>(
        &'a self,
        shape: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn LeasedVm>, AcquireError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                // Register interest before checking, so a refill between the check and the wait is seen.
                let refilled = self.state.refilled.notified();
                tokio::pin!(refilled);
                refilled.as_mut().enable();
                if let Some(vm) = self.try_take(shape)? {
                    return Ok(vm);
                }
                if tokio::time::timeout_at(deadline, refilled).await.is_err() {
                    return Err(AcquireError::Exhausted {
                        shape: shape.to_owned(),
                        waited_ms: wait.as_millis() as u64,
                    });
                }
            }
        })
    }

    fn status(&self) -> Vec<ShapeStatusView> {
        self.lock()
            .values()
            .map(|s| ShapeStatusView {
                image_id: s.spec.image.display().to_string(),
                root_disk: None,
                name: s.spec.name.clone(),
                ready: s.ready,
                filling: 0,
                leased: s.leased,
                depth_low: s.spec.depth.low,
                depth_high: s.spec.depth.high,
                fill_failures: 0,
                consecutive_failures: 0,
                last_error: None,
                cpus: s.spec.cpus,
                memory_mb: s.spec.memory_mb,
                disk_mb: s.spec.disk_mb,
                accelerator: "none".to_owned(),
                fill: s.spec.fill,
                last_fill: None,
                fill_state: None,
            })
            .collect()
    }

    fn network(&self, shape: &str) -> Option<NetworkSpec> {
        self.lock().get(shape).map(|s| s.spec.network.clone())
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "firepit_pool_ready",
            "Ready VMs per shape (fake backend)",
            self.state.ready_gauge.clone(),
        );
    }

    fn register_shape<'a>(&'a self, spec: ShapeSpec) -> BoxFuture<'a, Result<(), ShapeError>> {
        Box::pin(async move {
            if self.is_shut_down() {
                return Err(ShapeError::ShuttingDown);
            }
            if self.lock().contains_key(&spec.name) {
                return Err(ShapeError::AlreadyExists(spec.name));
            }
            self.insert(spec);
            self.state.refilled.notify_waiters();
            Ok(())
        })
    }

    fn unregister_shape<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ShapeError>> {
        Box::pin(async move {
            self.lock().remove(name).ok_or_else(|| ShapeError::Unknown(name.to_owned()))?;
            self.state.ready_gauge.remove(&ShapeLabel { shape: name.to_owned() });
            Ok(())
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.state.shut_down.store(true, Ordering::SeqCst);
            for shape in self.lock().values_mut() {
                shape.destroyed += shape.ready as u64;
                shape.ready = 0;
            }
        })
    }
}

/// A leased fake VM; dropping it destroys it (the processes its guest started die) and refills its
/// shape.
struct FakeVm {
    id: String,
    shape: String,
    backend: FakeBackend,
    guest: Guest,
    network: NetworkSpec,
    /// Guest port and the listener standing in for QEMU's forward (closed with the VM).
    forwards: Mutex<Vec<(u16, TcpListener)>>,
}

impl Drop for FakeVm {
    fn drop(&mut self) {
        let mut unreachable =
            self.backend.state.unreachable.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        unreachable.remove(&self.id);
        drop(unreachable);
        let mut shapes = self.backend.lock();
        let Some(shape) = shapes.get_mut(&self.shape) else { return };
        shape.leased = shape.leased.saturating_sub(1);
        shape.destroyed += 1;
        if !self.backend.is_shut_down() {
            shape.ready += 1;
        }
        let ready = shape.ready;
        drop(shapes);
        self.backend.set_gauge(&self.shape, ready);
        self.backend.state.refilled.notify_waiters();
    }
}

impl LeasedVm for FakeVm {
    fn vm_id(&self) -> &str {
        &self.id
    }

    fn guest(&self) -> &Guest {
        &self.guest
    }

    fn forward_port(&self, guest_port: u16) -> BoxFuture<'_, Result<SocketAddr, NetworkError>> {
        Box::pin(async move {
            if !self.network.is_enabled() {
                return Err(NetworkError::Disabled);
            }
            let mut forwards = self.forwards.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((_, listener)) = forwards.iter().find(|(port, _)| *port == guest_port) {
                return listener.local_addr().map_err(|e| NetworkError::Failed(e.into()));
            }
            let bound = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|listener| Ok((listener.local_addr()?, listener)));
            let (addr, listener) = bound.map_err(|e| NetworkError::Failed(e.into()))?;
            forwards.push((guest_port, listener));
            Ok(addr)
        })
    }

    fn remove_forward(&self, guest_port: u16) -> BoxFuture<'_, Result<(), NetworkError>> {
        Box::pin(async move {
            if !self.network.is_enabled() {
                return Err(NetworkError::Disabled);
            }
            let mut forwards = self.forwards.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = forwards.len();
            forwards.retain(|(port, _)| *port != guest_port);
            if forwards.len() == before {
                return Err(NetworkError::NoSuchForward(guest_port));
            }
            Ok(())
        })
    }

    fn forwards(&self) -> Vec<(u16, SocketAddr)> {
        let forwards = self.forwards.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        forwards.iter().filter_map(|(port, listener)| Some((*port, listener.local_addr().ok()?))).collect()
    }

    fn narrow_egress(&self, policy: EgressPolicy) -> Result<(), NetworkError> {
        if !self.network.is_enabled() {
            return Err(NetworkError::Disabled);
        }
        let mut narrowed =
            self.backend.state.narrowed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        narrowed.entry(self.id.clone()).or_default().push(policy);
        Ok(())
    }
}
